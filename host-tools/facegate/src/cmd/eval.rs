//! `facegate eval`: the field's verification protocols on LFW, and the door threshold.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_eval::embedder::{Embedder, PixelBaseline};
use facegate_eval::lfw::{EvalConfig, EvalReport, evaluate};
use facegate_eval::lighting::Lighting;
use facegate_eval::onnx::{InputNorm, OnnxEmbedder};
use facegate_eval::plot::{self, Curve};
use facegate_eval::roc::OperatingPoint;
use facegate_quant::engine::EngineEmbedder;

/// `facegate eval …`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Embedder to evaluate: an ONNX file (run by tract; float or QDQ int8), a `.fgm`
    /// blob (run by facegate's int8 engine, as on the boards), or `pixels`, the
    /// model-free baseline.
    #[arg(long, default_value = "pixels")]
    model: String,
    /// How pixels are scaled for an ONNX model's input.
    #[arg(long, value_enum, default_value_t = Norm::Arcface)]
    input_norm: Norm,
    /// Face data folder holding `lfw/` (default: $FACEGATE_DATA or ../shared/data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Evaluate your own identity-per-folder set of aligned faces instead of LFW
    /// (all pairs, 1:N and the threshold; no pair lists).
    #[arg(long, value_name = "DIR")]
    set: Option<PathBuf>,
    /// Add the embedding of the mirrored face (flip test).
    #[arg(long)]
    flip: bool,
    /// See every face under this light (the model card measures all four).
    #[arg(long, value_enum, default_value_t = LightingArg::Colour)]
    lighting: LightingArg,
    /// Skip the all-pairs protocol (~87 M impostor comparisons on LFW).
    #[arg(long)]
    no_all_pairs: bool,
    /// Skip 1:N identification.
    #[arg(long)]
    no_identification: bool,
    /// FAR the door threshold is chosen for.
    #[arg(long, default_value_t = 1e-3)]
    target_far: f64,
    /// Folder for report.json, report.md and deployment.toml.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
    /// Do not read or write the embedding cache ($FACEGATE_CACHE or ~/.cache/facegate).
    #[arg(long)]
    no_cache: bool,
    /// Earlier report.json files whose ROC is drawn on the same chart (e.g. float vs int8).
    #[arg(long, value_name = "REPORT_JSON")]
    compare: Vec<PathBuf>,
}

/// Input normalisation choices.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Norm {
    /// (x - 127.5) / 128, as insightface and facegate's models.
    Arcface,
    /// x / 255.
    Unit,
}

/// Lighting choices (`facegate_eval::lighting::Lighting`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LightingArg {
    /// The faces as stored.
    Colour,
    /// Luma only, as a mono or infrared camera sees them.
    Grey,
    /// Light from one side: 130 % on the lit edge falling to 20 % on the other.
    SideLit,
    /// Grey and side-lit.
    GreySideLit,
}

impl From<LightingArg> for Lighting {
    fn from(l: LightingArg) -> Self {
        match l {
            LightingArg::Colour => Self::Colour,
            LightingArg::Grey => Self::Grey,
            LightingArg::SideLit => Self::SideLit,
            LightingArg::GreySideLit => Self::GreySideLit,
        }
    }
}

/// The library's normalisation for a CLI choice.
pub fn input_norm(n: Norm) -> InputNorm {
    match n {
        Norm::Arcface => InputNorm::ArcFace,
        Norm::Unit => InputNorm::Unit,
    }
}

fn data_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| std::env::var_os("FACEGATE_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}

/// Runs `facegate eval`.
pub fn run(a: EvalArgs) -> Result<ExitCode> {
    let embedder: Box<dyn Embedder> = match a.model.as_str() {
        "pixels" => Box::new(PixelBaseline),
        path if path.ends_with(".fgm") => {
            Box::new(EngineEmbedder::load(std::path::Path::new(path)).map_err(anyhow::Error::msg)?)
        }
        path => Box::new(OnnxEmbedder::load(
            std::path::Path::new(path),
            input_norm(a.input_norm),
        )?),
    };
    if !(a.target_far > 0.0 && a.target_far < 1.0) {
        bail!("--target-far must be in (0, 1), got {}", a.target_far);
    }
    let (set, set_name, pair_lists) = match a.set {
        Some(dir) => {
            if !dir.is_dir() {
                bail!(
                    "--set {}: not a folder (expected <identity>/<image> folders)",
                    dir.display()
                );
            }
            let name = dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            (dir, name, None)
        }
        None => {
            let lfw = data_dir(a.data).join("lfw");
            if !lfw.join("pairs.txt").is_file() {
                bail!(
                    "no LFW at {} (expected pairs.txt and aligned_112/); pass --data, set FACEGATE_DATA, or evaluate your own faces with --set",
                    lfw.display()
                );
            }
            (lfw.join("aligned_112"), "LFW".to_string(), Some(lfw))
        }
    };
    let lighting = Lighting::from(a.lighting);
    let set_name = if lighting == Lighting::Colour {
        set_name
    } else {
        format!("{set_name} ({})", lighting.name())
    };
    let cfg = EvalConfig {
        set,
        set_name,
        pair_lists,
        flip: a.flip,
        lighting,
        all_pairs: !a.no_all_pairs,
        identification: !a.no_identification,
        target_far: a.target_far,
        cache: (!a.no_cache).then(facegate_eval::cache::default_dir),
        progress: true,
    };
    let report = evaluate(embedder.as_ref(), &cfg)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let md = facegate_eval::report::markdown(&report);
    std::fs::write(a.out.join("report.md"), &md)?;
    std::fs::write(
        a.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    if let Some(advice) = &report.advice {
        std::fs::write(a.out.join("deployment.toml"), advice.to_toml())?;
    }
    print!("{md}");
    let mut written = vec!["report.md", "report.json"];
    if report.advice.is_some() {
        written.push("deployment.toml");
    }
    match draw_charts(&report, &a.compare, &a.out) {
        Ok(charts) => written.extend(charts),
        // Charts are a view of the numbers above; a machine without fonts still gets the numbers.
        Err(e) => eprintln!("warning: charts not drawn: {e:#}"),
    }
    println!("\nwrote {}: {}", a.out.display(), written.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// ROC of a report, from all pairs when measured, else from View 2.
fn curve_of(report: &serde_json::Value) -> Result<(String, Vec<OperatingPoint>)> {
    let label = report["model"].as_str().unwrap_or("model").to_string();
    let (points, on) = if report["all_pairs"].is_object() || report["view2"].is_null() {
        (&report["all_pairs"]["roc_curve"], "all pairs")
    } else {
        (&report["view2"]["roc_curve"], "View 2")
    };
    let points: Vec<OperatingPoint> = points
        .as_array()
        .context("report has no roc_curve")?
        .iter()
        .filter_map(|p| {
            Some(OperatingPoint {
                threshold: p["threshold"].as_f64()?,
                far: p["far"].as_f64()?,
                tar: p["tar"].as_f64()?,
            })
        })
        .collect();
    Ok((format!("{label} ({on})"), points))
}

fn draw_charts(
    report: &EvalReport,
    compare: &[PathBuf],
    out: &std::path::Path,
) -> Result<Vec<&'static str>> {
    let mut curves = vec![curve_of(&serde_json::to_value(report)?)?];
    for c in compare {
        let text =
            std::fs::read_to_string(c).with_context(|| format!("cannot read {}", c.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a report.json", c.display()))?;
        curves.push(curve_of(&v).with_context(|| c.display().to_string())?);
    }
    let refs: Vec<Curve<'_>> = curves
        .iter()
        .map(|(label, points)| Curve {
            label: label.clone(),
            points,
        })
        .collect();
    plot::roc_chart(&out.join("roc.png"), "LFW verification ROC", &refs)?;
    let mut drawn = vec!["roc.png"];
    if let Some(all) = &report.all_pairs {
        let threshold = report.advice.as_ref().map(|a| a.threshold);
        let title = format!("LFW all-pairs scores: {}", report.model);
        plot::score_histogram_chart(
            &out.join("scores.png"),
            &title,
            &all.genuine_hist,
            &all.impostor_hist,
            threshold,
        )?;
        drawn.push("scores.png");
    }
    Ok(drawn)
}
