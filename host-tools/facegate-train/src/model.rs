//! The embedders: MobileFaceNet-style networks sized for microcontrollers.
//!
//! Both presets share one block structure (stem, depthwise-separable
//! bottlenecks with residual adds, a 1×1 expansion, a global depthwise conv
//! and a linear 1×1 projection to the embedding, each followed by BatchNorm)
//! so the quantizer and the int8 engine see the same operators either way.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PRelu, PReluConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::conv_ops;

/// Side of the square input face (aligned 112×112 RGB, as the shared data).
pub const INPUT_SIZE: usize = 112;

/// A named network size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// MobileFaceNet (≈ 0.9 M params, ≈ 0.2 G MACs): Cortex-M7 and Cortex-A boards.
    Mfn,
    /// A narrow MobileFaceNet (≤ 250 k params, ≤ 25 M MACs): Cortex-M4-class boards.
    Nano,
    /// A few thousand parameters: for tests only.
    Tiny,
}

/// One stage of bottlenecks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Output channels.
    pub channels: usize,
    /// Number of bottlenecks.
    pub repeats: usize,
    /// Stride of the first bottleneck.
    pub stride: usize,
    /// Expansion factor of the inner depthwise layer.
    pub expansion: usize,
}

/// The shape of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Architecture {
    /// Input side (square, RGB).
    pub input: usize,
    /// Stem channels (3×3 stride-2 conv, then a 3×3 depthwise conv).
    pub stem: usize,
    /// Bottleneck stages.
    pub stages: Vec<Stage>,
    /// Channels of the 1×1 expansion before the global depthwise conv.
    pub head: usize,
    /// Embedding width.
    pub embedding: usize,
}

const fn stage(channels: usize, repeats: usize, stride: usize, expansion: usize) -> Stage {
    Stage {
        channels,
        repeats,
        stride,
        expansion,
    }
}

impl Preset {
    /// The architecture of this preset.
    pub fn architecture(self) -> Architecture {
        match self {
            Self::Mfn => Architecture {
                input: INPUT_SIZE,
                stem: 64,
                stages: vec![
                    stage(64, 5, 2, 2),
                    stage(128, 1, 2, 2),
                    stage(128, 6, 1, 2),
                    stage(128, 1, 2, 2),
                    stage(128, 2, 1, 2),
                ],
                head: 512,
                embedding: 128,
            },
            Self::Nano => Architecture {
                input: INPUT_SIZE,
                stem: 16,
                stages: vec![
                    stage(24, 2, 2, 2),
                    stage(48, 2, 2, 2),
                    stage(48, 3, 1, 2),
                    stage(96, 1, 2, 2),
                    stage(96, 2, 1, 2),
                ],
                head: 320,
                embedding: 128,
            },
            Self::Tiny => Architecture {
                input: INPUT_SIZE,
                stem: 8,
                stages: vec![stage(8, 1, 2, 2), stage(16, 1, 2, 2), stage(16, 1, 2, 2)],
                head: 32,
                embedding: 32,
            },
        }
    }
}

/// One convolution layer of the architecture.
#[derive(Clone, Copy, Debug)]
struct ConvSpec {
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    pad: usize,
    activated: bool,
}

impl ConvSpec {
    /// Pointwise 1×1.
    const fn pw(cin: usize, cout: usize, activated: bool) -> Self {
        Self {
            cin,
            cout,
            kernel: 1,
            stride: 1,
            groups: 1,
            pad: 0,
            activated,
        }
    }
    /// Depthwise k×k ("same" padding for 3×3, none for the global one).
    const fn dw(c: usize, kernel: usize, stride: usize, pad: usize, activated: bool) -> Self {
        Self {
            cin: c,
            cout: c,
            kernel,
            stride,
            groups: c,
            pad,
            activated,
        }
    }
    /// Output side for an input side.
    const fn out(&self, hw: usize) -> usize {
        (hw + 2 * self.pad - self.kernel) / self.stride + 1
    }
}

/// The layers of an architecture in order, with the residual flag of each
/// bottleneck's last layer.
fn layers(a: &Architecture) -> (Vec<ConvSpec>, Vec<bool>) {
    let mut v = vec![
        ConvSpec {
            cin: 3,
            cout: a.stem,
            kernel: 3,
            stride: 2,
            groups: 1,
            pad: 1,
            activated: true,
        },
        ConvSpec::dw(a.stem, 3, 1, 1, true),
    ];
    let mut residual = Vec::new();
    let mut hw = v[1].out(v[0].out(a.input));
    let mut c = a.stem;
    for s in &a.stages {
        for i in 0..s.repeats {
            let stride = if i == 0 { s.stride } else { 1 };
            let inner = c * s.expansion;
            v.push(ConvSpec::pw(c, inner, true));
            v.push(ConvSpec::dw(inner, 3, stride, 1, true));
            v.push(ConvSpec::pw(inner, s.channels, false));
            residual.push(stride == 1 && c == s.channels);
            hw = (hw + 2 - 3) / stride + 1;
            c = s.channels;
        }
    }
    v.push(ConvSpec::pw(c, a.head, true));
    v.push(ConvSpec::dw(a.head, hw, 1, 0, false));
    v.push(ConvSpec::pw(a.head, a.embedding, false));
    (v, residual)
}

/// Conv → BatchNorm → optional PReLU.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution (no bias: BatchNorm follows).
    pub conv: Conv2d,
    /// Its BatchNorm.
    pub bn: BatchNorm,
    /// PReLU with one slope per channel, if the layer is activated.
    pub act: Option<PRelu>,
}

impl ConvBn {
    fn new(device: &Device, spec: ConvSpec) -> Self {
        let ConvSpec {
            cin,
            cout,
            kernel,
            stride,
            groups,
            pad,
            activated,
        } = spec;
        Self {
            conv: Conv2dConfig::new([cin, cout], [kernel, kernel])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(cout).init(device),
            act: activated.then(|| PReluConfig::new().with_num_parameters(cout).init(device)),
        }
    }

    /// Applies the layer. Depthwise and 1×1 convolutions go through
    /// [`crate::conv_ops`] (same values as `Conv2d::forward`, faster
    /// gradients); the stem uses burn's convolution.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let c = &self.conv;
        let [cout, cin_g, k, _] = c.weight.dims();
        let pad = match c.padding {
            PaddingConfig2d::Explicit(t, b, l, r) if t == b && t == l && t == r => Some(t),
            _ => None,
        };
        let square = c.kernel_size[0] == c.kernel_size[1] && c.stride[0] == c.stride[1];
        let plain = c.bias.is_none() && c.dilation == [1, 1] && square;
        let y = match pad {
            Some(pad) if plain && cin_g == 1 && c.groups == cout && cout > 1 => {
                conv_ops::depthwise_conv2d(x, c.weight.val(), c.stride[0], pad)
            }
            Some(0) if plain && k == 1 && c.groups == 1 && c.stride[0] == 1 => {
                conv_ops::pointwise_conv2d(x, c.weight.val())
            }
            _ => c.forward(x),
        };
        batch_norm_prelu(&self.bn, self.act.as_ref(), y)
    }
}

/// `bn.forward(y)` then the PReLU if any. While training, the statistics,
/// the activation and their gradients come from [`conv_ops`] in one fused
/// op (the running statistics kept as burn's `BatchNorm` keeps them).
fn batch_norm_prelu(bn: &BatchNorm, act: Option<&PRelu>, y: Tensor<4>) -> Tensor<4> {
    if !(y.device().is_autodiff() && bn.training.is_enabled()) {
        let y = bn.forward(y);
        return match act {
            Some(a) => conv_ops::prelu_channels(y, a.alpha.val()),
            None => y,
        };
    }
    let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
    let (out, mean, variance) = match act {
        Some(a) => conv_ops::batch_norm_prelu_train(y, gamma, beta, a.alpha.val(), bn.epsilon),
        None => conv_ops::batch_norm_channels_train(y, gamma, beta, bn.epsilon),
    };
    let device = out.device();
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - bn.momentum)
            .add(batch.detach().mul_scalar(bn.momentum))
            .detach()
    };
    bn.running_mean
        .update(blend(bn.running_mean.value_sync(), mean));
    bn.running_var
        .update(blend(bn.running_var.value_sync(), variance));
    out
}

/// Inverted residual: 1×1 expand → 3×3 depthwise → 1×1 project (linear), plus
/// the input when shapes allow.
#[derive(Module, Debug)]
pub struct Bottleneck {
    /// 1×1 expansion.
    pub expand: ConvBn,
    /// 3×3 depthwise.
    pub depthwise: ConvBn,
    /// 1×1 linear projection.
    pub project: ConvBn,
    /// Whether the input is added to the output.
    pub residual: bool,
}

impl Bottleneck {
    /// Applies the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self
            .project
            .forward(self.depthwise.forward(self.expand.forward(x.clone())));
        if self.residual { y + x } else { y }
    }
}

/// The face embedder. Input: `[batch, 3, size, size]` faces normalised as
/// `(x − 127.5) / 128`; output: `[batch, embedding]` (not L2-normalised: the
/// losses and the consumers normalise).
#[derive(Module, Debug)]
pub struct Embedder {
    /// 3×3 stride-2 stem.
    pub stem: ConvBn,
    /// 3×3 depthwise after the stem.
    pub stem_dw: ConvBn,
    /// Bottlenecks.
    pub blocks: Vec<Bottleneck>,
    /// 1×1 expansion.
    pub head: ConvBn,
    /// Global depthwise conv (kernel = the final feature map), linear.
    pub gdc: ConvBn,
    /// Linear 1×1 projection to the embedding, with BatchNorm.
    pub embed: ConvBn,
}

impl Architecture {
    /// Builds the network with fresh weights.
    pub fn init(&self, device: &Device) -> Embedder {
        let (specs, residual) = layers(self);
        let mut convs = specs.into_iter().map(|s| ConvBn::new(device, s));
        let mut next = || convs.next().expect("layers() lists every layer");
        let stem = next();
        let stem_dw = next();
        let blocks = residual
            .into_iter()
            .map(|residual| Bottleneck {
                expand: next(),
                depthwise: next(),
                project: next(),
                residual,
            })
            .collect();
        Embedder {
            stem,
            stem_dw,
            blocks,
            head: next(),
            gdc: next(),
            embed: next(),
        }
    }

    /// Parameters, MACs and the largest activation, counted from the shape.
    pub fn info(&self) -> ModelInfo {
        let (specs, residual) = layers(self);
        let mut info = ModelInfo::default();
        let mut hw = self.input;
        for (i, l) in specs.iter().enumerate() {
            let out = l.out(hw);
            let w = l.cout * (l.cin / l.groups) * l.kernel * l.kernel;
            // Weights + BatchNorm (γ, β) + PReLU slopes: what training learns.
            info.params += w + 2 * l.cout + if l.activated { l.cout } else { 0 };
            info.macs += (w * out * out) as u64;
            info.batchnorm_channels += l.cout;
            // A residual block keeps its input alive until the add (the
            // block's first layer reads it anyway; the others hold it).
            let keep = match i.checked_sub(2).map(|j| (j / 3, j % 3)) {
                Some((b, 1 | 2)) if residual.get(b) == Some(&true) => {
                    specs[2 + 3 * b].cin * hw * hw
                }
                _ => 0,
            };
            let act_in = l.cin * hw * hw;
            let act_out = l.cout * out * out;
            info.largest_activation = info.largest_activation.max(act_out);
            info.peak_live = info.peak_live.max(act_in + act_out + keep);
            hw = out;
        }
        info
    }
}

/// What a network costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// Trainable parameters (BatchNorm folds into the convolutions on export).
    pub params: usize,
    /// BatchNorm channels (each also has a running mean and variance).
    pub batchnorm_channels: usize,
    /// Multiply-accumulates per face.
    pub macs: u64,
    /// Elements of the largest activation tensor.
    pub largest_activation: usize,
    /// Elements live at once in the worst layer (input + output + a residual
    /// kept for a later add): the int8 arena's lower bound in bytes.
    pub peak_live: usize,
}

impl Embedder {
    /// Embeds a batch of normalised faces.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_train(x, 0.0)
    }

    /// Embeds a batch while training: the pooled features are dropped with
    /// probability `dropout` (and the kept ones scaled by 1 / (1 − p)) before
    /// the embedding layer. Only on an autodiff device; elsewhere as [`forward`](Self::forward).
    pub fn forward_train(&self, x: Tensor<4>, dropout: f64) -> Tensor<2> {
        let mut x = self.stem_dw.forward(self.stem.forward(x));
        for b in &self.blocks {
            x = b.forward(x);
        }
        let mut pooled = self.gdc.forward(self.head.forward(x));
        if dropout > 0.0 && pooled.device().is_autodiff() {
            let keep = 1.0 - dropout;
            let mask = pooled.random_like(Distribution::Bernoulli(keep));
            pooled = pooled * mask * (1.0 / keep);
        }
        let x = self.embed.forward(pooled);
        let [n, c, _, _] = x.dims();
        x.reshape([n, c])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_fit_the_budgets_of_the_design() {
        // DESIGN.md: mfn ≤ 1.1 M params, ≤ 230 M MACs; nano ≤ 250 k, ≤ 25 M MACs
        // and a 160 KiB int8 arena.
        let mfn = Preset::Mfn.architecture().info();
        assert!(mfn.params <= 1_100_000, "{mfn:?}");
        assert!(mfn.macs <= 230_000_000, "{mfn:?}");
        let nano = Preset::Nano.architecture().info();
        assert!(nano.params <= 250_000, "{nano:?}");
        assert!(nano.macs <= 25_000_000, "{nano:?}");
        assert!(nano.peak_live <= 160 * 1024, "{nano:?}");
    }

    #[test]
    fn counted_parameters_equal_the_built_network() {
        let device = Device::flex();
        for p in [Preset::Tiny, Preset::Nano] {
            let arch = p.architecture();
            let net = arch.init(&device);
            let info = arch.info();
            // burn counts BatchNorm's running statistics as parameters too.
            assert_eq!(
                net.num_params(),
                info.params + 2 * info.batchnorm_channels,
                "{p:?}"
            );
        }
    }

    /// `ConvBn::forward` (our ops) against burn's modules in a row: outputs,
    /// every gradient and the running statistics, for each kind of layer.
    #[test]
    fn conv_bn_layers_equal_burns_modules() {
        use burn::module::Param;
        let device = Device::flex().autodiff();
        let as_vec = |t: Tensor<4>| {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        let as_vec1 = |t: Tensor<1>| {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst / scale < 1e-4, "{what}: {}", worst / scale);
        };
        for spec in [
            ConvSpec::dw(6, 3, 1, 1, true),
            ConvSpec::dw(6, 3, 2, 1, false),
            ConvSpec::pw(4, 6, true),
            ConvSpec::dw(6, 5, 1, 0, false),
        ] {
            let side = 5;
            let layer = ConvBn::new(&device, spec);
            // Slopes and BatchNorm affine values away from their defaults.
            let alpha = layer
                .act
                .as_ref()
                .map(|a| a.alpha.val().random_like(Distribution::Uniform(-0.5, 0.5)));
            let layer = ConvBn {
                act: layer.act.map(|mut a| {
                    a.alpha = Param::from_tensor(alpha.clone().unwrap_or_else(|| unreachable!()));
                    a
                }),
                ..layer
            };
            let x_values = Tensor::<4>::random(
                [3, spec.cin, side, side],
                Distribution::Normal(1.0, 2.0),
                &device,
            )
            .into_data();
            let r = Tensor::<4>::random(
                [3, spec.cout, spec.out(side), spec.out(side)],
                Distribution::Default,
                &device,
            );
            let run = |fast: bool| {
                // Clones share their running statistics: start each run afresh.
                let layer = layer.clone();
                layer
                    .bn
                    .running_mean
                    .update(Tensor::zeros([spec.cout], &device));
                layer
                    .bn
                    .running_var
                    .update(Tensor::ones([spec.cout], &device));
                let x = Tensor::<4>::from_data(x_values.clone(), &device).require_grad();
                let y = if fast {
                    layer.forward(x.clone())
                } else {
                    let y = layer.bn.forward(layer.conv.forward(x.clone()));
                    match &layer.act {
                        Some(a) => a.forward(y),
                        None => y,
                    }
                };
                let grads = (y.clone() * r.clone()).sum().backward();
                let g4 = |t: &Tensor<4>| as_vec(t.grad(&grads).expect("a gradient"));
                let g1 = |t: &Tensor<1>| as_vec1(t.grad(&grads).expect("a gradient"));
                let mut out = vec![
                    ("output", as_vec(y)),
                    ("x grad", g4(&x)),
                    ("weight grad", g4(&layer.conv.weight.val())),
                    ("gamma grad", g1(&layer.bn.gamma.val())),
                    ("beta grad", g1(&layer.bn.beta.val())),
                    ("running mean", as_vec1(layer.bn.running_mean.value())),
                    ("running var", as_vec1(layer.bn.running_var.value())),
                ];
                if let Some(a) = &layer.act {
                    out.push(("alpha grad", g1(&a.alpha.val())));
                }
                out
            };
            for ((what, fast), (_, reference)) in run(true).into_iter().zip(run(false)) {
                close(&fast, &reference, &format!("{spec:?} {what}"));
            }
        }
    }

    #[test]
    fn forward_gives_one_embedding_per_face() {
        let device = Device::flex();
        let arch = Preset::Tiny.architecture();
        let net = arch.init(&device);
        let y = net.forward(Tensor::zeros([2, 3, INPUT_SIZE, INPUT_SIZE], &device));
        assert_eq!(y.dims(), [2, arch.embedding]);
    }

    #[test]
    fn dropout_acts_only_while_training() {
        let values = |t: Tensor<2>| {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        for device in [Device::flex(), Device::flex().autodiff()] {
            device.seed(3);
            let net = Preset::Tiny.architecture().init(&device);
            let x = Tensor::<4>::random(
                [4, 3, INPUT_SIZE, INPUT_SIZE],
                Distribution::Default,
                &device,
            );
            let plain = values(net.forward(x.clone()));
            assert_eq!(values(net.forward_train(x.clone(), 0.0)), plain);
            let dropped = values(net.forward_train(x, 0.5));
            if device.is_autodiff() {
                assert_ne!(dropped, plain, "no dropout while training");
            } else {
                assert_eq!(dropped, plain, "dropout outside training");
            }
        }
    }
}
