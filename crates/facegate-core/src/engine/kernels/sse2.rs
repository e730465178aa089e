//! x86-64 kernels (SSE2, part of every x86-64 CPU): bytes sign-extended to
//! 16 bits, PMADDWD multiplies eight pairs and adds neighbours into four
//! 32-bit lanes. A pair of i8 products cannot overflow i32 and lanes add
//! modulo 2^32, so results equal the portable kernel's bit for bit (the
//! property tests run this path on x86 hosts).

#[allow(clippy::wildcard_imports)]
use core::arch::x86_64::*;

/// 16 bytes as two vectors of eight sign-extended 16-bit values.
#[inline(always)]
fn widen(b: &[i8]) -> (__m128i, __m128i) {
    debug_assert!(b.len() >= 16);
    // SAFETY: SSE2 is enabled for the target (cfg above); the load reads
    // 16 bytes of a slice that holds at least 16 (callers pass exact chunks).
    #[allow(unsafe_code)]
    unsafe {
        let v = _mm_loadu_si128(b.as_ptr().cast());
        (
            _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8),
            _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8),
        )
    }
}

/// `acc + Σ a · b` over sixteen widened bytes, in four lanes.
#[inline(always)]
fn madd(acc: __m128i, a: (__m128i, __m128i), b: (__m128i, __m128i)) -> __m128i {
    // SAFETY: register-only SSE2 arithmetic.
    #[allow(unsafe_code)]
    unsafe {
        _mm_add_epi32(
            acc,
            _mm_add_epi32(_mm_madd_epi16(a.0, b.0), _mm_madd_epi16(a.1, b.1)),
        )
    }
}

/// The four lanes' sum (wrapping).
#[inline(always)]
fn lanes_sum(v: __m128i) -> i32 {
    // SAFETY: register-only SSE2 arithmetic.
    #[allow(unsafe_code)]
    unsafe {
        let s = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b0100_1110));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b1011_0001)))
    }
}

/// `[x0·w0, x0·w1, x1·w0, x1·w1]`, sixteen bytes per step, the tail portable.
#[inline(always)]
pub fn dot_i8_2x2(x0: &[i8], x1: &[i8], w0: &[i8], w1: &[i8]) -> [i32; 4] {
    let n = x0.len().min(x1.len()).min(w0.len()).min(w1.len());
    let body = n - n % 16;
    // SAFETY: register-only SSE2 arithmetic.
    #[allow(unsafe_code)]
    let mut acc = unsafe { [_mm_setzero_si128(); 4] };
    let rows = x0[..body].chunks_exact(16).zip(x1[..body].chunks_exact(16));
    let cols = w0[..body].chunks_exact(16).zip(w1[..body].chunks_exact(16));
    for ((a, b), (c, d)) in rows.zip(cols) {
        let (a, b, c, d) = (widen(a), widen(b), widen(c), widen(d));
        acc[0] = madd(acc[0], a, c);
        acc[1] = madd(acc[1], a, d);
        acc[2] = madd(acc[2], b, c);
        acc[3] = madd(acc[3], b, d);
    }
    let tail = super::dot_i8_2x2_portable(&x0[body..n], &x1[body..n], &w0[body..n], &w1[body..n]);
    core::array::from_fn(|i| lanes_sum(acc[i]).wrapping_add(tail[i]))
}
