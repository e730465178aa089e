//! Door thresholds that keep their promise beyond the faces they were
//! chosen on.
//!
//! A threshold chosen on LFW's celebrities alone promised FAR 1e-3 and let
//! 1.1–4.4× more adult strangers through on UTKFace (other ages, other
//! ethnicities, other photographers), 3.7× for pairs of the same gender and
//! ethnicity: LFW's random pairs are mostly people who look nothing alike.
//! So the threshold is the strictest that any of several *stranger
//! conditions* needs — sets from different sources, each under several
//! lightings ([`strictest_advice`]) — and [`leave_one_source_out`] measures
//! how well such a promise carries to a source it was not chosen on.

use serde::{Deserialize, Serialize};

use crate::deploy::{CURVE_FARS, DeploymentAdvice};
use crate::roc::{OperatingPoint, Roc, ScoreHistogram};

/// The false accept rate at each bin edge of one set of stranger scores.
#[derive(Clone, Debug, PartialEq)]
pub struct FarCurve {
    /// `(threshold, FAR)` per edge, threshold rising.
    points: Vec<(f64, f64)>,
    impostor: u64,
}

impl FarCurve {
    /// The curve of an impostor histogram; `None` when it is empty.
    pub fn from_impostors(impostor: &ScoreHistogram) -> Option<Self> {
        let total = impostor.total();
        if total == 0 {
            return None;
        }
        let mut above = total;
        let mut points = Vec::with_capacity(impostor.len() + 1);
        for (k, &c) in impostor.counts().iter().enumerate() {
            points.push((impostor.edge(k), above as f64 / total as f64));
            above -= c;
        }
        points.push((impostor.edge(impostor.len()), 0.0));
        Some(Self {
            points,
            impostor: total,
        })
    }

    /// The impostor side of a ROC.
    pub fn from_roc(roc: &Roc) -> Self {
        Self {
            points: roc.points.iter().map(|p| (p.threshold, p.far)).collect(),
            impostor: roc.impostor,
        }
    }

    /// Stranger pairs counted.
    pub fn impostor_pairs(&self) -> u64 {
        self.impostor
    }

    /// The lowest threshold whose FAR is at most `target` (as
    /// [`Roc::tar_at_far`] picks it), or `None` when `target` is below one
    /// stranger pair of the set.
    pub fn threshold_for(&self, target: f64) -> Option<f64> {
        if target * (self.impostor as f64) < 1.0 {
            return None;
        }
        self.points.iter().find(|p| p.1 <= target).map(|p| p.0)
    }

    /// The FAR at `threshold`, from the bin edge at or below it (never understated).
    pub fn far_at(&self, threshold: f64) -> f64 {
        self.points
            .iter()
            .take_while(|p| p.0 <= threshold + 1e-9)
            .last()
            .map_or(1.0, |p| p.1)
    }
}

/// Strangers of one source under one condition (e.g. LFW, grey side-lit).
#[derive(Clone, Debug)]
pub struct Strangers {
    /// Where the faces come from, e.g. "LFW"; conditions of one source are
    /// left out together by [`leave_one_source_out`].
    pub source: String,
    /// The condition, e.g. "grey side-lit".
    pub condition: String,
    /// Their FAR at each threshold.
    pub curve: FarCurve,
}

impl Strangers {
    /// "source, condition".
    pub fn name(&self) -> String {
        format!("{}, {}", self.source, self.condition)
    }
}

/// The strictest threshold any of `strangers` needs for `far`, and the
/// worst FAR among them there. `None` when one of them cannot resolve `far`.
fn pooled(strangers: &[&Strangers], far: f64) -> Option<(f64, f64)> {
    let threshold = strangers
        .iter()
        .map(|s| s.curve.threshold_for(far))
        .try_fold(f64::NEG_INFINITY, |m, t| t.map(|t| m.max(t)))?;
    let worst = strangers
        .iter()
        .map(|s| s.curve.far_at(threshold))
        .fold(0.0, f64::max);
    Some((threshold, worst))
}

/// The deployment advice that holds for every set of `strangers`: each
/// curve point takes the strictest threshold any of them needs for that
/// FAR, its FAR is the worst of them there, its TAR `genuine`'s (the
/// labelled faces owners are measured on, described by `tar_on`). `None`
/// when `strangers` is empty or one of them cannot resolve `target_far`.
pub fn strictest_advice(
    genuine: &Roc,
    tar_on: &str,
    strangers: &[Strangers],
    target_far: f64,
    model_hash: &str,
    model: String,
) -> Option<DeploymentAdvice> {
    if strangers.is_empty() {
        return None;
    }
    let all: Vec<&Strangers> = strangers.iter().collect();
    let point = |far: f64| {
        pooled(&all, far).map(|(threshold, worst)| OperatingPoint {
            threshold,
            far: worst,
            tar: genuine.at_threshold(threshold).tar,
        })
    };
    let chosen = point(target_far)?;
    let mut far_curve: Vec<OperatingPoint> = CURVE_FARS.iter().filter_map(|&f| point(f)).collect();
    far_curve.dedup_by(|a, b| a.threshold == b.threshold);
    let names: Vec<String> = strangers
        .iter()
        .map(|s| format!("{} ({} pairs)", s.name(), s.curve.impostor_pairs()))
        .collect();
    Some(DeploymentAdvice {
        model_hash: model_hash.into(),
        model,
        target_far,
        threshold: chosen.threshold,
        measured_far: chosen.far,
        expected_tar: chosen.tar,
        measured_on: format!(
            "the strictest threshold of {} stranger sets: {}; FAR the worst of them, TAR on {tar_on} ({} genuine pairs)",
            strangers.len(),
            names.join("; "),
            genuine.genuine,
        ),
        flip_test: false,
        far_curve,
        held_out: Vec::new(),
    })
}

/// How a promise made without one source held on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// The source left out.
    pub left_out: String,
    /// The threshold the other sources chose.
    pub threshold: f64,
    /// The FAR they promised there (their worst).
    pub promised_far: f64,
    /// The left-out source's worst FAR there.
    pub far: f64,
}

impl Transfer {
    /// Measured over promised: above 1 the promise did not hold.
    pub fn ratio(&self) -> f64 {
        if self.promised_far > 0.0 {
            self.far / self.promised_far
        } else {
            f64::INFINITY
        }
    }
}

/// For each source, the threshold the other sources choose for
/// `target_far` and the FAR it gives on the one left out: how far a
/// promise carries to people and photos it was not chosen on. Sources whose
/// others cannot resolve `target_far` (or that are all there is) are skipped.
pub fn leave_one_source_out(strangers: &[Strangers], target_far: f64) -> Vec<Transfer> {
    let mut sources: Vec<&str> = Vec::new();
    for s in strangers {
        if !sources.contains(&s.source.as_str()) {
            sources.push(&s.source);
        }
    }
    sources
        .iter()
        .filter_map(|&left_out| {
            let others: Vec<&Strangers> =
                strangers.iter().filter(|s| s.source != left_out).collect();
            if others.is_empty() {
                return None;
            }
            let (threshold, promised_far) = pooled(&others, target_far)?;
            let far = strangers
                .iter()
                .filter(|s| s.source == left_out)
                .map(|s| s.curve.far_at(threshold))
                .fold(0.0, f64::max);
            Some(Transfer {
                left_out: left_out.into(),
                threshold,
                promised_far,
                far,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc::DEFAULT_BINS;

    fn hist(scores: impl IntoIterator<Item = f32>) -> ScoreHistogram {
        let mut h = ScoreHistogram::new(DEFAULT_BINS);
        scores.into_iter().for_each(|s| h.add(s));
        h
    }

    fn strangers(source: &str, condition: &str, scores: &[f32]) -> Strangers {
        Strangers {
            source: source.into(),
            condition: condition.into(),
            curve: FarCurve::from_impostors(&hist(scores.iter().copied())).unwrap(),
        }
    }

    /// 1000 impostor scores spread over [shift, shift + 0.5).
    fn spread(shift: f32) -> Vec<f32> {
        (0..1000).map(|k| shift + k as f32 / 2000.0).collect()
    }

    #[test]
    fn far_curve_agrees_with_the_roc() {
        let imp = spread(0.0);
        let genuine = hist((0..100).map(|k| 0.5 + k as f32 / 250.0));
        let roc = Roc::new(&genuine, &hist(imp.iter().copied())).unwrap();
        let a = FarCurve::from_roc(&roc);
        let b = FarCurve::from_impostors(&hist(imp.iter().copied())).unwrap();
        assert_eq!(a, b);
        for far in [0.5, 1e-1, 1e-2, 1e-3] {
            assert_eq!(
                a.threshold_for(far),
                roc.tar_at_far(far).map(|p| p.threshold)
            );
        }
        assert_eq!(
            a.threshold_for(1e-4),
            None,
            "one pair in 1000 is the finest"
        );
        for t in [-1.0, 0.0, 0.25, 0.4999, 0.7, 1.0] {
            assert_eq!(a.far_at(t), roc.at_threshold(t).far, "{t}");
        }
        assert!(FarCurve::from_impostors(&ScoreHistogram::new(8)).is_none());
    }

    #[test]
    fn far_at_counts_scores_from_the_threshold_up() {
        let c = FarCurve::from_impostors(&hist([0.1, 0.5, 0.9, 0.95])).unwrap();
        assert_eq!(c.far_at(0.0), 1.0);
        assert_eq!(c.far_at(0.7), 0.5);
        assert_eq!(c.far_at(0.99), 0.0);
    }

    #[test]
    fn the_strictest_stranger_set_sets_the_threshold() {
        let genuine_scores: Vec<f32> = (0..100).map(|k| 0.5 + k as f32 / 250.0).collect();
        let lfw = strangers("LFW", "colour", &spread(0.0));
        // Strangers from elsewhere who look more alike: 0.3 higher.
        let other = strangers("other", "colour", &spread(0.3));
        let genuine = Roc::new(&hist(genuine_scores), &hist(spread(0.0))).unwrap();
        let a = strictest_advice(
            &genuine,
            "g",
            &[lfw.clone(), other.clone()],
            1e-2,
            "ab",
            "m".into(),
        )
        .unwrap();
        let t_other = other.curve.threshold_for(1e-2).unwrap();
        assert!(t_other > lfw.curve.threshold_for(1e-2).unwrap() + 0.25);
        assert_eq!(a.threshold, t_other);
        assert!(a.measured_far <= 1e-2 && a.measured_far > 0.0);
        assert_eq!(a.expected_tar, genuine.at_threshold(t_other).tar);
        assert!(
            a.measured_on.contains("LFW, colour (1000 pairs)"),
            "{}",
            a.measured_on
        );
        // The curve rises in threshold and holds every set at each point.
        assert!(
            a.far_curve
                .windows(2)
                .all(|w| w[0].threshold < w[1].threshold)
        );
        for p in &a.far_curve {
            assert!(
                other.curve.far_at(p.threshold) <= p.far && lfw.curve.far_at(p.threshold) <= p.far
            );
        }
        // A FAR one set cannot resolve gives no advice; nor do no sets.
        assert!(
            strictest_advice(&genuine, "g", &[lfw.clone(), other], 1e-4, "", "m".into()).is_none()
        );
        assert!(strictest_advice(&genuine, "g", &[], 1e-2, "", "m".into()).is_none());
    }

    #[test]
    fn leaving_a_harder_source_out_breaks_the_promise() {
        let sets = [
            strangers("LFW", "colour", &spread(0.0)),
            strangers("LFW", "grey", &spread(0.05)),
            strangers("other", "colour", &spread(0.3)),
        ];
        let t = leave_one_source_out(&sets, 1e-2);
        assert_eq!(t.len(), 2);
        // Chosen on LFW (its grey copy the strictest), checked on the other source.
        assert_eq!(t[1].left_out, "other");
        assert_eq!(t[1].threshold, sets[1].curve.threshold_for(1e-2).unwrap());
        assert!(t[1].ratio() > 10.0, "{t:?}");
        // Chosen on the harder source: LFW's strangers are all refused.
        assert_eq!(t[0].left_out, "LFW");
        assert_eq!(t[0].far, 0.0);
        assert!(t[0].ratio() < 1.0);
        // One source alone has nothing to check against.
        assert!(leave_one_source_out(&sets[..2], 1e-2).is_empty());
    }
}
