//! The extension's ops on the `flex` backend: the kernels of this
//! module's siblings; pointwise gradients as batched matrix products.

use super::*;

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
