//! Residual addition, sixteen elements per step.

#[allow(clippy::wildcard_imports)]
use core::arch::x86_64::*;

use super::requant::plus_zero_point;
use super::{Scale8, available, store16};

/// Residual addition with AVX2, sixteen elements per step: both inputs
/// rescaled, added with saturation, rescaled to the output, exactly as
/// the reference. Returns `false`, having written nothing, where it must
/// stay scalar. Call only where [`available`] said so.
pub(in crate::engine::kernels) fn add(
    p: &crate::engine::kernels::AddParams,
    a: &[i8],
    b: &[i8],
    out: &mut [i8],
) -> bool {
    debug_assert!(available());
    // SAFETY: callers check `available()`, so the CPU runs AVX2.
    #[allow(unsafe_code)]
    unsafe {
        add_avx2(p, a, b, out)
    }
}

#[target_feature(enable = "avx2")]
fn add_avx2(p: &crate::engine::kernels::AddParams, a: &[i8], b: &[i8], out: &mut [i8]) -> bool {
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
    crate::engine::kernels::add_reference(p, &a[body..n], &b[body..n], &mut out[body..n]);
    true
}
