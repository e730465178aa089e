//! x86-64 kernels with AVX2, chosen at run time where the CPU has it (the
//! SSE2 ones serve the others): sixteen bytes sign-extended to sixteen
//! 16-bit lanes in one instruction (VPMOVSXBW), VPMADDWD multiplies them in
//! pairs and adds neighbours into eight 32-bit lanes. Twice the SSE2 path's
//! products per instruction, with the same exact integer arithmetic: a pair
//! of i8 products cannot overflow i32 and lanes add modulo 2^32, so results
//! equal the portable kernel's bit for bit (property tests below and in
//! `tests.rs`).
//!
//! `conv` holds the 1×1 and regular convolutions (four channels × two
//! pixels per step), `depthwise` sixteen channels per step, `requant` the
//! vector requantisation they share, `add` the residual addition.

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

mod add;
mod conv;
mod depthwise;
mod requant;

pub(in crate::engine::kernels) use add::add;
pub(in crate::engine::kernels) use conv::{conv1x1, dense};
pub(in crate::engine::kernels) use depthwise::depthwise16;
use requant::{Requant8, Scale8};

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
