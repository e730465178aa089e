//! ONNX embedders through tract (float and QDQ int8 graphs alike).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use facegate_core::ModelHash;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::embedder::Embedder;
use crate::faces::{FACE_SIZE, Face};

/// How 8-bit pixels become the model's float input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InputNorm {
    /// `(x − 127.5) / 128`, the ArcFace / insightface convention (facegate's models).
    #[default]
    ArcFace,
    /// `x / 255`.
    Unit,
}

impl InputNorm {
    fn apply(self, x: u8) -> f32 {
        match self {
            Self::ArcFace => (f32::from(x) - 127.5) / 128.0,
            Self::Unit => f32::from(x) / 255.0,
        }
    }
}

/// Errors loading an ONNX embedder.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// tract rejected the model (not ONNX, unsupported op, or not a 1×3×112×112 → 1×D network).
    #[error("{}: cannot run as a face embedder taking 1×3×112×112 (NCHW) input: {reason}", path.display())]
    Model {
        /// Where.
        path: PathBuf,
        /// tract's explanation.
        reason: String,
    },
}

/// An ONNX face embedder run by tract.
pub struct OnnxEmbedder {
    name: String,
    hash: ModelHash,
    dim: usize,
    norm: InputNorm,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("name", &self.name)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl OnnxEmbedder {
    /// Loads `path`, fixing its input to one 112×112 RGB face.
    pub fn load(path: &Path, norm: InputNorm) -> Result<Self, OnnxError> {
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let model_err = |e: TractError| OnnxError::Model {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let side = FACE_SIZE as usize;
        let plan = onnx()
            .model_for_read(&mut bytes.as_slice())
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, side, side]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(model_err)?;
        let out = plan.model().output_fact(0).map_err(model_err)?;
        let shape = out
            .shape
            .as_concrete()
            .map(<[usize]>::to_vec)
            .unwrap_or_default();
        let dim = match shape.as_slice() {
            [1, d] | [d] => *d,
            other => {
                return Err(OnnxError::Model {
                    path: path.to_path_buf(),
                    reason: format!("output shape {other:?} is not [1, D]"),
                });
            }
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            name,
            hash: ModelHash(Sha256::digest(&bytes).into()),
            dim,
            norm,
            plan,
        })
    }
}

impl Embedder for OnnxEmbedder {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn model_hash(&self) -> ModelHash {
        self.hash
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, face: &Face) -> Result<Vec<f32>, String> {
        self.embed_rgb(&face.rgb)
    }
}

impl OnnxEmbedder {
    /// Embeds a 112×112 RGB crop given as bytes (boards keep their frame
    /// buffer; no [`Face`] copy per embedding).
    pub fn embed_rgb(&self, rgb: &[u8]) -> Result<Vec<f32>, String> {
        let side = FACE_SIZE as usize;
        let plane = side * side;
        if rgb.len() != 3 * plane {
            return Err(format!(
                "a face is {} bytes of RGB, not {}",
                3 * plane,
                rgb.len()
            ));
        }
        // Interleaved RGB → planar NCHW.
        let mut input = vec![0.0f32; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                input[c * plane + i] = self.norm.apply(px[c]);
            }
        }
        let tensor = Tensor::from_shape(&[1, 3, side, side], &input).map_err(|e| e.to_string())?;
        let out = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| format!("{e:#}"))?;
        let v = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| e.to_string())?;
        Ok(v.iter().copied().collect())
    }
}
