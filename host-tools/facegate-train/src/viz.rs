//! The seed's pictures: a small net with a 2-D feature layer trained on
//! Fashion-MNIST once per loss, its test features drawn coloured by class,
//! so what each margin does to the feature space is visible at a glance.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Linear, LinearConfig, PRelu, PReluConfig, PaddingConfig2d,
};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use plotters::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::heads::{Annealing, CenterLoss, HeadKind, MarginHead, labels_tensor};

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Errors of `viz`.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    /// The dataset is missing or unreadable.
    #[error(
        "{path}: {reason} (install Debian's dataset-fashion-mnist, as scripts/setup.sh does, or pass --data)"
    )]
    Data {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Drawing failed.
    #[error("drawing {path}: {reason}")]
    Draw {
        /// The PNG.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Only 2-D and 3-D features can be drawn.
    #[error("feature width {0}: viz draws 2-D (plane) or 3-D (sphere) features")]
    Dim(usize),
}

/// Images (28×28 bytes each) and labels of an IDX pair.
fn read_idx(
    dir: &Path,
    images: &str,
    labels: &str,
    limit: usize,
) -> Result<(Vec<u8>, Vec<usize>), VizError> {
    let read = |name: &str| -> Result<Vec<u8>, VizError> {
        let path = dir.join(name);
        let err = |reason: String| VizError::Data {
            path: path.clone(),
            reason,
        };
        let raw = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
        Ok(out)
    };
    let (img, lab) = (read(images)?, read(labels)?);
    let bad = |name: &str| VizError::Data {
        path: dir.join(name),
        reason: "not an IDX file of the expected kind".into(),
    };
    if img.len() < 16 || img[..4] != [0, 0, 8, 3] || img[8..16] != [0, 0, 0, 28, 0, 0, 0, 28] {
        return Err(bad(images));
    }
    if lab.len() < 8 || lab[..4] != [0, 0, 8, 1] {
        return Err(bad(labels));
    }
    let n = ((img.len() - 16) / 784).min(lab.len() - 8).min(limit);
    Ok((
        img[16..16 + n * 784].to_vec(),
        lab[8..8 + n].iter().map(|&l| usize::from(l)).collect(),
    ))
}

/// A small CNN with a `dim`-wide feature layer.
#[derive(Module, Debug)]
pub struct FeatureNet {
    c1: Conv2d,
    a1: PRelu,
    c2: Conv2d,
    a2: PRelu,
    c3: Conv2d,
    a3: PRelu,
    fc: Linear,
    bn: BatchNorm,
}

impl FeatureNet {
    fn new(dim: usize, device: &Device) -> Self {
        let conv = |i, o, s| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let act = |c| PReluConfig::new().with_num_parameters(c).init(device);
        Self {
            c1: conv(1, 16, 1),
            a1: act(16),
            c2: conv(16, 32, 2),
            a2: act(32),
            c3: conv(32, 64, 2),
            a3: act(64),
            fc: LinearConfig::new(64 * 7 * 7, dim).init(device),
            bn: BatchNormConfig::new(dim).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.a1.forward(self.c1.forward(x));
        let x = self.a2.forward(self.c2.forward(x));
        let x = self.a3.forward(self.c3.forward(x));
        let [n, c, h, w] = x.dims();
        // BatchNorm keeps the 2-D features centred and scaled, so the
        // normalised heads' gradients (∝ 1/‖x‖) do not vanish as norms grow.
        self.bn.forward(self.fc.forward(x.reshape([n, c * h * w])))
    }
}

fn images_tensor(pixels: &[u8], idx: &[usize], device: &Device) -> Tensor<4> {
    let mut v = Vec::with_capacity(idx.len() * 784);
    for &i in idx {
        v.extend(
            pixels[i * 784..(i + 1) * 784]
                .iter()
                .map(|&p| f32::from(p) / 255.0 - 0.5),
        );
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), 1, 28, 28]), device)
}

/// One panel of the grid: a loss and its settings for 2-D features.
#[derive(Clone, Copy, Debug)]
pub struct Panel {
    /// Title.
    pub title: &'static str,
    /// Head.
    pub head: HeadKind,
    /// Center loss weight, if joint with Center loss.
    pub center: Option<f32>,
    /// Peak learning rate.
    pub lr: f64,
}

/// The six losses of the seed article, with margins that fit ten classes on a circle.
pub fn panels() -> Vec<Panel> {
    vec![
        Panel {
            title: "Softmax",
            head: HeadKind::Softmax,
            center: None,
            lr: 0.05,
        },
        Panel {
            title: "Softmax + Center (λ 0.1)",
            head: HeadKind::Softmax,
            center: Some(0.1),
            lr: 0.05,
        },
        Panel {
            title: "L-Softmax (m 2)",
            head: HeadKind::LSoftmax { m: 2 },
            center: None,
            lr: 0.05,
        },
        Panel {
            title: "A-Softmax / SphereFace (m 4)",
            head: HeadKind::ASoftmax { m: 4 },
            center: None,
            lr: 0.05,
        },
        Panel {
            title: "CosFace / AM-Softmax (s 10, m 0.1)",
            head: HeadKind::CosFace { s: 10.0, m: 0.1 },
            center: None,
            lr: 0.05,
        },
        Panel {
            title: "ArcFace (s 10, m 0.2)",
            head: HeadKind::ArcFace { s: 10.0, m: 0.2 },
            center: None,
            lr: 0.05,
        },
    ]
}

/// Settings of a `viz` run.
#[derive(Clone, Debug)]
pub struct VizOptions {
    /// Fashion-MNIST folder (IDX `.gz` files).
    pub data: PathBuf,
    /// Training images used.
    pub train_images: usize,
    /// Test images drawn.
    pub test_images: usize,
    /// Epochs per loss.
    pub epochs: usize,
    /// Seed.
    pub seed: u64,
    /// Width of the feature layer: 2 (the plane) or 3 (drawn on the sphere).
    pub dim: usize,
}

/// Test features, one list per panel (`z` is 0 for 2-D features).
pub type PanelFeatures = Vec<Vec<[f32; 3]>>;

/// Trains one feature net (2-D or 3-D) per panel; returns test features and labels per panel.
pub fn train_panels(
    opts: &VizOptions,
    panels: &[Panel],
    mut progress: impl FnMut(&str),
) -> Result<(PanelFeatures, Vec<usize>), VizError> {
    let (train_px, train_y) = read_idx(
        &opts.data,
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        opts.train_images,
    )?;
    let (test_px, test_y) = read_idx(
        &opts.data,
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        opts.test_images,
    )?;
    if !(2..=3).contains(&opts.dim) {
        return Err(VizError::Dim(opts.dim));
    }
    let dim = opts.dim;
    let device = Device::flex().autodiff();
    let mut out = Vec::new();
    for p in panels {
        progress(p.title);
        device.seed(opts.seed);
        let mut net = (
            FeatureNet::new(dim, &device),
            MarginHead::new(p.head, 10, dim, &device),
        );
        let mut center = p.center.map(|l| CenterLoss::new(l, 0.5, 10, dim));
        let mut optim = SgdConfig::new()
            .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(5e-4)))
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .init();
        let anneal = Annealing {
            base: 1000.0,
            gamma: 0.5,
            power: 1.0,
            min: 0.0,
        };
        let mut order: Vec<usize> = (0..train_y.len()).collect();
        let mut it = 0u64;
        let steps = opts.epochs * train_y.len() / 64;
        for epoch in 0..opts.epochs {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed + epoch as u64));
            for idx in order.chunks_exact(64) {
                let lr =
                    p.lr * 0.5 * (1.0 + (std::f64::consts::PI * it as f64 / steps as f64).cos());
                let labels: Vec<usize> = idx.iter().map(|&i| train_y[i]).collect();
                let f = net.0.forward(images_tensor(&train_px, idx, &device));
                let mut loss = net.1.loss(
                    f.clone(),
                    labels_tensor(&labels, &device),
                    anneal.lambda(it),
                );
                if let Some(c) = &center {
                    loss = loss + c.loss(f.clone(), &labels);
                }
                let feats = f.detach();
                let grads = GradientsParams::from_grads(loss.backward(), &net);
                net = optim.step(lr, net, grads);
                if let Some(c) = &mut center {
                    let v = feats.into_data().try_to_vec::<f32>().unwrap_or_default();
                    c.update(&v, &labels);
                }
                it += 1;
            }
        }
        let model = net.0.valid();
        let plain = Device::flex();
        let idx: Vec<usize> = (0..test_y.len()).collect();
        let mut feats = Vec::with_capacity(test_y.len());
        for chunk in idx.chunks(500) {
            let v = model
                .forward(images_tensor(&test_px, chunk, &plain))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            feats.extend(
                v.chunks_exact(dim)
                    .map(|c| [c[0], c[1], c.get(2).copied().unwrap_or(0.0)]),
            );
        }
        out.push(feats);
    }
    Ok((out, test_y))
}

/// The sphere seen from a little above and to the side: unit directions
/// rotated into view coordinates (x right, y up, z towards the viewer).
fn sphere_view(v: [f32; 3]) -> [f64; 3] {
    let n = v.iter().map(|c| c * c).sum::<f32>().sqrt().max(1e-12);
    let [x, y, z] = v.map(|c| f64::from(c / n));
    let (yaw, pitch) = (0.6f64, 0.45f64);
    let (x, z) = (
        x * yaw.cos() + z * yaw.sin(),
        -x * yaw.sin() + z * yaw.cos(),
    );
    let (y, z) = (
        y * pitch.cos() - z * pitch.sin(),
        y * pitch.sin() + z * pitch.cos(),
    );
    [x, y, z]
}

/// Draws the panels' features in one PNG grid (3 columns), coloured by
/// class: 2-D features on the plane (directions only for heads that
/// normalise them), 3-D features as directions on the unit sphere, the far
/// hemisphere faded.
pub fn draw_grid(
    path: &Path,
    panels: &[Panel],
    feats: &[Vec<[f32; 3]>],
    labels: &[usize],
    dim: usize,
) -> Result<(), VizError> {
    let err = |reason: String| VizError::Draw {
        path: path.to_path_buf(),
        reason,
    };
    if !(2..=3).contains(&dim) {
        return Err(VizError::Dim(dim));
    }
    facegate_eval::plot::ensure_font().map_err(|e| err(e.to_string()))?;
    let cols = 3;
    let rows = panels.len().div_ceil(cols);
    let root = BitMapBackend::new(path, (cols as u32 * 420, rows as u32 * 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    for (area, (p, f)) in root
        .split_evenly((rows, cols))
        .iter()
        .zip(panels.iter().zip(feats))
    {
        // Heads on normalised features only see directions: draw those.
        let normalised =
            dim == 3 || !matches!(p.head, HeadKind::Softmax | HeadKind::LSoftmax { .. });
        // (x, y, depth): depth < 0 is the sphere's far side.
        let pts: Vec<(f64, f64, f64)> = if dim == 3 {
            f.iter()
                .map(|&v| {
                    let [x, y, z] = sphere_view(v);
                    (x, y, z)
                })
                .collect()
        } else if normalised {
            f.iter()
                .map(|v| {
                    let n = (v[0] * v[0] + v[1] * v[1]).sqrt().max(1e-12);
                    (f64::from(v[0] / n), f64::from(v[1] / n), 0.0)
                })
                .collect()
        } else {
            f.iter()
                .map(|v| (f64::from(v[0]), f64::from(v[1]), 0.0))
                .collect()
        };
        let title = match (dim, normalised) {
            (3, _) => format!("{} · 3-D x/‖x‖", p.title),
            (_, true) => format!("{} · x/‖x‖", p.title),
            _ => p.title.to_string(),
        };
        let r = pts
            .iter()
            .fold(1e-6f64, |m, v| m.max(v.0.abs()).max(v.1.abs()))
            * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 17))
            .margin(8)
            .x_label_area_size(22)
            .y_label_area_size(36)
            .build_cartesian_2d(-r..r, -r..r)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        if dim == 3 {
            // The sphere's outline.
            chart
                .draw_series(LineSeries::new(
                    (0..=120).map(|i| {
                        let t = f64::from(i) / 120.0 * std::f64::consts::TAU;
                        (t.cos(), t.sin())
                    }),
                    BLACK.mix(0.4),
                ))
                .map_err(|e| err(e.to_string()))?;
        }
        // Far side first and faded, so the near side stays readable.
        for far in [true, false] {
            chart
                .draw_series(
                    pts.iter()
                        .zip(labels)
                        .filter(|(v, _)| (dim == 3 && v.2 < 0.0) == far)
                        .map(|(v, &c)| {
                            let (size, alpha) = if far { (1, 0.15) } else { (2, 0.6) };
                            Circle::new((v.0, v.1), size, Palette99::pick(c).mix(alpha).filled())
                        }),
                )
                .map_err(|e| err(e.to_string()))?;
        }
    }
    root.present().map_err(|e| err(e.to_string()))
}
