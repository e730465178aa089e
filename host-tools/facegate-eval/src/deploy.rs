//! Threshold advice: the door threshold for a target FAR, as a small file
//! that enrollment and provisioning read.

use serde::{Deserialize, Serialize};

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
}

impl DeploymentAdvice {
    /// TOML text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).unwrap_or_default();
        format!("# facegate deployment threshold, written by `facegate eval`\n{body}")
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
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
        };
        assert_eq!(DeploymentAdvice::from_toml(&a.to_toml()).unwrap(), a);
    }
}
