//! `facegate viz`: the feature spaces of the six losses, side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use facegate_train::viz::{DEBIAN_FASHION_MNIST, VizOptions, draw_grid, panels, train_panels};

/// `facegate viz …`
#[derive(Debug, Args)]
pub struct VizArgs {
    /// PNG to write.
    #[arg(long, short, default_value = "losses-2d.png")]
    out: PathBuf,
    /// Fashion-MNIST folder (IDX .gz files; Debian's dataset-fashion-mnist).
    #[arg(long, default_value = DEBIAN_FASHION_MNIST)]
    data: PathBuf,
    /// Training images per loss.
    #[arg(long, default_value_t = 12_000)]
    train_images: usize,
    /// Test images drawn.
    #[arg(long, default_value_t = 2_000)]
    test_images: usize,
    /// Epochs per loss.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Feature width: 2 (the plane) or 3 (directions drawn on the sphere).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    dim: u8,
}

/// Runs `facegate viz`.
pub fn run(a: VizArgs) -> Result<ExitCode> {
    let opts = VizOptions {
        data: a.data,
        train_images: a.train_images,
        test_images: a.test_images,
        epochs: a.epochs,
        seed: a.seed,
        dim: usize::from(a.dim),
    };
    let p = panels();
    let (feats, labels) = train_panels(&opts, &p, |t| {
        eprintln!("training {}-D features with {t}", a.dim);
    })?;
    draw_grid(&a.out, &p, &feats, &labels, opts.dim)?;
    println!(
        "{}: {}-D test features of Fashion-MNIST per loss, coloured by class",
        a.out.display(),
        a.dim
    );
    Ok(ExitCode::SUCCESS)
}
