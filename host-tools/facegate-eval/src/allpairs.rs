//! Every genuine and every impostor pair of a labelled embedding set.
//!
//! The similarity matrix is computed in row blocks with a matrix product
//! (nalgebra → matrixmultiply's SIMD kernels), blocks in parallel, and the
//! upper triangle is counted straight into histograms: nothing of size N² is
//! ever stored. For LFW (13,233 faces, 128-d) that is 87.5 M comparisons.

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::EvalError;
use crate::roc::ScoreHistogram;

/// Row-major `rows × dim` embeddings (normally L2-normalised: scores are cosines).
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    dim: usize,
    data: Vec<f32>,
}

impl Embeddings {
    /// Wraps row-major data.
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self, EvalError> {
        if dim == 0 || data.len() % dim != 0 {
            return Err(EvalError::BadShape {
                len: data.len(),
                rows: data.len() / dim.max(1),
                dim,
            });
        }
        Ok(Self { dim, data })
    }

    /// Width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of embeddings.
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Column-major `dim × rows` view of rows `range` (each column one embedding).
    fn columns(&self, range: std::ops::Range<usize>) -> DMatrix<f32> {
        DMatrix::from_column_slice(
            self.dim,
            range.len(),
            &self.data[range.start * self.dim..range.end * self.dim],
        )
    }

    /// `rows(a) · rows(b)ᵀ` as a `|a| × |b|` matrix.
    pub fn similarities(
        &self,
        a: std::ops::Range<usize>,
        other: &Self,
        b: std::ops::Range<usize>,
    ) -> DMatrix<f32> {
        // Transposing the small block into a row-major-like owned matrix lets the product use gemm.
        self.columns(a).transpose() * other.columns(b)
    }
}

/// Rows per block: 512 × 13k floats ≈ 27 MB per worker.
const BLOCK: usize = 512;

/// Genuine (same label) and impostor histograms over all `i < j` pairs.
pub fn all_pairs(
    emb: &Embeddings,
    labels: &[u32],
    bins: usize,
) -> Result<(ScoreHistogram, ScoreHistogram), EvalError> {
    let n = emb.rows();
    if labels.len() != n {
        return Err(EvalError::LengthMismatch {
            scores: n,
            labels: labels.len(),
        });
    }
    let blocks: Vec<usize> = (0..n).step_by(BLOCK).collect();
    let merged = blocks
        .par_iter()
        .map(|&r0| {
            let r1 = (r0 + BLOCK).min(n);
            let s = emb.similarities(r0..r1, emb, r0..n);
            let (mut g, mut im) = (ScoreHistogram::new(bins), ScoreHistogram::new(bins));
            for i in r0..r1 {
                let li = labels[i];
                // Column c of the block is image r0 + c; keep j > i only.
                for j in i + 1..n {
                    let score = s[(i - r0, j - r0)];
                    if labels[j] == li {
                        g.add(score)
                    } else {
                        im.add(score)
                    }
                }
            }
            (g, im)
        })
        .reduce(
            || (ScoreHistogram::new(bins), ScoreHistogram::new(bins)),
            |(mut g, mut i), (g2, i2)| {
                g.merge(&g2);
                i.merge(&i2);
                (g, i)
            },
        );
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_brute_force() {
        // 1100 rows crosses block boundaries; labels in runs of 1..4.
        let dim = 5;
        let n = 1100;
        let mut seed = 7u32;
        let data: Vec<f32> = (0..n * dim)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i / (1 + i % 4)).collect();
        let emb = Embeddings::new(dim, data).unwrap();
        let (g, i) = all_pairs(&emb, &labels, 64).unwrap();
        let (mut bg, mut bi) = (ScoreHistogram::new(64), ScoreHistogram::new(64));
        for a in 0..n {
            for b in a + 1..n {
                let s: f32 = emb.row(a).iter().zip(emb.row(b)).map(|(x, y)| x * y).sum();
                if labels[a] == labels[b] {
                    bg.add(s)
                } else {
                    bi.add(s)
                }
            }
        }
        assert_eq!(g.total() + i.total(), (n * (n - 1) / 2) as u64);
        assert_eq!(g.total(), bg.total());
        // Products may round differently from the naive sum; allow a handful of bin-edge moves.
        let moved: u64 = i
            .counts()
            .iter()
            .zip(bi.counts())
            .map(|(a, b)| a.abs_diff(*b))
            .sum();
        assert!(moved <= 10, "{moved} impostor counts moved bins");
        assert_eq!(g, bg);
    }

    #[test]
    fn shape_errors() {
        assert!(Embeddings::new(3, vec![0.0; 7]).is_err());
        let e = Embeddings::new(2, vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        assert!(matches!(
            all_pairs(&e, &[1], 10),
            Err(EvalError::LengthMismatch { .. })
        ));
    }
}
