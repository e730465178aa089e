//! facegate-eval: the face-verification protocols the field reports, done
//! so that a user can pick a door threshold from them.
//!
//! - [`pairs`]: LFW pair lists (View 1 and View 2), with file/line errors.
//! - [`verification`]: k-fold accuracy, the threshold chosen on the other folds.
//! - [`roc`]: score histograms, ROC, AUC, EER and TAR at a FAR.
//! - [`allpairs`]: every genuine and impostor pair of a labelled set, by
//!   matrix products and histogram counting (LFW: ~240 k genuine, ~87 M impostor).
//! - [`identification`]: open-set 1:N (rank-1, DIR at FAR).
//! - [`lighting`]: grey and side-lit copies of a set.
//! - [`calibration`]: the door threshold that holds for strangers from
//!   several sources under several lightings, and how well such a promise
//!   carries to a source left out.
//!
//! Everything is deterministic: the same scores give the same numbers.
#![deny(missing_docs)]

pub mod allpairs;
pub mod cache;
pub mod calibration;
pub mod deploy;
pub mod embedder;
pub mod faces;
pub mod identification;
pub mod lfw;
pub mod lighting;
pub mod onnx;
pub mod pairs;
pub mod plot;
pub mod report;
pub mod roc;
pub mod verification;

/// Errors of the evaluation protocols.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EvalError {
    /// Scores and labels differ in length.
    #[error("{scores} scores but {labels} labels")]
    LengthMismatch {
        /// Number of scores.
        scores: usize,
        /// Number of labels.
        labels: usize,
    },
    /// The pairs cannot be split into the requested folds.
    #[error("{pairs} pairs cannot be split into {folds} equal folds")]
    BadFolds {
        /// Number of pairs.
        pairs: usize,
        /// Folds requested.
        folds: usize,
    },
    /// A protocol needs both genuine and impostor comparisons.
    #[error("need both genuine and impostor comparisons (genuine {genuine}, impostor {impostor})")]
    OneClass {
        /// Genuine count.
        genuine: u64,
        /// Impostor count.
        impostor: u64,
    },
    /// A score is NaN.
    #[error("score {index} is NaN")]
    NanScore {
        /// Position of the score.
        index: usize,
    },
    /// Embedding matrix shape does not match the labels.
    #[error("embeddings of {len} floats are not {rows} rows of {dim}")]
    BadShape {
        /// Floats given.
        len: usize,
        /// Rows expected.
        rows: usize,
        /// Width.
        dim: usize,
    },
}
