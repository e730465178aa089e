//! From a trained burn embedder to the float network the quantizer reads,
//! and to ONNX: BatchNorm folded into the convolutions, PReLU kept.

use std::path::Path;

use burn::tensor::Tensor;
use facegate_quant::graph::{FloatNet, Layer, Shape};

use crate::model::{Architecture, ConvBn, Embedder};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

struct Builder {
    net: FloatNet,
}

impl Builder {
    /// Appends conv+BN(+PReLU) reading value `input`; returns the output value.
    fn conv(&mut self, layer: &ConvBn, input: usize) -> usize {
        let c = &layer.conv;
        let w = values(c.weight.val()); // OIHW
        let [cout, cin_g, kh, kw] = c.weight.dims();
        let gamma = values(layer.bn.gamma.val());
        let beta = values(layer.bn.beta.val());
        let mean = values(layer.bn.running_mean.value());
        let var = values(layer.bn.running_var.value());
        let eps = layer.bn.epsilon as f32;
        let conv_bias = c.bias.as_ref().map(|b| values(b.val()));
        let mut weights = vec![0.0f32; w.len()];
        let mut bias = vec![0.0f32; cout];
        for o in 0..cout {
            // y = γ (conv(x) + b − μ) / √(σ² + ε) + β
            let k = gamma[o] / (var[o] + eps).sqrt();
            bias[o] = beta[o] + k * (conv_bias.as_ref().map_or(0.0, |b| b[o]) - mean[o]);
            for i in 0..cin_g {
                for y in 0..kh {
                    for x in 0..kw {
                        // OIHW → OHWI
                        weights[((o * kh + y) * kw + x) * cin_g + i] =
                            w[((o * cin_g + i) * kh + y) * kw + x] * k;
                    }
                }
            }
        }
        let [stride, _] = c.stride;
        let pad = match &c.padding {
            burn::nn::PaddingConfig2d::Explicit(t, l, b, r) => [*t, *l, *b, *r],
            _ => [0; 4],
        };
        let si = self.net.shapes[input];
        let so = Shape {
            h: (si.h + pad[0] + pad[2] - kh) / stride + 1,
            w: (si.w + pad[1] + pad[3] - kw) / stride + 1,
            c: cout,
        };
        self.net.shapes.push(so);
        let output = self.net.shapes.len() - 1;
        self.net.layers.push(Layer::Conv {
            input,
            output,
            weights,
            bias,
            kernel: (kh, kw),
            stride,
            pads: pad,
            groups: c.groups,
            prelu: layer.act.as_ref().map(|a| values(a.alpha.val())),
        });
        output
    }

    fn add(&mut self, a: usize, b: usize) -> usize {
        self.net.shapes.push(self.net.shapes[a]);
        let output = self.net.shapes.len() - 1;
        self.net.layers.push(Layer::Add { a, b, output });
        output
    }
}

/// The embedder as the quantizer's float network (BatchNorm folded, NHWC).
pub fn to_float_net(embedder: &Embedder, arch: &Architecture) -> FloatNet {
    let mut b = Builder {
        net: FloatNet {
            layers: Vec::new(),
            shapes: vec![Shape {
                h: arch.input,
                w: arch.input,
                c: 3,
            }],
            input: 0,
            output: 0,
        },
    };
    let mut x = b.conv(&embedder.stem, 0);
    x = b.conv(&embedder.stem_dw, x);
    for block in &embedder.blocks {
        let y = b.conv(&block.expand, x);
        let y = b.conv(&block.depthwise, y);
        let y = b.conv(&block.project, y);
        x = if block.residual { b.add(y, x) } else { y };
    }
    x = b.conv(&embedder.head, x);
    x = b.conv(&embedder.gdc, x);
    x = b.conv(&embedder.embed, x);
    b.net.output = x;
    b.net
}

/// Writes the embedder as float ONNX (opset 13; input `face` `[1, 3, 112, 112]`
/// normalised as `(x − 127.5) / 128`, output `embedding` `[1, 128]`, not
/// L2-normalised).
pub fn write_onnx(embedder: &Embedder, arch: &Architecture, path: &Path) -> std::io::Result<()> {
    let net = to_float_net(embedder, arch);
    let bytes = facegate_quant::qdq::export_float(&net, "facegate train");
    let tmp = path.with_extension("onnx.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
