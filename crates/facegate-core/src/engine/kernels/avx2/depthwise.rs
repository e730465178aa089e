//! Depthwise convolution, sixteen channels per step.

#[allow(clippy::wildcard_imports)]
use core::arch::x86_64::*;

use super::{Requant8, available, store16, widen};

/// Channels `c0..c0 + 16` of a depthwise convolution, every output
/// position. Call only where [`available`] said so.
pub(in crate::engine::kernels) fn depthwise16(
    c: &crate::engine::kernels::Conv<'_>,
    output: &mut [i8],
    c0: usize,
) {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        depthwise16_avx2(c, output, c0);
    }
}

/// Each tap of sixteen channels is one 16-byte load, sign-extended to
/// sixteen 16-bit lanes and multiplied lane by lane (VPMULLW: an i8 · i8
/// product always fits 16 bits), then widened into two accumulators of
/// eight 32-bit lanes, which add modulo 2^32 like the portable kernel.
/// Windows inside the input use a precomputed zero-point correction; on
/// the border the taps inside are summed with their weights' sum.
#[target_feature(enable = "avx2")]
fn depthwise16_avx2(c: &crate::engine::kernels::Conv<'_>, output: &mut [i8], c0: usize) {
    use crate::engine::kernels::{
        ChannelRequant, MAX_DEPTHWISE_TAPS, at, inner_range, le_i32, window,
    };
    let g = c.g;
    let (ch, taps) = (g.in_c, g.kh * g.kw);
    let (oy_lo, oy_hi) = inner_range(g.out_h, g.stride, g.pad_top, g.kh, g.in_h);
    let (ox_lo, ox_hi) = inner_range(g.out_w, g.stride, g.pad_left, g.kw, g.in_w);
    let plane = |j: usize| &c.weights[(c0 + j) * taps..(c0 + j + 1) * taps];
    let mut w = [_mm256_setzero_si256(); MAX_DEPTHWISE_TAPS];
    for (t, wt) in w.iter_mut().take(taps).enumerate() {
        let lanes: [i8; 16] = core::array::from_fn(|j| plane(j)[t]);
        *wt = widen(&lanes);
    }
    let w = &w[..taps];
    // Sixteen 16-bit lanes as two vectors of eight 32-bit lanes.
    let split = |v: __m256i| {
        (
            _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v)),
            _mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1)),
        )
    };
    let add2 = |(a, b): (__m256i, __m256i), (x, y): (__m256i, __m256i)| {
        (_mm256_add_epi32(a, x), _mm256_add_epi32(b, y))
    };
    let in_zp = _mm256_set1_epi32(c.in_zp);
    // bias − in_zp · Σw, the correction of a window over taps `wsum`.
    let bias: [i32; 16] = core::array::from_fn(|j| le_i32(c.params.bias, c0 + j));
    // SAFETY: `bias` holds sixteen i32, two unaligned 32-byte loads.
    #[allow(unsafe_code)]
    let bias = unsafe {
        (
            _mm256_loadu_si256(bias.as_ptr().cast()),
            _mm256_loadu_si256(bias[8..].as_ptr().cast()),
        )
    };
    let corrected = |wsum: (__m256i, __m256i)| {
        (
            _mm256_sub_epi32(bias.0, _mm256_mullo_epi32(in_zp, wsum.0)),
            _mm256_sub_epi32(bias.1, _mm256_mullo_epi32(in_zp, wsum.1)),
        )
    };
    let zero = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let full = corrected(w.iter().fold(zero, |s, &wt| add2(s, split(wt))));
    let rq: [ChannelRequant; 16] = core::array::from_fn(|j| ChannelRequant::of(c.params, c0 + j));
    let rq8 = [Requant8::of(&rq[..8]), Requant8::of(&rq[8..])];
    let row_step = g.in_w * ch;
    let input = c.input;
    let tap = |i: usize, wt: __m256i| split(_mm256_mullo_epi16(widen(&input[i..i + 16]), wt));
    for oy in 0..g.out_h {
        let rows_inside = (oy_lo..oy_hi).contains(&oy);
        for ox in 0..g.out_w {
            let (lo, hi) = if rows_inside && (ox_lo..ox_hi).contains(&ox) {
                let top_left =
                    ((oy * g.stride - g.pad_top) * g.in_w + ox * g.stride - g.pad_left) * ch + c0;
                let mut acc = full;
                for (ky, row) in w.chunks_exact(g.kw).enumerate() {
                    let mut i = top_left + ky * row_step;
                    for &wt in row {
                        acc = add2(acc, tap(i, wt));
                        i += ch;
                    }
                }
                acc
            } else {
                let (ky0, ky1, iy) = window(oy, g.stride, g.pad_top, g.kh, g.in_h);
                let (kx0, kx1, ix) = window(ox, g.stride, g.pad_left, g.kw, g.in_w);
                let (mut acc, mut wsum) = (zero, zero);
                for ky in ky0..ky1 {
                    let row = at(iy, ky) * g.in_w;
                    for kx in kx0..kx1 {
                        let wt = w[ky * g.kw + kx];
                        acc = add2(acc, tap((row + at(ix, kx)) * ch + c0, wt));
                        wsum = add2(wsum, split(wt));
                    }
                }
                add2(acc, corrected(wsum))
            };
            let out = (oy * g.out_w + ox) * ch + c0;
            let dst = &mut output[out..out + 16];
            if let (Some(r0), Some(r1), Ok(zp)) = (rq8[0], rq8[1], i8::try_from(c.out_zp)) {
                store16(dst, r0.apply(lo, zp), r1.apply(hi, zp));
            } else {
                let mut acc = [0i32; 16];
                // SAFETY: `acc` holds sixteen i32, two unaligned 32-byte stores.
                #[allow(unsafe_code)]
                unsafe {
                    _mm256_storeu_si256(acc.as_mut_ptr().cast(), lo);
                    _mm256_storeu_si256(acc[8..].as_mut_ptr().cast(), hi);
                }
                for ((o, a), r) in dst.iter_mut().zip(acc).zip(rq) {
                    *o = r.apply(a, c.out_zp);
                }
            }
        }
    }
}
