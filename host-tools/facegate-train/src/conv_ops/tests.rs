//! Every kernel held to burn's generic path (the reference).

use super::*;
use burn::tensor::Device;
use burn::tensor::module::conv2d;
use rand::{Rng, SeedableRng};

fn random(shape: [usize; 4], seed: u64) -> TensorData {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    TensorData::new(v, shape)
}

fn values(t: FlexTensor) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The largest difference relative to the reference's largest magnitude.
fn relative_error(fast: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(fast.len(), reference.len());
    let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let worst = fast
        .iter()
        .zip(reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    worst / scale
}

/// (n, c, side, kernel, stride, pad): the embedders' 3×3 stride-1 and
/// stride-2 layers, their global 7×7 layer, and odd sizes where the last
/// window hangs over the border.
const DEPTHWISE: [(usize, usize, usize, usize, usize, usize); 6] = [
    (2, 3, 8, 3, 1, 1),
    (2, 4, 9, 3, 2, 1),
    (3, 2, 7, 7, 1, 0),
    (1, 5, 10, 3, 2, 1),
    (2, 2, 11, 5, 2, 2),
    (2, 3, 10, 3, 3, 1),
];

// Tolerance: f32 sums in another order over at most a few thousand terms.
const TOLERANCE: f32 = 1e-5;

#[test]
fn flex_depthwise_forward_equals_burns_generic_one() {
    for (i, &(n, c, side, k, stride, pad)) in DEPTHWISE.iter().enumerate() {
        let seed = 10 * i as u64 + 5;
        let x = FlexTensor::from_data(random([n, c, side, side], seed));
        let w = FlexTensor::from_data(random([c, 1, k, k], seed + 1));
        let fast = Flex::depthwise_conv2d(x.clone(), w.clone(), stride, pad);
        let reference = Flex::conv2d(x, w, None, depthwise_options(c, stride, pad));
        assert_eq!(fast.shape(), reference.shape(), "case {i}");
        let e = relative_error(&values(fast), &values(reference));
        assert!(e < TOLERANCE, "case {i}: {e}");
    }
}

#[test]
fn flex_depthwise_gradients_equal_burns_generic_ones() {
    for (i, &(n, c, side, k, stride, pad)) in DEPTHWISE.iter().enumerate() {
        let out = (side + 2 * pad - k) / stride + 1;
        let seed = 10 * i as u64;
        let x = FlexTensor::from_data(random([n, c, side, side], seed));
        let w = FlexTensor::from_data(random([c, 1, k, k], seed + 1));
        let g = FlexTensor::from_data(random([n, c, out, out], seed + 2));
        let options = depthwise_options(c, stride, pad);
        let fast = Flex::depthwise_conv2d_x_backward(x.clone(), w.clone(), g.clone(), stride, pad);
        let reference = Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), options.clone());
        let e = relative_error(&values(fast), &values(reference));
        assert!(e < TOLERANCE, "x gradient, case {i}: {e}");
        let fast =
            Flex::depthwise_conv2d_weight_backward(x.clone(), w.clone(), g.clone(), stride, pad);
        let reference = Flex::conv2d_weight_backward(x, w, g, options);
        let e = relative_error(&values(fast), &values(reference));
        assert!(e < TOLERANCE, "weight gradient, case {i}: {e}");
    }
}

#[test]
fn pointwise_and_prelu_gradients_equal_burns_generic_ones() {
    let (n, cin, cout, side) = (3, 5, 4, 6);
    let x = FlexTensor::from_data(random([n, cin, side, side], 1));
    let w = FlexTensor::from_data(random([cout, cin, 1, 1], 2));
    let g = FlexTensor::from_data(random([n, cout, side, side], 3));
    let options = pointwise_options();
    let fast = Flex::pointwise_conv2d_x_backward(w.clone(), g.clone());
    let reference = Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), options.clone());
    assert!(relative_error(&values(fast), &values(reference)) < TOLERANCE);
    let fast = Flex::pointwise_conv2d_weight_backward(x.clone(), g.clone());
    let reference = Flex::conv2d_weight_backward(x, w, g, options);
    assert!(relative_error(&values(fast), &values(reference)) < TOLERANCE);

    let x = FlexTensor::from_data(random([n, cout, side, side], 4));
    let alpha = FlexTensor::from_data(TensorData::new(vec![0.25f32, -0.5, 0.0, 1.5], [cout]));
    let g = FlexTensor::from_data(random([n, cout, side, side], 5));
    let fast = Flex::prelu_channels(x.clone(), alpha.clone());
    let reference = generic_prelu::<Flex>(x.clone(), alpha.clone());
    assert_eq!(values(fast), values(reference));
    let (dx, da) = Flex::prelu_channels_backward(x.clone(), alpha.clone(), g.clone());
    let (rdx, rda) = generic_prelu_backward::<Flex>(x, alpha, g);
    assert_eq!(values(dx), values(rdx));
    assert!(relative_error(&values(da), &values(rda)) < TOLERANCE);
}

#[test]
fn flex_batch_norm_equals_burns_generic_one() {
    let (n, c, side) = (3, 4, 5);
    // Offsets per channel, as activations have: the variance must not
    // come from a cancelling E[x²] − E[x]².
    let mut xd = random([n, c, side, side], 20);
    let v: Vec<f32> = xd
        .iter::<f32>()
        .enumerate()
        .map(|(i, v)| v + ((i / (side * side)) % c) as f32 * 3.0)
        .collect();
    xd = TensorData::new(v, [n, c, side, side]);
    let x = FlexTensor::from_data(xd);
    let gamma = FlexTensor::from_data(TensorData::new(vec![1.0f32, 0.5, -2.0, 0.1], [c]));
    let beta = FlexTensor::from_data(TensorData::new(vec![0.0f32, 1.0, -0.5, 3.0], [c]));
    let g = FlexTensor::from_data(random([n, c, side, side], 21));
    let eps = 1e-5;
    let (y, mean, var) =
        Flex::batch_norm_channels_train(x.clone(), gamma.clone(), beta.clone(), eps);
    let r = Flex::batch_norm_train(x.clone(), gamma.clone(), beta, eps);
    assert!(relative_error(&values(y), &values(r.output)) < TOLERANCE);
    assert!(relative_error(&values(mean.clone()), &values(r.mean)) < TOLERANCE);
    assert!(relative_error(&values(var.clone()), &values(r.variance)) < TOLERANCE);
    let (dx, dgamma, dbeta) = Flex::batch_norm_channels_train_backward(
        x.clone(),
        gamma.clone(),
        mean.clone(),
        var.clone(),
        eps,
        g.clone(),
    );
    let r = Flex::batch_norm_train_backward(x, gamma, mean, var, eps, g);
    assert!(relative_error(&values(dx), &values(r.x_grad)) < TOLERANCE);
    assert!(relative_error(&values(dgamma), &values(r.gamma_grad)) < TOLERANCE);
    assert!(relative_error(&values(dbeta), &values(r.beta_grad)) < TOLERANCE);
}

/// The fused BatchNorm → PReLU kernels against the two ops in a row.
#[test]
fn flex_fused_batch_norm_prelu_equals_the_two_ops() {
    let (n, c, side) = (3, 4, 5);
    let tensor = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, [c]));
    let x = FlexTensor::from_data(random([n, c, side, side], 30));
    // β near zero: every channel has outputs on both sides of the kink.
    let gamma = tensor(vec![1.0, 0.5, -2.0, 0.1]);
    let beta = tensor(vec![0.0, 0.1, -0.2, 0.05]);
    let alpha = tensor(vec![0.25, -0.1, 0.5, 0.0]);
    let g = FlexTensor::from_data(random([n, c, side, side], 31));
    let eps = 1e-5;
    let (z, mean, var) =
        Flex::batch_norm_prelu_train(x.clone(), gamma.clone(), beta.clone(), alpha.clone(), eps);
    let (rz, rmean, rvar) = generic_batch_norm_prelu::<Flex>(
        x.clone(),
        gamma.clone(),
        beta.clone(),
        alpha.clone(),
        eps,
    );
    assert!(relative_error(&values(z), &values(rz)) < TOLERANCE);
    assert_eq!(values(mean.clone()), values(rmean));
    assert_eq!(values(var.clone()), values(rvar));
    let fused = Flex::batch_norm_prelu_train_backward(
        x.clone(),
        gamma.clone(),
        beta.clone(),
        alpha.clone(),
        mean.clone(),
        var.clone(),
        eps,
        g.clone(),
    );
    let reference =
        generic_batch_norm_prelu_backward::<Flex>(x, [gamma, beta, alpha], mean, var, eps, g);
    let pairs = [
        (fused.0, reference.0, "x"),
        (fused.1, reference.1, "gamma"),
        (fused.2, reference.2, "beta"),
        (fused.3, reference.3, "alpha"),
    ];
    for (a, b, what) in pairs {
        let (a, b) = (values(a), values(b));
        assert!(relative_error(&a, &b) < TOLERANCE, "{what}: {a:?} vs {b:?}");
    }
}

/// The autodiff nodes hand each parent its own gradient: `Σ y·r` through
/// our ops and through burn's, on a training device.
#[test]
fn autodiff_gradients_equal_burns_layers() {
    let device = Device::flex().autodiff();
    let tensor = |d: TensorData| Tensor::<4>::from_data(d, &device).require_grad();
    let grads_of = |x: &Tensor<4>, w: &Tensor<4>, y: Tensor<4>, r: &Tensor<4>| {
        let grads = (y * r.clone()).sum().backward();
        let v = |t: Option<Tensor<4>>| {
            t.expect("a gradient")
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap_or_default()
        };
        (v(x.grad(&grads)), v(w.grad(&grads)))
    };
    for (i, &(n, c, side, k, stride, pad)) in DEPTHWISE.iter().enumerate() {
        let out = (side + 2 * pad - k) / stride + 1;
        let seed = 100 + 10 * i as u64;
        let (xd, wd) = (
            random([n, c, side, side], seed),
            random([c, 1, k, k], seed + 1),
        );
        let r = Tensor::<4>::from_data(random([n, c, out, out], seed + 2), &device);
        let (x, w) = (tensor(xd.clone()), tensor(wd.clone()));
        let fast = grads_of(
            &x,
            &w,
            depthwise_conv2d(x.clone(), w.clone(), stride, pad),
            &r,
        );
        let (x, w) = (tensor(xd), tensor(wd));
        let y = conv2d(
            x.clone(),
            w.clone(),
            None,
            depthwise_options(c, stride, pad),
        );
        let reference = grads_of(&x, &w, y, &r);
        assert!(
            relative_error(&fast.0, &reference.0) < TOLERANCE,
            "case {i}"
        );
        assert!(
            relative_error(&fast.1, &reference.1) < TOLERANCE,
            "case {i}"
        );
    }

    let (xd, wd) = (random([2, 3, 5, 5], 7), random([4, 3, 1, 1], 8));
    let r = Tensor::<4>::from_data(random([2, 4, 5, 5], 9), &device);
    let (x, w) = (tensor(xd.clone()), tensor(wd.clone()));
    let fast = grads_of(&x, &w, pointwise_conv2d(x.clone(), w.clone()), &r);
    let (x, w) = (tensor(xd), tensor(wd));
    let reference = grads_of(
        &x,
        &w,
        conv2d(x.clone(), w.clone(), None, pointwise_options()),
        &r,
    );
    assert!(relative_error(&fast.0, &reference.0) < TOLERANCE);
    assert!(relative_error(&fast.1, &reference.1) < TOLERANCE);

    let xd = random([2, 3, 4, 4], 10);
    let alpha_values = TensorData::new(vec![0.25f32, -0.5, 2.0], [3]);
    let r = Tensor::<4>::from_data(random([2, 3, 4, 4], 11), &device);
    let run = |fast: bool| {
        let x = tensor(xd.clone());
        let a = Tensor::<1>::from_data(alpha_values.clone(), &device).require_grad();
        let y = if fast {
            prelu_channels(x.clone(), a.clone())
        } else {
            burn::tensor::activation::prelu(x.clone(), a.clone())
        };
        let grads = (y * r.clone()).sum().backward();
        let v = |t: TensorData| t.convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        let gx = x.grad(&grads).expect("x gradient").into_data();
        let ga = a.grad(&grads).expect("alpha gradient").into_data();
        (v(gx), v(ga))
    };
    let (fast, reference) = (run(true), run(false));
    assert!(relative_error(&fast.0, &reference.0) < TOLERANCE);
    assert!(relative_error(&fast.1, &reference.1) < TOLERANCE);
}
