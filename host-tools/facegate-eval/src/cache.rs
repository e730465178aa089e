//! On-disk cache of a set's embeddings, keyed by model hash, flip and file list.
//!
//! Embedding LFW dominates an evaluation; a second report on the same model
//! (another FAR target, another protocol) reads the cache instead. A damaged
//! or foreign cache file is ignored and rewritten, never trusted.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::allpairs::Embeddings;
use crate::lighting::Lighting;

const MAGIC: &[u8; 8] = b"FGEMBC01";

/// Where caches live: `$FACEGATE_CACHE`, else `$XDG_CACHE_HOME/facegate`, else `~/.cache/facegate`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FACEGATE_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    base.unwrap_or_else(std::env::temp_dir).join("facegate")
}

/// The cache key: model, flip, and the exact list of files (paths relative to the set).
pub fn key(model_hash: &facegate_core::ModelHash, flip: bool, files: &[&Path]) -> String {
    key_lit(model_hash, flip, Lighting::Colour, files)
}

/// [`key`] for faces seen under `lighting` (the stored faces' keys unchanged).
pub fn key_lit(
    model_hash: &facegate_core::ModelHash,
    flip: bool,
    lighting: Lighting,
    files: &[&Path],
) -> String {
    let mut h = Sha256::new();
    h.update(model_hash.0);
    h.update([u8::from(flip)]);
    if let Some(tag) = lighting.cache_tag() {
        h.update(tag.as_bytes());
        h.update([0xff]);
    }
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Reads a cache entry; `None` if absent, damaged or of another shape.
pub fn load(dir: &Path, key: &str, dim: usize, rows: usize) -> Option<Embeddings> {
    let bytes = std::fs::read(dir.join(format!("{key}.emb"))).ok()?;
    let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if Sha256::digest(body).as_slice() != digest || body.get(..8)? != MAGIC {
        return None;
    }
    let u = |at: usize| {
        body.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if u(8)? != dim as u64 || u(16)? != rows as u64 {
        return None;
    }
    let data: Vec<f32> = body
        .get(24..)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if data.len() != dim * rows {
        return None;
    }
    Embeddings::new(dim, data).ok()
}

/// Writes a cache entry atomically (temporary file, then rename).
pub fn store(dir: &Path, key: &str, emb: &Embeddings) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut body = Vec::with_capacity(24 + emb.rows() * emb.dim() * 4 + 32);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&(emb.dim() as u64).to_le_bytes());
    body.extend_from_slice(&(emb.rows() as u64).to_le_bytes());
    for r in 0..emb.rows() {
        for x in emb.row(r) {
            body.extend_from_slice(&x.to_le_bytes());
        }
    }
    let digest = Sha256::digest(&body);
    body.extend_from_slice(&digest);
    let tmp = dir.join(format!("{key}.emb.tmp"));
    std::fs::write(&tmp, &body)?;
    std::fs::rename(tmp, dir.join(format!("{key}.emb")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let e = Embeddings::new(2, vec![0.6, 0.8, 1.0, 0.0]).unwrap();
        store(dir.path(), "k", &e).unwrap();
        assert_eq!(load(dir.path(), "k", 2, 2), Some(e));
        assert_eq!(load(dir.path(), "k", 2, 3), None);
        let p = dir.path().join("k.emb");
        let mut b = std::fs::read(&p).unwrap();
        b[30] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert_eq!(load(dir.path(), "k", 2, 2), None);
    }
}
