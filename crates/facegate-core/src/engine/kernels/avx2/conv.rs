//! 1×1 and regular convolutions: four output channels × two pixels per
//! step, reduced and requantised as one vector.

#[allow(clippy::wildcard_imports)]
use core::arch::x86_64::*;

use super::{Requant8, available, widen};

/// 1×1 convolution with AVX2, four output channels × two pixels per step:
/// eight VPMADDWD accumulators, reduced together by a VPHADDD tree into one
/// vector of the eight outputs, requantised as one. Returns `false`, having
/// written nothing, where a channel needs a left shift (then the caller's
/// kernel runs). Call only where [`available`] said so.
pub(in crate::engine::kernels) fn conv1x1(
    c: &crate::engine::kernels::Conv<'_>,
    output: &mut [i8],
) -> bool {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        conv1x1_avx2(c, output)
    }
}

#[target_feature(enable = "avx2")]
fn conv1x1_avx2(c: &crate::engine::kernels::Conv<'_>, output: &mut [i8]) -> bool {
    use crate::engine::kernels::{ChannelRequant, dot_i8_2x2_portable, le_i32, weight_sum};
    let g = c.g;
    let (cin, cout, pixels) = (g.in_c, g.out_c, g.out_h * g.out_w);
    let Ok(zp) = i8::try_from(c.out_zp) else {
        return false;
    };
    let rq_of = |oc: usize| ChannelRequant::of(c.params, oc);
    if pixels == 0 || !(0..cout).all(|oc| Requant8::fits(&rq_of(oc))) {
        return false;
    }
    let body = cin - cin % 16;
    for oc0 in (0..cout).step_by(4) {
        let n = (cout - oc0).min(4);
        // A short last group repeats its last channel and stores only `n`.
        let ocs: [usize; 4] = core::array::from_fn(|j| (oc0 + j).min(cout - 1));
        let w = ocs.map(|oc| &c.weights[oc * cin..(oc + 1) * cin]);
        let base: [i32; 8] = core::array::from_fn(|j| {
            let oc = ocs[j % 4];
            le_i32(c.params.bias, oc).wrapping_sub(c.in_zp.wrapping_mul(weight_sum(w[j % 4])))
        });
        let rq: [ChannelRequant; 8] = core::array::from_fn(|j| rq_of(ocs[j % 4]));
        let Some(rq) = Requant8::of(&rq) else {
            return false;
        };
        for px in (0..pixels).step_by(2) {
            // An odd last pixel is computed twice and stored once.
            let px1 = (px + 1).min(pixels - 1);
            let x0 = &c.input[px * cin..(px + 1) * cin];
            let x1 = &c.input[px1 * cin..(px1 + 1) * cin];
            let sums = block4x2(&x0[..body], &x1[..body], w.map(|wj| &wj[..body]));
            let mut extra = base;
            if body < cin {
                for (j, pair) in [(0, 1), (2, 3)] {
                    let t = dot_i8_2x2_portable(
                        &x0[body..],
                        &x1[body..],
                        &w[j][body..],
                        &w[pair][body..],
                    );
                    extra[j] = extra[j].wrapping_add(t[0]);
                    extra[pair] = extra[pair].wrapping_add(t[1]);
                    extra[4 + j] = extra[4 + j].wrapping_add(t[2]);
                    extra[4 + pair] = extra[4 + pair].wrapping_add(t[3]);
                }
            }
            // SAFETY: `extra` holds eight i32: an unaligned 32-byte load.
            #[allow(unsafe_code)]
            let extra = unsafe { _mm256_loadu_si256(extra.as_ptr().cast()) };
            let out = requantised(rq, _mm256_add_epi32(sums, extra), zp);
            for j in 0..n {
                output[px1 * cout + oc0 + j] = out[4 + j];
                output[px * cout + oc0 + j] = out[j];
            }
        }
    }
    true
}

/// `Σ x_p · w_j` for two pixels `p` and four channels `j` over equally long
/// slices whose length is a multiple of sixteen: lanes `4p + j`.
#[target_feature(enable = "avx2")]
fn block4x2(x0: &[i8], x1: &[i8], w: [&[i8]; 4]) -> __m256i {
    let mut acc = [_mm256_setzero_si256(); 8];
    for k in (0..x0.len().min(x1.len())).step_by(16) {
        let (a, b) = (widen(&x0[k..k + 16]), widen(&x1[k..k + 16]));
        for j in 0..4 {
            let wj = widen(&w[j][k..k + 16]);
            acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(a, wj));
            acc[4 + j] = _mm256_add_epi32(acc[4 + j], _mm256_madd_epi16(b, wj));
        }
    }
    // The four accumulators of a pixel reduced together: a VPHADDD tree,
    // then the two 128-bit halves added.
    let quad = |q: &[__m256i]| {
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(q[0], q[1]), _mm256_hadd_epi32(q[2], q[3]));
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1))
    };
    _mm256_set_m128i(quad(&acc[4..]), quad(&acc[..4]))
}

/// Eight accumulators requantised to bytes, saturated by the packs
/// (lanes 0–3 then 4–7: the two pixels' four channels).
#[target_feature(enable = "avx2")]
fn requantised(rq: Requant8, acc: __m256i, zp: i8) -> [i8; 8] {
    let zero = _mm256_setzero_si256();
    // Per 128-bit half: four i16, then four i8, in the half's low bytes.
    let bytes = _mm256_packs_epi16(_mm256_packs_epi32(rq.apply(acc, zp), zero), zero);
    let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes)).to_le_bytes();
    let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1)).to_le_bytes();
    // Reinterpreted as the signed bytes they were packed from.
    #[allow(clippy::cast_possible_wrap)]
    core::array::from_fn(|j| if j < 4 { lo[j] } else { hi[j - 4] } as i8)
}

/// Regular convolution (the stem) with AVX2: each output pixel's receptive
/// field gathered into a patch zero-extended to whole sixteen-byte steps,
/// the weights likewise, then [`block4x2`] for four channels × two pixels.
/// Returns `false`, having written nothing, where the caller's kernel must
/// run (a left shift, a patch over `MAX_PATCH`). Call only where
/// [`available`] said so.
pub(in crate::engine::kernels) fn dense(
    c: &crate::engine::kernels::Conv<'_>,
    output: &mut [i8],
) -> bool {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        dense_avx2(c, output)
    }
}

/// Output channels [`dense`] packs at once.
const DENSE_CHUNK: usize = 16;

#[target_feature(enable = "avx2")]
fn dense_avx2(c: &crate::engine::kernels::Conv<'_>, output: &mut [i8]) -> bool {
    use crate::engine::kernels::{ChannelRequant, MAX_PATCH, gather_patch, le_i32, weight_sum};
    let g = c.g;
    let patch_len = g.weights_per_output();
    let padded = patch_len.div_ceil(16) * 16;
    let (Ok(pad), Ok(zp)) = (i8::try_from(c.in_zp), i8::try_from(c.out_zp)) else {
        return false;
    };
    let (pixels, cout) = (g.out_h * g.out_w, g.out_c);
    let rq_of = |oc: usize| ChannelRequant::of(c.params, oc);
    if padded > MAX_PATCH || pixels == 0 || !(0..cout).all(|oc| Requant8::fits(&rq_of(oc))) {
        return false;
    }
    let plane = |oc: usize| &c.weights[oc * patch_len..(oc + 1) * patch_len];
    // Bytes past `patch_len` stay zero in both: they add nothing.
    let mut patches = [[0i8; MAX_PATCH]; 2];
    let mut packed = [[0i8; MAX_PATCH]; DENSE_CHUNK];
    for oc0 in (0..cout).step_by(DENSE_CHUNK) {
        let chunk = (cout - oc0).min(DENSE_CHUNK);
        for (j, w) in packed.iter_mut().enumerate() {
            w[..patch_len].copy_from_slice(plane((oc0 + j).min(cout - 1)));
        }
        let groups: [(usize, [i32; 8], Option<Requant8>); DENSE_CHUNK / 4] =
            core::array::from_fn(|q| {
                let ocs: [usize; 4] = core::array::from_fn(|j| (oc0 + 4 * q + j).min(cout - 1));
                let base = core::array::from_fn(|j| {
                    let oc = ocs[j % 4];
                    le_i32(c.params.bias, oc)
                        .wrapping_sub(c.in_zp.wrapping_mul(weight_sum(plane(oc))))
                });
                let rq: [ChannelRequant; 8] = core::array::from_fn(|j| rq_of(ocs[j % 4]));
                (chunk.saturating_sub(4 * q).min(4), base, Requant8::of(&rq))
            });
        for px in (0..pixels).step_by(2) {
            // An odd last pixel is computed twice and stored once.
            let px1 = (px + 1).min(pixels - 1);
            let [p0, p1] = &mut patches;
            gather_patch(g, c.input, pad, px, &mut p0[..patch_len]);
            gather_patch(g, c.input, pad, px1, &mut p1[..patch_len]);
            for (q, (n, base, rq)) in groups.iter().enumerate().filter(|(_, (n, ..))| *n > 0) {
                let Some(rq) = *rq else {
                    return false; // unreachable: every channel was checked
                };
                let w: [&[i8]; 4] = core::array::from_fn(|j| &packed[4 * q + j][..padded]);
                let sums = block4x2(&p0[..padded], &p1[..padded], w);
                // SAFETY: `base` holds eight i32: an unaligned 32-byte load.
                #[allow(unsafe_code)]
                let base = unsafe { _mm256_loadu_si256(base.as_ptr().cast()) };
                let out = requantised(rq, _mm256_add_epi32(sums, base), zp);
                let oc = oc0 + 4 * q;
                for j in 0..*n {
                    output[px1 * cout + oc + j] = out[4 + j];
                    output[px * cout + oc + j] = out[j];
                }
            }
        }
    }
    true
}
