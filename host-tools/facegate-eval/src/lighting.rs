//! Faces under other light: grey and side-lit copies of a set, and a door
//! threshold that holds under all of them.
//!
//! A threshold chosen on colour LFW alone promised FAR 1e-3 and let 3–4×
//! more strangers through on other sources, and on grey side-lit faces a
//! quarter of them: when light dominates a face, every two faces look more
//! alike. So the deployment threshold is the strictest of the thresholds
//! each lighting needs ([`strictest_advice`]), and faces from sources it was
//! not chosen on check the promise (the model card's robustness rows).

use serde::Serialize;

use crate::deploy::{CURVE_FARS, DeploymentAdvice};
use crate::faces::{FACE_SIZE, Face};
use crate::roc::{OperatingPoint, Roc, ScoreHistogram};

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

/// The share of `impostor` scores at or above `threshold`, counted from the
/// histogram bin that holds it (the conservative side: a whole bin more
/// than the exact count at most). `None` for an empty histogram.
pub fn far_at(impostor: &ScoreHistogram, threshold: f64) -> Option<f64> {
    let total = impostor.total();
    if total == 0 {
        return None;
    }
    // Edges rise with the index; the last edge at or below the threshold
    // counts every score that could be accepted.
    let k = (0..=impostor.len())
        .take_while(|&k| impostor.edge(k) <= threshold + 1e-9)
        .last()
        .unwrap_or(0);
    let above: u64 = impostor.counts()[k.min(impostor.len())..].iter().sum();
    Some(above as f64 / total as f64)
}

/// The deployment advice that holds under every lighting in `rocs` (all
/// pairs of the same set, the first the stored faces): each curve point
/// takes the strictest threshold any lighting needs for that FAR, its FAR
/// is the worst lighting's there, its TAR the stored faces'. `None` when
/// `target_far` is not resolvable in some lighting.
pub fn strictest_advice(
    rocs: &[(Lighting, &Roc)],
    target_far: f64,
    model_hash: &str,
    model: String,
    set_name: &str,
) -> Option<DeploymentAdvice> {
    let (_, stored) = rocs.first()?;
    let pooled = |far: f64| -> Option<OperatingPoint> {
        let threshold = rocs
            .iter()
            .map(|(_, r)| r.tar_at_far(far).map(|p| p.threshold))
            .try_fold(f64::NEG_INFINITY, |m, t| t.map(|t| m.max(t)))?;
        let worst_far = rocs
            .iter()
            .map(|(_, r)| r.at_threshold(threshold).far)
            .fold(0.0, f64::max);
        Some(OperatingPoint {
            threshold,
            far: worst_far,
            tar: stored.at_threshold(threshold).tar,
        })
    };
    let point = pooled(target_far)?;
    let mut far_curve: Vec<OperatingPoint> = CURVE_FARS.iter().filter_map(|&f| pooled(f)).collect();
    far_curve.dedup_by(|a, b| a.threshold == b.threshold);
    let names: Vec<&str> = rocs.iter().map(|(l, _)| l.name()).collect();
    Some(DeploymentAdvice {
        model_hash: model_hash.into(),
        model,
        target_far,
        threshold: point.threshold,
        measured_far: point.far,
        expected_tar: point.tar,
        measured_on: format!(
            "{set_name} all pairs ({} genuine, {} impostor), the strictest threshold of {} light; FAR the worst of them, TAR on the stored faces",
            stored.genuine,
            stored.impostor,
            names.join(", ")
        ),
        flip_test: false,
        far_curve,
        held_out: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc::DEFAULT_BINS;

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

    fn roc_of(genuine: &[f32], impostor: &[f32]) -> Roc {
        let (mut g, mut i) = (
            ScoreHistogram::new(DEFAULT_BINS),
            ScoreHistogram::new(DEFAULT_BINS),
        );
        genuine.iter().for_each(|&s| g.add(s));
        impostor.iter().for_each(|&s| i.add(s));
        Roc::new(&g, &i).unwrap()
    }

    #[test]
    fn the_strictest_lighting_sets_the_threshold() {
        // 1000 impostors each; under grey light they score 0.3 higher.
        let imp: Vec<f32> = (0..1000).map(|k| k as f32 / 2000.0).collect();
        let grey_imp: Vec<f32> = imp.iter().map(|s| s + 0.3).collect();
        let genuine: Vec<f32> = (0..100).map(|k| 0.5 + k as f32 / 250.0).collect();
        let colour = roc_of(&genuine, &imp);
        let grey = roc_of(&genuine, &grey_imp);
        let t_colour = colour.tar_at_far(1e-2).unwrap().threshold;
        let t_grey = grey.tar_at_far(1e-2).unwrap().threshold;
        assert!(t_grey > t_colour + 0.25, "{t_colour} {t_grey}");
        let a = strictest_advice(
            &[(Lighting::Colour, &colour), (Lighting::Grey, &grey)],
            1e-2,
            "ab",
            "m".into(),
            "set",
        )
        .unwrap();
        assert_eq!(a.threshold, t_grey);
        assert!(a.measured_far <= 1e-2 && a.measured_far > 0.0);
        // The TAR is the stored faces' at the strict threshold: lower than at their own.
        assert!(a.expected_tar < colour.tar_at_far(1e-2).unwrap().tar);
        assert_eq!(a.expected_tar, colour.at_threshold(t_grey).tar);
        // Colour alone gives its own threshold back.
        let c = strictest_advice(
            &[(Lighting::Colour, &colour)],
            1e-2,
            "ab",
            "m".into(),
            "set",
        )
        .unwrap();
        assert_eq!(c.threshold, t_colour);
        // A FAR no lighting resolves gives no advice.
        assert!(
            strictest_advice(&[(Lighting::Colour, &colour)], 1e-4, "", "m".into(), "s").is_none()
        );
    }

    #[test]
    fn far_at_counts_scores_from_the_threshold_up() {
        let mut h = ScoreHistogram::new(DEFAULT_BINS);
        for s in [0.1f32, 0.5, 0.9, 0.95] {
            h.add(s);
        }
        assert_eq!(far_at(&h, 0.0), Some(1.0));
        assert_eq!(far_at(&h, 0.7), Some(0.5));
        assert_eq!(far_at(&h, 0.99), Some(0.0));
        assert_eq!(far_at(&ScoreHistogram::new(8), 0.5), None);
    }
}
