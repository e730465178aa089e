//! Threshold advice: the door threshold for a target FAR, as a small file
//! that enrollment and provisioning read.

use serde::{Deserialize, Serialize};

use crate::roc::OperatingPoint;

/// What a deployment needs to know about a model's operating point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentAdvice {
    /// Hex SHA-256 of the model the threshold belongs to.
    pub model_hash: String,
    /// Model name, for people.
    pub model: String,
    /// The false accept rate aimed at.
    pub target_far: f64,
    /// Accept when cosine ≥ this.
    pub threshold: f64,
    /// FAR measured at that threshold.
    pub measured_far: f64,
    /// TAR expected at that threshold (measured on `measured_on`).
    pub expected_tar: f64,
    /// Where it was measured, e.g. "LFW all pairs (241,944 genuine, 87,303,816 impostor)".
    pub measured_on: String,
    /// Whether embeddings were flip-tested (the device must do the same).
    pub flip_test: bool,
    /// One-to-one operating points from FAR 1e-2 down to what the impostor
    /// count resolves, threshold rising: a door compares a stranger with
    /// every enrolled template, so its threshold depends on how many there
    /// are (see [`Self::open_set_far`]). Empty in files written before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub far_curve: Vec<OperatingPoint>,
    /// The FAR measured at `threshold` on people and sources the threshold
    /// was not chosen on: how far the promise carries. Empty when not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out: Vec<HeldOutCheck>,
}

/// The false accept rate of a deployment threshold on a set it was not chosen on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutCheck {
    /// The set, e.g. "ORL (grey, 40 people; MTCNN-aligned)".
    pub set: String,
    /// Stranger pairs compared.
    pub impostor_pairs: u64,
    /// Share of them accepted at the threshold.
    pub far: f64,
}

/// Boards hold thresholds as `f32`: 0.9141 comes back as 0.91409999…, which
/// must still count as the curve's 0.9141 point (the curve's thresholds are
/// 1e-4 apart, far above this).
const F32_SLACK: f64 = 1e-6;

/// The one-to-one FARs the deployment file keeps a point for (where the
/// measurement resolves them): three per decade.
pub const CURVE_FARS: [f64; 16] = [
    1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6, 5e-7, 2e-7, 1e-7,
];

impl DeploymentAdvice {
    /// TOML text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_default();
        format!(
            "# facegate deployment threshold, written by `facegate eval`\n\
             # far_curve: one-to-one operating points, threshold rising; `facegate\n\
             # provision --open-set-far P` picks from them by the site's template count.\n{body}"
        )
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// An upper bound on the chance that a stranger is accepted by a door
    /// holding `templates` templates at `threshold`: `templates` × the
    /// one-to-one FAR of the curve's nearest point at or below `threshold`
    /// (the union bound; templates of one person are correlated, so the
    /// measured rate is lower — 9.3 % against a bound of 15 % for 150
    /// templates of the shipped `mfn`). `None` without a curve, or below its
    /// lowest threshold (a one-to-one FAR above 1e-2).
    pub fn open_set_far(&self, threshold: f64, templates: usize) -> Option<f64> {
        let p = self
            .far_curve
            .iter()
            .rev()
            .find(|p| p.threshold <= threshold + F32_SLACK)?;
        Some((templates as f64 * p.far).min(1.0))
    }

    /// The lowest curve threshold whose [`Self::open_set_far`] bound for
    /// `templates` templates is at most `target`: the most genuine accepts
    /// the bound allows. `None` when even the curve's strictest point
    /// exceeds it.
    pub fn threshold_for_open_set_far(
        &self,
        target: f64,
        templates: usize,
    ) -> Option<OperatingPoint> {
        self.far_curve
            .iter()
            .find(|p| templates as f64 * p.far <= target)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip() {
        let a = DeploymentAdvice {
            model_hash: "ab".repeat(32),
            model: "m".into(),
            target_far: 1e-3,
            threshold: 0.4321,
            measured_far: 9.9e-4,
            expected_tar: 0.87,
            measured_on: "LFW all pairs".into(),
            flip_test: true,
            far_curve: vec![
                point(0.80, 1e-2, 0.95),
                point(0.85, 1e-3, 0.80),
                point(0.90, 1e-4, 0.50),
            ],
            held_out: vec![HeldOutCheck {
                set: "ORL".into(),
                impostor_pairs: 76_830,
                far: 3e-4,
            }],
        };
        assert_eq!(DeploymentAdvice::from_toml(&a.to_toml()).unwrap(), a);
        // A file written before the curve existed still reads, without one.
        let old = a
            .to_toml()
            .split("[[far_curve]]")
            .next()
            .unwrap()
            .to_string();
        let b = DeploymentAdvice::from_toml(&old).unwrap();
        assert!(b.far_curve.is_empty());
        assert_eq!(b.open_set_far(0.9, 10), None);
    }

    fn point(threshold: f64, far: f64, tar: f64) -> OperatingPoint {
        OperatingPoint {
            threshold,
            far,
            tar,
        }
    }

    #[test]
    fn open_set_bound_and_threshold_for_it() {
        let a = DeploymentAdvice {
            model_hash: String::new(),
            model: String::new(),
            target_far: 1e-3,
            threshold: 0.85,
            measured_far: 1e-3,
            expected_tar: 0.8,
            measured_on: String::new(),
            flip_test: false,
            far_curve: vec![
                point(0.80, 1e-2, 0.95),
                point(0.85, 1e-3, 0.80),
                point(0.90, 1e-4, 0.50),
            ],
            held_out: Vec::new(),
        };
        // 12 templates at 0.85: 12 × 1e-3; between points the lower one's FAR (conservative).
        assert!((a.open_set_far(0.85, 12).unwrap() - 0.012).abs() < 1e-12);
        assert!((a.open_set_far(0.87, 12).unwrap() - 0.012).abs() < 1e-12);
        assert!((a.open_set_far(0.95, 12).unwrap() - 0.0012).abs() < 1e-12);
        assert_eq!(a.open_set_far(0.80, 1000), Some(1.0));
        assert_eq!(a.open_set_far(0.79, 1), None);
        // The board's f32 copy of a curve threshold (0.9141 reads back as
        // 0.91409999…) is that point, not the one below it.
        assert!(f64::from(0.9141f32) < 0.9141);
        let f32_copy = 0.85 - (0.9141 - f64::from(0.9141f32));
        assert!((a.open_set_far(f32_copy, 12).unwrap() - 0.012).abs() < 1e-12);
        // 1 % open-set with 12 templates needs 1:1 FAR ≤ 8.3e-4: the 1e-4 point.
        assert_eq!(
            a.threshold_for_open_set_far(0.01, 12),
            Some(point(0.90, 1e-4, 0.50))
        );
        assert_eq!(
            a.threshold_for_open_set_far(0.02, 12),
            Some(point(0.85, 1e-3, 0.80))
        );
        assert_eq!(a.threshold_for_open_set_far(1e-4, 12), None);
    }
}
