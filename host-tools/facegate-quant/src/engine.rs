//! The int8 engine (and the float reference) as embedders for `facegate eval`.

use std::path::Path;

use facegate_core::ModelHash;
use facegate_core::engine::{BlobError, Model};
use facegate_eval::embedder::Embedder;
use facegate_eval::faces::Face;
use facegate_eval::onnx::InputNorm;
use sha2::{Digest, Sha256};

use crate::graph::FloatNet;
use crate::quantize::normalise;

/// A `.fgm` blob run by facegate's int8 engine (the code the boards run).
#[derive(Debug)]
pub struct EngineEmbedder {
    name: String,
    blob: Vec<u8>,
    hash: ModelHash,
    dim: usize,
    arena: usize,
}

impl EngineEmbedder {
    /// Wraps blob bytes, validating them.
    pub fn new(name: String, blob: Vec<u8>) -> Result<Self, BlobError> {
        let m = Model::parse(&blob)?;
        let (hash, dim, arena) = (m.hash(), m.embedding_dim(), m.arena_len());
        Ok(Self {
            name,
            blob,
            hash,
            dim,
            arena,
        })
    }

    /// Reads a `.fgm` file; the error names the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let blob = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::new(name, blob).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The blob.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// Arena bytes per run.
    pub const fn arena_len(&self) -> usize {
        self.arena
    }
}

impl Embedder for EngineEmbedder {
    fn name(&self) -> String {
        format!("{} (int8 engine)", self.name)
    }
    fn model_hash(&self) -> ModelHash {
        self.hash
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, face: &Face) -> Result<Vec<f32>, String> {
        // Checked in full (CRC included) by `new`; the bytes are ours and unchanged.
        let m = Model::parse_intact(&self.blob).map_err(|e| e.to_string())?;
        let mut arena = vec![0i8; self.arena];
        let mut out = vec![0.0; self.dim];
        m.embed(&face.rgb, &mut arena, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// The float network read by the quantizer, run by its own executor.
#[derive(Debug)]
pub struct FloatEmbedder {
    net: FloatNet,
    norm: InputNorm,
    hash: ModelHash,
}

impl FloatEmbedder {
    /// Wraps a loaded network (`source` is hashed to key caches).
    pub fn new(net: FloatNet, norm: InputNorm, source: &[u8]) -> Self {
        Self {
            net,
            norm,
            hash: ModelHash(Sha256::digest(source).into()),
        }
    }
}

impl Embedder for FloatEmbedder {
    fn name(&self) -> String {
        "float reference executor".into()
    }
    fn model_hash(&self) -> ModelHash {
        self.hash
    }
    fn dim(&self) -> usize {
        self.net.shapes[self.net.output].c
    }
    fn embed(&self, face: &Face) -> Result<Vec<f32>, String> {
        let mut v = self.net.run(normalise(face, self.norm));
        Ok(std::mem::take(&mut v[self.net.output]))
    }
}
