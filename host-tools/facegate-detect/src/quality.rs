//! Quality gates for enrollment photos: a template is only as good as the
//! photo it came from, so small, blurred or turned faces are refused with
//! the measured value and the limit.

use facegate_core::align::FACE_SIDE;

use crate::mtcnn::Detection;

/// Measurements of one detected, aligned face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quality {
    /// Distance between the eyes in the original photo (pixels): the
    /// resolution the template is built from.
    pub eye_distance: f32,
    /// Variance of the Laplacian over the aligned crop's centre (grey
    /// levels²): low means blurred.
    pub sharpness: f32,
    /// Horizontal head turn: where the nose sits between the eyes, −1 (at the
    /// left eye) … 0 (frontal) … 1 (at the right eye), roll removed.
    pub yaw: f32,
    /// Vertical tilt: where the nose sits between the eye line and the mouth
    /// line, −1 … 0 (frontal) … 1, roll removed.
    pub pitch: f32,
    /// Detector confidence.
    pub score: f32,
}

/// Limits a photo must meet to become a template.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityGates {
    /// Smallest eye distance, pixels.
    pub min_eye_distance: f32,
    /// Smallest sharpness.
    pub min_sharpness: f32,
    /// Largest |yaw|.
    pub max_yaw: f32,
    /// Largest |pitch|.
    pub max_pitch: f32,
}

impl Default for QualityGates {
    /// Calibrated on `lfw/raw_subset` (see the crate's tests): nearly every
    /// LFW photo passes, a 3-pixel Gaussian blur or a profile view does not.
    fn default() -> Self {
        Self {
            min_eye_distance: 20.0,
            min_sharpness: 30.0,
            max_yaw: 0.6,
            max_pitch: 0.6,
        }
    }
}

/// Why a face fails the gates (the first gate it fails).
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum GateFailure {
    /// Too few pixels across the face.
    #[error(
        "face too small: eyes {got:.0} px apart, at least {min:.0} needed (use a closer or larger photo)"
    )]
    TooSmall {
        /// Measured.
        got: f32,
        /// Limit.
        min: f32,
    },
    /// Too blurred.
    #[error(
        "face too blurred: sharpness {got:.0}, at least {min:.0} needed (hold still, focus, more light)"
    )]
    Blurred {
        /// Measured.
        got: f32,
        /// Limit.
        min: f32,
    },
    /// Head turned sideways.
    #[error("head turned sideways: yaw {got:+.2}, at most ±{max:.2} (face the camera)")]
    Turned {
        /// Measured.
        got: f32,
        /// Limit.
        max: f32,
    },
    /// Head tilted up or down.
    #[error("head tilted: pitch {got:+.2}, at most ±{max:.2} (face the camera)")]
    Tilted {
        /// Measured.
        got: f32,
        /// Limit.
        max: f32,
    },
}

impl QualityGates {
    /// `Ok` when `q` meets every limit.
    pub fn check(&self, q: &Quality) -> Result<(), GateFailure> {
        if q.eye_distance < self.min_eye_distance {
            return Err(GateFailure::TooSmall {
                got: q.eye_distance,
                min: self.min_eye_distance,
            });
        }
        if q.sharpness < self.min_sharpness {
            return Err(GateFailure::Blurred {
                got: q.sharpness,
                min: self.min_sharpness,
            });
        }
        if q.yaw.abs() > self.max_yaw {
            return Err(GateFailure::Turned {
                got: q.yaw,
                max: self.max_yaw,
            });
        }
        if q.pitch.abs() > self.max_pitch {
            return Err(GateFailure::Tilted {
                got: q.pitch,
                max: self.max_pitch,
            });
        }
        Ok(())
    }
}

/// Pose from the landmarks, in the frame of the eye line (roll removed).
fn pose(lm: &[[f32; 2]; 5]) -> (f32, f32, f32) {
    let [le, re, nose, ml, mr] = *lm;
    let (dx, dy) = (re[0] - le[0], re[1] - le[1]);
    let eye_distance = dx.hypot(dy);
    if eye_distance < 1e-3 {
        return (0.0, 1.0, 1.0);
    }
    let (ux, uy) = (dx / eye_distance, dy / eye_distance);
    // Coordinates along the eye line (u) and across it (v), from the left eye.
    let along = |p: [f32; 2]| (p[0] - le[0]) * ux + (p[1] - le[1]) * uy;
    let across = |p: [f32; 2]| -(p[0] - le[0]) * uy + (p[1] - le[1]) * ux;
    let yaw = 2.0 * along(nose) / eye_distance - 1.0;
    let mouth = f32::midpoint(across(ml), across(mr));
    let eye_line = across(re) / 2.0;
    let span = mouth - eye_line;
    let pitch = if span.abs() < 1e-3 {
        1.0
    } else {
        2.0 * (across(nose) - eye_line) / span - 1.0
    };
    (eye_distance, yaw, pitch)
}

/// Variance of the 4-neighbour Laplacian of the grey aligned crop over its
/// central 64×64 (the face, not the background).
pub fn sharpness(aligned: &[u8; FACE_SIDE * FACE_SIDE * 3]) -> f32 {
    let grey = |x: usize, y: usize| {
        let i = (y * FACE_SIDE + x) * 3;
        0.299 * f32::from(aligned[i])
            + 0.587 * f32::from(aligned[i + 1])
            + 0.114 * f32::from(aligned[i + 2])
    };
    let (lo, hi) = (24, 88);
    let mut values = Vec::with_capacity((hi - lo) * (hi - lo));
    for y in lo..hi {
        for x in lo..hi {
            values.push(
                grey(x - 1, y) + grey(x + 1, y) + grey(x, y - 1) + grey(x, y + 1)
                    - 4.0 * grey(x, y),
            );
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n
}

/// Measures a detected face and its aligned crop.
pub fn measure(d: &Detection, aligned: &[u8; FACE_SIDE * FACE_SIDE * 3]) -> Quality {
    let (eye_distance, yaw, pitch) = pose(&d.landmarks);
    Quality {
        eye_distance,
        sharpness: sharpness(aligned),
        yaw,
        pitch,
        score: d.score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_core::align::ARCFACE_TEMPLATE;

    #[test]
    fn the_template_is_frontal_and_pose_survives_rotation_and_scale() {
        let (eyes, yaw, pitch) = pose(&ARCFACE_TEMPLATE);
        assert!((eyes - 35.24).abs() < 0.1, "{eyes}");
        assert!(yaw.abs() < 0.02 && pitch.abs() < 0.15, "{yaw} {pitch}");
        let (c, s) = (0.5f32.cos(), 0.5f32.sin());
        let turned = ARCFACE_TEMPLATE
            .map(|[x, y]| [3.0 * (c * x - s * y) + 40.0, 3.0 * (s * x + c * y) - 9.0]);
        let (eyes2, yaw2, pitch2) = pose(&turned);
        assert!((eyes2 - 3.0 * eyes).abs() < 0.1);
        assert!((yaw2 - yaw).abs() < 1e-3 && (pitch2 - pitch).abs() < 1e-3);
        // The nose over the left eye: turned far to one side.
        let mut profile = ARCFACE_TEMPLATE;
        profile[2][0] = profile[0][0];
        assert!((pose(&profile).1 + 1.0).abs() < 0.02);
    }

    #[test]
    fn a_flat_crop_has_no_sharpness_and_a_checkerboard_a_lot() {
        let flat = [128u8; FACE_SIDE * FACE_SIDE * 3];
        assert!(sharpness(&flat) < 1e-6);
        let mut board = flat;
        for (i, px) in board.chunks_exact_mut(3).enumerate() {
            let v = if (i % FACE_SIDE + i / FACE_SIDE) % 2 == 0 {
                0
            } else {
                255
            };
            px.fill(v);
        }
        assert!(sharpness(&board) > 1e5);
    }

    #[test]
    fn gates_name_the_first_limit_failed() {
        let gates = QualityGates::default();
        let good = Quality {
            eye_distance: 40.0,
            sharpness: 200.0,
            yaw: 0.1,
            pitch: -0.1,
            score: 0.99,
        };
        assert_eq!(gates.check(&good), Ok(()));
        let small = Quality {
            eye_distance: 10.0,
            ..good
        };
        assert!(matches!(
            gates.check(&small),
            Err(GateFailure::TooSmall { .. })
        ));
        let blurred = Quality {
            sharpness: 1.0,
            ..good
        };
        assert!(matches!(
            gates.check(&blurred),
            Err(GateFailure::Blurred { .. })
        ));
        let turned = Quality { yaw: -0.9, ..good };
        assert!(matches!(
            gates.check(&turned),
            Err(GateFailure::Turned { .. })
        ));
        let tilted = Quality { pitch: 0.9, ..good };
        assert!(matches!(
            gates.check(&tilted),
            Err(GateFailure::Tilted { .. })
        ));
    }
}
