//! `facegate quantize`: float ONNX → int8 `.fgm` blob for facegate's engine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_core::engine::Model;
use facegate_eval::faces::{Face, FaceSet};
use facegate_quant::graph::FloatNet;
use facegate_quant::quantize::{ArenaPlan, Calibration, calibrate_with, quantize_within};

/// `facegate quantize …`
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Float ONNX embedder (Conv/BatchNorm/PRelu/Relu/Add/Flatten/Gemm, 1×3×112×112 input).
    #[arg(long)]
    model: PathBuf,
    /// Identity-per-folder folder of aligned faces to calibrate on (never the evaluation set).
    #[arg(long, value_name = "DIR")]
    calib: PathBuf,
    /// Calibration faces (one per identity, in sorted order, then more per identity).
    #[arg(long, default_value_t = 200)]
    images: usize,
    /// How activation ranges are chosen: observed min–max, a percentile (clips outliers),
    /// or the range with the least squared quantisation error.
    #[arg(long, value_enum, default_value_t = Method::Minmax)]
    calibration: Method,
    /// Two-sided percentile for `--calibration percentile`.
    #[arg(long, default_value_t = 99.99)]
    percentile: f64,
    /// How pixels are scaled for the model's input.
    #[arg(long, value_enum, default_value_t = super::eval::Norm::Arcface)]
    input_norm: super::eval::Norm,
    /// Output blob.
    #[arg(long, short)]
    out: PathBuf,
    /// Also write the same quantisation as ONNX QDQ (runs on tract and onnxruntime).
    #[arg(long, value_name = "ONNX")]
    qdq: Option<PathBuf>,
    /// RAM budget of the board in bytes (e.g. 524288 for `mfn`'s 512 KiB): if the
    /// plain plan needs more, bottleneck expansions are computed a few rows at a
    /// time (same results to the bit, a little slower).
    #[arg(long, value_name = "BYTES")]
    max_arena: Option<usize>,
}

/// Calibration choices.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Method {
    /// Observed minimum and maximum.
    Minmax,
    /// Two-sided percentile (--percentile).
    Percentile,
    /// Least squared quantisation error.
    Mse,
}

/// Runs `facegate quantize`.
pub fn run(a: QuantizeArgs) -> Result<ExitCode> {
    if a.images == 0 {
        bail!("--images must be at least 1");
    }
    let net = FloatNet::load(&a.model)?;
    let set = FaceSet::scan(&a.calib)?;
    // Spread calibration over people first: one face per identity, then seconds, …
    let mut order: Vec<usize> = (0..set.files.len()).collect();
    let mut rank = vec![0usize; set.files.len()];
    let mut seen = std::collections::HashMap::<u32, usize>::new();
    for (i, f) in set.files.iter().enumerate() {
        let k = seen.entry(f.identity).or_default();
        rank[i] = *k;
        *k += 1;
    }
    order.sort_by_key(|&i| (rank[i], i));
    let mut faces = Vec::new();
    let mut skipped = 0;
    for &i in order.iter().take(a.images) {
        match Face::load(&set.root.join(&set.files[i].path)) {
            Ok(f) => faces.push(f),
            Err(e) => {
                eprintln!("warning: skipping calibration face: {e}");
                skipped += 1;
            }
        }
    }
    let norm = super::eval::input_norm(a.input_norm);
    let method = match a.calibration {
        Method::Minmax => Calibration::MinMax,
        Method::Percentile => Calibration::Percentile(a.percentile),
        Method::Mse => Calibration::Mse,
    };
    let ranges = calibrate_with(&net, &faces, norm, method).context("calibration")?;
    let plan = a.max_arena.map_or(ArenaPlan::Whole, ArenaPlan::Fit);
    let q = quantize_within(&net, &ranges, norm, plan)?;
    let m = Model::parse(&q.blob).context("the written blob does not parse (a quantizer bug)")?;
    std::fs::write(&a.out, &q.blob).with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("quantized {} → {}", a.model.display(), a.out.display());
    println!(
        "  calibration   {} faces from {} ({skipped} unreadable)",
        faces.len(),
        a.calib.display()
    );
    println!("  ops           {}", m.op_count());
    println!("  MACs          {:.1} M", m.macs() as f64 / 1e6);
    println!("  flash (blob)  {} B", q.blob.len());
    let bands = match m.banded_tensors() {
        0 => String::new(),
        n => format!(" ({n} expansions in row bands)"),
    };
    println!("  arena (RAM)   {} B{bands}", q.arena_len);
    println!("  model hash    {}", m.hash());
    if let Some(path) = &a.qdq {
        std::fs::write(path, facegate_quant::qdq::export_qdq(&net, &ranges))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("  QDQ ONNX      {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
