//! `facegate bench losses`: the seed's question answered with numbers — the
//! same network, data, epochs and seed trained with each loss, each measured
//! on LFW (10-fold accuracy, TAR at FAR 1e-3 over all pairs).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use facegate_eval::lfw::{EvalConfig, evaluate};
use facegate_eval::onnx::{InputNorm, OnnxEmbedder};
use facegate_train::device::ComputeDevice;
use facegate_train::training::{RunDir, RunOptions, TrainConfig, train};
use serde::{Deserialize, Serialize};

use super::train::Head;

/// `facegate bench losses …`
#[derive(Debug, Args)]
pub struct LossesArgs {
    /// The shared recipe (network, data, epochs, seed); only the head changes.
    #[arg(long)]
    config: PathBuf,
    /// Folder for one run per loss, `losses.md` and `losses.json`.
    #[arg(long, short)]
    out: PathBuf,
    /// LFW folder (`aligned_112` + pair lists).
    #[arg(long, default_value = "../shared/data/lfw")]
    lfw: PathBuf,
    /// Override the recipe's epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Only these losses (default: all six).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Head>,
    /// Compute device: flex, or with a LibTorch build tch-cpu, tch-cuda or tch-cuda:N (GPU N).
    #[arg(long, default_value_t = ComputeDevice::Flex)]
    device: ComputeDevice,
}

/// One row of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LossRow {
    /// Loss name.
    pub loss: String,
    /// LFW View 2 10-fold mean accuracy.
    pub lfw_accuracy: f64,
    /// Its fold standard deviation.
    pub lfw_std: f64,
    /// TAR at FAR 1e-3 over all LFW pairs.
    pub tar_at_far_1e3: Option<f64>,
    /// All-pairs AUC.
    pub auc: Option<f64>,
    /// Final training loss (each loss on its own scale).
    pub final_loss: f64,
    /// Final training accuracy (nearest class centre).
    pub train_accuracy: f64,
    /// Epochs.
    pub epochs: usize,
    /// Training images per second (last epoch).
    pub images_per_second: f64,
}

const ALL: [Head; 6] = [
    Head::Softmax,
    Head::Center,
    Head::LSoftmax,
    Head::ASoftmax,
    Head::Cosface,
    Head::Arcface,
];

fn name(h: Head) -> &'static str {
    match h {
        Head::Softmax => "Softmax",
        Head::Center => "Softmax + Center",
        Head::LSoftmax => "L-Softmax (m=2)",
        Head::ASoftmax => "A-Softmax / SphereFace (m=4)",
        Head::Cosface => "CosFace / AM-Softmax (s=30, m=0.35)",
        Head::Arcface => "ArcFace (s=30, m=0.5)",
        Head::Combined => "combined (s=30, 1, 0.3, 0.2)",
    }
}

/// Runs `facegate bench losses`.
pub fn run(a: LossesArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("cannot read {}", a.config.display()))?;
    let base: TrainConfig =
        toml::from_str(&text).with_context(|| format!("{} is not a recipe", a.config.display()))?;
    let heads: Vec<Head> = if a.only.is_empty() {
        ALL.to_vec()
    } else {
        a.only.clone()
    };
    std::fs::create_dir_all(&a.out)?;
    let mut rows = Vec::new();
    for h in heads {
        let mut cfg = base.clone();
        (cfg.head, cfg.center) = h.resolve(None, None);
        if let Some(e) = a.epochs {
            cfg.epochs = e;
        }
        let dir = a.out.join(format!("{h:?}").to_lowercase());
        let row_file = dir.join("row.json");
        if let Ok(t) = std::fs::read_to_string(&row_file) {
            if let Ok(row) = serde_json::from_str::<LossRow>(&t) {
                eprintln!(
                    "{}: measured before ({}), reusing",
                    name(h),
                    row_file.display()
                );
                rows.push(row);
                continue;
            }
        }
        eprintln!("== {} → {}", name(h), dir.display());
        let resume = RunDir { root: dir.clone() }
            .load_config()
            .is_ok_and(|c| c == cfg);
        let summary = train(
            &cfg,
            &dir,
            RunOptions {
                resume,
                progress: true,
                device: a.device,
            },
        )?;
        let last = summary.history.last().context("no epoch ran")?.clone();
        let onnx = RunDir { root: dir.clone() }.onnx();
        let embedder = OnnxEmbedder::load(&onnx, InputNorm::ArcFace)?;
        let report = evaluate(
            &embedder,
            &EvalConfig {
                set: a.lfw.join("aligned_112"),
                set_name: "LFW".into(),
                pair_lists: Some(a.lfw.clone()),
                flip: false,
                lighting: facegate_eval::lighting::Lighting::Colour,
                all_pairs: true,
                identification: false,
                target_far: 1e-3,
                cache: None,
                progress: true,
            },
        )?;
        let kfold = report
            .view2
            .as_ref()
            .and_then(|v| v.kfold.clone())
            .context("LFW View 2 did not run: is pairs.txt in --lfw?")?;
        let all = report.all_pairs.as_ref();
        let row = LossRow {
            loss: name(h).into(),
            lfw_accuracy: kfold.mean,
            lfw_std: kfold.std,
            tar_at_far_1e3: all.and_then(|p| {
                p.tar_at_far
                    .iter()
                    .find(|o| (o.far - 1e-3).abs() < 2e-4)
                    .map(|o| o.tar)
            }),
            auc: all.map(|p| p.auc),
            final_loss: last.loss,
            train_accuracy: last.train_accuracy,
            epochs: cfg.epochs,
            images_per_second: last.images_per_second,
        };
        std::fs::write(&row_file, serde_json::to_string_pretty(&row)?)?;
        std::fs::write(
            dir.join("eval.md"),
            facegate_eval::report::markdown(&report),
        )?;
        rows.push(row);
    }
    let md = table(&base, &rows);
    std::fs::write(a.out.join("losses.md"), &md)?;
    std::fs::write(
        a.out.join("losses.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    print!("{md}");
    Ok(ExitCode::SUCCESS)
}

/// The comparison as a markdown table.
pub fn table(base: &TrainConfig, rows: &[LossRow]) -> String {
    let mut s = String::new();
    let data: Vec<String> = base.data.iter().map(|p| p.display().to_string()).collect();
    let _ = writeln!(
        s,
        "Loss comparison: `{:?}` on {} (≥ {} images per identity), {} epochs, batch {}, seed {}; LFW measured, never trained on.\n",
        base.preset,
        data.join(" + "),
        base.min_images,
        rows.first().map_or(base.epochs, |r| r.epochs),
        base.batch_size,
        base.seed
    );
    let _ = writeln!(
        s,
        "| loss | LFW 10-fold | TAR @ FAR 1e-3 | AUC (all pairs) | train acc | img/s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.2} % ± {:.2} | {} | {} | {:.3} | {:.0} |",
            r.loss,
            100.0 * r.lfw_accuracy,
            100.0 * r.lfw_std,
            r.tar_at_far_1e3
                .map_or("–".into(), |t| format!("{:.2} %", 100.0 * t)),
            r.auc.map_or("–".into(), |t| format!("{t:.4}")),
            r.train_accuracy,
            r.images_per_second
        );
    }
    s
}
