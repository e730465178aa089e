//! The separable convolutions, PReLU and training-mode BatchNorm of our
//! embedders as a burn backend extension, with their own gradients.
//!
//! burn computes a convolution's gradients with other convolutions: the
//! weight gradient of a 1×1 conv becomes a convolution whose kernel is the
//! whole feature map, and that of a depthwise conv one such convolution per
//! channel. On `flex` these were 3–8× the forward's time and most of a
//! training step (`facegate bench train`). Here the 1×1 gradients are batched
//! matrix products (on every backend) and the depthwise ones (on `flex`) long
//! runs over zero-padded planes, split into the stride's phases and
//! vectorised at the CPU's SIMD width (pulp's run-time dispatch); the
//! depthwise forward runs in the same form. PReLU
//! (burn: a mask, a product and a masked select, each with its gradient) and
//! BatchNorm (burn: transposed copies for its statistics) are one pass each
//! on `flex`, and a BatchNorm followed by a PReLU is one fused op that does
//! not keep the normalised values (the backward recomputes them). burn's
//! generic path is the reference the tests hold every kernel to.

// burn 0.22 marks its LibTorch backend deprecated; it is our opt-in one.
#![cfg_attr(feature = "tch", allow(deprecated))]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension,
    get_or_init_device_settings,
};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use rayon::prelude::*;

/// Defines a pulp op: a struct of the named fields (borrowing for `'a`)
/// whose body pulp runs
/// inside a function compiled for the CPU's SIMD level (AVX2 where there is
/// one). A closure would be called from there, not inlined, and stay at the
/// SSE2 baseline; this body and the `inline(always)` helpers it calls are
/// vectorised at the dispatched width.
macro_rules! simd_op {
    ($(#[$meta:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? } -> $out:ty $body:block) => {
        $(#[$meta])*
        struct $name<'a> {
            $($field: $ty,)*
        }

        impl pulp::WithSimd for $name<'_> {
            type Output = $out;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> $out {
                let Self { $($field,)* } = self;
                $body
            }
        }
    };
}

fn depthwise_options(channels: usize, stride: usize, pad: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [pad, pad], [1, 1], channels)
}

fn pointwise_options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

/// Depthwise and pointwise convolutions with their gradients.
///
/// Shapes: `x` `[n, c, h, w]`; a depthwise weight `[c, 1, k, k]` (square
/// kernel, the same stride and padding on both axes, no bias); a pointwise
/// weight `[c_out, c_in, 1, 1]` (stride 1, no padding, no bias).
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait SeparableConvOps: Backend {
    /// Depthwise k×k convolution.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        let c = weight.shape()[0];
        Self::conv2d(x, weight, None, depthwise_options(c, stride, pad))
    }

    /// Gradient of [`Self::depthwise_conv2d`] with respect to `x`.
    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        let c = weight.shape()[0];
        Self::conv2d_x_backward(x, weight, grad, depthwise_options(c, stride, pad))
    }

    /// Gradient of [`Self::depthwise_conv2d`] with respect to the weight.
    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        let c = weight.shape()[0];
        Self::conv2d_weight_backward(x, weight, grad, depthwise_options(c, stride, pad))
    }

    /// Pointwise (1×1) convolution.
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, pointwise_options())
    }

    /// Gradient of [`Self::pointwise_conv2d`] with respect to `x`:
    /// `Wᵀ · g` for each face.
    fn pointwise_conv2d_x_backward(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [c_out, c_in, _, _] = dims4(&weight.shape());
        let [n, _, h, w] = dims4(&grad.shape());
        let wt = Self::float_swap_dims(
            Self::float_reshape(weight, Shape::new([1, c_out, c_in])),
            1,
            2,
        );
        let g = Self::float_reshape(grad, Shape::new([n, c_out, h * w]));
        Self::float_reshape(Self::float_matmul(wt, g), Shape::new([n, c_in, h, w]))
    }

    /// Gradient of [`Self::pointwise_conv2d`] with respect to the weight:
    /// `Σₙ gₙ · xₙᵀ`.
    fn pointwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [n, c_in, h, w] = dims4(&x.shape());
        let c_out = grad.shape()[1];
        let xt = Self::float_swap_dims(Self::float_reshape(x, Shape::new([n, c_in, h * w])), 1, 2);
        let g = Self::float_reshape(grad, Shape::new([n, c_out, h * w]));
        let per_face = Self::float_matmul(g, xt);
        Self::float_reshape(
            Self::float_sum_dim(per_face, 0),
            Shape::new([c_out, c_in, 1, 1]),
        )
    }

    /// Training-mode BatchNorm over `[n, c, h, w]`: the output and the
    /// batch's mean and biased variance per channel.
    fn batch_norm_channels_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let r = Self::batch_norm_train(x, gamma, beta, epsilon);
        (r.output, r.mean, r.variance)
    }

    /// Gradients of [`Self::batch_norm_channels_train`] with respect to `x`,
    /// `gamma` and `beta`.
    fn batch_norm_channels_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let r = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
        (r.x_grad, r.gamma_grad, r.beta_grad)
    }

    /// PReLU with one slope per channel: `x` where `x ≥ 0`, else `αᶜ·x`.
    fn prelu_channels(x: FloatTensor<Self>, alpha: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_prelu::<Self>(x, alpha)
    }

    /// Gradients of [`Self::prelu_channels`] with respect to `x` and `alpha`.
    fn prelu_channels_backward(
        x: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic_prelu_backward::<Self>(x, alpha, grad)
    }

    /// Training-mode BatchNorm followed by PReLU (`alpha`: one slope per
    /// channel) in one pass: the output and the batch's mean and biased
    /// variance per channel. The normalised values are not kept; the
    /// backward recomputes them.
    fn batch_norm_prelu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        generic_batch_norm_prelu::<Self>(x, gamma, beta, alpha, epsilon)
    }

    /// Gradients of [`Self::batch_norm_prelu_train`] with respect to `x`,
    /// `gamma`, `beta` and `alpha`, from the forward's batch statistics.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_prelu_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        generic_batch_norm_prelu_backward::<Self>(
            x,
            [gamma, beta, alpha],
            mean,
            variance,
            epsilon,
            grad,
        )
    }
}

/// BatchNorm then PReLU from the extension's separate ops.
fn generic_batch_norm_prelu<B: SeparableConvOps>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    alpha: FloatTensor<B>,
    epsilon: f64,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (y, mean, variance) = B::batch_norm_channels_train(x, gamma, beta, epsilon);
    (B::prelu_channels(y, alpha), mean, variance)
}

/// The fused op's gradients from the separate ops, the normalised values
/// recomputed from the batch statistics.
fn generic_batch_norm_prelu_backward<B: SeparableConvOps>(
    x: FloatTensor<B>,
    [gamma, beta, alpha]: [FloatTensor<B>; 3],
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    grad: FloatTensor<B>,
) -> (
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
    FloatTensor<B>,
) {
    let c = gamma.shape()[0];
    let column = |t: FloatTensor<B>| B::float_reshape(t, Shape::new([1, c, 1, 1]));
    let std = B::float_sqrt(B::float_add_scalar(variance.clone(), epsilon.into()));
    let normalised = B::float_div(B::float_sub(x.clone(), column(mean.clone())), column(std));
    let y = B::float_add(
        B::float_mul(normalised, column(gamma.clone())),
        column(beta),
    );
    let (dy, dalpha) = B::prelu_channels_backward(y, alpha, grad);
    let (dx, dgamma, dbeta) =
        B::batch_norm_channels_train_backward(x, gamma, mean, variance, epsilon, dy);
    (dx, dgamma, dbeta, dalpha)
}

/// burn's PReLU with the slopes broadcast over channels.
fn generic_prelu<B: Backend>(x: FloatTensor<B>, alpha: FloatTensor<B>) -> FloatTensor<B> {
    let c = alpha.shape()[0];
    B::prelu(x, B::float_reshape(alpha, Shape::new([1, c, 1, 1])))
}

/// PReLU's gradients from burn's tensor operations.
fn generic_prelu_backward<B: Backend>(
    x: FloatTensor<B>,
    alpha: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let c = alpha.shape()[0];
    let bool_dtype = get_or_init_device_settings::<B>(&x.device()).bool_dtype;
    let negative = B::float_lower_elem(x.clone(), 0f32.into(), bool_dtype);
    let slopes = B::float_reshape(alpha, Shape::new([1, c, 1, 1]));
    let dx = B::float_mask_where(
        grad.clone(),
        negative.clone(),
        B::float_mul(grad.clone(), slopes),
    );
    let zeros = B::float_zeros(x.shape(), &x.device(), x.dtype().into());
    let gx = B::float_mask_where(zeros, negative, B::float_mul(grad, x));
    let da = B::float_sum_dim(B::float_sum_dim(B::float_sum_dim(gx, 3), 2), 0);
    (dx, B::float_reshape(da, Shape::new([c])))
}

fn dims4(shape: &Shape) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A depthwise convolution's geometry, checked once.
#[derive(Clone, Copy, Debug)]
struct Depthwise {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Depthwise {
    fn new(x: &Shape, weight: &Shape, stride: usize, pad: usize) -> Self {
        let [n, c, h, w] = dims4(x);
        let k = weight[2];
        Self {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        }
    }

    /// Calls `f(tap, i)` for each tap of output `(oy, ox)`'s window that
    /// lies inside the input plane, `i` the input's index in the plane.
    fn for_each_tap(&self, oy: usize, ox: usize, mut f: impl FnMut(usize, usize)) {
        for kh in 0..self.k {
            let Some(iy) = (oy * self.stride + kh).checked_sub(self.pad) else {
                continue;
            };
            if iy >= self.h {
                continue;
            }
            for kw in 0..self.k {
                let Some(ix) = (ox * self.stride + kw).checked_sub(self.pad) else {
                    continue;
                };
                if ix < self.w {
                    f(kh * self.k + kw, iy * self.w + ix);
                }
            }
        }
    }
}

/// A depthwise convolution seen phase by phase: input rows `s·a + r`
/// (`s` the stride) meet output rows `a + d` through the taps `kh` with
/// `s·(a + d) + kh − pad = s·a + r`, and likewise for columns. Each phase is
/// then a stride-1 correlation, so both gradients become a few long,
/// contiguous runs over zero-padded row-major planes instead of one short
/// strided row per tap (mfn's planes are 7 to 56 values wide).
#[derive(Clone, Debug)]
struct Phases {
    /// Per tap `kh`: the input phase `r` it reads and the shift `d`.
    taps: Vec<(usize, isize)>,
    /// Smallest and largest shift.
    lo: isize,
    hi: isize,
}

impl Phases {
    fn new(g: &Depthwise) -> Self {
        let (s, p) = (signed(g.stride), signed(g.pad));
        let taps: Vec<(usize, isize)> = (0..signed(g.k))
            .map(|kh| {
                let e = kh - p;
                (e.rem_euclid(s) as usize, -e.div_euclid(s))
            })
            .collect();
        let lo = taps.iter().map(|t| t.1).min().unwrap_or(0);
        let hi = taps.iter().map(|t| t.1).max().unwrap_or(0);
        Self { taps, lo, hi }
    }
}

/// A size as a signed offset (sizes of allocated planes are below
/// `isize::MAX`).
fn signed(v: usize) -> isize {
    isize::try_from(v).unwrap_or(isize::MAX)
}

/// A zero-padded, row-major plane: `pad` zero rows and columns before the
/// data, `width` values a row, and a spare row so that a run of
/// `rows·width` values shifted by any tap stays inside. A buffer of this
/// layout starts zeroed and only its data area is ever written, so the
/// padding stays zero from plane to plane.
#[derive(Clone, Copy, Debug)]
struct Padded {
    pad: usize,
    width: usize,
    rows: usize,
}

impl Padded {
    /// A layout whose data spans `0..data[i]` and whose reads span
    /// `reads[i]` along rows (`i = 0`) and columns (`i = 1`).
    fn new(data: [usize; 2], reads: [std::ops::Range<isize>; 2]) -> Self {
        let pad = reads.iter().map(|r| (-r.start).max(0)).max().unwrap_or(0) as usize;
        let extent = |i: usize| (signed(pad) + reads[i].end.max(signed(data[i]))).unsigned_abs();
        Self {
            pad,
            width: extent(1),
            rows: extent(0) + 1,
        }
    }

    fn len(&self) -> usize {
        self.rows * self.width
    }

    /// Offset of value `(y, x)` (which may lie in the padding).
    fn at(&self, y: isize, x: isize) -> usize {
        let pad = signed(self.pad);
        (y + pad).unsigned_abs() * self.width + (x + pad).unsigned_abs()
    }

    /// Copies `rows × cols` values of `src` into the data area: value
    /// `(y, x)` from `src[offset + y·row_stride + x·stride]`.
    fn fill(&self, dst: &mut [f32], src: &[f32], rows: usize, cols: usize, from: [usize; 3]) {
        let [start, row_step, step] = from;
        for y in 0..rows {
            let to = &mut dst[self.at(signed(y), 0)..][..cols];
            let from = &src[start + y * row_step..];
            if step == 1 {
                to.copy_from_slice(&from[..cols]);
            } else {
                for (i, v) in to.iter_mut().enumerate() {
                    *v = from[i * step];
                }
            }
        }
    }
}

/// `a += b · s`.
#[inline(always)]
fn axpy(a: &mut [f32], b: &[f32], s: f32) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y * s;
    }
}

/// `Σ a·b` with sixteen partial sums, so the loop vectorises (mfn's largest
/// run, 56×58 values, leaves ≤ 203 terms a lane: f32 is exact enough).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (a16.remainder(), b16.remainder());
    for (x, y) in a16.zip(b16) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    for (x, y) in ra.iter().zip(rb) {
        acc[0] += x * y;
    }
    acc.iter().sum()
}

fn f32_values(t: &FlexTensor) -> Option<std::borrow::Cow<'_, [f32]>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>()?.to_vec()),
    })
}

fn flex_f32(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Lanes of the f64 reductions below: independent partial sums, so the loop
/// vectorises instead of waiting on one running sum (a float sum is not
/// reordered by the compiler).
const LANES: usize = 8;

/// `(Σ v, Σ v²)` in f64.
#[inline(always)]
fn sum_and_squares(v: &[f32]) -> (f64, f64) {
    let (mut s, mut q) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            let x = f64::from(c[l]);
            s[l] += x;
            q[l] += x * x;
        }
    }
    for &x in rest {
        let x = f64::from(x);
        s[0] += x;
        q[0] += x * x;
    }
    (s.iter().sum(), q.iter().sum())
}

/// Lanes of the f32 gradient sums over one plane: our largest plane, 56×56,
/// leaves 196 terms a lane, where f32 is exact enough (and twice as wide as
/// f64); the planes' sums are then added in f64.
const GRAD_LANES: usize = 16;

/// `(Σ g, Σ g·(x − m))` over one plane.
#[inline(always)]
fn sum_and_centred_dot(g: &[f32], x: &[f32], m: f32) -> (f64, f64) {
    let x = &x[..g.len()];
    let (mut s, mut d) = ([0.0f32; GRAD_LANES], [0.0f32; GRAD_LANES]);
    let (gc, xc) = (g.chunks_exact(GRAD_LANES), x.chunks_exact(GRAD_LANES));
    let (gr, xr) = (gc.remainder(), xc.remainder());
    for (gc, xc) in gc.zip(xc) {
        for l in 0..GRAD_LANES {
            s[l] += gc[l];
            d[l] += gc[l] * (xc[l] - m);
        }
    }
    for (&g, &x) in gr.iter().zip(xr) {
        s[0] += g;
        d[0] += g * (x - m);
    }
    (lane_total(&s), lane_total(&d))
}

#[inline(always)]
fn lane_total(lanes: &[f32]) -> f64 {
    lanes.iter().map(|&v| f64::from(v)).sum()
}

/// A batch's per-channel statistics as the forward returns them.
struct BatchStats<'a> {
    mean: &'a [f32],
    variance: &'a [f32],
    epsilon: f64,
}

impl BatchStats<'_> {
    fn inv_std(&self, ch: usize) -> f64 {
        1.0 / (f64::from(self.variance[ch]) + self.epsilon).sqrt()
    }

    /// Channel `ch`'s normalisation as `y = x·scale + shift`: computed the
    /// same way forward and backward, so a fused backward recomputes the
    /// forward's `y` exactly (PReLU's kink sees the same signs).
    fn affine(&self, ch: usize, gamma: &[f32], beta: &[f32]) -> (f32, f32) {
        let scale = f64::from(gamma[ch]) * self.inv_std(ch);
        let shift = f64::from(beta[ch]) - f64::from(self.mean[ch]) * scale;
        (scale as f32, shift as f32)
    }
}

/// Training-mode BatchNorm over `[n, c, h, w]`, followed by PReLU when
/// `alpha` is given: the output, the batch mean and the biased variance.
fn flex_batch_norm(
    xv: &[f32],
    gamma: &[f32],
    beta: &[f32],
    alpha: Option<&[f32]>,
    shape: [usize; 4],
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let [n, c, h, w] = shape;
    let plane = h * w;
    let count = (n * plane) as f64;
    // Per channel: f64 sums of x and x² over every plane of that channel.
    let arch = pulp::Arch::new();
    let (mean, variance): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (sum, squares) = arch.dispatch(ChannelMoments {
                xv,
                channels: c,
                ch,
                plane,
            });
            let mean = sum / count;
            (mean as f32, (squares / count - mean * mean).max(0.0) as f32)
        })
        .unzip();
    let stats = BatchStats {
        mean: &mean,
        variance: &variance,
        epsilon,
    };
    let mut y = vec![0.0f32; xv.len()];
    y.par_chunks_mut(plane)
        .zip(xv.par_chunks(plane))
        .enumerate()
        .for_each(|(p, (y, x))| {
            let ch = p % c;
            arch.dispatch(NormalisePlane {
                y,
                x,
                affine: stats.affine(ch, gamma, beta),
                slope: alpha.map(|a| a[ch]),
            });
        });
    (
        flex_f32(y, shape),
        FlexTensor::from_data(TensorData::new(mean, [c])),
        FlexTensor::from_data(TensorData::new(variance, [c])),
    )
}

simd_op!(
    /// Channel `ch`'s `(Σ x, Σ x²)` over every face of `[n, c, h, w]` values.
    ChannelMoments { xv: &'a [f32], channels: usize, ch: usize, plane: usize } -> (f64, f64) {
        let (mut sum, mut squares) = (0.0f64, 0.0f64);
        for x in xv.chunks_exact(plane).skip(ch).step_by(channels) {
            let (s, q) = sum_and_squares(x);
            sum += s;
            squares += q;
        }
        (sum, squares)
    }
);

simd_op!(
    /// One plane normalised, `y = x·scale + shift`, then PReLU's `slope`.
    NormalisePlane {
        y: &'a mut [f32],
        x: &'a [f32],
        affine: (f32, f32),
        slope: Option<f32>,
    } -> () {
        let (scale, shift) = affine;
        match slope {
            None => y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * scale + shift),
            Some(a) => {
                for (y, &x) in y.iter_mut().zip(x) {
                    let v = x * scale + shift;
                    *y = if v < 0.0 { a * v } else { v };
                }
            }
        }
    }
);

simd_op!(
    /// Channel `ch`'s `Σ dy`, `Σ dy·(x − μ)` and PReLU's `Σ g·y` over `y < 0`
    /// (with `act`: the forward's affine map and slope) over every face.
    ChannelGradSums {
        gv: &'a [f32],
        xv: &'a [f32],
        channels: usize,
        ch: usize,
        plane: usize,
        mean: f32,
        act: Option<((f32, f32), f32)>,
    } -> [f64; 3] {
        let mut total = [0.0f64; 3];
        let planes = gv.chunks_exact(plane).zip(xv.chunks_exact(plane));
        for (g, x) in planes.skip(ch).step_by(channels) {
            let part = match act {
                None => {
                    let (sg, sgx) = sum_and_centred_dot(g, x, mean);
                    [sg, sgx, 0.0]
                }
                Some((affine, a)) => prelu_batch_norm_sums(g, x, mean, affine, a),
            };
            for (t, p) in total.iter_mut().zip(part) {
                *t += p;
            }
        }
        total
    }
);

simd_op!(
    /// One plane's input gradient `a·dy + b·x + d`, `dy` the output gradient
    /// or (with `act`) PReLU's input gradient.
    GradPlane {
        dx: &'a mut [f32],
        g: &'a [f32],
        x: &'a [f32],
        coefficients: (f32, f32, f32),
        act: Option<((f32, f32), f32)>,
    } -> () {
        let (a, b, d) = coefficients;
        match act {
            None => {
                for ((dx, &g), &x) in dx.iter_mut().zip(g).zip(x) {
                    *dx = a * g + b * x + d;
                }
            }
            Some(((scale, shift), slope)) => {
                for ((dx, &g), &x) in dx.iter_mut().zip(g).zip(x) {
                    let dy = if x * scale + shift < 0.0 { slope * g } else { g };
                    *dx = a * dy + b * x + d;
                }
            }
        }
    }
);

/// Gradients of [`flex_batch_norm`] with respect to `x`, `gamma`, `beta` and
/// (with `prelu`: `(beta, alpha)`) the PReLU slopes; zeros for the slopes
/// without it.
fn flex_batch_norm_backward(
    xv: &[f32],
    gamma: &[f32],
    prelu: Option<(&[f32], &[f32])>,
    stats: &BatchStats<'_>,
    gv: &[f32],
    shape: [usize; 4],
) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
    let [n, c, h, w] = shape;
    let plane = h * w;
    let count = (n * plane) as f64;
    // The gradient at BatchNorm's output: `g`, or PReLU's input gradient.
    let act = |ch: usize| prelu.map(|(beta, alpha)| (stats.affine(ch, gamma, beta), alpha[ch]));
    // Per channel: Σ dy, Σ dy·(x − μ) and PReLU's Σ g·y over y < 0.
    let arch = pulp::Arch::new();
    let sums: Vec<[f64; 3]> = (0..c)
        .into_par_iter()
        .map(|ch| {
            arch.dispatch(ChannelGradSums {
                gv,
                xv,
                channels: c,
                ch,
                plane,
                mean: stats.mean[ch],
                act: act(ch),
            })
        })
        .collect();
    // dx = γ/σ · (dy − Σdy/M − (x − μ)/σ² · Σdy(x − μ)/M), as a·dy + b·x + d.
    let mut dx = vec![0.0f32; xv.len()];
    dx.par_chunks_mut(plane).enumerate().for_each(|(p, dx)| {
        let ch = p % c;
        let [sum_g, sum_gx, _] = sums[ch];
        let is = stats.inv_std(ch);
        let a = f64::from(gamma[ch]) * is;
        let b = -a * is * is * sum_gx / count;
        let d = -a * sum_g / count - b * f64::from(stats.mean[ch]);
        let (a, b, d) = (a as f32, b as f32, d as f32);
        arch.dispatch(GradPlane {
            dx,
            g: &gv[p * plane..][..plane],
            x: &xv[p * plane..][..plane],
            coefficients: (a, b, d),
            act: act(ch),
        });
    });
    let per_channel = |f: &dyn Fn(usize, &[f64; 3]) -> f64| {
        let v: Vec<f32> = sums
            .iter()
            .enumerate()
            .map(|(ch, s)| f(ch, s) as f32)
            .collect();
        FlexTensor::from_data(TensorData::new(v, [c]))
    };
    (
        flex_f32(dx, shape),
        per_channel(&|ch, s| s[1] * stats.inv_std(ch)),
        per_channel(&|_, s| s[0]),
        per_channel(&|_, s| s[2]),
    )
}

/// Over one plane of BatchNorm → PReLU with `y = x·scale + shift`:
/// `(Σ dy, Σ dy·(x − m), Σ g·y over y < 0)`, `dy` PReLU's input gradient.
#[inline(always)]
fn prelu_batch_norm_sums(
    g: &[f32],
    x: &[f32],
    m: f32,
    (scale, shift): (f32, f32),
    slope: f32,
) -> [f64; 3] {
    let x = &x[..g.len()];
    let mut acc = [[0.0f32; GRAD_LANES]; 3];
    let mut add = |l: usize, g: f32, x: f32| {
        let y = x * scale + shift;
        let negative = y < 0.0;
        let dy = if negative { slope * g } else { g };
        acc[0][l] += dy;
        acc[1][l] += dy * (x - m);
        acc[2][l] += if negative { g * y } else { 0.0 };
    };
    let (gc, xc) = (g.chunks_exact(GRAD_LANES), x.chunks_exact(GRAD_LANES));
    let (gr, xr) = (gc.remainder(), xc.remainder());
    for (gc, xc) in gc.zip(xc) {
        for l in 0..GRAD_LANES {
            add(l, gc[l], xc[l]);
        }
    }
    for (&g, &x) in gr.iter().zip(xr) {
        add(0, g, x);
    }
    acc.map(|lanes| lane_total(&lanes))
}

/// The input gradient of a depthwise convolution. Phase by phase (see
/// [`Phases`]) where the output is at least as large as the kernel; for a
/// global convolution (output smaller than the kernel) the phases would mostly
/// read padding, so each output value is spread over its window directly.
fn flex_depthwise_x_backward(g: &Depthwise, wv: &[f32], gv: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; g.n * g.c * g.h * g.w];
    let plane_of = |plane: usize| {
        (
            &wv[(plane % g.c) * g.k * g.k..][..g.k * g.k],
            &gv[plane * g.oh * g.ow..][..g.oh * g.ow],
        )
    };
    if g.oh < g.k || g.ow < g.k {
        dx.par_chunks_mut(g.h * g.w)
            .enumerate()
            .for_each(|(plane, dx)| {
                let (wk, gp) = plane_of(plane);
                for (o, &v) in gp.iter().enumerate() {
                    let (oy, ox) = (o / g.ow, o % g.ow);
                    g.for_each_tap(oy, ox, |tap, i| dx[i] += wk[tap] * v);
                }
            });
        return dx;
    }
    let ph = Phases::new(g);
    let s = g.stride;
    // Reads of the output gradient: a + d for input phase rows a < ⌈h/s⌉.
    let layout = Padded::new(
        [g.oh, g.ow],
        [
            ph.lo..signed(g.h.div_ceil(s)) + ph.hi,
            ph.lo..signed(g.w.div_ceil(s)) + ph.hi,
        ],
    );
    let arch = pulp::Arch::new();
    dx.par_chunks_mut(g.h * g.w).enumerate().for_each_init(
        || {
            let run = g.h.div_ceil(s) * layout.width;
            (vec![0.0f32; layout.len()], vec![0.0f32; run])
        },
        |(padded, out), (plane, dx)| {
            let (wk, gp) = plane_of(plane);
            arch.dispatch(XBackwardPlane {
                g,
                ph: &ph,
                layout: &layout,
                wk,
                gp,
                padded,
                out,
                dx,
            });
        },
    );
    dx
}

simd_op!(
    /// One plane of [`flex_depthwise_x_backward`]'s phased form: the weights
    /// and output gradient in, scratch for the padded gradient and a phase's
    /// output, and the plane's input gradient out.
    XBackwardPlane {
        g: &'a Depthwise,
        ph: &'a Phases,
        layout: &'a Padded,
        wk: &'a [f32],
        gp: &'a [f32],
        padded: &'a mut [f32],
        out: &'a mut [f32],
        dx: &'a mut [f32],
    } -> () {
        let s = g.stride;
        layout.fill(padded, gp, g.oh, g.ow, [0, g.ow, 1]);
        for r in 0..s {
            let rows = g.h.saturating_sub(r).div_ceil(s);
            for t in 0..s {
                let cols = g.w.saturating_sub(t).div_ceil(s);
                let out = &mut out[..rows * layout.width];
                out.fill(0.0);
                for (kh, &(rh, dy)) in ph.taps.iter().enumerate() {
                    for (kw, &(rw, dxs)) in ph.taps.iter().enumerate() {
                        if (rh, rw) == (r, t) {
                            let from = &padded[layout.at(dy, dxs)..][..out.len()];
                            axpy(out, from, wk[kh * g.k + kw]);
                        }
                    }
                }
                for a in 0..rows {
                    let src = &out[a * layout.width..][..cols];
                    let row = &mut dx[(s * a + r) * g.w..][..g.w];
                    if s == 1 {
                        row.copy_from_slice(src);
                    } else {
                        for (b, &v) in src.iter().enumerate() {
                            row[s * b + t] = v;
                        }
                    }
                }
            }
        }
    }
);

/// The weight gradient of a depthwise convolution: phase by phase (each
/// face's input plane split into its `s²` zero-padded phases, then a tap is
/// one dot product of the output gradient, laid out at the phases' width,
/// with its phase, shifted), or directly for a global convolution.
fn flex_depthwise_weight_backward(g: &Depthwise, xv: &[f32], gv: &[f32]) -> Vec<f32> {
    let mut dw = vec![0.0f32; g.c * g.k * g.k];
    let planes = |face: usize, ch: usize| {
        let plane = face * g.c + ch;
        (
            &xv[plane * g.h * g.w..][..g.h * g.w],
            &gv[plane * g.oh * g.ow..][..g.oh * g.ow],
        )
    };
    if g.oh < g.k || g.ow < g.k {
        dw.par_chunks_mut(g.k * g.k)
            .enumerate()
            .for_each(|(ch, dw)| {
                let mut acc = vec![0.0f64; g.k * g.k];
                for face in 0..g.n {
                    let (xp, gp) = planes(face, ch);
                    for (o, &v) in gp.iter().enumerate() {
                        let (oy, ox) = (o / g.ow, o % g.ow);
                        g.for_each_tap(oy, ox, |tap, i| acc[tap] += f64::from(xp[i] * v));
                    }
                }
                for (d, a) in dw.iter_mut().zip(acc) {
                    *d = a as f32;
                }
            });
        return dw;
    }
    let ph = Phases::new(g);
    let layout = input_phase_layout(g, &ph);
    let arch = pulp::Arch::new();
    dw.par_chunks_mut(g.k * g.k).enumerate().for_each_init(
        || phase_scratch(g, &layout),
        |(phases, wide), (ch, dw)| {
            // f64 sums across faces: a tap adds n·oh·ow products.
            let mut acc = vec![0.0f64; g.k * g.k];
            for face in 0..g.n {
                let (xp, gp) = planes(face, ch);
                arch.dispatch(WeightBackwardPlane {
                    g,
                    ph: &ph,
                    layout: &layout,
                    xp,
                    gp,
                    phases,
                    wide,
                    acc: &mut acc,
                });
            }
            for (d, a) in dw.iter_mut().zip(acc) {
                *d = a as f32;
            }
        },
    );
    dw
}

simd_op!(
    /// One face's plane of [`flex_depthwise_weight_backward`]'s phased form:
    /// input and output gradient planes in, scratch for the input's phases and
    /// the widened gradient, the taps' sums added to `acc`.
    WeightBackwardPlane {
        g: &'a Depthwise,
        ph: &'a Phases,
        layout: &'a Padded,
        xp: &'a [f32],
        gp: &'a [f32],
        phases: &'a mut [f32],
        wide: &'a mut [f32],
        acc: &'a mut [f64],
    } -> () {
        fill_phases(g, layout, phases, xp);
        // Columns past `ow` stay zero from allocation.
        for (oy, row) in wide.chunks_exact_mut(layout.width).enumerate() {
            row[..g.ow].copy_from_slice(&gp[oy * g.ow..][..g.ow]);
        }
        for_each_tap_run(g, ph, layout, phases, wide.len(), |tap, run| {
            acc[tap] += f64::from(dot(run, wide));
        });
    }
);

/// Splits an input plane into its `s²` stride phases, each written into
/// the data area of its slot of `phases` (`layout.len()` values a phase).
#[inline(always)]
fn fill_phases(g: &Depthwise, layout: &Padded, phases: &mut [f32], xp: &[f32]) {
    let s = g.stride;
    for (i, phase) in phases.chunks_exact_mut(layout.len()).enumerate() {
        let (r, t) = (i / s, i % s);
        let rows = g.h.saturating_sub(r).div_ceil(s);
        let cols = g.w.saturating_sub(t).div_ceil(s);
        layout.fill(phase, xp, rows, cols, [r * g.w + t, s * g.w, s]);
    }
}

/// The layout of an input phase read by every output row and tap: rows
/// `oy − d` for `oy < oh` (likewise columns), `d` a tap's shift.
fn input_phase_layout(g: &Depthwise, ph: &Phases) -> Padded {
    let s = g.stride;
    Padded::new(
        [g.h.div_ceil(s), g.w.div_ceil(s)],
        [-ph.hi..signed(g.oh) - ph.lo, -ph.hi..signed(g.ow) - ph.lo],
    )
}

/// Scratch for one worker of the phased kernels: the input's `s²` phases and
/// an output-sized plane at the phases' width. Zeroed once; the phases'
/// padding stays zero because only their data areas are ever written.
fn phase_scratch(g: &Depthwise, layout: &Padded) -> (Vec<f32>, Vec<f32>) {
    (
        vec![0.0f32; g.stride * g.stride * layout.len()],
        vec![0.0f32; g.oh * layout.width],
    )
}

/// Calls `f(tap, run)` for each tap with the run of `len` values of its
/// input phase that lines up, shifted by the tap, with an output laid out
/// at the phases' width.
#[inline(always)]
fn for_each_tap_run<'p>(
    g: &Depthwise,
    ph: &Phases,
    layout: &Padded,
    phases: &'p [f32],
    len: usize,
    mut f: impl FnMut(usize, &'p [f32]),
) {
    let s = g.stride;
    for (kh, &(rh, dy)) in ph.taps.iter().enumerate() {
        for (kw, &(rw, dxs)) in ph.taps.iter().enumerate() {
            let phase = &phases[(rh * s + rw) * layout.len()..][..layout.len()];
            f(kh * g.k + kw, &phase[layout.at(-dy, -dxs)..][..len]);
        }
    }
}

/// A depthwise convolution's forward, in the weight gradient's phased form:
/// each face's plane split into its `s²` zero-padded phases, then a tap adds
/// one long run of its phase, shifted and scaled by the tap's weight, into
/// an output laid out at the phases' width. A global convolution (output
/// smaller than the kernel) is summed directly.
fn flex_depthwise_forward(g: &Depthwise, xv: &[f32], wv: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; g.n * g.c * g.oh * g.ow];
    let planes = |plane: usize| {
        (
            &xv[plane * g.h * g.w..][..g.h * g.w],
            &wv[(plane % g.c) * g.k * g.k..][..g.k * g.k],
        )
    };
    if g.oh < g.k || g.ow < g.k {
        y.par_chunks_mut(g.oh * g.ow)
            .enumerate()
            .for_each(|(plane, yp)| {
                let (xp, wk) = planes(plane);
                for (o, v) in yp.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    g.for_each_tap(o / g.ow, o % g.ow, |tap, i| acc += wk[tap] * xp[i]);
                    *v = acc;
                }
            });
        return y;
    }
    let ph = Phases::new(g);
    let layout = input_phase_layout(g, &ph);
    let arch = pulp::Arch::new();
    y.par_chunks_mut(g.oh * g.ow).enumerate().for_each_init(
        || phase_scratch(g, &layout),
        |(phases, wide), (plane, yp)| {
            let (xp, wk) = planes(plane);
            arch.dispatch(ForwardPlane {
                g,
                ph: &ph,
                layout: &layout,
                xp,
                wk,
                phases,
                wide,
                yp,
            });
        },
    );
    y
}

simd_op!(
    /// One plane of [`flex_depthwise_forward`]'s phased form: the input plane
    /// and the channel's weights in, scratch for the phases and the widened
    /// output, the plane's output out.
    ForwardPlane {
        g: &'a Depthwise,
        ph: &'a Phases,
        layout: &'a Padded,
        xp: &'a [f32],
        wk: &'a [f32],
        phases: &'a mut [f32],
        wide: &'a mut [f32],
        yp: &'a mut [f32],
    } -> () {
        fill_phases(g, layout, phases, xp);
        wide.fill(0.0);
        for_each_tap_run(g, ph, layout, phases, wide.len(), |tap, run| {
            axpy(wide, run, wk[tap]);
        });
        // Columns past `ow` of the wide rows are products of padding and
        // the next row: not outputs.
        for (row, out) in wide.chunks_exact(layout.width).zip(yp.chunks_exact_mut(g.ow)) {
            out.copy_from_slice(&row[..g.ow]);
        }
    }
);

impl SeparableConvOps for Flex {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        let g = Depthwise::new(&x.shape(), &weight.shape(), stride, pad);
        let (Some(xv), Some(wv)) = (f32_values(&x), f32_values(&weight)) else {
            let c = g.c;
            return Self::conv2d(x, weight, None, depthwise_options(c, stride, pad));
        };
        flex_f32(flex_depthwise_forward(&g, &xv, &wv), [g.n, g.c, g.oh, g.ow])
    }

    fn depthwise_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        let g = Depthwise::new(&x.shape(), &weight.shape(), stride, pad);
        let (Some(wv), Some(gv)) = (f32_values(&weight), f32_values(&grad)) else {
            let c = g.c;
            return Self::conv2d_x_backward(x, weight, grad, depthwise_options(c, stride, pad));
        };
        flex_f32(
            flex_depthwise_x_backward(&g, &wv, &gv),
            [g.n, g.c, g.h, g.w],
        )
    }

    fn depthwise_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        let g = Depthwise::new(&x.shape(), &weight.shape(), stride, pad);
        let (Some(xv), Some(gv)) = (f32_values(&x), f32_values(&grad)) else {
            let c = g.c;
            return Self::conv2d_weight_backward(
                x,
                weight,
                grad,
                depthwise_options(c, stride, pad),
            );
        };
        flex_f32(
            flex_depthwise_weight_backward(&g, &xv, &gv),
            [g.c, 1, g.k, g.k],
        )
    }

    fn batch_norm_channels_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = dims4(&x.shape());
        let (Some(xv), Some(gv), Some(bv)) =
            (f32_values(&x), f32_values(&gamma), f32_values(&beta))
        else {
            let r = Self::batch_norm_train(x, gamma, beta, epsilon);
            return (r.output, r.mean, r.variance);
        };
        flex_batch_norm(&xv, &gv, &bv, None, shape, epsilon)
    }

    fn batch_norm_channels_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = dims4(&x.shape());
        let values = (
            f32_values(&x),
            f32_values(&gamma),
            f32_values(&mean),
            f32_values(&variance),
            f32_values(&grad),
        );
        let (Some(xv), Some(gammav), Some(mv), Some(vv), Some(gv)) = values else {
            let r = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
            return (r.x_grad, r.gamma_grad, r.beta_grad);
        };
        let stats = BatchStats {
            mean: &mv,
            variance: &vv,
            epsilon,
        };
        let (dx, dgamma, dbeta, _) =
            flex_batch_norm_backward(&xv, &gammav, None, &stats, &gv, shape);
        (dx, dgamma, dbeta)
    }

    fn batch_norm_prelu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let shape = dims4(&x.shape());
        let values = (
            f32_values(&x),
            f32_values(&gamma),
            f32_values(&beta),
            f32_values(&alpha),
        );
        let (Some(xv), Some(gv), Some(bv), Some(av)) = values else {
            return generic_batch_norm_prelu::<Self>(x, gamma, beta, alpha, epsilon);
        };
        flex_batch_norm(&xv, &gv, &bv, Some(&av), shape, epsilon)
    }

    fn batch_norm_prelu_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let shape = dims4(&x.shape());
        let values = (
            f32_values(&x),
            f32_values(&gamma),
            f32_values(&beta),
            f32_values(&alpha),
            f32_values(&mean),
            f32_values(&variance),
            f32_values(&grad),
        );
        let (Some(xv), Some(gammav), Some(bv), Some(av), Some(mv), Some(vv), Some(gv)) = values
        else {
            let affine = [gamma.clone(), beta.clone(), alpha.clone()];
            return generic_batch_norm_prelu_backward::<Self>(
                x, affine, mean, variance, epsilon, grad,
            );
        };
        let stats = BatchStats {
            mean: &mv,
            variance: &vv,
            epsilon,
        };
        let (dx, dgamma, dbeta, dalpha) =
            flex_batch_norm_backward(&xv, &gammav, Some((&bv, &av)), &stats, &gv, shape);
        (dx, dgamma, dbeta, dalpha)
    }

    fn prelu_channels(x: FloatTensor<Self>, alpha: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = dims4(&x.shape());
        let (Some(xv), Some(av)) = (f32_values(&x), f32_values(&alpha)) else {
            return generic_prelu::<Self>(x, alpha);
        };
        let [_, c, h, w] = shape;
        let mut y = vec![0.0f32; xv.len()];
        y.par_chunks_mut(h * w)
            .zip(xv.par_chunks(h * w))
            .enumerate()
            .for_each(|(plane, (y, x))| {
                let a = av[plane % c];
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = if x < 0.0 { a * x } else { x };
                }
            });
        flex_f32(y, shape)
    }

    fn prelu_channels_backward(
        x: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let shape = dims4(&x.shape());
        let (Some(xv), Some(av), Some(gv)) =
            (f32_values(&x), f32_values(&alpha), f32_values(&grad))
        else {
            return generic_prelu_backward::<Self>(x, alpha, grad);
        };
        let [n, c, h, w] = shape;
        let mut dx = vec![0.0f32; xv.len()];
        // Each plane's share of its channel's slope gradient.
        let mut partial = vec![0.0f64; n * c];
        dx.par_chunks_mut(h * w)
            .zip(partial.par_iter_mut())
            .enumerate()
            .for_each(|(plane, (dx, part))| {
                let a = av[plane % c];
                let x = &xv[plane * h * w..][..h * w];
                let g = &gv[plane * h * w..][..h * w];
                let mut sum = 0.0f32;
                for ((d, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                    let negative = x < 0.0;
                    *d = if negative { a * g } else { g };
                    sum += if negative { g * x } else { 0.0 };
                }
                *part = f64::from(sum);
            });
        let mut da = vec![0.0f64; c];
        for (i, p) in partial.iter().enumerate() {
            da[i % c] += p;
        }
        let da: Vec<f32> = da.into_iter().map(|v| v as f32).collect();
        (
            flex_f32(dx, shape),
            FlexTensor::from_data(TensorData::new(da, [c])),
        )
    }
}

#[cfg(feature = "tch")]
impl SeparableConvOps for burn::backend::LibTorch {}

/// The extension's ops of two differentiable inputs (`x` and a weight).
#[derive(Clone, Copy, Debug)]
enum PairOp {
    Depthwise { stride: usize, pad: usize },
    Pointwise,
    Prelu,
}

impl PairOp {
    fn forward<B: SeparableConvOps>(self, x: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
        match self {
            Self::Depthwise { stride, pad } => B::depthwise_conv2d(x, w, stride, pad),
            Self::Pointwise => B::pointwise_conv2d(x, w),
            Self::Prelu => B::prelu_channels(x, w),
        }
    }

    /// The gradients of `x` and of the weight; each only when `want`ed,
    /// except PReLU's, which come from one pass.
    fn backward<B: SeparableConvOps>(
        self,
        x: FloatTensor<B>,
        w: FloatTensor<B>,
        grad: FloatTensor<B>,
        want: [bool; 2],
    ) -> [Option<FloatTensor<B>>; 2] {
        match self {
            Self::Depthwise { stride, pad } => [
                want[0].then(|| {
                    B::depthwise_conv2d_x_backward(x.clone(), w.clone(), grad.clone(), stride, pad)
                }),
                want[1].then(|| B::depthwise_conv2d_weight_backward(x, w, grad, stride, pad)),
            ],
            Self::Pointwise => [
                want[0].then(|| B::pointwise_conv2d_x_backward(w, grad.clone())),
                want[1].then(|| B::pointwise_conv2d_weight_backward(x, grad)),
            ],
            Self::Prelu => {
                let (dx, dw) = B::prelu_channels_backward(x, w, grad);
                [Some(dx), Some(dw)]
            }
        }
    }
}

#[derive(Debug)]
struct PairBackward;

impl<B: Backend + SeparableConvOps> Backward<B, 2> for PairBackward {
    type State = (NodeId, NodeId, PairOp);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, op) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let w = checkpointer.retrieve_node_output::<FloatTensor<B>>(w_state);
        let want = ops.parents.each_ref().map(Option::is_some);
        for (node, g) in ops
            .parents
            .into_iter()
            .zip(op.backward::<B>(x, w, grad, want))
        {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Runs `op` on the inner backend and, when either input is tracked,
/// records a [`PairBackward`] node with both inputs checkpointed.
fn tracked_pair<B: Backend + SeparableConvOps, C: CheckpointStrategy>(
    op: PairOp,
    x: FloatTensor<Autodiff<B, C>>,
    w: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    match PairBackward
        .prepare::<C>([x.node(), w.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&w);
            let y = op.forward::<B>(x.into_primitive(), w.into_primitive());
            prep.finish((x_state, w_state, op), y)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(op.forward::<B>(x.into_primitive(), w.into_primitive()))
        }
    }
}

/// The autodiff node of training-mode BatchNorm (three inputs: x, γ, β) and
/// of BatchNorm → PReLU (four: x, γ, β, α). The inputs are checkpointed; the
/// batch statistics travel with the node, as in burn's own.
#[derive(Debug)]
struct BatchNormBackward;

impl<B: Backend + SeparableConvOps, const N: usize> Backward<B, N> for BatchNormBackward {
    type State = ([NodeId; N], FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (inputs, mean, variance, epsilon) = ops.state;
        let inputs =
            Vec::from(inputs.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id)));
        let input_grads = match <[FloatTensor<B>; 4]>::try_from(inputs) {
            Ok([x, gamma, beta, alpha]) => {
                let (dx, dgamma, dbeta, dalpha) = B::batch_norm_prelu_train_backward(
                    x, gamma, beta, alpha, mean, variance, epsilon, grad,
                );
                vec![dx, dgamma, dbeta, dalpha]
            }
            Err(inputs) => match <[FloatTensor<B>; 3]>::try_from(inputs) {
                Ok([x, gamma, _beta]) => {
                    let (dx, dgamma, dbeta) = B::batch_norm_channels_train_backward(
                        x, gamma, mean, variance, epsilon, grad,
                    );
                    vec![dx, dgamma, dbeta]
                }
                // `tracked_batch_norm` builds the node with three or four inputs only.
                Err(_) => Vec::new(),
            },
        };
        for (node, g) in ops.parents.into_iter().zip(input_grads) {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// A training-mode BatchNorm's output, batch mean and batch variance.
type Normalised<T> = (T, T, T);

/// Runs `forward` (BatchNorm, or BatchNorm → PReLU when `N` is 4) on the
/// inner backend and, when an input is tracked, records a
/// [`BatchNormBackward`] node. Returns the output and the batch's mean and
/// variance (not differentiated).
fn tracked_batch_norm<B: Backend + SeparableConvOps, C: CheckpointStrategy, const N: usize>(
    inputs: [FloatTensor<Autodiff<B, C>>; N],
    epsilon: f64,
    forward: impl FnOnce([FloatTensor<B>; N]) -> Normalised<FloatTensor<B>>,
) -> Normalised<FloatTensor<Autodiff<B, C>>> {
    let parents = inputs.each_ref().map(|t| t.node());
    match BatchNormBackward
        .prepare::<C>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let ids = inputs.each_ref().map(|t| prep.checkpoint(t));
            let (y, mean, variance) = forward(inputs.map(|t| t.into_primitive()));
            let state = (ids, mean.clone(), variance.clone(), epsilon);
            (
                prep.finish(state, y),
                Autodiff::<B, C>::from_inner(mean),
                Autodiff::<B, C>::from_inner(variance),
            )
        }
        OpsKind::UnTracked(prep) => {
            let (y, mean, variance) = forward(inputs.map(|t| t.into_primitive()));
            (
                prep.finish(y),
                Autodiff::<B, C>::from_inner(mean),
                Autodiff::<B, C>::from_inner(variance),
            )
        }
    }
}

impl<B: Backend + SeparableConvOps, C: CheckpointStrategy> SeparableConvOps for Autodiff<B, C> {
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        tracked_pair::<B, C>(PairOp::Depthwise { stride, pad }, x, weight)
    }

    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked_pair::<B, C>(PairOp::Pointwise, x, weight)
    }

    fn batch_norm_channels_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        tracked_batch_norm::<B, C, 3>([x, gamma, beta], epsilon, |[x, gamma, beta]| {
            B::batch_norm_channels_train(x, gamma, beta, epsilon)
        })
    }

    fn prelu_channels(x: FloatTensor<Self>, alpha: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked_pair::<B, C>(PairOp::Prelu, x, alpha)
    }

    fn batch_norm_prelu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        alpha: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        tracked_batch_norm::<B, C, 4>(
            [x, gamma, beta, alpha],
            epsilon,
            |[x, gamma, beta, alpha]| B::batch_norm_prelu_train(x, gamma, beta, alpha, epsilon),
        )
    }
}

/// Training-mode BatchNorm over `[n, c, h, w]`: the output and the batch's
/// mean and biased variance per channel (not differentiated).
pub fn batch_norm_channels_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (y, mean, variance) = <Dispatch as SeparableConvOps>::batch_norm_channels_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    (
        Tensor::from_dispatch(y),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(variance),
    )
}

/// Training-mode BatchNorm then PReLU over `[n, c, h, w]` in one pass: the
/// output and the batch's mean and biased variance per channel (not
/// differentiated). Equal to [`batch_norm_channels_train`] followed by
/// [`prelu_channels`], without keeping the normalised values.
pub fn batch_norm_prelu_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    alpha: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (z, mean, variance) = <Dispatch as SeparableConvOps>::batch_norm_prelu_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        alpha.into_dispatch(),
        epsilon,
    );
    (
        Tensor::from_dispatch(z),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(variance),
    )
}

/// PReLU over `[n, c, h, w]` with one slope per channel (`alpha`: `[c]`).
pub fn prelu_channels(x: Tensor<4>, alpha: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as SeparableConvOps>::prelu_channels(
        x.into_dispatch(),
        alpha.into_dispatch(),
    ))
}

/// Depthwise k×k convolution of `[n, c, h, w]` with a `[c, 1, k, k]` weight.
pub fn depthwise_conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as SeparableConvOps>::depthwise_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        stride,
        pad,
    ))
}

/// Pointwise (1×1, stride 1) convolution of `[n, c_in, h, w]` with a
/// `[c_out, c_in, 1, 1]` weight.
pub fn pointwise_conv2d(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as SeparableConvOps>::pointwise_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
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
            let fast =
                Flex::depthwise_conv2d_x_backward(x.clone(), w.clone(), g.clone(), stride, pad);
            let reference =
                Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), options.clone());
            let e = relative_error(&values(fast), &values(reference));
            assert!(e < TOLERANCE, "x gradient, case {i}: {e}");
            let fast = Flex::depthwise_conv2d_weight_backward(
                x.clone(),
                w.clone(),
                g.clone(),
                stride,
                pad,
            );
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
        let (z, mean, var) = Flex::batch_norm_prelu_train(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            alpha.clone(),
            eps,
        );
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
}
