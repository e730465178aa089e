//! Requantisation in vector lanes, exact lane by lane.

#[allow(clippy::wildcard_imports)]
use core::arch::x86_64::*;

/// Eight channels' requantisation as vector lanes: the steps of
/// [`crate::engine::kernels::ChannelRequant::apply`] (a saturating left shift, gemmlowp's
/// rounding doubling high multiply, a rounding right shift, the PReLU side
/// chosen by the accumulator's sign), exact lane by lane. A left shift of
/// 31 (a multiplier of 2^31, only in a forged blob) stays scalar.
#[derive(Clone, Copy)]
pub(super) struct Requant8 {
    pos: Scale8,
    neg: Scale8,
}

/// One multiplier per lane: `M0`, left shift, right shift, rounding mask.
#[derive(Clone, Copy)]
pub(super) struct Scale8([__m256i; 4]);

impl Scale8 {
    /// `None` for a left shift of 31.
    pub(super) fn of(m: &[crate::engine::requant::Multiplier]) -> Option<Self> {
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
    pub(super) fn splat(m: crate::engine::requant::Multiplier) -> Option<Self> {
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
    pub(super) fn apply(self, x: __m256i) -> __m256i {
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
pub(super) fn plus_zero_point(v: __m256i, zp: i8) -> __m256i {
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
    pub(super) fn fits(rq: &crate::engine::kernels::ChannelRequant) -> bool {
        rq.pos.parts().1 <= 30 && rq.neg.parts().1 <= 30
    }

    /// `None` when a channel needs a left shift of 31.
    pub(super) fn of(rq: &[crate::engine::kernels::ChannelRequant]) -> Option<Self> {
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
    pub(super) fn apply(self, acc: __m256i, zp: i8) -> __m256i {
        let negative = _mm256_cmpgt_epi32(_mm256_setzero_si256(), acc);
        plus_zero_point(self.neg.select(self.pos, negative).apply(acc), zp)
    }
}
