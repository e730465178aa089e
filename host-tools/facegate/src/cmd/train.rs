//! `facegate train`: a face embedder from identity-per-folder images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use facegate_train::device::ComputeDevice;
use facegate_train::distill::{DEFAULT_WEIGHT as DEFAULT_DISTILL_WEIGHT, DistillSettings};
use facegate_train::heads::HeadKind;
use facegate_train::model::Preset;
use facegate_train::training::{CenterSettings, Optimizer, RunOptions, TrainConfig, train};

/// Heads on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Head {
    /// Softmax with bias (baseline).
    Softmax,
    /// Softmax + Center loss.
    Center,
    /// L-Softmax (m = 2 by default).
    LSoftmax,
    /// A-Softmax / SphereFace (m = 4).
    ASoftmax,
    /// CosFace / AM-Softmax (s = 30, m = 0.35): the default.
    Cosface,
    /// ArcFace (s = 64 → here s = 30, m = 0.5).
    Arcface,
    /// Combined margin (s = 30, m1 = 1, m2 = 0.3, m3 = 0.2).
    Combined,
}

impl Head {
    /// The head and (for `center`) the Center loss settings, with paper defaults
    /// unless `s`/`m` override them.
    pub fn resolve(self, s: Option<f32>, m: Option<f32>) -> (HeadKind, Option<CenterSettings>) {
        let s = s.unwrap_or(30.0);
        match self {
            Self::Softmax => (HeadKind::Softmax, None),
            Self::Center => (
                HeadKind::Softmax,
                Some(CenterSettings {
                    lambda: 0.01,
                    alpha: 0.5,
                }),
            ),
            Self::LSoftmax => (
                HeadKind::LSoftmax {
                    m: m.map_or(2, |m| m.round() as u32),
                },
                None,
            ),
            Self::ASoftmax => (
                HeadKind::ASoftmax {
                    m: m.map_or(4, |m| m.round() as u32),
                },
                None,
            ),
            Self::Cosface => (
                HeadKind::CosFace {
                    s,
                    m: m.unwrap_or(0.35),
                },
                None,
            ),
            Self::Arcface => (
                HeadKind::ArcFace {
                    s,
                    m: m.unwrap_or(0.5),
                },
                None,
            ),
            Self::Combined => (
                HeadKind::Combined {
                    s,
                    m1: 1.0,
                    m2: 0.3,
                    m3: 0.2,
                },
                None,
            ),
        }
    }
}

/// `facegate train …`
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run folder: config.toml, checkpoint/, metrics.csv, loss.png, accuracy.png, embedder.bpk.
    #[arg(long, short)]
    out: PathBuf,
    /// A recipe (TOML, as the `config.toml` a run writes); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run in `--out` from its last checkpoint (with its own config).
    #[arg(long)]
    resume: bool,
    /// Identity-per-folder face roots (aligned 112×112), merged by folder name.
    #[arg(long = "data", value_name = "DIR")]
    data: Vec<PathBuf>,
    /// Network size.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Loss head.
    #[arg(long, value_enum)]
    head: Option<Head>,
    /// Scale s of the normalised heads.
    #[arg(long)]
    s: Option<f32>,
    /// Margin m of the head.
    #[arg(long)]
    m: Option<f32>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Faces per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Use AdamW instead of SGD with momentum.
    #[arg(long)]
    adamw: bool,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Leave out identities with fewer images.
    #[arg(long)]
    min_images: Option<usize>,
    /// Dropout on the pooled features before the embedding layer (training only).
    #[arg(long)]
    dropout: Option<f64>,
    /// Distil from a teacher: its embeddings of the training faces
    /// (scripts/build-teacher-embeddings.sh writes dlib's).
    #[arg(long, value_name = "TSV")]
    teacher: Option<PathBuf>,
    /// Weight of the distillation loss, 1 − cos(student, teacher) (with --teacher or a recipe's `distill`).
    #[arg(long, value_name = "W")]
    distill_weight: Option<f32>,
    /// At most this many identities (a quick run).
    #[arg(long)]
    max_identities: Option<usize>,
    /// LFW folder for the per-epoch dev accuracy (View 1).
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Compute device: flex (pure Rust, CPU), or with a LibTorch build
    /// (scripts/build-tch.sh) tch-cpu, tch-cuda or tch-cuda:N (GPU N).
    #[arg(long, default_value_t = ComputeDevice::Flex)]
    device: ComputeDevice,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// The run's config from the recipe, the defaults and the flags.
pub fn config(a: &TrainArgs) -> Result<TrainConfig> {
    let mut cfg = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the recipe {}", p.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a training recipe", p.display()))?
        }
        None if a.resume => facegate_train::training::RunDir {
            root: a.out.clone(),
        }
        .load_config()
        .context("--resume needs the run's config.toml")?,
        None => TrainConfig::new(Preset::Nano, Vec::new()),
    };
    if !a.data.is_empty() {
        cfg.data = a.data.clone();
    }
    if let Some(p) = a.preset {
        cfg.preset = p;
    }
    if let Some(h) = a.head {
        (cfg.head, cfg.center) = h.resolve(a.s, a.m);
    }
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field.clone() { cfg.$field = v; } )* };
    }
    set!(epochs, batch_size, lr, seed, min_images, dropout, threads);
    if a.adamw {
        cfg.optimizer = Optimizer::AdamW;
    }
    if let Some(teacher) = &a.teacher {
        match &mut cfg.distill {
            // The recipe's other distillation settings stay.
            Some(d) => d.teacher = teacher.clone(),
            None => {
                cfg.distill = Some(DistillSettings::new(
                    teacher.clone(),
                    DEFAULT_DISTILL_WEIGHT,
                ));
            }
        }
    }
    if let Some(w) = a.distill_weight {
        match &mut cfg.distill {
            Some(d) => d.weight = w,
            None => anyhow::bail!("--distill-weight needs --teacher (or a recipe with `distill`)"),
        }
    }
    if a.max_identities.is_some() {
        cfg.max_identities = a.max_identities;
    }
    if a.lfw.is_some() {
        cfg.lfw = a.lfw.clone();
    }
    anyhow::ensure!(
        !cfg.data.is_empty(),
        "no training data: pass --data DIR (identity-per-folder aligned faces), e.g. --data ../shared/data/celeba/wild_112"
    );
    Ok(cfg)
}

/// Runs `facegate train`.
pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let cfg = config(&a)?;
    if cfg.threads > 0 {
        // Only the first pool set up in a process counts; ignore a second call.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .build_global();
    }
    let info = cfg.preset.architecture().info();
    eprintln!(
        "training {:?} ({} params, {:.1} M MACs) with {} on {} ({}) → {}",
        cfg.preset,
        info.params,
        info.macs as f64 / 1e6,
        cfg.head.name(),
        a.device,
        cfg.data
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        a.out.display()
    );
    let summary = train(
        &cfg,
        &a.out,
        RunOptions {
            resume: a.resume,
            progress: !a.quiet,
            device: a.device,
        },
    )?;
    for (f, why) in &summary.skipped {
        eprintln!("skipped {}: {why}", f.display());
    }
    if let Some(last) = summary.history.last() {
        println!(
            "{} faces of {} identities{}; epoch {}: loss {:.4}, train accuracy {:.4}{}, {:.1} img/s",
            summary.faces,
            summary.classes,
            if summary.unlabelled > 0 {
                format!(
                    " ({} of them unlabelled, teacher targets only)",
                    summary.unlabelled
                )
            } else {
                String::new()
            },
            last.epoch,
            last.loss,
            last.train_accuracy,
            last.lfw_dev_accuracy
                .map_or(String::new(), |a| format!(", LFW dev accuracy {a:.4}")),
            last.images_per_second
        );
    }
    if summary.views > 0 {
        println!("teacher views shown beside them: {}", summary.views);
    }
    println!("run folder: {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
