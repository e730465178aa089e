//! `facegate export`: a training run's embedder as float ONNX.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Args;
use facegate_train::training::RunDir;

/// `facegate export …`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run folder (`facegate train --out`).
    #[arg(long)]
    run: PathBuf,
    /// Take the last checkpoint (a run still training) instead of the final embedder.
    #[arg(long)]
    checkpoint: bool,
    /// ONNX file to write (default: RUN/embedder.onnx).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

/// Runs `facegate export`.
pub fn run(a: ExportArgs) -> Result<ExitCode> {
    let run = RunDir {
        root: a.run.clone(),
    };
    let cfg = run.load_config()?;
    let device = Device::flex();
    let net = if a.checkpoint {
        run.load_checkpoint_embedder(&device)?
    } else {
        run.load_embedder(&device)?
    };
    let out = a.out.unwrap_or_else(|| run.onnx());
    facegate_train::export::write_onnx(&net, &cfg.preset.architecture(), &out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: float ONNX (opset 13), input face [1,3,112,112] as (x-127.5)/128, output embedding",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
