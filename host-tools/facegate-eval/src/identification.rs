//! Open-set 1:N identification: rank-1 and DIR at FAR.
//!
//! Among identities with at least two images, the first image of each forms
//! the gallery and the others are mated probes; identities with one image
//! are non-mated probes (distractors: people the door has never seen).
//! DIR at FAR x: the threshold lets a fraction x of non-mated probes match
//! someone; DIR is the fraction of mated probes whose best match is the
//! right person with a score at or above it.

use serde::Serialize;

use crate::EvalError;
use crate::allpairs::Embeddings;
use crate::roc::OperatingPoint;

/// The 1:N outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IdentificationReport {
    /// Gallery size (persons).
    pub gallery: usize,
    /// Probes of enrolled persons.
    pub mated_probes: usize,
    /// Probes of persons not enrolled.
    pub non_mated_probes: usize,
    /// Fraction of mated probes whose best match is correct.
    pub rank1: f64,
    /// Operating points: threshold, FAR (non-mated accepted), TAR = DIR.
    pub dir_at_far: Vec<OperatingPoint>,
}

/// Runs the protocol; `far_targets` below one non-mated probe are skipped.
pub fn identify(
    emb: &Embeddings,
    labels: &[u32],
    far_targets: &[f64],
) -> Result<IdentificationReport, EvalError> {
    let n = emb.rows();
    if labels.len() != n {
        return Err(EvalError::LengthMismatch {
            scores: n,
            labels: labels.len(),
        });
    }
    let mut count = std::collections::HashMap::<u32, usize>::new();
    for &l in labels {
        *count.entry(l).or_default() += 1;
    }
    let mut seen = std::collections::HashSet::new();
    let (mut gallery, mut mated, mut non_mated) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &l) in labels.iter().enumerate() {
        if count[&l] < 2 {
            non_mated.push(i);
        } else if seen.insert(l) {
            gallery.push(i);
        } else {
            mated.push(i);
        }
    }
    if gallery.is_empty() || mated.is_empty() {
        return Err(EvalError::OneClass {
            genuine: mated.len() as u64,
            impostor: non_mated.len() as u64,
        });
    }
    let gal = gather(emb, &gallery);
    let best = |probes: &[usize]| -> Vec<(u32, f32)> {
        let p = gather(emb, probes);
        let s = p.similarities(0..p.rows(), &gal, 0..gal.rows());
        (0..probes.len())
            .map(|r| {
                let (c, v) =
                    s.row(r)
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::NEG_INFINITY),
                            |b, (c, &v)| if v > b.1 { (c, v) } else { b },
                        );
                (labels[gallery[c]], v)
            })
            .collect()
    };
    let mated_best = best(&mated);
    let non_mated_best = best(&non_mated);
    let correct: Vec<Option<f32>> = mated
        .iter()
        .zip(&mated_best)
        .map(|(&i, &(l, s))| (l == labels[i]).then_some(s))
        .collect();
    let rank1 = correct.iter().flatten().count() as f64 / mated.len() as f64;

    let mut nm: Vec<f32> = non_mated_best.iter().map(|b| b.1).collect();
    nm.sort_by(|a, b| b.total_cmp(a)); // highest first
    let mut dir_at_far = Vec::new();
    for &far in far_targets {
        // Below one non-mated probe the FAR cannot be resolved: skip.
        if far * (nm.len() as f64) < 1.0 {
            continue;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let allowed = (far * nm.len() as f64).floor() as usize;
        // Accept iff score > the (allowed+1)-th highest non-mated score: at most `allowed` pass.
        let threshold = nm
            .get(allowed)
            .map_or(f64::NEG_INFINITY, |&s| f64::from(s).next_up());
        let accepted_nm = nm.iter().filter(|&&s| f64::from(s) >= threshold).count();
        let dir = correct
            .iter()
            .flatten()
            .filter(|&&s| f64::from(s) >= threshold)
            .count() as f64
            / mated.len() as f64;
        dir_at_far.push(OperatingPoint {
            threshold,
            far: accepted_nm as f64 / nm.len() as f64,
            tar: dir,
        });
    }
    Ok(IdentificationReport {
        gallery: gallery.len(),
        mated_probes: mated.len(),
        non_mated_probes: non_mated.len(),
        rank1,
        dir_at_far,
    })
}

fn gather(emb: &Embeddings, rows: &[usize]) -> Embeddings {
    let data = rows
        .iter()
        .flat_map(|&r| emb.row(r).iter().copied())
        .collect();
    // Same width as the source: cannot fail.
    Embeddings::new(emb.dim(), data).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_gallery() {
        // Persons 1 and 2 (two images each), strangers 3 and 4.
        let rows: [[f32; 2]; 6] = [
            [1.0, 0.0],
            [0.0, 1.0],
            [0.8, 0.6],
            [0.6, 0.8],
            [0.99, 0.141],
            [-1.0, 0.0],
        ];
        let labels = [1, 2, 1, 2, 3, 4];
        let emb = Embeddings::new(2, rows.concat()).unwrap();
        let r = identify(&emb, &labels, &[0.5, 0.1]).unwrap();
        assert_eq!((r.gallery, r.mated_probes, r.non_mated_probes), (2, 2, 2));
        assert_eq!(r.rank1, 1.0);
        // Non-mated best scores: 0.99 (stranger 3 looks like person 1) and 0.0 (stranger 4, vs person 2).
        // FAR 0.5: one stranger may pass; threshold just above 0.0 → both mated (0.8, 0.8) accepted.
        assert_eq!(r.dir_at_far[0].far, 0.5);
        assert_eq!(r.dir_at_far[0].tar, 1.0);
        // FAR 0.1 is below one stranger in two: skipped.
        assert_eq!(r.dir_at_far.len(), 1);
    }
}
