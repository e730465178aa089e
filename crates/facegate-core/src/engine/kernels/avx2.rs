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

/// Channels `c0..c0 + 16` of a depthwise convolution at the output
/// positions whose window lies inside the input; the caller computes the
/// border. Call only where [`available`] said so.
pub(super) fn depthwise16_inner(c: &super::Conv<'_>, output: &mut [i8], c0: usize) {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        depthwise16_inner_avx2(c, output, c0);
    }
}

/// Each tap of sixteen channels is one 16-byte load, sign-extended to
/// sixteen 16-bit lanes and multiplied lane by lane (VPMULLW: an i8 · i8
/// product always fits 16 bits), then widened into two accumulators of
/// eight 32-bit lanes, which add modulo 2^32 like the portable kernel.
#[target_feature(enable = "avx2")]
fn depthwise16_inner_avx2(c: &super::Conv<'_>, output: &mut [i8], c0: usize) {
    use super::{ChannelRequant, MAX_DEPTHWISE_TAPS, inner_range, le_i32, weight_sum};
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
    let full: [i32; 16] = core::array::from_fn(|j| {
        le_i32(c.params.bias, c0 + j).wrapping_sub(c.in_zp.wrapping_mul(weight_sum(plane(j))))
    });
    let rq: [ChannelRequant; 16] = core::array::from_fn(|j| ChannelRequant::of(c.params, c0 + j));
    // SAFETY: `full` holds sixteen i32, two unaligned 32-byte loads.
    #[allow(unsafe_code)]
    let (full_lo, full_hi) = unsafe {
        (
            _mm256_loadu_si256(full.as_ptr().cast()),
            _mm256_loadu_si256(full[8..].as_ptr().cast()),
        )
    };
    let row_step = g.in_w * ch;
    for oy in oy_lo..oy_hi {
        for ox in ox_lo..ox_hi {
            let top_left =
                ((oy * g.stride - g.pad_top) * g.in_w + ox * g.stride - g.pad_left) * ch + c0;
            let (mut lo, mut hi) = (full_lo, full_hi);
            for (ky, row) in w[..taps].chunks_exact(g.kw).enumerate() {
                let mut at = top_left + ky * row_step;
                for &wt in row {
                    let p = _mm256_mullo_epi16(widen(&c.input[at..at + 16]), wt);
                    lo = _mm256_add_epi32(lo, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(p)));
                    hi =
                        _mm256_add_epi32(hi, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(p, 1)));
                    at += ch;
                }
            }
            let mut acc = [0i32; 16];
            // SAFETY: `acc` holds sixteen i32, two unaligned 32-byte stores.
            #[allow(unsafe_code)]
            unsafe {
                _mm256_storeu_si256(acc.as_mut_ptr().cast(), lo);
                _mm256_storeu_si256(acc[8..].as_mut_ptr().cast(), hi);
            }
            let out = (oy * g.out_w + ox) * ch + c0;
            for ((o, a), r) in output[out..out + 16].iter_mut().zip(acc).zip(rq) {
                *o = r.apply(a, c.out_zp);
            }
        }
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
