//! k-fold verification accuracy (LFW View 2 protocol).
//!
//! For each fold, the threshold is the one with the best accuracy on the
//! other folds; accuracy is then measured on the held-out fold. A pair is
//! called "same" when `score >= threshold`.
//!
//! Threshold candidates are below every score, the midpoints between
//! consecutive distinct scores, and above every score; ties in training
//! accuracy go to the smallest threshold. Midpoints are computed in f64 from
//! the f32 scores. The reference test (`tests/reference.rs`) holds this rule
//! against an independent implementation.

use serde::Serialize;

use crate::EvalError;

/// One fold's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FoldResult {
    /// Threshold chosen on the other folds.
    pub threshold: f64,
    /// Accuracy on the held-out fold, in `[0, 1]`.
    pub accuracy: f64,
}

/// k-fold summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KFoldReport {
    /// Per fold.
    pub folds: Vec<FoldResult>,
    /// Mean accuracy.
    pub mean: f64,
    /// Standard deviation of the fold accuracies (population, ddof = 0, as insightface reports).
    pub std: f64,
}

/// The threshold with the best accuracy on `(score, same)` pairs, and that accuracy.
pub fn best_threshold(scores: &[f32], same: &[bool]) -> Result<(f64, f64), EvalError> {
    check(scores, same)?;
    let n = scores.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Threshold below everything: every pair accepted, correct = #same.
    let mut correct = same.iter().filter(|&&s| s).count();
    let first = f64::from(scores[order[0]]) - 1.0;
    let (mut best_t, mut best_c) = (first, correct);
    let mut i = 0;
    while i < n {
        // Raise the threshold past all pairs with this score value.
        let v = scores[order[i]];
        while i < n && scores[order[i]] == v {
            // A same pair leaving was counted correct (accepted), so this cannot underflow.
            if same[order[i]] {
                correct -= 1;
            } else {
                correct += 1;
            }
            i += 1;
        }
        let t = if i < n {
            (f64::from(v) + f64::from(scores[order[i]])) / 2.0
        } else {
            f64::from(v) + 1.0
        };
        if correct > best_c {
            (best_t, best_c) = (t, correct);
        }
    }
    Ok((best_t, best_c as f64 / n as f64))
}

/// Accuracy of `threshold` on `(score, same)` pairs.
pub fn accuracy_at(scores: &[f32], same: &[bool], threshold: f64) -> f64 {
    let correct = scores
        .iter()
        .zip(same)
        .filter(|&(&s, &y)| (f64::from(s) >= threshold) == y)
        .count();
    correct as f64 / scores.len().max(1) as f64
}

/// k-fold accuracy over pairs laid out fold after fold (as in `pairs.txt`).
pub fn kfold_accuracy(
    scores: &[f32],
    same: &[bool],
    folds: usize,
) -> Result<KFoldReport, EvalError> {
    check(scores, same)?;
    let n = scores.len();
    if folds < 2 || n % folds != 0 {
        return Err(EvalError::BadFolds { pairs: n, folds });
    }
    let size = n / folds;
    let mut results = Vec::with_capacity(folds);
    for k in 0..folds {
        let test = k * size..(k + 1) * size;
        let (train_s, train_y): (Vec<f32>, Vec<bool>) = (0..n)
            .filter(|i| !test.contains(i))
            .map(|i| (scores[i], same[i]))
            .unzip();
        let (threshold, _) = best_threshold(&train_s, &train_y)?;
        let accuracy = accuracy_at(&scores[test.clone()], &same[test], threshold);
        results.push(FoldResult {
            threshold,
            accuracy,
        });
    }
    let mean = results.iter().map(|f| f.accuracy).sum::<f64>() / folds as f64;
    let var = results
        .iter()
        .map(|f| (f.accuracy - mean).powi(2))
        .sum::<f64>()
        / folds as f64;
    Ok(KFoldReport {
        folds: results,
        mean,
        std: var.sqrt(),
    })
}

fn check(scores: &[f32], same: &[bool]) -> Result<(), EvalError> {
    if scores.len() != same.len() {
        return Err(EvalError::LengthMismatch {
            scores: scores.len(),
            labels: same.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| s.is_nan()) {
        return Err(EvalError::NanScore { index });
    }
    if scores.is_empty() {
        return Err(EvalError::OneClass {
            genuine: 0,
            impostor: 0,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_scores_are_perfect() {
        let s = [0.9, 0.8, 0.1, 0.2];
        let y = [true, true, false, false];
        let (t, acc) = best_threshold(&s, &y).unwrap();
        assert_eq!(acc, 1.0);
        assert!((t - 0.5).abs() < 1e-7, "{t}"); // midpoint of 0.2 and 0.8
    }

    #[test]
    fn ties_go_to_the_smallest_threshold() {
        // Accepting all (t below 0.1) and t = midpoint(0.1, 0.3) both give 2/3.
        let (t, acc) = best_threshold(&[0.1, 0.3, 0.5], &[false, true, false]).unwrap();
        assert!((acc - 2.0 / 3.0).abs() < 1e-12);
        assert!(
            (t - (0.1f32 as f64 + 0.3f32 as f64) / 2.0).abs() < 1e-12,
            "{t}"
        );
    }

    #[test]
    fn kfold_known_answer() {
        // 2 folds. Fold 0 trains on fold 1 (perfect at t in (0.4, 0.6)) and vice versa.
        let s = [0.9, 0.3, 0.7, 0.55, 0.65, 0.4, 0.95, 0.05];
        let y = [true, false, true, false, true, false, true, false];
        let r = kfold_accuracy(&s, &y, 2).unwrap();
        // Fold 1 is separable at midpoint(0.4, 0.65) = 0.525: fold 0 then gets 0.9✓ 0.3✓ 0.7✓ 0.55✗.
        assert!((r.folds[0].threshold - 0.525).abs() < 1e-7);
        assert_eq!(r.folds[0].accuracy, 0.75);
        // Fold 0 is separable at midpoint(0.55, 0.7) = 0.625: fold 1 gets 0.65✓ 0.4✓ 0.95✓ 0.05✓.
        assert_eq!(r.folds[1].accuracy, 1.0);
        assert!((r.mean - 0.875).abs() < 1e-12);
        assert!((r.std - 0.125).abs() < 1e-12);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            kfold_accuracy(&[0.1; 3], &[true; 3], 2),
            Err(EvalError::BadFolds { .. })
        ));
        assert!(matches!(
            best_threshold(&[0.1], &[true, false]),
            Err(EvalError::LengthMismatch { .. })
        ));
        assert_eq!(
            best_threshold(&[0.1, f32::NAN], &[true, false]),
            Err(EvalError::NanScore { index: 1 })
        );
    }
}
