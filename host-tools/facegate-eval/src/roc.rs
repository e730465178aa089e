//! Score histograms and the ROC they define.
//!
//! Scores are cosines in `[-1, 1]`, counted into fixed-width bins so that
//! ~87 M impostor pairs cost a counter increment each, not a sort. The ROC
//! is evaluated at bin edges: at threshold `t = edge(i)` a comparison is
//! accepted when its score's bin is `>= i`, which equals `score >= t` up to
//! the bin width (`2 / bins`; 1e-4 with the default 20,000 bins).

use serde::Serialize;

use crate::EvalError;

/// Default number of bins over `[-1, 1]`: thresholds resolved to 1e-4.
pub const DEFAULT_BINS: usize = 20_000;
const LO: f64 = -1.0;
const HI: f64 = 1.0;

/// Counts of scores in equal-width bins over `[-1, 1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreHistogram {
    bins: Vec<u64>,
}

impl ScoreHistogram {
    /// An empty histogram with `bins` bins.
    pub fn new(bins: usize) -> Self {
        Self {
            bins: vec![0; bins.max(1)],
        }
    }

    /// The bin of `score` (scores outside `[-1, 1]` fall in the end bins; NaN in the lowest).
    #[inline]
    pub fn bin_of(&self, score: f32) -> usize {
        let n = self.bins.len();
        let x = (f64::from(score) - LO) / (HI - LO) * n as f64;
        if x.is_nan() || x < 0.0 {
            0
        } else {
            // Truncation intended: floor of a non-negative value.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = x as usize;
            i.min(n - 1)
        }
    }

    /// Counts one score.
    #[inline]
    pub fn add(&mut self, score: f32) {
        let i = self.bin_of(score);
        self.bins[i] += 1;
    }

    /// Adds another histogram's counts (same bin count).
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
    }

    /// Number of scores counted.
    pub fn total(&self) -> u64 {
        self.bins.iter().sum()
    }

    /// Bin counts, lowest score first.
    pub fn counts(&self) -> &[u64] {
        &self.bins
    }

    /// Number of bins.
    pub fn len(&self) -> usize {
        self.bins.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Threshold at the lower edge of bin `i` (`i == len()` is the top edge, 1.0).
    pub fn edge(&self, i: usize) -> f64 {
        // One rounding (an exact integer numerator over the bin count), so
        // edges print as the short decimals they are: 0.9007, not
        // 0.9007000000000001 from `LO + step·i`.
        let n = self.bins.len();
        (LO * n.saturating_sub(i) as f64 + HI * i as f64) / n as f64
    }

    /// Counts at or above each edge: `suffix[i]` = scores in bins `i..`; `suffix[len] = 0`.
    fn suffix(&self) -> Vec<u64> {
        let mut s = vec![0; self.bins.len() + 1];
        for i in (0..self.bins.len()).rev() {
            s[i] = s[i + 1] + self.bins[i];
        }
        s
    }
}

/// A point of the ROC.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct OperatingPoint {
    /// Accept when `score >= threshold`.
    pub threshold: f64,
    /// False accept rate: impostor comparisons accepted.
    pub far: f64,
    /// True accept rate: genuine comparisons accepted.
    pub tar: f64,
}

/// ROC summary of genuine and impostor score histograms.
#[derive(Clone, Debug, PartialEq)]
pub struct Roc {
    /// One point per bin edge, threshold rising (FAR and TAR falling).
    pub points: Vec<OperatingPoint>,
    /// Genuine comparisons.
    pub genuine: u64,
    /// Impostor comparisons.
    pub impostor: u64,
}

impl Roc {
    /// Builds the ROC; both histograms need the same bins and at least one count.
    pub fn new(genuine: &ScoreHistogram, impostor: &ScoreHistogram) -> Result<Self, EvalError> {
        let (g, i) = (genuine.total(), impostor.total());
        if g == 0 || i == 0 {
            return Err(EvalError::OneClass {
                genuine: g,
                impostor: i,
            });
        }
        let (gs, is) = (genuine.suffix(), impostor.suffix());
        let points = (0..=genuine.len())
            .map(|k| OperatingPoint {
                threshold: genuine.edge(k),
                far: is[k] as f64 / i as f64,
                tar: gs[k] as f64 / g as f64,
            })
            .collect();
        Ok(Self {
            points,
            genuine: g,
            impostor: i,
        })
    }

    /// Area under the ROC (trapezoids over FAR), in `[0, 1]`.
    pub fn auc(&self) -> f64 {
        // Points run from (1, 1) at the lowest edge to (0, 0) above the top bin.
        self.points
            .windows(2)
            .map(|w| (w[0].far - w[1].far) * (w[0].tar + w[1].tar) / 2.0)
            .sum()
    }

    /// Highest TAR with FAR at most `target`, or `None` when `target` is below
    /// one impostor in the set (the FAR cannot be resolved).
    pub fn tar_at_far(&self, target: f64) -> Option<OperatingPoint> {
        if target * (self.impostor as f64) < 1.0 {
            return None;
        }
        // FAR falls as the threshold rises: the first edge meeting the target has the best TAR.
        self.points.iter().find(|p| p.far <= target).copied()
    }

    /// The operating point at `threshold`: its bin edge at or below it, so
    /// FAR and TAR are never understated.
    pub fn at_threshold(&self, threshold: f64) -> OperatingPoint {
        self.points
            .iter()
            .take_while(|p| p.threshold <= threshold + 1e-9)
            .last()
            .copied()
            .unwrap_or(self.points[0])
    }

    /// About `n` points log-spaced in FAR, from the lowest resolvable FAR to 1, for plots.
    pub fn curve(&self, n: usize) -> Vec<OperatingPoint> {
        let lo = (1.0 / self.impostor as f64).max(1e-7).log10();
        let mut v: Vec<OperatingPoint> = (0..n)
            .filter_map(|k| self.tar_at_far(10f64.powf(lo - lo * k as f64 / (n.max(2) - 1) as f64)))
            .collect();
        v.dedup_by(|a, b| a.threshold == b.threshold);
        v
    }

    /// Equal error rate: where FAR = FRR (= 1 − TAR), interpolated between edges.
    pub fn eer(&self) -> OperatingPoint {
        let gap = |p: &OperatingPoint| p.far - (1.0 - p.tar);
        for w in self.points.windows(2) {
            let (a, b) = (gap(&w[0]), gap(&w[1]));
            if a >= 0.0 && b <= 0.0 {
                let f = if a == b { 0.0 } else { a / (a - b) };
                let lerp = |x: f64, y: f64| x + f * (y - x);
                let far = lerp(w[0].far, w[1].far);
                return OperatingPoint {
                    threshold: lerp(w[0].threshold, w[1].threshold),
                    far,
                    tar: lerp(w[0].tar, w[1].tar),
                };
            }
        }
        // Unreachable for a valid ROC (gap goes from FAR=1 ≥ 0 to −1 ≤ 0); keep a sane answer.
        self.points[0]
    }
}

/// Histograms of a list of labelled scores.
pub fn histograms(scores: &[f32], same: &[bool], bins: usize) -> (ScoreHistogram, ScoreHistogram) {
    let (mut g, mut i) = (ScoreHistogram::new(bins), ScoreHistogram::new(bins));
    for (&s, &y) in scores.iter().zip(same) {
        if y { g.add(s) } else { i.add(s) }
    }
    (g, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores at bin centres of a 200-bin histogram (width 0.01), so edges are unambiguous.
    fn centre(k: i32) -> f32 {
        (-1.0 + 0.01 * (f64::from(k) + 100.0) + 0.005) as f32
    }

    #[test]
    fn bins_and_edges() {
        let h = ScoreHistogram::new(200);
        assert_eq!(h.bin_of(-1.0), 0);
        assert_eq!(h.bin_of(1.0), 199);
        assert_eq!(h.bin_of(2.0), 199);
        assert_eq!(h.bin_of(-3.0), 0);
        assert_eq!(h.bin_of(centre(0)), 100);
        assert!((h.edge(100) - 0.0).abs() < 1e-12);
        // Thresholds written to deployment files read as the decimals they are.
        let fine = ScoreHistogram::new(DEFAULT_BINS);
        assert_eq!(fine.edge(19_007).to_string(), "0.9007");
        assert_eq!(fine.edge(0), -1.0);
        assert_eq!(fine.edge(DEFAULT_BINS), 1.0);
    }

    #[test]
    fn known_roc_points() {
        // Genuine at 0.505, 0.705, 0.905; impostors at -0.495, 0.005, 0.605, 0.805 (bin centres).
        let genuine = [50, 70, 90].map(centre);
        let impostor = [-50, 0, 60, 80].map(centre);
        let mut same = vec![true; 3];
        same.extend([false; 4]);
        let scores: Vec<f32> = genuine.iter().chain(&impostor).copied().collect();
        let (g, i) = histograms(&scores, &same, 200);
        let roc = Roc::new(&g, &i).unwrap();
        assert_eq!((roc.genuine, roc.impostor), (3, 4));
        // FAR <= 0.25 first holds at edge 0.61 (above impostor 0.605): TAR = 2/3 (0.705, 0.905 still accepted).
        let p = roc.tar_at_far(0.25).unwrap();
        assert!((p.threshold - 0.61).abs() < 1e-9, "{p:?}");
        assert_eq!((p.far, p.tar), (0.25, 2.0 / 3.0));
        // FAR 0 needs a threshold above 0.805: only 0.905 remains.
        assert_eq!(roc.tar_at_far(0.0), None); // below one impostor in four: unresolvable
        assert_eq!(roc.tar_at_far(0.2), None);
        let p = roc.points.iter().find(|p| p.far == 0.0).unwrap();
        assert!((p.threshold - 0.81).abs() < 1e-9);
        assert!((p.tar - 1.0 / 3.0).abs() < 1e-12);
        // AUC = P(genuine > impostor): 0.505 beats 2, 0.705 beats 3, 0.905 beats 4 → 9/12.
        assert!((roc.auc() - 9.0 / 12.0).abs() < 1e-12, "{}", roc.auc());
    }

    #[test]
    fn perfect_separation_has_auc_one_and_eer_zero() {
        let scores = [0.9f32, 0.8, -0.2, 0.1];
        let same = [true, true, false, false];
        let (g, i) = histograms(&scores, &same, DEFAULT_BINS);
        let roc = Roc::new(&g, &i).unwrap();
        assert!((roc.auc() - 1.0).abs() < 1e-12);
        let e = roc.eer();
        assert!(e.far.abs() < 1e-12 && (e.tar - 1.0).abs() < 1e-12, "{e:?}");
    }

    #[test]
    fn one_class_is_an_error() {
        let (g, i) = histograms(&[0.5], &[true], 10);
        assert_eq!(
            Roc::new(&g, &i),
            Err(EvalError::OneClass {
                genuine: 1,
                impostor: 0
            })
        );
    }
}
