//! Faces under other light: grey and side-lit copies of a set.
//!
//! A threshold chosen on colour LFW alone promised FAR 1e-3 and let 3–4×
//! more strangers through on other sources, and on grey side-lit faces a
//! quarter of them: when light dominates a face, every two faces look more
//! alike. So each lighting is a stranger condition of its own, and the
//! deployment threshold is the strictest any of them needs
//! ([`crate::calibration::strictest_advice`]).

use serde::Serialize;

use crate::faces::{FACE_SIZE, Face};

/// How a face is lit for an evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lighting {
    /// The face as stored.
    #[default]
    Colour,
    /// Luma only (Rec. 601), as an infrared or cheap mono camera sees it.
    Grey,
    /// Light from one side: brightness falls linearly from 130 % on the
    /// lit side to 20 % on the other (even images lit from the left, odd
    /// from the right, so a person's photos disagree).
    SideLit,
    /// Both.
    GreySideLit,
}

/// Brightness at the lit and the dark edge of a side-lit face.
const LIT_GAIN: f32 = 1.3;
const DARK_GAIN: f32 = 0.2;

impl Lighting {
    /// Every lighting, the stored faces first.
    pub const ALL: [Self; 4] = [Self::Colour, Self::Grey, Self::SideLit, Self::GreySideLit];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Colour => "colour",
            Self::Grey => "grey",
            Self::SideLit => "side-lit",
            Self::GreySideLit => "grey side-lit",
        }
    }

    /// What an embedding cache key adds for this lighting (`None`: the
    /// stored faces, whose keys predate lighting).
    pub fn cache_tag(self) -> Option<&'static str> {
        match self {
            Self::Colour => None,
            Self::Grey => Some("grey/v1"),
            Self::SideLit => Some("side-lit/v1"),
            Self::GreySideLit => Some("grey-side-lit/v1"),
        }
    }

    /// `face` under this light; `index` (the face's position in its set)
    /// picks the side the light comes from.
    pub fn apply(self, face: &Face, index: usize) -> Face {
        let (grey, side) = match self {
            Self::Colour => return face.clone(),
            Self::Grey => (true, false),
            Self::SideLit => (false, true),
            Self::GreySideLit => (true, true),
        };
        let w = FACE_SIZE as usize;
        let from_left = index % 2 == 0;
        let mut rgb = face.rgb.clone();
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            if grey {
                let y =
                    0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2]);
                px.fill(y.round().clamp(0.0, 255.0) as u8);
            }
            if side {
                let x = (i % w) as f32 / (w - 1) as f32;
                let lit = if from_left { 1.0 - x } else { x };
                let gain = DARK_GAIN + (LIT_GAIN - DARK_GAIN) * lit;
                for c in px.iter_mut() {
                    *c = (f32::from(*c) * gain).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        Face { rgb }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face() -> Face {
        let n = (FACE_SIZE * FACE_SIZE) as usize;
        Face {
            rgb: (0..n).flat_map(|i| [200, (i % 251) as u8, 30]).collect(),
        }
    }

    #[test]
    fn grey_has_equal_channels_and_keeps_luma() {
        let g = Lighting::Grey.apply(&face(), 0);
        assert!(g.rgb.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        // (200, 0, 30): 0.299·200 + 0.114·30 = 63.2.
        assert_eq!(g.rgb[0], 63);
        assert_eq!(Lighting::Colour.apply(&face(), 3), face());
    }

    #[test]
    fn side_light_darkens_the_far_side_and_alternates() {
        let w = FACE_SIZE as usize;
        let flat = Face {
            rgb: vec![100; w * w * 3],
        };
        let left = Lighting::SideLit.apply(&flat, 0);
        let right = Lighting::SideLit.apply(&flat, 1);
        let at = |f: &Face, x: usize| f.rgb[(50 * w + x) * 3];
        assert_eq!((at(&left, 0), at(&left, w - 1)), (130, 20));
        assert_eq!((at(&right, 0), at(&right, w - 1)), (20, 130));
        let gs = Lighting::GreySideLit.apply(&face(), 0);
        assert!(gs.rgb.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_ne!(gs, Lighting::Grey.apply(&face(), 0));
    }
}
