//! Slice helpers the `flex` kernels share: vectorisable products and
//! sums (independent lanes, so the compiler vectorises them), and
//! conversion between flex tensors and `f32` slices.

use super::*;

/// `a += b · s`.
#[inline(always)]
pub(super) fn axpy(a: &mut [f32], b: &[f32], s: f32) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y * s;
    }
}

/// `Σ a·b` with sixteen partial sums, so the loop vectorises (mfn's largest
/// run, 56×58 values, leaves ≤ 203 terms a lane: f32 is exact enough).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
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

pub(super) fn f32_values(t: &FlexTensor) -> Option<std::borrow::Cow<'_, [f32]>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>()?.to_vec()),
    })
}

pub(super) fn flex_f32(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Lanes of the f64 reductions below: independent partial sums, so the loop
/// vectorises instead of waiting on one running sum (a float sum is not
/// reordered by the compiler).
pub(super) const LANES: usize = 8;

/// `(Σ v, Σ v²)` in f64.
#[inline(always)]
pub(super) fn sum_and_squares(v: &[f32]) -> (f64, f64) {
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
pub(super) const GRAD_LANES: usize = 16;

/// `(Σ g, Σ g·(x − m))` over one plane.
#[inline(always)]
pub(super) fn sum_and_centred_dot(g: &[f32], x: &[f32], m: f32) -> (f64, f64) {
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
pub(super) fn lane_total(lanes: &[f32]) -> f64 {
    lanes.iter().map(|&v| f64::from(v)).sum()
}
