//! `facegate verify`: check a face against the site database on the host,
//! with the engine and the decision policy the boards use.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_core::db::DbReader;
use facegate_core::matcher::{Decision, Matcher, MatcherConfig};
use facegate_core::{EMBEDDING_DIM, Embedding, ModelHash, Template};
use facegate_eval::deploy::DeploymentAdvice;
use facegate_eval::embedder::Embedder;
use facegate_quant::engine::EngineEmbedder;

/// `facegate verify …`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Site template database.
    #[arg(long, default_value = "site.fgdb")]
    db: PathBuf,
    /// The engine blob the templates were made with (not needed with --port).
    #[arg(long, required_unless_present = "port")]
    model: Option<PathBuf>,
    /// Ask a board instead (`tcp:HOST:PORT` or a serial device): the board
    /// embeds, decides and pulses its lock as for a camera frame.
    #[arg(long)]
    port: Option<String>,
    /// Site private key for --port: only its holder may ask a board.
    #[arg(long, default_value = "site.key")]
    key: PathBuf,
    /// Accept at cosine ≥ this (or give --deployment; one of them is required).
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f32>,
    /// Deployment file written by `facegate eval` (its threshold is used).
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// Require the best person to lead the runner-up by this much.
    #[arg(long)]
    margin: Option<f32>,
    #[command(flatten)]
    faces: super::photos::PhotoArgs,
    /// Face photo (detected and aligned first; see --aligned).
    photo: PathBuf,
}

/// The threshold of a deployment file written by `facegate eval` for
/// `model` (see [`deployment`]).
pub fn deployment_threshold(path: &Path, model: &ModelHash) -> Result<f32> {
    #[allow(clippy::cast_possible_truncation)]
    Ok(deployment(path, model)?.threshold as f32)
}

/// A deployment file written by `facegate eval` for `model`. Another
/// model's file is refused: its scores live on another scale, so its
/// threshold could let strangers in (or keep everyone out).
pub fn deployment(path: &Path, model: &ModelHash) -> Result<DeploymentAdvice> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let advice = DeploymentAdvice::from_toml(&text)
        .with_context(|| format!("{} is not a deployment file", path.display()))?;
    let model = model.to_string();
    if !advice.model_hash.eq_ignore_ascii_case(&model) {
        bail!(
            "{} is for model {}… ({}), not {}…: use the deployment file of the model the templates were made with",
            path.display(),
            advice.model_hash.get(..16).unwrap_or(&advice.model_hash),
            advice.model,
            &model[..16]
        );
    }
    // Doors and enrollment embed each face once: a threshold measured on
    // flip-test embeddings (face + mirror) sits on another score scale.
    if advice.flip_test {
        bail!(
            "{} was measured with the flip test (`facegate eval --flip`), which no door does: write it again without --flip",
            path.display()
        );
    }
    Ok(advice)
}

/// Runs `facegate verify`; exit status 0 when accepted, 3 when rejected.
pub fn run(a: VerifyArgs) -> Result<ExitCode> {
    if let Some(port) = &a.port {
        return super::board::verify_on_board(port, &a.key, &a.photo, &a.faces);
    }
    let model = a.model.context("--model is required without --port")?;
    let engine = EngineEmbedder::load(&model).map_err(anyhow::Error::msg)?;
    let threshold = match (a.threshold, &a.deployment) {
        (Some(t), _) => t,
        (None, Some(p)) => deployment_threshold(p, &engine.model_hash())?,
        // No silent default: today's models accept 1 % of strangers at
        // about 0.87–0.89, so a guessed threshold could admit many of them.
        (None, None) => bail!(
            "no threshold: pass --deployment (the model's deployment file, e.g. models/nano.deployment.toml) or --threshold"
        ),
    };
    let matcher = Matcher::new(MatcherConfig {
        threshold,
        margin: a.margin,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bytes = std::fs::read(&a.db).with_context(|| format!("cannot read {}", a.db.display()))?;
    let db = DbReader::<EMBEDDING_DIM>::open_for_model(&bytes, &engine.model_hash())
        .with_context(|| format!("{} was not made with {}", a.db.display(), model.display()))?;
    let face = a
        .faces
        .loader()?
        .load(&a.photo)
        .map_err(anyhow::Error::msg)?
        .face;
    let raw = engine.embed(&face).map_err(anyhow::Error::msg)?;
    let probe = Template::quantize(&Embedding::<EMBEDDING_DIM>::from_slice(&raw)?);
    let mut gallery = Vec::new();
    let mut names = std::collections::HashMap::new();
    for (i, r) in db.records().enumerate() {
        let r = r.with_context(|| format!("{}: record {i} is damaged", a.db.display()))?;
        names.insert(r.id(), r.name().to_string());
        gallery.extend(r.templates().map(|t| (r.id(), t)));
    }
    let decision = matcher.identify(&probe, gallery.iter().map(|(id, t)| (*id, t)));
    let name = |id| names.get(&id).cloned().unwrap_or_default();
    match decision {
        Decision::Accept(c) => {
            println!(
                "ACCEPT {} (id {}), score {:.4} ≥ {threshold:.4}",
                name(c.id),
                c.id.0,
                c.score
            );
            Ok(ExitCode::SUCCESS)
        }
        Decision::Reject { reason, best } => {
            match best {
                Some(c) => println!(
                    "REJECT ({reason:?}); closest {} (id {}) at {:.4}, threshold {threshold:.4}",
                    name(c.id),
                    c.id.0,
                    c.score
                ),
                None => println!("REJECT ({reason:?}): nobody enrolled"),
            }
            Ok(ExitCode::from(3))
        }
    }
}
