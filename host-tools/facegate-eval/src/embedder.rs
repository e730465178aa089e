//! What turns a face into an embedding, and running it over a whole set.

use facegate_core::ModelHash;
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::allpairs::Embeddings;
use crate::faces::{FACE_SIZE, Face, FaceError, FaceSet};
use crate::lighting::Lighting;

/// A face embedder: a trained model through an inference engine, or a baseline.
pub trait Embedder: Sync {
    /// Human-readable name for reports.
    fn name(&self) -> String;
    /// Hash of the model (templates and caches are bound to it).
    fn model_hash(&self) -> ModelHash;
    /// Embedding width.
    fn dim(&self) -> usize;
    /// Embeds one 112×112 face (not necessarily normalised).
    fn embed(&self, face: &Face) -> Result<Vec<f32>, String>;
}

/// A model-free baseline: the grey face downsampled to 14×14 block means,
/// centred. It exists to exercise the protocols end to end and to give
/// every table a floor; it is not a face recogniser.
#[derive(Clone, Copy, Debug, Default)]
pub struct PixelBaseline;

const BLOCK: usize = 8;
const GRID: usize = FACE_SIZE as usize / BLOCK;

impl Embedder for PixelBaseline {
    fn name(&self) -> String {
        "pixels-14x14 (baseline, no model)".into()
    }
    fn model_hash(&self) -> ModelHash {
        ModelHash(Sha256::digest(b"facegate baseline: grey 14x14 block means, centred, v1").into())
    }
    fn dim(&self) -> usize {
        GRID * GRID
    }
    fn embed(&self, face: &Face) -> Result<Vec<f32>, String> {
        let w = FACE_SIZE as usize;
        let mut v = vec![0.0f32; GRID * GRID];
        for (i, px) in face.rgb.chunks_exact(3).enumerate() {
            let (y, x) = (i / w, i % w);
            let grey =
                0.299 * f32::from(px[0]) + 0.587 * f32::from(px[1]) + 0.114 * f32::from(px[2]);
            v[(y / BLOCK) * GRID + x / BLOCK] += grey;
        }
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        v.iter_mut().for_each(|x| *x -= mean);
        Ok(v)
    }
}

/// Options for embedding a set.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbedOptions {
    /// Add the embedding of the mirrored face (flip test).
    pub flip: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// The light each face is seen under (the stored faces by default).
    pub lighting: Lighting,
}

/// Embeddings of a set; images that failed are listed, their rows are zero.
#[derive(Debug)]
pub struct SetEmbeddings {
    /// L2-normalised rows, one per file of the set.
    pub embeddings: Embeddings,
    /// Files that could not be embedded (index into the set, reason).
    pub failed: Vec<(usize, String)>,
}

/// Embeds every face of `set` in parallel.
pub fn embed_set(
    embedder: &dyn Embedder,
    set: &FaceSet,
    opts: EmbedOptions,
) -> Result<SetEmbeddings, FaceError> {
    let dim = embedder.dim();
    let bar = if opts.progress {
        ProgressBar::new(set.files.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} faces {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("embedding with {}", embedder.name()));
    let rows: Vec<Result<Vec<f32>, String>> = set
        .files
        .par_iter()
        .enumerate()
        .progress_with(bar.clone())
        .map(|(i, f)| {
            let face = Face::load(&set.root.join(&f.path)).map_err(|e| e.to_string())?;
            let face = opts.lighting.apply(&face, i);
            let mut v = embedder.embed(&face)?;
            if opts.flip {
                let m = embedder.embed(&face.mirrored())?;
                v.iter_mut().zip(m).for_each(|(a, b)| *a += b);
            }
            if v.len() != dim {
                return Err(format!(
                    "embedder returned {} values, expected {dim}",
                    v.len()
                ));
            }
            facegate_core::embedding::l2_normalize(&mut v).map_err(|e| e.to_string())?;
            Ok(v)
        })
        .collect();
    bar.finish_and_clear();
    let mut data = Vec::with_capacity(rows.len() * dim);
    let mut failed = Vec::new();
    for (i, r) in rows.into_iter().enumerate() {
        match r {
            Ok(v) => data.extend(v),
            Err(e) => {
                failed.push((i, e));
                data.extend(std::iter::repeat_n(0.0, dim));
            }
        }
    }
    let embeddings = Embeddings::new(dim, data).map_err(|_| FaceError::Empty(set.root.clone()))?;
    Ok(SetEmbeddings { embeddings, failed })
}

/// [`embed_set`] through the embedding cache in `cache` (none: no cache):
/// a complete earlier run is read back, a new complete run stored; a run
/// with failures is never cached (a failure must be seen again, not
/// hidden). Returns the embeddings and whether they came from the cache.
pub fn embed_set_cached(
    embedder: &dyn Embedder,
    set: &FaceSet,
    opts: EmbedOptions,
    cache: Option<&std::path::Path>,
) -> Result<(SetEmbeddings, bool), FaceError> {
    let paths: Vec<&std::path::Path> = set.files.iter().map(|f| f.path.as_path()).collect();
    let key = crate::cache::key_lit(&embedder.model_hash(), opts.flip, opts.lighting, &paths);
    if let Some(embeddings) =
        cache.and_then(|d| crate::cache::load(d, &key, embedder.dim(), set.files.len()))
    {
        let failed = Vec::new();
        return Ok((SetEmbeddings { embeddings, failed }, true));
    }
    let r = embed_set(embedder, set, opts)?;
    if let (Some(dir), true) = (cache, r.failed.is_empty()) {
        if let Err(e) = crate::cache::store(dir, &key, &r.embeddings) {
            eprintln!(
                "warning: could not write embedding cache in {}: {e}",
                dir.display()
            );
        }
    }
    Ok((r, false))
}
