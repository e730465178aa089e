//! `facegate eval-enroll`: how well enrollment from raw photos identifies
//! people at the door. Each person of `lfw/raw_subset` is enrolled from their
//! first photos that pass detection and the quality gates (as
//! `facegate enroll` does); their other raw photos are genuine probes; every
//! LFW image of the people *not* in the subset is an impostor probe. The
//! matcher decides at the deployed threshold, as the boards do.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_core::matcher::{Decision, Matcher, MatcherConfig};
use facegate_core::{EMBEDDING_DIM, Embedding, PersonId, Template};
use facegate_eval::embedder::{EmbedOptions, Embedder, embed_set_cached};
use facegate_eval::faces::{Face, FaceSet};
use facegate_quant::engine::EngineEmbedder;
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use super::photos::{FaceChoice, GateArgs, PhotoArgs};

/// `facegate eval-enroll …`
#[derive(Debug, Args)]
pub struct EvalEnrollArgs {
    /// The engine blob the boards run.
    #[arg(long, default_value = "models/nano.fgm")]
    model: PathBuf,
    /// Deployment file written by `facegate eval` (its threshold decides).
    #[arg(long, default_value = "models/nano.deployment.toml")]
    deployment: PathBuf,
    /// Shared data folder (default: $FACEGATE_DATA, else ../shared/data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Photos enrolled per person.
    #[arg(long, default_value_t = 3)]
    enroll: usize,
    /// Enroll each person as one template, the normalised mean of their
    /// photos' embeddings, instead of one template per photo.
    #[arg(long)]
    fuse: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Embed the impostors afresh instead of reading the embedding cache.
    #[arg(long)]
    no_cache: bool,
    /// Detector folder (default: models/third_party/mtcnn).
    #[arg(long, env = "FACEGATE_MTCNN", hide_env_values = true)]
    detector: Option<PathBuf>,
    #[command(flatten)]
    gates: GateArgs,
}

/// The outcome, as written to `--out`.
#[derive(Debug, Serialize)]
pub struct EnrollmentReport {
    /// Engine file.
    pub model: String,
    /// Hex SHA-256 of the engine blob (the model card only shows a report
    /// of the very blob it describes).
    pub model_hash: String,
    /// Threshold used.
    pub threshold: f32,
    /// People enrolled.
    pub people: usize,
    /// Photos per person enrolled.
    pub photos_per_person: usize,
    /// Raw photos with no face found (neither enrolled nor probed).
    pub not_detected: usize,
    /// Enrollment candidates the quality gates refused.
    pub gated: usize,
    /// Genuine probes (raw photos of enrolled people not used to enroll).
    pub genuine_probes: usize,
    /// Impostor probes (LFW people not enrolled).
    pub impostor_probes: usize,
    /// Genuine probes whose best-scoring person is themselves (threshold aside).
    pub rank1: f64,
    /// Genuine probes not accepted as themselves at the threshold.
    pub frr: f64,
    /// Genuine probes accepted as someone else.
    pub misidentified: f64,
    /// Impostor probes accepted as anyone.
    pub far: f64,
    /// The open-set FAR this gallery size would need (the deployment
    /// threshold holds a 1:1 FAR; a door compares against every template).
    pub target_far: f64,
    /// The threshold that holds `target_far` over these impostor probes.
    pub threshold_for_target: f32,
    /// FRR at `threshold_for_target`.
    pub frr_at_target: f64,
}

/// The smallest threshold at which at most `far` of `impostor_best` scores
/// are accepted (`score >= t`).
fn threshold_for_far(impostor_best: &[f32], far: f64) -> f32 {
    let mut v = impostor_best.to_vec();
    v.sort_by(|a, b| b.total_cmp(a));
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let allowed = (far * v.len() as f64).floor() as usize;
    // Accepting `allowed` impostors at most: just above the next score.
    v.get(allowed).map_or(f32::MIN, |s| s.next_up())
}

fn rate(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        #[allow(clippy::cast_precision_loss)]
        let r = n as f64 / of as f64;
        r
    }
}

fn template(engine: &EngineEmbedder, face: &Face) -> Result<Template, String> {
    let raw = engine.embed(face)?;
    let e = Embedding::<EMBEDDING_DIM>::from_slice(&raw).map_err(|e| e.to_string())?;
    Ok(Template::quantize(&e))
}

/// One template per person: the normalised mean of their templates.
fn fuse(gallery: &[(PersonId, Template)]) -> Result<Vec<(PersonId, Template)>> {
    let mut sums: Vec<(PersonId, [f32; EMBEDDING_DIM])> = Vec::new();
    for (id, t) in gallery {
        let v = t.dequantize();
        match sums.iter_mut().find(|(i, _)| i == id) {
            Some((_, s)) => s.iter_mut().zip(v).for_each(|(s, x)| *s += x),
            None => sums.push((*id, v)),
        }
    }
    sums.into_iter()
        .map(|(id, s)| {
            let e = Embedding::<EMBEDDING_DIM>::normalize(s)
                .map_err(|e| anyhow::anyhow!("person {}: {e}", id.0))?;
            Ok((id, Template::quantize(&e)))
        })
        .collect()
}

/// Runs `facegate eval-enroll`.
#[allow(clippy::too_many_lines)]
pub fn run(a: EvalEnrollArgs) -> Result<ExitCode> {
    if a.enroll == 0 || a.enroll > facegate_core::db::MAX_TEMPLATES {
        bail!("--enroll must be 1..={}", facegate_core::db::MAX_TEMPLATES);
    }
    let data = a
        .data
        .or_else(|| std::env::var_os("FACEGATE_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("../shared/data"));
    let raw_root = data.join("lfw/raw_subset");
    let aligned_root = data.join("lfw/aligned_112");
    if !raw_root.is_dir() || !aligned_root.is_dir() {
        bail!(
            "no LFW raw_subset/aligned_112 under {}; pass --data or set FACEGATE_DATA",
            data.display()
        );
    }
    let engine = EngineEmbedder::load(&a.model).map_err(anyhow::Error::msg)?;
    let threshold = super::verify::deployment_threshold(&a.deployment, &engine.model_hash())?;
    let loader = PhotoArgs {
        aligned: false,
        detector: a.detector,
        face: FaceChoice::Central,
        min_face: 40.0,
    }
    .loader()?;
    let gates = a.gates.gates();

    // Raw photos: detect, align, measure, embed.
    let raw = FaceSet::scan(&raw_root)?;
    let bar = ProgressBar::new(raw.files.len() as u64).with_style(
        ProgressStyle::with_template(
            "detecting + embedding raw photos [{bar:40}] {pos}/{len} {per_sec}",
        )?
        .progress_chars("=> "),
    );
    let found: Vec<Result<(bool, Template), String>> = raw
        .files
        .par_iter()
        .progress_with(bar)
        .map(|f| {
            let face = loader.load(&raw.root.join(&f.path))?;
            let passes = face.quality.is_some_and(|q| gates.check(&q).is_ok());
            Ok((passes, template(&engine, &face.face)?))
        })
        .collect();

    let mut gallery: Vec<(PersonId, Template)> = Vec::new();
    let mut genuine: Vec<(PersonId, Template)> = Vec::new();
    let (mut not_detected, mut gated) = (0, 0);
    let mut enrolled_count: HashMap<u32, usize> = HashMap::new();
    for (f, r) in raw.files.iter().zip(&found) {
        let id = PersonId(f.identity);
        match r {
            Err(_) => not_detected += 1,
            Ok((passes, t)) => {
                let n = enrolled_count.entry(f.identity).or_default();
                if *n < a.enroll {
                    if *passes {
                        *n += 1;
                        gallery.push((id, *t));
                    } else {
                        gated += 1;
                    }
                } else {
                    genuine.push((id, *t));
                }
            }
        }
    }
    let people = enrolled_count.values().filter(|&&n| n > 0).count();
    if a.fuse {
        gallery = fuse(&gallery)?;
    }

    // Impostors: every LFW image of people outside the subset.
    let inside: HashSet<&str> = raw.identities.iter().map(String::as_str).collect();
    let mut lfw = FaceSet::scan(&aligned_root)?;
    lfw.files
        .retain(|f| !inside.contains(lfw.identities[f.identity as usize].as_str()));
    let (impostors, _) = embed_set_cached(
        &engine,
        &lfw,
        EmbedOptions {
            flip: false,
            progress: true,
            ..EmbedOptions::default()
        },
        (!a.no_cache)
            .then(facegate_eval::cache::default_dir)
            .as_deref(),
    )?;
    if !impostors.failed.is_empty() {
        bail!(
            "{} impostor images failed: {:?}",
            impostors.failed.len(),
            &impostors.failed[..1]
        );
    }
    let impostor_emb = impostors.embeddings;

    let matcher = Matcher::new(MatcherConfig {
        threshold,
        margin: None,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let identify = |t: &Template| matcher.identify(t, gallery.iter().map(|(id, g)| (*id, g)));
    let (mut rank1, mut rejected, mut wrong) = (0, 0, 0);
    // Scores of genuine probes whose best match is themselves.
    let mut right_scores = Vec::new();
    for (id, t) in &genuine {
        let best = gallery
            .iter()
            .max_by(|x, y| x.1.cosine(t).total_cmp(&y.1.cosine(t)));
        if let Some(b) = best.filter(|b| b.0 == *id) {
            rank1 += 1;
            right_scores.push(b.1.cosine(t));
        }
        match identify(t) {
            Decision::Accept(c) if c.id == *id => {}
            Decision::Accept(_) => wrong += 1,
            Decision::Reject { .. } => rejected += 1,
        }
    }
    let mut accepted_impostors = 0;
    let mut impostor_best = Vec::with_capacity(impostor_emb.rows());
    for i in 0..impostor_emb.rows() {
        let e = Embedding::<EMBEDDING_DIM>::from_slice(impostor_emb.row(i))
            .context("an impostor embedding")?;
        let t = Template::quantize(&e);
        if matches!(identify(&t), Decision::Accept(_)) {
            accepted_impostors += 1;
        }
        impostor_best.push(
            gallery
                .iter()
                .map(|g| g.1.cosine(&t))
                .fold(f32::MIN, f32::max),
        );
    }
    let target_far = 1e-3;
    let threshold_for_target = threshold_for_far(&impostor_best, target_far);
    let accepted_at_target = right_scores
        .iter()
        .filter(|&&s| s >= threshold_for_target)
        .count();
    let report = EnrollmentReport {
        model: a.model.display().to_string(),
        model_hash: engine
            .model_hash()
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        threshold,
        people,
        photos_per_person: a.enroll,
        not_detected,
        gated,
        genuine_probes: genuine.len(),
        impostor_probes: impostor_emb.rows(),
        rank1: rate(rank1, genuine.len()),
        // A photo with no face found is a door that stays shut.
        frr: rate(
            rejected + wrong + not_detected,
            genuine.len() + not_detected,
        ),
        misidentified: rate(wrong, genuine.len()),
        far: rate(accepted_impostors, impostor_emb.rows()),
        target_far,
        threshold_for_target,
        frr_at_target: 1.0 - rate(accepted_at_target, genuine.len() + not_detected),
    };
    println!(
        "enrolled {} people of lfw/raw_subset from {} raw photos each (detected, aligned, gated; {} photos refused by the gates, {} with no face found)",
        report.people, report.photos_per_person, report.gated, report.not_detected
    );
    println!(
        "genuine probes  {:>6}   rank-1 {:.1} %",
        report.genuine_probes,
        100.0 * report.rank1
    );
    println!(
        "at threshold {:.4} ({}): FRR {:.1} % (misidentified {:.2} %), FAR {:.3} % of {} impostor probes",
        threshold,
        a.deployment.display(),
        100.0 * report.frr,
        100.0 * report.misidentified,
        100.0 * report.far,
        report.impostor_probes
    );
    println!(
        "with {} people enrolled, open-set FAR {:.1} % needs threshold {:.4}: FRR {:.1} % there",
        report.people,
        100.0 * report.target_far,
        report.threshold_for_target,
        100.0 * report.frr_at_target
    );
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(hot: &[(usize, f32)]) -> Template {
        let mut v = [0.0f32; EMBEDDING_DIM];
        for &(i, x) in hot {
            v[i] = x;
        }
        Template::quantize(&Embedding::normalize(v).unwrap())
    }

    #[test]
    fn fuse_keeps_one_template_per_person_at_the_mean_direction() {
        let (a, b) = (template(&[(0, 1.0)]), template(&[(1, 1.0)]));
        let c = template(&[(2, 1.0)]);
        let fused = fuse(&[(PersonId(7), a), (PersonId(9), c), (PersonId(7), b)]).unwrap();
        assert_eq!(fused.len(), 2);
        assert_eq!((fused[0].0, fused[1].0), (PersonId(7), PersonId(9)));
        // Person 7's mean of two orthogonal directions sits at 45° to both.
        let half = std::f32::consts::FRAC_1_SQRT_2;
        assert!((fused[0].1.cosine(&a) - half).abs() < 0.02);
        assert!((fused[0].1.cosine(&b) - half).abs() < 0.02);
        assert!((fused[0].1.cosine(&template(&[(0, 1.0), (1, 1.0)])) - 1.0).abs() < 0.01);
        // A person with one template keeps it.
        assert!((fused[1].1.cosine(&c) - 1.0).abs() < 1e-3);
    }
}
