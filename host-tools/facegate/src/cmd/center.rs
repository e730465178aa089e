//! `facegate center`: moves a float embedder's origin to the mean face of
//! a population, so that cosines compare what differs between people.
//!
//! Why: distilled from dlib, the students put every face inside a narrow
//! cone — the mean of their L2-normalised embeddings is 0.91 long, so any
//! two faces start near cosine 0.83 and identity lives in a small
//! remainder that harsh light and look-alike strangers swamp. Subtracting
//! the mean raw embedding of many training faces (folded into the last
//! layer's bias: same network, same cost on every board) lets the cosine
//! use the whole sphere; what it bought is measured in docs/evaluation.md
//! (*A centred embedding*).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use facegate_eval::embedder::Embedder as _;
use facegate_eval::faces::{Face, FaceSet};
use facegate_eval::onnx::OnnxEmbedder;
use facegate_quant::graph::FloatNet;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// `facegate center …`
#[derive(Debug, Args)]
pub struct CenterArgs {
    /// Float ONNX embedder whose last layer is a convolution or dense layer
    /// with a bias and no activation (as `facegate export` writes them).
    #[arg(long)]
    model: PathBuf,
    /// Folder of aligned faces, one folder per identity, whose mean
    /// embedding becomes the origin (repeatable): training faces, never an
    /// evaluation set.
    #[arg(long = "faces", value_name = "DIR", required = true)]
    faces: Vec<PathBuf>,
    /// Faces to average at most: every k-th of all the folders' files,
    /// k = ceil(files / this).
    #[arg(long, default_value_t = 4000)]
    images: usize,
    /// How pixels are scaled for the model's input.
    #[arg(long, value_enum, default_value_t = super::eval::Norm::Arcface)]
    input_norm: super::eval::Norm,
    /// ONNX file to write (may be --model itself: written to a temporary file, then renamed).
    #[arg(long, short)]
    out: PathBuf,
}

/// Every `step`-th file of the folders, so that `images` faces spread over all of them.
fn spread(dirs: &[PathBuf], images: usize) -> Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for d in dirs {
        let set = FaceSet::scan(d)?;
        all.extend(set.files.iter().map(|f| set.root.join(&f.path)));
    }
    ensure!(!all.is_empty(), "no faces in {dirs:?}");
    let step = all.len().div_ceil(images.max(1)).max(1);
    Ok(all.into_iter().step_by(step).take(images).collect())
}

/// The length of the mean of L2-normalised rows: 1 when every row points
/// the same way, near 0 when they spread around the origin.
fn mean_direction(rows: &[Vec<f32>], center: &[f64]) -> f64 {
    let mut sum = vec![0.0f64; center.len()];
    for r in rows {
        let v: Vec<f64> = r
            .iter()
            .zip(center)
            .map(|(&x, c)| f64::from(x) - c)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x / n);
    }
    sum.iter()
        .map(|s| (s / rows.len() as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("onnx.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs `facegate center`.
pub fn run(a: CenterArgs) -> Result<ExitCode> {
    if a.images == 0 {
        bail!("--images must be at least 1");
    }
    let norm = super::eval::input_norm(a.input_norm);
    let mut net = FloatNet::load(&a.model)?;
    let tract = OnnxEmbedder::load(&a.model, norm)
        .with_context(|| format!("cannot run {}", a.model.display()))?;
    let files = spread(&a.faces, a.images)?;
    let bar = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("embedding {bar:40} {pos}/{len} faces {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let embedded: Vec<Option<Vec<f32>>> = files
        .par_iter()
        .map(|p| {
            bar.inc(1);
            let face = Face::load(p).ok()?;
            tract.embed(&face).ok()
        })
        .collect();
    bar.finish_and_clear();
    let unreadable = embedded.iter().filter(|e| e.is_none()).count();
    let rows: Vec<Vec<f32>> = embedded.into_iter().flatten().collect();
    ensure!(
        rows.len() >= 2,
        "only {} of {} faces could be embedded",
        rows.len(),
        files.len()
    );
    let dim = tract.dim();
    let mut center = vec![0.0f64; dim];
    for r in &rows {
        center
            .iter_mut()
            .zip(r)
            .for_each(|(c, &x)| *c += f64::from(x));
    }
    center.iter_mut().for_each(|c| *c /= rows.len() as f64);
    let before = mean_direction(&rows, &vec![0.0; dim]);
    let after = mean_direction(&rows, &center);
    let shift: Vec<f32> = center.iter().map(|&c| c as f32).collect();
    net.shift_output(&shift)
        .with_context(|| format!("{}", a.model.display()))?;
    write_atomic(
        &a.out,
        &facegate_quant::qdq::export_float(&net, "facegate center"),
    )?;
    // The written model must be the old one minus the center, on a real face.
    let check = OnnxEmbedder::load(&a.out, norm)
        .with_context(|| format!("cannot run the written {}", a.out.display()))?;
    let probe = Face::load(&files[0])?;
    let (old, new) = (
        tract.embed(&probe).map_err(anyhow::Error::msg)?,
        check.embed(&probe).map_err(anyhow::Error::msg)?,
    );
    let worst = old
        .iter()
        .zip(&new)
        .zip(&shift)
        .map(|((o, n), c)| (o - c - n).abs())
        .fold(0.0f32, f32::max);
    let scale = old.iter().map(|x| x.abs()).fold(0.0f32, f32::max).max(1.0);
    ensure!(
        worst <= 1e-4 * scale,
        "the written model is not the old one minus the center (off by {worst}): not used"
    );
    println!("centred {} → {}", a.model.display(), a.out.display());
    println!(
        "  faces          {} from {} folder(s) ({unreadable} unreadable)",
        rows.len(),
        a.faces.len()
    );
    println!(
        "  mean direction {before:.3} → {after:.3} (length of the mean L2-normalised embedding: 1 = every face the same way)"
    );
    println!(
        "  center length  {:.3} (a face's raw embedding: {:.3} on average)",
        center.iter().map(|c| c * c).sum::<f64>().sqrt(),
        rows.iter()
            .map(|r| r.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / rows.len() as f64
    );
    println!("  next: facegate quantize --model {} …", a.out.display());
    Ok(ExitCode::SUCCESS)
}
