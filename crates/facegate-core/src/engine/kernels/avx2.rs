//! x86-64 kernels with AVX2, chosen at run time where the CPU has it (the
//! SSE2 ones serve the others): sixteen bytes sign-extended to sixteen
//! 16-bit lanes in one instruction (VPMOVSXBW), VPMADDWD multiplies them in
//! pairs and adds neighbours into eight 32-bit lanes. Twice the SSE2 path's
//! products per instruction, with the same exact integer arithmetic: a pair
//! of i8 products cannot overflow i32 and lanes add modulo 2^32, so results
//! equal the portable kernel's bit for bit (property tests below and in
//! `tests.rs`).

#[allow(clippy::wildcard_imports)]
use core::arch::x86_64::*;

cpufeatures::new!(cpu_avx2, "avx2");

/// Whether this CPU (and OS) runs AVX2 (detected once, then a relaxed load).
#[inline(always)]
pub fn available() -> bool {
    cpu_avx2::get()
}

/// `[x0·w0, x0·w1, x1·w0, x1·w1]`, sixteen bytes per step, the tail portable.
/// Call only where [`available`] said so.
#[inline]
pub fn dot_i8_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        dot_i8_2x2_avx2(x0, x1, w0, w1)
    }
}

#[target_feature(enable = "avx2")]
fn dot_i8_2x2_avx2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
    let n = x0.len().min(x1.len()).min(w0.len()).min(w1.len());
    let body = n - n % 16;
    let mut acc = [_mm256_setzero_si256(); 4];
    let rows = x0[..body].chunks_exact(16).zip(x1[..body].chunks_exact(16));
    let cols = w0[..body].chunks_exact(16).zip(w1[..body].chunks_exact(16));
    for ((a, b), (c, d)) in rows.zip(cols) {
        let (a, b, c, d) = (widen(a), widen(b), widen(c), widen(d));
        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(a, c));
        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(a, d));
        acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(b, c));
        acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(b, d));
    }
    let tail = super::dot_i8_2x2_portable(&x0[body..n], &x1[body..n], &w0[body..n], &w1[body..n]);
    core::array::from_fn(|i| lanes_sum(acc[i]).wrapping_add(tail[i]))
}

/// Sixteen bytes as sixteen sign-extended 16-bit lanes.
#[target_feature(enable = "avx2")]
fn widen(b: &[i8]) -> __m256i {
    debug_assert!(b.len() >= 16);
    // SAFETY: the load reads 16 bytes of a slice that holds at least 16
    // (callers pass exact chunks); AVX2 is enabled for this function.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_cvtepi8_epi16(_mm_loadu_si128(b.as_ptr().cast()))
    }
}

/// Channels `c0..c0 + 16` of a depthwise convolution, every output
/// position. Call only where [`available`] said so.
pub(super) fn depthwise16(c: &super::Conv<'_>, output: &mut [i8], c0: usize) {
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
fn depthwise16_avx2(c: &super::Conv<'_>, output: &mut [i8], c0: usize) {
    use super::{ChannelRequant, MAX_DEPTHWISE_TAPS, at, inner_range, le_i32, window};
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

/// 1×1 convolution with AVX2, four output channels × two pixels per step:
/// eight VPMADDWD accumulators, reduced together by a VPHADDD tree into one
/// vector of the eight outputs, requantised as one. Returns `false`, having
/// written nothing, where a channel needs a left shift (then the caller's
/// kernel runs). Call only where [`available`] said so.
pub(super) fn conv1x1(c: &super::Conv<'_>, output: &mut [i8]) -> bool {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        conv1x1_avx2(c, output)
    }
}

#[target_feature(enable = "avx2")]
fn conv1x1_avx2(c: &super::Conv<'_>, output: &mut [i8]) -> bool {
    use super::{ChannelRequant, dot_i8_2x2_portable, le_i32, weight_sum};
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
pub(super) fn dense(c: &super::Conv<'_>, output: &mut [i8]) -> bool {
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
fn dense_avx2(c: &super::Conv<'_>, output: &mut [i8]) -> bool {
    use super::{ChannelRequant, MAX_PATCH, gather_patch, le_i32, weight_sum};
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

/// Eight channels' requantisation as vector lanes: the steps of
/// [`super::ChannelRequant::apply`] (a saturating left shift, gemmlowp's
/// rounding doubling high multiply, a rounding right shift, the PReLU side
/// chosen by the accumulator's sign), exact lane by lane. A left shift of
/// 31 (a multiplier of 2^31, only in a forged blob) stays scalar.
#[derive(Clone, Copy)]
struct Requant8 {
    pos: Scale8,
    neg: Scale8,
}

/// One multiplier per lane: `M0`, left shift, right shift, rounding mask.
#[derive(Clone, Copy)]
struct Scale8([__m256i; 4]);

impl Scale8 {
    /// `None` for a left shift of 31.
    fn of(m: &[crate::engine::requant::Multiplier]) -> Option<Self> {
        let mut lanes = [[0i32; 8]; 4];
        for (j, m) in m.iter().take(8).enumerate() {
            let (m0, left, right, mask) = m.parts();
            if left > 30 {
                return None;
            }
            // Both shifts are at most 31.
            #[allow(clippy::cast_possible_wrap)]
            let (left, right) = (left as i32, right as i32);
            lanes[0][j] = m0;
            lanes[1][j] = left;
            lanes[2][j] = right;
            lanes[3][j] = mask;
        }
        // SAFETY: each array holds eight i32: unaligned 32-byte loads.
        #[allow(unsafe_code)]
        let load = |a: &[i32; 8]| unsafe { _mm256_loadu_si256(a.as_ptr().cast()) };
        Some(Self(lanes.each_ref().map(load)))
    }

    /// The same multiplier in every lane.
    fn splat(m: crate::engine::requant::Multiplier) -> Option<Self> {
        Self::of(&[m; 8])
    }

    /// Lanes of `self` where `mask` is set, else of `other`.
    #[target_feature(enable = "avx2")]
    fn select(self, other: Self, mask: __m256i) -> Self {
        Self(core::array::from_fn(|i| {
            _mm256_blendv_epi8(other.0[i], self.0[i], mask)
        }))
    }

    /// `x · M0 · 2^(shift − 31)` per lane, rounded as
    /// [`crate::engine::requant::Multiplier::apply`].
    #[target_feature(enable = "avx2")]
    fn apply(self, x: __m256i) -> __m256i {
        let [m0, left, right, mask] = self.0;
        // x · 2^left, saturated: where shifting back does not give x.
        let shifted = _mm256_sllv_epi32(x, left);
        let overflow = _mm256_cmpeq_epi32(_mm256_srav_epi32(shifted, left), x);
        let saturated = _mm256_xor_si256(_mm256_srai_epi32(x, 31), _mm256_set1_epi32(i32::MAX));
        let x = _mm256_blendv_epi8(saturated, shifted, overflow);
        // (x · m0 + 2^30) >> 31 per lane: even lanes' 64-bit products,
        // then the odd lanes' moved down; the product's bits 31..62 are
        // the result (|x · m0| ≤ 2^62, so the sum does not overflow).
        let nudge = _mm256_set1_epi64x(1 << 30);
        let even = _mm256_add_epi64(_mm256_mul_epi32(x, m0), nudge);
        let odd = _mm256_add_epi64(
            _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m0, 32)),
            nudge,
        );
        let high = _mm256_blend_epi32(
            _mm256_srli_epi64(even, 31),
            _mm256_slli_epi64(odd, 1),
            0b1010_1010,
        );
        // The one product that overflows: i32::MIN · i32::MIN saturates.
        let min = _mm256_set1_epi32(i32::MIN);
        let both_min = _mm256_and_si256(_mm256_cmpeq_epi32(x, min), _mm256_cmpeq_epi32(m0, min));
        let high = _mm256_blendv_epi8(high, _mm256_set1_epi32(i32::MAX), both_min);
        // Rounding right shift, half away from zero: + 1 where the
        // remainder passes (mask >> 1) + (x < 0).
        let threshold = _mm256_add_epi32(_mm256_srai_epi32(mask, 1), _mm256_srli_epi32(high, 31));
        let round_up = _mm256_cmpgt_epi32(_mm256_and_si256(high, mask), threshold);
        _mm256_sub_epi32(_mm256_srav_epi32(high, right), round_up)
    }
}

/// `v` plus a zero point in i8's range, bounded first so the add cannot
/// wrap; the packing (or the caller's clamp) saturates to i8 like the
/// scalar clamp.
#[target_feature(enable = "avx2")]
fn plus_zero_point(v: __m256i, zp: i8) -> __m256i {
    let bound = _mm256_set1_epi32(1 << 16);
    let v = _mm256_min_epi32(
        _mm256_max_epi32(v, _mm256_sub_epi32(_mm256_setzero_si256(), bound)),
        bound,
    );
    _mm256_add_epi32(v, _mm256_set1_epi32(i32::from(zp)))
}

impl Requant8 {
    /// Whether a channel's requantisation fits the vector lanes (no left
    /// shift of 31).
    fn fits(rq: &super::ChannelRequant) -> bool {
        rq.pos.parts().1 <= 30 && rq.neg.parts().1 <= 30
    }

    /// `None` when a channel needs a left shift of 31.
    fn of(rq: &[super::ChannelRequant]) -> Option<Self> {
        let pos: [_; 8] = core::array::from_fn(|j| rq.get(j).map_or(rq[0].pos, |r| r.pos));
        let neg: [_; 8] = core::array::from_fn(|j| rq.get(j).map_or(rq[0].neg, |r| r.neg));
        Some(Self {
            pos: Scale8::of(&pos)?,
            neg: Scale8::of(&neg)?,
        })
    }

    /// The eight accumulators requantised, plus `zp` (as i32 lanes; the
    /// caller saturates them to i8).
    #[target_feature(enable = "avx2")]
    fn apply(self, acc: __m256i, zp: i8) -> __m256i {
        let negative = _mm256_cmpgt_epi32(_mm256_setzero_si256(), acc);
        plus_zero_point(self.neg.select(self.pos, negative).apply(acc), zp)
    }
}

/// Residual addition with AVX2, sixteen elements per step: both inputs
/// rescaled, added with saturation, rescaled to the output, exactly as
/// the reference. Returns `false`, having written nothing, where it must
/// stay scalar. Call only where [`available`] said so.
pub(super) fn add(p: &super::AddParams, a: &[i8], b: &[i8], out: &mut [i8]) -> bool {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        add_avx2(p, a, b, out)
    }
}

#[target_feature(enable = "avx2")]
fn add_avx2(p: &super::AddParams, a: &[i8], b: &[i8], out: &mut [i8]) -> bool {
    use crate::engine::requant::Multiplier;
    let m = |(m0, shift): (i32, i32)| Scale8::splat(Multiplier::new(m0, shift));
    let (Some(ma), Some(mb), Some(mo), Ok(zp)) = (
        m(p.a_mult),
        m(p.b_mult),
        m(p.out_mult),
        i8::try_from(p.out_zp),
    ) else {
        return false;
    };
    let n = a.len().min(b.len()).min(out.len());
    let body = n - n % 16;
    let (a_zp, b_zp) = (_mm256_set1_epi32(p.a_zp), _mm256_set1_epi32(p.b_zp));
    // Eight bytes as eight i32 lanes, less the zero point, times 2^20
    // (wrapping, as the reference's shift).
    let lanes = |bytes: &[i8], zp: __m256i| {
        // SAFETY: `bytes` holds eight bytes (callers pass exact chunks).
        #[allow(unsafe_code)]
        let v = unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) };
        _mm256_slli_epi32(_mm256_sub_epi32(_mm256_cvtepi8_epi32(v), zp), 20)
    };
    let half = |x: &[i8], y: &[i8]| {
        let (xa, yb) = (ma.apply(lanes(x, a_zp)), mb.apply(lanes(y, b_zp)));
        // Saturating add: where both signs differ from the sum's.
        let sum = _mm256_add_epi32(xa, yb);
        let overflow = _mm256_srai_epi32(
            _mm256_and_si256(_mm256_xor_si256(xa, sum), _mm256_xor_si256(yb, sum)),
            31,
        );
        let saturated = _mm256_xor_si256(_mm256_srai_epi32(xa, 31), _mm256_set1_epi32(i32::MAX));
        plus_zero_point(mo.apply(_mm256_blendv_epi8(sum, saturated, overflow)), zp)
    };
    for k in (0..body).step_by(16) {
        let lo = half(&a[k..k + 8], &b[k..k + 8]);
        let hi = half(&a[k + 8..k + 16], &b[k + 8..k + 16]);
        store16(&mut out[k..k + 16], lo, hi);
    }
    super::reference::add(p, &a[body..n], &b[body..n], &mut out[body..n]);
    true
}

/// Sixteen i32 lanes (eight and eight, in order) saturated to i8 and stored.
#[target_feature(enable = "avx2")]
fn store16(dst: &mut [i8], lo: __m256i, hi: __m256i) {
    // VPACKSSDW interleaves the two registers by 128-bit halves; the
    // permute puts the sixteen i16 back in order.
    let words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0b11_01_10_00);
    let bytes = _mm_packs_epi16(
        _mm256_castsi256_si128(words),
        _mm256_extracti128_si256(words, 1),
    );
    assert!(dst.len() >= 16);
    // SAFETY: `dst` holds at least sixteen bytes (checked above).
    #[allow(unsafe_code)]
    unsafe {
        _mm_storeu_si128(dst.as_mut_ptr().cast(), bytes);
    }
}

/// The eight lanes' sum (wrapping).
#[target_feature(enable = "avx2")]
fn lanes_sum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b0100_1110));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b1011_0001)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use std::vec::Vec;

    proptest! {
        /// Any lengths (bodies of many 16-byte steps and every tail), any
        /// bytes: the portable kernel's bits.
        #[test]
        fn equals_the_portable_kernel(n in 0usize..600, seed in any::<u64>()) {
            if !super::available() {
                return Ok(());
            }
            let mut s = seed | 1;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            #[allow(clippy::cast_possible_truncation)]
            let mut bytes = || -> Vec<i8> { (0..n).map(|_| next() as i8).collect() };
            let (a, b, c, d) = (bytes(), bytes(), bytes(), bytes());
            prop_assert_eq!(
                super::dot_i8_2x2(&a, &b, &c, &d),
                super::super::dot_i8_2x2_portable(&a, &b, &c, &d)
            );
        }
    }

    proptest! {
        /// Any accumulators, any multipliers (negative ones and i32::MIN
        /// included), any shift up to 30 left or past 31 right, any zero
        /// point: the scalar requantisation's bytes, in order.
        #[test]
        fn vector_requantisation_equals_the_scalar_one(
            acc in prop::array::uniform16(prop_oneof![any::<i32>(), Just(i32::MIN), -300i32..300]),
            m0 in prop::array::uniform16(prop_oneof![any::<i32>(), Just(i32::MIN), (1i32 << 30)..i32::MAX]),
            shift in prop::array::uniform16(-40i32..=30),
            neg_shift in prop::array::uniform16(-40i32..=30),
            zp in any::<i8>(),
        ) {
            if !super::available() {
                return Ok(());
            }
            use super::super::ChannelRequant;
            use crate::engine::requant::Multiplier;
            let rq: [ChannelRequant; 16] = core::array::from_fn(|j| ChannelRequant {
                pos: Multiplier::new(m0[j], shift[j]),
                neg: Multiplier::new(m0[(j + 5) % 16], neg_shift[j]),
            });
            let expected: Vec<i8> = (0..16).map(|j| rq[j].apply(acc[j], i32::from(zp))).collect();
            let mut got = [0i8; 16];
            // SAFETY: AVX2 checked above; `acc` holds sixteen i32.
            #[allow(unsafe_code)]
            unsafe {
                use core::arch::x86_64::_mm256_loadu_si256;
                let (r0, r1) = (super::Requant8::of(&rq[..8]).unwrap(), super::Requant8::of(&rq[8..]).unwrap());
                let lo = _mm256_loadu_si256(acc.as_ptr().cast());
                let hi = _mm256_loadu_si256(acc[8..].as_ptr().cast());
                super::store16(&mut got, r0.apply(lo, zp), r1.apply(hi, zp));
            }
            prop_assert_eq!(got.to_vec(), expected);
        }
    }

    #[test]
    fn the_extremes_wrap_like_the_portable_kernel() {
        if !super::available() {
            return;
        }
        for (x, w) in [(-128i8, -128i8), (-128, 127), (127, 127)] {
            let (xs, ws) = ([x; 512], [w; 512]);
            assert_eq!(
                super::dot_i8_2x2(&xs, &xs, &ws, &ws),
                super::super::dot_i8_2x2_portable(&xs, &xs, &ws, &ws)
            );
        }
    }
}
