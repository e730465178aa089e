//! `facegate-edge bench`: what the camera path costs on this board, photo
//! by photo: decode, detect and align (MTCNN, the quality gates), embed
//! (tract), and the whole frame → decision, single-threaded like the door loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use facegate_detect::{FaceFinder, MtcnnConfig, QualityGates};
use facegate_eval::faces::{Face, decode_image};

use crate::camera::{Eyes, FRAME_BOUNDS};
use crate::embedder::TractEmbedder;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Float ONNX model.
    pub model: PathBuf,
    /// Its int8 blob (checked against the model as at start-up).
    pub blob: PathBuf,
    /// MTCNN weights.
    pub detector: PathBuf,
    /// Folder of photos (searched recursively for `.jpg`/`.png`).
    pub photos: PathBuf,
    /// At most this many photos.
    pub limit: usize,
}

fn photos_in(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            photos_in(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        {
            out.push(p);
        }
    }
    Ok(())
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Runs the benchmark; returns its report.
pub fn run(c: &BenchConfig) -> Result<String> {
    let mut photos = Vec::new();
    photos_in(&c.photos, &mut photos)
        .with_context(|| format!("cannot read {}", c.photos.display()))?;
    photos.sort();
    photos.truncate(c.limit);
    if photos.is_empty() {
        bail!("no photos in {}", c.photos.display());
    }
    let finder = FaceFinder::load(&c.detector, MtcnnConfig::default()).with_context(|| {
        format!(
            "cannot load the face detector from {}",
            c.detector.display()
        )
    })?;
    let eyes = Eyes::new(finder, QualityGates::default());
    // The same start-up check of the model against its blob as the door's.
    let embedder = TractEmbedder::load(&c.model, &c.blob, &crate::door_app::reference_faces())?;
    let (mut decode, mut look, mut embed, mut total) = (vec![], vec![], vec![], vec![]);
    let mut faces = 0usize;
    let started = Instant::now();
    for p in &photos {
        let bytes = std::fs::read(p)?;
        let t0 = Instant::now();
        let img = decode_image(&bytes, FRAME_BOUNDS)
            .with_context(|| p.display().to_string())?
            .to_rgb8();
        let t1 = Instant::now();
        let found = eyes
            .look(&img, t0)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        let t2 = Instant::now();
        decode.push(t1 - t0);
        look.push(t2 - t1);
        if let Some(c) = found {
            embedder
                .embed_face(&Face { rgb: c.aligned })
                .map_err(anyhow::Error::msg)?;
            embed.push(t2.elapsed());
            faces += 1;
        }
        total.push(t0.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(format!(
        "facegate-edge bench: {} photos ({} with a judged face) from {}, one thread, {}\n  decode {:.1} ms, detect + align + gates {:.1} ms, embed {:.1} ms (medians)\n  photo → embedding: median {:.1} ms, {:.2} photos/s",
        photos.len(),
        faces,
        c.photos.display(),
        std::env::consts::ARCH,
        median_ms(&mut decode),
        median_ms(&mut look),
        median_ms(&mut embed),
        median_ms(&mut total),
        photos.len() as f64 / secs
    ))
}
