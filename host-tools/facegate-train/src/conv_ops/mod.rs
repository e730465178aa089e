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
        pub(super) struct $name<'a> {
            $(pub(super) $field: $ty,)*
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

mod autodiff;
mod batch_norm;
mod depthwise;
mod flex;
mod slices;
#[cfg(test)]
mod tests;

use {batch_norm::*, depthwise::*, slices::*};

#[cfg(feature = "tch")]
impl SeparableConvOps for burn::backend::LibTorch {}

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
