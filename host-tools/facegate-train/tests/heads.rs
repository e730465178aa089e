//! Every head against closed-form values and an independent f64 reference,
//! and burn's gradients against central finite differences of that reference.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use facegate_train::heads::{CenterLoss, HeadKind, MarginHead, labels_tensor};
use std::f64::consts::PI;

const SOFTMAX: HeadKind = HeadKind::Softmax;
const LSOFTMAX: HeadKind = HeadKind::LSoftmax { m: 2 };
const ASOFTMAX: HeadKind = HeadKind::ASoftmax { m: 4 };
const COSFACE: HeadKind = HeadKind::CosFace { s: 30.0, m: 0.35 };
const ARCFACE: HeadKind = HeadKind::ArcFace { s: 30.0, m: 0.5 };
const COMBINED: HeadKind = HeadKind::Combined {
    s: 30.0,
    m1: 1.0,
    m2: 0.3,
    m3: 0.2,
};
const ALL: [HeadKind; 6] = [SOFTMAX, LSOFTMAX, ASOFTMAX, COSFACE, ARCFACE, COMBINED];

fn head(kind: HeadKind, w: &[f64], classes: usize, dim: usize, device: &Device) -> MarginHead {
    let mut h = MarginHead::new(kind, classes, dim, device);
    let data: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    h.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(data, [classes, dim]),
        device,
    ));
    if let Some(b) = &mut h.bias {
        let bias: Vec<f32> = (0..classes).map(|j| 0.1 * j as f32).collect();
        *b = Param::from_tensor(Tensor::from_data(TensorData::new(bias, [classes]), device));
    }
    h
}

/// ψ(θ) = (−1)ᵏ cos(mθ) − 2k.
fn psi(theta: f64, m: u32) -> f64 {
    let k = ((f64::from(m) * theta / PI).floor()).clamp(0.0, f64::from(m) - 1.0);
    let sign = if (k as i64) % 2 == 0 { 1.0 } else { -1.0 };
    sign * (f64::from(m) * theta).cos() - 2.0 * k
}

/// The loss written out per sample in f64, from the papers' formulas.
fn reference_loss(
    kind: HeadKind,
    x: &[f64],
    w: &[f64],
    labels: &[usize],
    dim: usize,
    lambda: f64,
) -> f64 {
    let classes = w.len() / dim;
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let mut total = 0.0;
    for (i, &y) in labels.iter().enumerate() {
        let xi = &x[i * dim..(i + 1) * dim];
        let xn = norm(xi);
        let mut logits = vec![0.0; classes];
        for (j, l) in logits.iter_mut().enumerate() {
            let wj = &w[j * dim..(j + 1) * dim];
            let dot: f64 = xi.iter().zip(wj).map(|(a, b)| a * b).sum();
            let wn = norm(wj);
            let cos = dot / (xn * wn);
            let theta = cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6).acos();
            *l = match kind {
                HeadKind::Softmax => dot + 0.1 * j as f64,
                HeadKind::LSoftmax { m } if j == y => {
                    xn * wn * (lambda * cos + psi(theta, m)) / (1.0 + lambda)
                }
                HeadKind::LSoftmax { .. } => dot,
                HeadKind::ASoftmax { m } if j == y => {
                    xn * (lambda * cos + psi(theta, m)) / (1.0 + lambda)
                }
                HeadKind::ASoftmax { .. } => xn * cos,
                HeadKind::CosFace { s, m } => {
                    f64::from(s) * (cos - if j == y { f64::from(m) } else { 0.0 })
                }
                HeadKind::ArcFace { s, m } if j == y => {
                    let m = f64::from(m);
                    f64::from(s)
                        * if theta + m <= PI {
                            (theta + m).cos()
                        } else {
                            cos - m * m.sin()
                        }
                }
                HeadKind::Combined { s, m1, m2, m3 } if j == y => {
                    let (m1, m2, m3) = (f64::from(m1), f64::from(m2), f64::from(m3));
                    f64::from(s)
                        * if m1 * theta + m2 <= PI {
                            (m1 * theta + m2).cos() - m3
                        } else {
                            cos - m3 - m2 * m2.sin()
                        }
                }
                HeadKind::ArcFace { s, .. } | HeadKind::Combined { s, .. } => f64::from(s) * cos,
            };
        }
        let max = logits.iter().cloned().fold(f64::MIN, f64::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        total += lse - logits[y];
    }
    total / labels.len() as f64
}

fn burn_loss_and_grads(
    kind: HeadKind,
    x: &[f64],
    w: &[f64],
    labels: &[usize],
    dim: usize,
    lambda: f64,
) -> (f64, Vec<f64>, Vec<f64>) {
    let device = Device::flex().autodiff();
    let classes = w.len() / dim;
    let h = head(kind, w, classes, dim, &device);
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let xt =
        Tensor::<2>::from_data(TensorData::new(xf, [labels.len(), dim]), &device).require_grad();
    let lt = labels_tensor(labels, &device);
    let loss = h.loss(xt.clone(), lt, lambda);
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = loss.backward();
    let to64 = |t: Tensor<2>| -> Vec<f64> {
        t.into_data()
            .try_to_vec::<f32>()
            .expect("f32 gradient")
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let gx = to64(xt.grad(&grads).expect("gradient of x"));
    let gw = to64(h.weight.val().grad(&grads).expect("gradient of W"));
    (value, gx, gw)
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

#[test]
fn closed_form_values_on_a_two_class_toy() {
    // x at 60° from class 0 (the target) and 30° from class 1, ‖x‖ = 2, unit W.
    let (c60, s60) = ((PI / 3.0).cos(), (PI / 3.0).sin());
    let x = [2.0 * c60, 2.0 * s60];
    let w = [1.0, 0.0, 0.0, 1.0];
    let cos1 = s60; // cos 30°
    let lse2 = |t: f64, o: f64| (1.0 + (o - t).exp()).ln();
    // A-Softmax, m = 4, λ = 0: mθ = 4π/3, k = 1, ψ = −cos(4π/3) − 2 = −1.5.
    let expected = [
        (SOFTMAX, lse2(2.0 * c60, 2.0 * s60 + 0.1)),
        (ASOFTMAX, lse2(2.0 * -1.5, 2.0 * cos1)),
        (COSFACE, lse2(30.0 * (c60 - 0.35), 30.0 * cos1)),
        (ARCFACE, lse2(30.0 * (PI / 3.0 + 0.5).cos(), 30.0 * cos1)),
        (
            COMBINED,
            lse2(30.0 * ((PI / 3.0 + 0.3).cos() - 0.2), 30.0 * cos1),
        ),
        // L-Softmax, m = 2: 2θ = 2π/3, k = 0, ψ = cos(2π/3) = −0.5.
        (LSOFTMAX, lse2(2.0 * -0.5, 2.0 * cos1)),
    ];
    for (kind, want) in expected {
        let (got, _, _) = burn_loss_and_grads(kind, &x, &w, &[0], 2, 0.0);
        assert!(
            (got - want).abs() < 1e-4 * want.max(1.0),
            "{kind:?}: burn {got}, closed form {want}"
        );
        let r = reference_loss(kind, &x, &w, &[0], 2, 0.0);
        assert!(
            (r - want).abs() < 1e-6 * want.max(1.0),
            "{kind:?}: reference {r}, closed form {want}"
        );
    }
}

#[test]
fn arcface_falls_back_where_the_margin_passes_pi() {
    // x nearly opposite its class: θ + m > π takes the linear branch.
    let x = [-1.0, 0.05];
    let w = [1.0, 0.0, 0.0, 1.0];
    let (got, _, _) = burn_loss_and_grads(ARCFACE, &x, &w, &[0], 2, 0.0);
    let want = reference_loss(ARCFACE, &x, &w, &[0], 2, 0.0);
    assert!((got - want).abs() < 1e-3, "burn {got}, reference {want}");
}

#[test]
fn every_head_matches_the_reference_and_its_gradients_are_right() {
    let (batch, classes, dim) = (6, 5, 8);
    for (n, kind) in ALL.into_iter().enumerate() {
        for (lambda, seed) in [(0.0, 1), (5.0, 2), (0.0, 3)] {
            let seed = seed + 10 * n as u64;
            let x = values(batch * dim, seed);
            let w = values(classes * dim, seed + 100);
            let labels: Vec<usize> = (0..batch)
                .map(|i| (i * 7 + seed as usize) % classes)
                .collect();
            let (loss, gx, gw) = burn_loss_and_grads(kind, &x, &w, &labels, dim, lambda);
            let r = reference_loss(kind, &x, &w, &labels, dim, lambda);
            assert!(
                (loss - r).abs() < 2e-4 * r.abs().max(1.0),
                "{kind:?} λ={lambda}: burn {loss}, reference {r}"
            );
            // Central differences of the f64 reference.
            let h = 1e-6;
            let check = |name: &str, v: &[f64], g: &[f64], f: &dyn Fn(&[f64]) -> f64| {
                let scale = g.iter().fold(1e-3f64, |a, b| a.max(b.abs()));
                for i in 0..v.len() {
                    let (mut p, mut m) = (v.to_vec(), v.to_vec());
                    p[i] += h;
                    m[i] -= h;
                    let fd = (f(&p) - f(&m)) / (2.0 * h);
                    assert!(
                        (fd - g[i]).abs() <= 2e-3 * scale,
                        "{kind:?} λ={lambda} d/d{name}[{i}]: burn {}, finite difference {fd}",
                        g[i]
                    );
                }
            };
            check("x", &x, &gx, &|v| {
                reference_loss(kind, v, &w, &labels, dim, lambda)
            });
            check("W", &w, &gw, &|v| {
                reference_loss(kind, &x, v, &labels, dim, lambda)
            });
        }
    }
}

#[test]
fn center_loss_value_gradient_and_centre_update() {
    let device = Device::flex().autodiff();
    let mut c = CenterLoss::new(0.5, 0.5, 2, 2);
    c.centers = vec![1.0, 0.0, 0.0, 1.0];
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![2.0f32, 0.0, 0.0, 3.0, 1.0, 1.0], [3, 2]),
        &device,
    )
    .require_grad();
    let labels = [0, 1, 0];
    let loss = c.loss(x.clone(), &labels);
    // λ/2 · mean(‖(1,0)‖², ‖(0,2)‖², ‖(0,1)‖²) = 0.25 · 2 = 0.5
    let v = loss.clone().into_scalar::<f32>();
    assert!((v - 0.5).abs() < 1e-6, "{v}");
    // ∂/∂xᵢ = λ (xᵢ − c_yᵢ) / batch
    let g = x.grad(&loss.backward()).expect("gradient");
    let g = g.into_data().try_to_vec::<f32>().expect("f32");
    let want = [0.5 / 3.0, 0.0, 0.0, 1.0 / 3.0, 0.0, 0.5 / 3.0];
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{g:?}");
    }
    // Class 0: Σ(c − x) = (−1, 0) + (0, −1), n = 2 → c −= 0.5 · (−1, −1)/3.
    c.update(&[2.0, 0.0, 0.0, 3.0, 1.0, 1.0], &labels);
    let want = [1.0 + 0.5 / 3.0, 0.5 / 3.0, 0.0, 1.0 + 0.5];
    for (a, b) in c.centers.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{:?}", c.centers);
    }
}
