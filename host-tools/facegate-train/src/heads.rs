//! The classification heads of face recognition, and Center loss.
//!
//! Every margin loss here is a softmax cross-entropy over class logits in
//! which only the target class's logit is changed:
//!
//! | head | logit of class j | target logit |
//! |---|---|---|
//! | Softmax | Wⱼ·x + bⱼ | same |
//! | L-Softmax | ‖Wⱼ‖‖x‖cos θⱼ | ‖W_y‖‖x‖ (λ cos θ + ψ(θ)) / (1 + λ) |
//! | A-Softmax | ‖x‖ cos θⱼ (W normalised, no bias) | ‖x‖ (λ cos θ + ψ(θ)) / (1 + λ) |
//! | CosFace / AM-Softmax | s cos θⱼ | s (cos θ − m) |
//! | ArcFace | s cos θⱼ | s cos(θ + m), or s (cos θ − m sin m) where θ + m > π |
//! | combined | s cos θⱼ | s (cos(m₁θ + m₂) − m₃), same fallback |
//!
//! with ψ(θ) = (−1)ᵏ cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m] and λ annealed
//! from large (plain softmax) to small (full margin), as in the papers.

use burn::module::{Module, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Which head, with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HeadKind {
    /// Plain softmax with bias (also the base of Center loss).
    Softmax,
    /// L-Softmax (Liu et al. 2016): multiplicative angular margin, W not normalised.
    LSoftmax {
        /// Angular multiplier m (integer ≥ 1).
        m: u32,
    },
    /// A-Softmax / SphereFace (Liu et al. 2017): normalised W, zero bias.
    ASoftmax {
        /// Angular multiplier m (4 in the paper).
        m: u32,
    },
    /// CosFace / AM-Softmax (Wang et al. 2018): additive cosine margin.
    CosFace {
        /// Scale s.
        s: f32,
        /// Margin m.
        m: f32,
    },
    /// ArcFace (Deng et al. 2019): additive angular margin.
    ArcFace {
        /// Scale s.
        s: f32,
        /// Margin m (radians).
        m: f32,
    },
    /// The combined margin cos(m₁θ + m₂) − m₃ (insightface).
    Combined {
        /// Scale s.
        s: f32,
        /// Multiplicative angular margin.
        m1: f32,
        /// Additive angular margin.
        m2: f32,
        /// Additive cosine margin.
        m3: f32,
    },
}

impl Default for HeadKind {
    /// CosFace / AM-Softmax with s = 30, m = 0.35: facegate's default.
    fn default() -> Self {
        Self::CosFace { s: 30.0, m: 0.35 }
    }
}

impl HeadKind {
    /// Whether the head has a bias.
    fn has_bias(self) -> bool {
        matches!(self, Self::Softmax)
    }
    /// Whether the head blends with softmax under an annealed λ.
    pub fn is_annealed(self) -> bool {
        matches!(self, Self::LSoftmax { .. } | Self::ASoftmax { .. })
    }
    /// Short name for tables and run folders.
    pub fn name(self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::LSoftmax { .. } => "l-softmax",
            Self::ASoftmax { .. } => "a-softmax",
            Self::CosFace { .. } => "cosface",
            Self::ArcFace { .. } => "arcface",
            Self::Combined { .. } => "combined",
        }
    }
}

/// λ schedule of L-Softmax and SphereFace: `max(min, base · (1 + γ·it)^(−power))`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Annealing {
    /// λ at iteration 0.
    pub base: f64,
    /// Decay rate γ.
    pub gamma: f64,
    /// Decay power.
    pub power: f64,
    /// Floor of λ.
    pub min: f64,
}

impl Default for Annealing {
    /// SphereFace's schedule (base 1000, γ 0.12, power 1, floor 5).
    fn default() -> Self {
        Self {
            base: 1000.0,
            gamma: 0.12,
            power: 1.0,
            min: 5.0,
        }
    }
}

impl Annealing {
    /// λ at an iteration.
    pub fn lambda(&self, iteration: u64) -> f64 {
        (self.base * (1.0 + self.gamma * iteration as f64).powf(-self.power)).max(self.min)
    }
}

/// A margin head: class weights (and a bias for softmax) over embeddings.
#[derive(Module, Debug)]
pub struct MarginHead {
    /// Class weights, `[classes, dim]`.
    pub weight: Param<Tensor<2>>,
    /// Class bias (softmax only).
    pub bias: Option<Param<Tensor<1>>>,
    /// Which head.
    #[module(skip)]
    pub kind: HeadKind,
}

const COS_CLAMP: f64 = 1.0 - 1e-6;

fn row_norms(x: Tensor<2>) -> Tensor<2> {
    x.powf_scalar(2.0).sum_dim(1).add_scalar(1e-12).sqrt()
}

/// ψ(θ) = (−1)ᵏ cos(mθ) − 2k, k = ⌊mθ/π⌋ (monotone decreasing on [0, π]).
fn psi(theta: Tensor<2>, m: u32) -> Tensor<2> {
    let m = f64::from(m);
    let k = theta
        .clone()
        .mul_scalar(m / core::f64::consts::PI)
        .floor()
        .clamp(0.0, m - 1.0)
        .detach();
    let parity = k
        .clone()
        .sub(k.clone().div_scalar(2.0).floor().mul_scalar(2.0));
    let sign = parity.mul_scalar(-2.0).add_scalar(1.0);
    sign * theta.mul_scalar(m).cos() - k.mul_scalar(2.0)
}

impl MarginHead {
    /// A head for `classes` identities over `dim`-wide embeddings.
    pub fn new(kind: HeadKind, classes: usize, dim: usize, device: &Device) -> Self {
        let bound = (6.0 / (dim + classes) as f64).sqrt();
        let weight = Tensor::random([classes, dim], Distribution::Uniform(-bound, bound), device);
        Self {
            weight: Param::from_tensor(weight),
            bias: kind
                .has_bias()
                .then(|| Param::from_tensor(Tensor::zeros([classes], device))),
            kind,
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Cosine of every embedding with every class centre, `[batch, classes]`
    /// (what "train accuracy" is measured on: the nearest class).
    pub fn cosines(&self, x: Tensor<2>) -> Tensor<2> {
        let w = self.weight.val();
        let xn = x.clone().div(row_norms(x));
        let wn = w.clone().div(row_norms(w));
        xn.matmul(wn.transpose())
    }

    /// Logits with the margin applied to the target class. `lambda` is the
    /// annealing weight (ignored by heads that do not anneal).
    pub fn logits(&self, x: Tensor<2>, labels: Tensor<1, Int>, lambda: f64) -> Tensor<2> {
        let [batch, _] = x.dims();
        let classes = self.classes();
        let w = self.weight.val();
        let x_norm = row_norms(x.clone()); // [B, 1]
        let w_norm = row_norms(w.clone()).reshape([1, classes]); // [1, C]
        let cos = x.clone().div(x_norm.clone()).matmul(
            w.clone()
                .div(w_norm.clone().reshape([classes, 1]))
                .transpose(),
        );
        let labels2 = labels.clone().reshape([batch, 1]);
        let onehot = labels.one_hot::<2>(classes).float();
        let target = |t: Tensor<2>| t.gather(1, labels2.clone()); // [B, 1]
        let angle = |c: Tensor<2>| c.clamp(-COS_CLAMP, COS_CLAMP).acos();
        // (base logits, new target logit): logits = base + onehot · (new − base_y).
        let (base, new_target) = match self.kind {
            HeadKind::Softmax => {
                let b = self.bias.as_ref().map(|b| b.val().reshape([1, classes]));
                let base = x.matmul(w.transpose());
                let base = match b {
                    Some(b) => base + b,
                    None => base,
                };
                return base;
            }
            HeadKind::LSoftmax { m } => {
                let scale = x_norm.clone() * w_norm.clone(); // [B, C]
                let base = cos.clone() * scale.clone();
                let ct = target(cos);
                let st = target(scale);
                let t = (ct.clone().mul_scalar(lambda) + psi(angle(ct), m))
                    .div_scalar(1.0 + lambda)
                    * st;
                (base, t)
            }
            HeadKind::ASoftmax { m } => {
                let base = cos.clone() * x_norm.clone();
                let ct = target(cos);
                let t = (ct.clone().mul_scalar(lambda) + psi(angle(ct), m))
                    .div_scalar(1.0 + lambda)
                    * x_norm;
                (base, t)
            }
            HeadKind::CosFace { s, m } => {
                let base = cos.clone().mul_scalar(s);
                let t = target(cos).sub_scalar(m).mul_scalar(s);
                (base, t)
            }
            HeadKind::ArcFace { s, m } => {
                let t = combined_target(target(cos.clone()), 1.0, m, 0.0);
                (cos.mul_scalar(s), t.mul_scalar(s))
            }
            HeadKind::Combined { s, m1, m2, m3 } => {
                let t = combined_target(target(cos.clone()), m1, m2, m3);
                (cos.mul_scalar(s), t.mul_scalar(s))
            }
        };
        let base_t = target(base.clone());
        base + onehot * (new_target - base_t)
    }

    /// Mean softmax cross-entropy of the margin logits.
    pub fn loss(&self, x: Tensor<2>, labels: Tensor<1, Int>, lambda: f64) -> Tensor<1> {
        cross_entropy(self.logits(x, labels.clone(), lambda), labels)
    }
}

/// cos(m₁θ + m₂) − m₃ where m₁θ + m₂ ≤ π, else the linear fallback
/// cos θ − m₃ − m₂ sin m₂ (insightface's, which keeps the target decreasing).
fn combined_target(ct: Tensor<2>, m1: f32, m2: f32, m3: f32) -> Tensor<2> {
    let theta = ct.clone().clamp(-COS_CLAMP, COS_CLAMP).acos();
    let margin = theta
        .clone()
        .mul_scalar(m1)
        .add_scalar(m2)
        .cos()
        .sub_scalar(m3);
    let fallback = ct.sub_scalar(m3 + m2 * m2.sin());
    let beyond = theta
        .mul_scalar(m1)
        .add_scalar(m2)
        .greater_elem(core::f32::consts::PI);
    margin.mask_where(beyond, fallback)
}

/// Class labels as a tensor.
pub fn labels_tensor(labels: &[usize], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = labels
        .iter()
        .map(|&l| i64::try_from(l).unwrap_or(i64::MAX))
        .collect();
    Tensor::from_data(TensorData::new(v, [labels.len()]), device)
}

/// Mean cross-entropy of `logits` `[batch, classes]` against `labels`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, labels.reshape([batch, 1]))
        .mean()
        .neg()
}

/// Center loss (Wen et al. 2016): `λ/2 · mean‖x − c_y‖²`, with the centres
/// moved towards their class's features at rate α after each batch (not by
/// gradient): `c_j ← c_j − α Σᵢ[yᵢ=j](c_j − xᵢ) / (1 + nⱼ)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CenterLoss {
    /// Weight λ of the term.
    pub lambda: f32,
    /// Update rate α of the centres.
    pub alpha: f32,
    /// Embedding width.
    pub dim: usize,
    /// Centres, `classes × dim`, row-major.
    pub centers: Vec<f32>,
}

impl CenterLoss {
    /// Zero centres for `classes` identities.
    pub fn new(lambda: f32, alpha: f32, classes: usize, dim: usize) -> Self {
        Self {
            lambda,
            alpha,
            dim,
            centers: vec![0.0; classes * dim],
        }
    }

    /// The loss term for a batch (gradient flows into `x` only).
    pub fn loss(&self, x: Tensor<2>, labels: &[usize]) -> Tensor<1> {
        let [batch, dim] = x.dims();
        let mut c = Vec::with_capacity(batch * dim);
        for &y in labels {
            c.extend_from_slice(&self.centers[y * dim..(y + 1) * dim]);
        }
        let c = Tensor::<2>::from_data(TensorData::new(c, [batch, dim]), &x.device());
        (x - c)
            .powf_scalar(2.0)
            .sum_dim(1)
            .mean()
            .mul_scalar(self.lambda / 2.0)
    }

    /// Moves the centres of the classes in the batch (`features` row-major).
    pub fn update(&mut self, features: &[f32], labels: &[usize]) {
        let dim = self.dim;
        let mut delta: std::collections::BTreeMap<usize, (Vec<f32>, usize)> = Default::default();
        for (i, &y) in labels.iter().enumerate() {
            let e = delta.entry(y).or_insert_with(|| (vec![0.0; dim], 0));
            for d in 0..dim {
                e.0[d] += self.centers[y * dim + d] - features[i * dim + d];
            }
            e.1 += 1;
        }
        for (y, (sum, n)) in delta {
            let rate = self.alpha / (1 + n) as f32;
            for (c, s) in self.centers[y * dim..(y + 1) * dim].iter_mut().zip(sum) {
                *c -= rate * s;
            }
        }
    }
}
