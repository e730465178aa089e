//! tract-onnx as the door's embedder.
//!
//! A site's templates are int8 templates of one `.fgm` blob (its hash is the
//! store's model hash). The edge embeds with the float ONNX model the blob
//! was quantized from; at start-up it checks that the two are twins by
//! embedding reference faces with both and requiring a cosine of at least
//! [`TWIN_COSINE`], so a wrong pairing is refused instead of silently
//! mismatching every face.

use std::path::Path;

use anyhow::{Context, Result, bail};
use facegate_core::ModelHash;
use facegate_core::engine::EngineError;
use facegate_eval::embedder::Embedder as _;
use facegate_eval::faces::Face;
use facegate_eval::onnx::{InputNorm, OnnxEmbedder};
use facegate_quant::engine::EngineEmbedder;

/// Least cosine between the float model's and the blob's embedding of a face.
pub const TWIN_COSINE: f32 = 0.95;

/// The float (or QDQ) ONNX embedder standing in for the blob `hash`.
pub struct TractEmbedder {
    onnx: OnnxEmbedder,
    hash: ModelHash,
}

impl std::fmt::Debug for TractEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractEmbedder")
            .field("onnx", &self.onnx.name())
            .field("templates_of", &self.hash)
            .finish()
    }
}

impl TractEmbedder {
    /// Loads `onnx` and checks it against `blob` on `reference` faces.
    pub fn load(onnx: &Path, blob: &Path, reference: &[Face]) -> Result<Self> {
        let float = OnnxEmbedder::load(onnx, InputNorm::ArcFace)
            .with_context(|| format!("cannot run {}", onnx.display()))?;
        let engine = EngineEmbedder::load(blob).map_err(anyhow::Error::msg)?;
        if float.dim() != engine.dim() {
            bail!(
                "{} gives {}-d embeddings, {} {}-d: not the same model",
                onnx.display(),
                float.dim(),
                blob.display(),
                engine.dim()
            );
        }
        for (k, face) in reference.iter().enumerate() {
            let a = float.embed(face).map_err(anyhow::Error::msg)?;
            let b = engine.embed(face).map_err(anyhow::Error::msg)?;
            let c = cosine(&a, &b);
            if c < TWIN_COSINE {
                bail!(
                    "{} is not the float model of {} (reference face {k}: cosine {c:.3} < {TWIN_COSINE}); templates enrolled with the blob would not match",
                    onnx.display(),
                    blob.display()
                );
            }
        }
        Ok(Self {
            onnx: float,
            hash: engine.model_hash(),
        })
    }

    /// The hash of the blob the site's templates were made with.
    pub const fn model_hash(&self) -> ModelHash {
        self.hash
    }

    /// The raw embedding of one face (for parity checks).
    pub fn embed_face(&self, face: &Face) -> Result<Vec<f32>, String> {
        self.onnx.embed(face)
    }
}

/// Cosine of two raw embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

impl facegate_core::door::Embedder for TractEmbedder {
    fn embed(&mut self, face: &[u8], out: &mut [f32]) -> Result<(), EngineError> {
        let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let expected = facegate_core::protocol::FACE_BYTES;
        if face.len() != expected {
            return Err(EngineError::InputSize {
                expected: size(expected),
                found: size(face.len()),
            });
        }
        let v = self
            .onnx
            .embed_rgb(face)
            .map_err(|_| EngineError::Backend)?;
        if v.len() != out.len() {
            return Err(EngineError::OutputSize {
                expected: size(out.len()),
                found: size(v.len()),
            });
        }
        out.copy_from_slice(&v);
        Ok(())
    }
}
