//! facegate's int8 inference engine: runs a quantised face embedder from a
//! `.fgm` blob in a caller-provided arena, without std or an allocator.
//!
//! The blob (written by `facegate quantize`) is parsed once with every
//! offset, size and shape checked, so [`Model::embed`] cannot fail on a
//! blob that parsed; it only checks the caller's buffers. Activations are
//! NHWC int8 with a zero point per tensor; weights are int8, symmetric per
//! output channel; accumulators are i32, requantised in fixed point exactly
//! as TFLite / CMSIS-NN do ([`requant`]).
//!
//! Ops: convolution (any kernel, stride, padding and group count: regular,
//! depthwise, pointwise, global depthwise, fully connected as 1×1 or as a
//! kernel the size of its input map) with an optional PReLU fused into its
//! requantisation (a second per-channel multiplier for negative
//! accumulators), residual Add with rescaling, and max pooling (detector
//! blobs, whose output is a map with a scale per channel: [`Output`]).
//! The uint8 RGB input goes through a per-channel 256-entry table that
//! folds the model's mean/std into the input quantisation.

pub mod blob;
pub mod kernels;
pub mod requant;

pub use blob::{BlobError, Model, Output};

/// Errors of a run (the blob itself was validated by [`Model::parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EngineError {
    /// The arena is smaller than the blob's buffer plan needs.
    ArenaTooSmall {
        /// Bytes needed.
        need: u32,
        /// Bytes given.
        have: u32,
    },
    /// The input image is not `h × w × 3` bytes.
    InputSize {
        /// Bytes expected.
        expected: u32,
        /// Bytes given.
        found: u32,
    },
    /// The output buffer is not the embedding width.
    OutputSize {
        /// Values expected.
        expected: u32,
        /// Values given.
        found: u32,
    },
    /// Another embedder behind the same trait (tract on Linux boards) failed.
    Backend,
}

impl core::fmt::Display for EngineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ArenaTooSmall { need, have } => write!(
                f,
                "arena of {have} B is too small: the model needs {need} B"
            ),
            Self::InputSize { expected, found } => {
                write!(f, "input of {found} B, expected {expected} B (h×w×3 RGB)")
            }
            Self::Backend => write!(f, "the embedder backend failed"),
            Self::OutputSize { expected, found } => {
                write!(f, "output buffer of {found} values, expected {expected}")
            }
        }
    }
}

impl core::error::Error for EngineError {}
