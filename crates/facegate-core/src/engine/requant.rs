//! Fixed-point requantisation, bit-compatible with TFLite / CMSIS-NN
//! (gemmlowp's `SaturatingRoundingDoublingHighMul` and `RoundingDivideByPOT`).
//!
//! A real multiplier `m` is stored as `(M0, shift)` with `m ≈ M0 · 2^(shift − 31)`
//! and `|M0|` in `[2^30, 2^31)`.

/// `round(a · b / 2^31)` with saturation of the one overflowing case.
///
/// gemmlowp writes it with a sign-dependent nudge and a division that
/// truncates toward zero; for a negative product `trunc((ab + 1 − 2^30) / 2^31)`
/// equals `floor((ab + 2^30) / 2^31)`, so both signs are one add and one
/// arithmetic shift (the test keeps gemmlowp's form as the oracle).
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    // |ab| ≤ 2^62 − 2^31 here, so the shifted value fits i32.
    #[allow(clippy::cast_possible_truncation)]
    let q = ((ab + (1 << 30)) >> 31) as i32;
    q
}

/// `x / 2^exponent`, rounded half away from zero; `exponent` in `0..=31`.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: u32) -> i32 {
    let exponent = exponent.min(31);
    divide_by_pot_masked(x, exponent, pot_mask(exponent))
}

/// `2^exponent − 1` for `exponent` in `0..=31` (at most 2^31 − 1: fits).
#[inline]
const fn pot_mask(exponent: u32) -> i32 {
    #[allow(clippy::cast_possible_wrap)]
    let mask = ((1u32 << exponent) - 1) as i32;
    mask
}

/// [`rounding_divide_by_pot`] with its mask given (decoded once per channel).
#[inline]
fn divide_by_pot_masked(x: i32, exponent: u32, mask: i32) -> i32 {
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(x & mask > threshold)
}

/// A multiplier `(M0, shift)` decoded once for many values (a channel's
/// requantisation): the shift split into its left and right parts, and the
/// right shift's rounding mask precomputed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multiplier {
    m0: i32,
    left: u32,
    right: u32,
    mask: i32,
}

impl Multiplier {
    /// Decodes `(M0, shift)` as stored in a blob (any i32 is accepted).
    #[inline]
    pub const fn new(m0: i32, shift: i32) -> Self {
        let left = if shift > 31 {
            31
        } else if shift < 0 {
            0
        } else {
            shift
        };
        let right = if shift < -31 {
            31
        } else if shift > 0 {
            0
        } else {
            -shift
        };
        let right = right.unsigned_abs();
        Self {
            m0,
            left: left.unsigned_abs(),
            right,
            mask: pot_mask(right),
        }
    }

    /// `(M0, left shift, right shift, rounding mask)`, for vector kernels
    /// that apply the same steps to many lanes.
    #[inline]
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    pub(crate) const fn parts(self) -> (i32, u32, u32, i32) {
        (self.m0, self.left, self.right, self.mask)
    }

    /// `x · M0 · 2^(shift − 31)`, rounded as TFLite does
    /// ([`rounding_divide_by_pot`] with the precomputed mask).
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        let x = if self.left == 0 {
            x
        } else {
            x.saturating_mul(1 << self.left)
        };
        divide_by_pot_masked(
            saturating_rounding_doubling_high_mul(x, self.m0),
            self.right,
            self.mask,
        )
    }
}

/// A channel's requantisation to int8 for accumulators known to stay
/// within `±bound`: [`Multiplier::apply`], the output zero point and the
/// clamp to int8 in four steps that need no 64-bit arithmetic — one
/// rounding high multiply (`SMMULR` on Cortex-M: `(a·b + 2^31) >> 32`, which
/// is the doubling high multiply of a doubled input), one add that carries
/// the rounding nudge and the zero point (scaled by the shift, so adding it
/// before the shift is exact), the shift, and a saturate to int8.
///
/// It gives the same int8 as the exact path wherever [`FastRequant::new`]
/// accepts (the property test below holds it to that); a channel it refuses
/// — right shift 0 or past 22, a zero point outside int8's range, or
/// accumulators that could overflow the doubled, left-shifted input — keeps
/// the exact path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastRequant {
    m0: i32,
    /// Left shift plus the doubling of the high multiply.
    pre: u32,
    /// `2^(right − 1) + out_zp · 2^right`.
    nudge: i32,
    right: u32,
    /// All ones, or zero for a rescale without right shift (no rounding step).
    round_below_zero: i32,
}

impl FastRequant {
    /// The fast form of `(M0, shift)` with output zero point `out_zp`, for
    /// accumulators with `|acc| ≤ bound`; `None` where it would not be exact.
    #[inline]
    pub const fn new(m0: i32, shift: i32, out_zp: i32, bound: u32) -> Option<Self> {
        // Right shifts 1..=22 (the rounding term needs one; the zero point
        // scaled by 2^22 leaves headroom), left shifts up to 29.
        // A blob may hold any shift, i32::MIN included: negate without overflow.
        let (left, right) = if shift > 0 {
            (shift, 0)
        } else {
            (0, shift.saturating_neg())
        };
        if right < 1 || right > 22 || left > 29 || out_zp < -128 || out_zp > 128 {
            return None;
        }
        let (left, right) = (left.unsigned_abs(), right.unsigned_abs());
        let pre = left + 1;
        // acc · 2^pre must fit i32 (then |q| < 2^30 and the add below cannot overflow).
        if bound as u64 >= (1u64 << (31 - pre)) {
            return None;
        }
        Some(Self {
            m0,
            pre,
            nudge: (1 << (right - 1)) + out_zp * (1 << right),
            right,
            round_below_zero: -1,
        })
    }

    /// The form [`FastRequant::rescale`] uses: no zero point, and a right
    /// shift of 0 allowed too (then the high multiply's result is the value).
    #[inline]
    pub const fn new_rescale(m0: i32, shift: i32, bound: u32) -> Option<Self> {
        if shift == 0 || (shift > 0 && shift <= 29) {
            let pre = shift.unsigned_abs() + 1;
            if bound as u64 >= (1u64 << (31 - pre)) {
                return None;
            }
            return Some(Self {
                m0,
                pre,
                nudge: 0,
                right: 0,
                round_below_zero: 0,
            });
        }
        Self::new(m0, shift, 0, bound)
    }

    /// `clamp(requant(acc) + out_zp)` for `|acc| ≤ bound`.
    #[inline(always)]
    pub fn apply(self, acc: i32) -> i8 {
        let q = rounding_high_mul(acc << self.pre, self.m0);
        // Round half away from zero: the nudge, less one below zero.
        let v = (q + self.nudge + (q >> 31)) >> self.right;
        // Clamped to the i8 range first.
        #[allow(clippy::cast_possible_truncation)]
        let out = v.clamp(-128, 127) as i8;
        out
    }
}

impl FastRequant {
    /// [`Multiplier::apply`] of `acc` (`|acc| ≤ bound`) without the zero
    /// point and clamp: exact for a form built by [`FastRequant::new_rescale`].
    #[inline(always)]
    pub fn rescale(self, acc: i32) -> i32 {
        let q = rounding_high_mul(acc << self.pre, self.m0);
        (q + self.nudge + ((q >> 31) & self.round_below_zero)) >> self.right
    }

    /// A bound on `|rescale(acc)|` over `|acc| ≤ bound` (a form built with
    /// `out_zp = 0`): `bound · 2^left · |M0| / 2^(31 + right)`, plus one for
    /// the roundings.
    pub const fn rescaled_bound(self, bound: u32) -> u32 {
        let scaled = ((bound as u64) << (self.pre - 1)) * (self.m0.unsigned_abs() as u64);
        let b = (scaled >> 31 >> self.right) + 1;
        if b > u32::MAX as u64 {
            u32::MAX
        } else {
            b as u32
        }
    }
}

/// `(a · b + 2^31) >> 32`, Cortex-M's `SMMULR`.
#[inline(always)]
fn rounding_high_mul(a: i32, b: i32) -> i32 {
    #[cfg(all(target_arch = "arm", target_feature = "dsp"))]
    {
        let r: i32;
        // SAFETY: register-only multiply; no memory, stack or flags touched.
        #[allow(unsafe_code)]
        unsafe {
            core::arch::asm!("smmulr {r}, {a}, {b}", r = out(reg) r, a = in(reg) a, b = in(reg) b,
                options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[cfg(not(all(target_arch = "arm", target_feature = "dsp")))]
    {
        // |a · b| + 2^31 < 2^63, and the shifted value fits i32.
        #[allow(clippy::cast_possible_truncation)]
        let r = ((i64::from(a) * i64::from(b) + (1 << 31)) >> 32) as i32;
        r
    }
}

/// `x · M0 · 2^(shift − 31)`, rounded as TFLite does.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    Multiplier::new(multiplier, shift).apply(x)
}

/// Splits a real multiplier into `(M0, shift)`; `None` for non-finite values.
///
/// Zero gives `(0, 0)`; negative multipliers give a negative `M0`.
pub fn quantize_multiplier(real: f64) -> Option<(i32, i32)> {
    if !real.is_finite() {
        return None;
    }
    if real == 0.0 {
        return Some((0, 0));
    }
    let (m, mut shift) = frexp(real.abs());
    // m in [0.5, 1): M0 = round(m · 2^31), renormalised if rounding reached 2^31.
    #[allow(clippy::cast_possible_truncation)]
    let mut q = libm::round(m * (1u64 << 31) as f64) as i64;
    if q == 1i64 << 31 {
        q /= 2;
        shift += 1;
    }
    if shift < -31 {
        return Some((0, 0)); // below the smallest representable step: contributes nothing
    }
    if shift > 30 {
        return None;
    }
    let q = i32::try_from(q).ok()?;
    Some((if real < 0.0 { -q } else { q }, shift))
}

/// `x = m · 2^e` with `m` in `[0.5, 1)`, for finite positive `x`.
fn frexp(x: f64) -> (f64, i32) {
    let mut e = 0;
    let mut m = x;
    while m >= 1.0 {
        m /= 2.0;
        e += 1;
    }
    while m < 0.5 {
        m *= 2.0;
        e -= 1;
    }
    (m, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3); // 2.5 → 3
        assert_eq!(rounding_divide_by_pot(-5, 1), -3); // −2.5 → −3
        assert_eq!(rounding_divide_by_pot(7, 2), 2); // 1.75 → 2
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        let (m, s) = quantize_multiplier(0.5).unwrap();
        assert_eq!((m, s), (1 << 30, 0));
        assert_eq!(multiply_by_quantized_multiplier(100, m, s), 50);
        let (m, s) = quantize_multiplier(-0.25).unwrap();
        assert_eq!(multiply_by_quantized_multiplier(100, m, s), -25);
        assert_eq!(quantize_multiplier(f64::NAN), None);
    }

    /// gemmlowp's `SaturatingRoundingDoublingHighMul` as written there.
    fn gemmlowp_srdhm(a: i32, b: i32) -> i32 {
        if a == i32::MIN && b == i32::MIN {
            return i32::MAX;
        }
        let ab = i64::from(a) * i64::from(b);
        let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
        i32::try_from((ab + nudge) / (1i64 << 31)).unwrap()
    }

    /// gemmlowp's `RoundingDivideByPOT` as written there.
    fn gemmlowp_rdbp(x: i32, exponent: u32) -> i32 {
        let mask = i32::try_from((1i64 << exponent) - 1).unwrap();
        let remainder = x & mask;
        let threshold = (mask >> 1) + i32::from(x < 0);
        (x >> exponent) + i32::from(remainder > threshold)
    }

    #[test]
    fn extremes_match_gemmlowp() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30) - 1,
            -(1 << 30),
            -1,
            0,
            1,
            1 << 30,
            i32::MAX,
        ];
        for a in edges {
            for b in edges {
                assert_eq!(
                    saturating_rounding_doubling_high_mul(a, b),
                    gemmlowp_srdhm(a, b),
                    "{a} {b}"
                );
            }
            for e in 0..=31 {
                assert_eq!(rounding_divide_by_pot(a, e), gemmlowp_rdbp(a, e), "{a} {e}");
            }
        }
    }

    /// Shifts a forged blob may hold (the model_blob fuzzer found i32::MIN
    /// overflowing a negation) are refused, not a panic.
    #[test]
    fn fast_forms_refuse_extreme_shifts() {
        for shift in [i32::MIN, i32::MIN + 1, -23, 30, 31, i32::MAX] {
            assert_eq!(FastRequant::new(1 << 30, shift, 0, 0), None, "{shift}");
            assert_eq!(FastRequant::new_rescale(1 << 30, shift, 0), None, "{shift}");
        }
        assert!(FastRequant::new(1 << 30, -22, 128, 1000).is_some());
        assert!(FastRequant::new_rescale(1 << 30, 0, 1000).is_some());
    }

    proptest! {
        /// The one-shift forms equal gemmlowp's bit for bit.
        #[test]
        fn same_bits_as_gemmlowp(a in any::<i32>(), b in any::<i32>(), e in 0u32..32) {
            prop_assert_eq!(saturating_rounding_doubling_high_mul(a, b), gemmlowp_srdhm(a, b));
            prop_assert_eq!(rounding_divide_by_pot(a, e), gemmlowp_rdbp(a, e));
        }

        /// A decoded multiplier gives TFLite's `MultiplyByQuantizedMultiplier`
        /// (written with gemmlowp's helpers) for every shift a blob can hold.
        #[test]
        fn decoded_multiplier_is_tflites(x in any::<i32>(), m in any::<i32>(), shift in -40i32..40) {
            let left = shift.clamp(0, 31).unsigned_abs();
            let right = (-shift).clamp(0, 31).unsigned_abs();
            let want = gemmlowp_rdbp(gemmlowp_srdhm(x.saturating_mul(1 << left), m), right);
            prop_assert_eq!(Multiplier::new(m, shift).apply(x), want);
        }

        /// Where the fast form accepts a channel, it gives the exact path's
        /// int8 for every accumulator within its bound.
        #[test]
        fn fast_requant_is_exact_where_it_accepts(
            m in any::<i32>(),
            shift in -31i32..31,
            zp in -130i32..130,
            bound_bits in 0u32..31,
            fraction in 0u32..=1000,
            negative in any::<bool>(),
        ) {
            let bound = (1u32 << bound_bits) - 1;
            let Some(fast) = FastRequant::new(m, shift, zp, bound) else { return Ok(()) };
            let magnitude = i64::from(bound) * i64::from(fraction) / 1000;
            let acc = i32::try_from(if negative { -magnitude } else { magnitude }).unwrap();
            let exact = Multiplier::new(m, shift).apply(acc).saturating_add(zp).clamp(-128, 127);
            prop_assert_eq!(i32::from(fast.apply(acc)), exact, "acc {} m {} shift {}", acc, m, shift);
            for edge in [-i64::from(bound), i64::from(bound), 0, 1, -1] {
                let acc = i32::try_from(edge).unwrap();
                let exact = Multiplier::new(m, shift).apply(acc).saturating_add(zp).clamp(-128, 127);
                prop_assert_eq!(i32::from(fast.apply(acc)), exact, "edge acc {} m {} shift {}", acc, m, shift);
            }
        }

        /// The rescaling form (any right shift up to 22, none included)
        /// gives [`Multiplier::apply`] exactly, within the bound it states.
        #[test]
        fn fast_rescale_is_exact_within_its_bound(
            m in any::<i32>(),
            shift in -31i32..31,
            bound_bits in 0u32..31,
            fraction in 0u32..=1000,
            negative in any::<bool>(),
        ) {
            let bound = (1u32 << bound_bits) - 1;
            let Some(fast) = FastRequant::new_rescale(m, shift, bound) else { return Ok(()) };
            let magnitude = i64::from(bound) * i64::from(fraction) / 1000;
            for acc in [magnitude, -magnitude, i64::from(bound), -i64::from(bound)] {
                let acc = i32::try_from(if negative { -acc } else { acc }).unwrap();
                let exact = Multiplier::new(m, shift).apply(acc);
                prop_assert_eq!(fast.rescale(acc), exact, "acc {} m {} shift {}", acc, m, shift);
                prop_assert!(exact.unsigned_abs() <= fast.rescaled_bound(bound), "acc {} m {} shift {}", acc, m, shift);
            }
        }

        #[test]
        fn requantisation_matches_real_arithmetic(x in -(1i32 << 24)..(1 << 24), real in 1e-6f64..4.0) {
            let (m, s) = quantize_multiplier(real).unwrap();
            let got = f64::from(multiply_by_quantized_multiplier(x, m, s));
            let want = f64::from(x) * real;
            // Off by at most one step plus the multiplier's 2^-31 relative error.
            prop_assert!((got - want).abs() <= 1.0 + want.abs() * 1e-8, "x {x} real {real}: {got} vs {want}");
        }
    }
}
