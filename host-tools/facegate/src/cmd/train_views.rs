//! `facegate train-views`: augmented views of the training faces for the
//! teacher to embed, so the student can be shown exactly what the teacher saw.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use facegate_train::data::{Augment, FaceFolders};
use facegate_train::views::write_views;

/// Arguments of `facegate train-views`.
#[derive(Debug, Args)]
pub struct TrainViewsArgs {
    /// Identity-per-folder face roots (aligned 112×112), as a recipe's `data`.
    #[arg(long = "data", value_name = "DIR", required = true)]
    data: Vec<PathBuf>,
    /// Only identities with at least this many faces (a recipe's `min_images`).
    #[arg(long, default_value_t = 1)]
    min_images: usize,
    /// Views per face (`<stem>.v0.png` …); more can be added later, the
    /// first ones stay the same.
    #[arg(long, default_value_t = 4)]
    per_face: usize,
    /// Seed of the views.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of the views blended with another person's face (20–45 % of
    /// it): function matching, inputs between faces for the teacher to
    /// label. 0 keeps the views of earlier releases.
    #[arg(long, default_value_t = 0.0)]
    mix: f32,
    /// Folder for the views: `<out>/<root>/<identity>/<stem>.v<j>.png`.
    #[arg(long, short)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Renders the views.
pub fn run(a: TrainViewsArgs) -> Result<ExitCode> {
    for root in &a.data {
        let real = root.canonicalize().unwrap_or_else(|_| root.clone());
        anyhow::ensure!(
            !real.to_string_lossy().to_ascii_lowercase().contains("lfw"),
            "refusing to render training views of LFW ({}): LFW is measured on, not trained on",
            root.display()
        );
    }
    let folders = FaceFolders::scan(&a.data)
        .context("listing the faces")?
        .with_min_images(a.min_images);
    let files: Vec<PathBuf> = folders
        .identities
        .into_iter()
        .flat_map(|i| i.files)
        .collect();
    anyhow::ensure!(
        !files.is_empty(),
        "no faces under {:?} with at least {} per identity",
        a.data,
        a.min_images
    );
    let written = write_views(
        &files,
        a.per_face,
        &Augment::DOOR_VIEWS,
        a.seed,
        a.mix,
        &a.out,
        !a.quiet,
    )?;
    println!(
        "{written} views of {} faces in {}; next: scripts/build-teacher-views.sh",
        files.len(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
