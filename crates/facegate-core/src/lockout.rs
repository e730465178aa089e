//! Back-off after repeated rejections, as FIDO authenticators and phone
//! biometrics do: after `free_attempts` consecutive rejects, each further
//! attempt must wait `base_ms · 2^(rejects − free_attempts)` (capped).

/// Lockout policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LockoutPolicy {
    /// Consecutive rejects allowed without delay.
    pub free_attempts: u32,
    /// First delay.
    pub base_ms: u32,
    /// Longest delay.
    pub max_ms: u32,
}

impl LockoutPolicy {
    /// The wait imposed after `rejects` consecutive rejects.
    pub fn delay_after(&self, rejects: u32) -> u64 {
        let over = rejects.saturating_sub(self.free_attempts);
        if over == 0 {
            return 0;
        }
        let factor = 1u64.checked_shl(over - 1).unwrap_or(u64::MAX);
        u64::from(self.base_ms)
            .saturating_mul(factor)
            .min(u64::from(self.max_ms))
    }
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            free_attempts: 5,
            base_ms: 1_000,
            max_ms: 300_000,
        }
    }
}

/// Lockout state: consecutive rejects and when the next attempt is allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lockout {
    rejects: u32,
    not_before_ms: u64,
}

impl Lockout {
    /// `Err(wait_ms)` while locked out at time `now_ms`.
    pub fn check(&self, now_ms: u64) -> Result<(), u64> {
        if now_ms < self.not_before_ms {
            Err(self.not_before_ms - now_ms)
        } else {
            Ok(())
        }
    }

    /// Records an accepted face: the count starts over.
    pub fn accepted(&mut self) {
        *self = Self::default();
    }

    /// Records a rejected face at `now_ms`; returns the delay now in force.
    pub fn rejected(&mut self, policy: &LockoutPolicy, now_ms: u64) -> u64 {
        self.rejects = self.rejects.saturating_add(1);
        let delay = policy.delay_after(self.rejects);
        self.not_before_ms = now_ms.saturating_add(delay);
        delay
    }

    /// The state after a restart with `rejects` consecutive rejects kept in
    /// storage: the delay they earned starts again from `now_ms`, so cutting
    /// the power neither resets the count nor shortens the wait.
    pub fn restore(policy: &LockoutPolicy, rejects: u32, now_ms: u64) -> Self {
        Self {
            rejects,
            not_before_ms: now_ms.saturating_add(policy.delay_after(rejects)),
        }
    }

    /// Consecutive rejects so far.
    pub const fn rejects(&self) -> u32 {
        self.rejects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_free_then_doubling_then_capped() {
        let p = LockoutPolicy::default();
        let mut l = Lockout::default();
        let delays: Vec<u64> = (0..12).map(|i| l.rejected(&p, i * 1_000_000)).collect();
        assert_eq!(
            delays,
            [
                0, 0, 0, 0, 0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000
            ]
        );
        for _ in 0..40 {
            l.rejected(&p, 0);
        }
        assert_eq!(l.rejected(&p, 10), 300_000);
        assert_eq!(l.check(10 + 299_999), Err(1));
        assert_eq!(l.check(10 + 300_000), Ok(()));
        l.accepted();
        assert_eq!((l.rejects(), l.check(0)), (0, Ok(())));
    }

    #[test]
    fn attempts_during_lockout_are_refused_until_the_delay_ends() {
        let p = LockoutPolicy {
            free_attempts: 1,
            base_ms: 500,
            max_ms: 10_000,
        };
        let mut l = Lockout::default();
        assert_eq!(l.rejected(&p, 0), 0);
        assert_eq!(l.rejected(&p, 100), 500);
        assert_eq!(l.check(599), Err(1));
        assert!(l.check(600).is_ok());
    }

    #[test]
    fn a_restored_count_keeps_its_delay_from_the_restart() {
        let p = LockoutPolicy::default();
        assert_eq!(Lockout::restore(&p, 5, 0).check(0), Ok(()));
        let l = Lockout::restore(&p, 7, 100);
        assert_eq!((l.rejects(), l.check(100)), (7, Err(2_000)));
        assert_eq!(l.check(2_100), Ok(()));
    }
}
