//! Training-mode BatchNorm (and BatchNorm fused with PReLU) on `flex`:
//! statistics, forward and backward, one pass each.

use super::*;

/// A batch's per-channel statistics as the forward returns them.
pub(super) struct BatchStats<'a> {
    pub(super) mean: &'a [f32],
    pub(super) variance: &'a [f32],
    pub(super) epsilon: f64,
}

impl BatchStats<'_> {
    pub(super) fn inv_std(&self, ch: usize) -> f64 {
        1.0 / (f64::from(self.variance[ch]) + self.epsilon).sqrt()
    }

    /// Channel `ch`'s normalisation as `y = x·scale + shift`: computed the
    /// same way forward and backward, so a fused backward recomputes the
    /// forward's `y` exactly (PReLU's kink sees the same signs).
    pub(super) fn affine(&self, ch: usize, gamma: &[f32], beta: &[f32]) -> (f32, f32) {
        let scale = f64::from(gamma[ch]) * self.inv_std(ch);
        let shift = f64::from(beta[ch]) - f64::from(self.mean[ch]) * scale;
        (scale as f32, shift as f32)
    }
}

/// Training-mode BatchNorm over `[n, c, h, w]`, followed by PReLU when
/// `alpha` is given: the output, the batch mean and the biased variance.
pub(super) fn flex_batch_norm(
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
pub(super) fn flex_batch_norm_backward(
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
pub(super) fn prelu_batch_norm_sums(
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
