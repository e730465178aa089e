//! The extension on `Autodiff`: each op records its own backward step
//! (the kernels above) instead of burn's generic one.

use super::*;

/// The extension's ops of two differentiable inputs (`x` and a weight).
#[derive(Clone, Copy, Debug)]
pub(super) enum PairOp {
    Depthwise { stride: usize, pad: usize },
    Pointwise,
    Prelu,
}

impl PairOp {
    pub(super) fn forward<B: SeparableConvOps>(
        self,
        x: FloatTensor<B>,
        w: FloatTensor<B>,
    ) -> FloatTensor<B> {
        match self {
            Self::Depthwise { stride, pad } => B::depthwise_conv2d(x, w, stride, pad),
            Self::Pointwise => B::pointwise_conv2d(x, w),
            Self::Prelu => B::prelu_channels(x, w),
        }
    }

    /// The gradients of `x` and of the weight; each only when `want`ed,
    /// except PReLU's, which come from one pass.
    pub(super) fn backward<B: SeparableConvOps>(
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
pub(super) struct PairBackward;

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
pub(super) fn tracked_pair<B: Backend + SeparableConvOps, C: CheckpointStrategy>(
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
pub(super) struct BatchNormBackward;

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
pub(super) type Normalised<T> = (T, T, T);

/// Runs `forward` (BatchNorm, or BatchNorm → PReLU when `N` is 4) on the
/// inner backend and, when an input is tracked, records a
/// [`BatchNormBackward`] node. Returns the output and the batch's mean and
/// variance (not differentiated).
pub(super) fn tracked_batch_norm<
    B: Backend + SeparableConvOps,
    C: CheckpointStrategy,
    const N: usize,
>(
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
