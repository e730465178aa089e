//! `facegate enroll`: photos of one person → faces (detected, aligned,
//! quality-gated) → int8 templates in the site database, with the engine
//! the boards run (same model hash).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use facegate_core::db::{MAX_TEMPLATES, PersonRecord};
use facegate_core::{EMBEDDING_DIM, Embedding, PersonId, Template};
use facegate_eval::embedder::Embedder;
use facegate_quant::engine::EngineEmbedder;
use indicatif::{ProgressBar, ProgressStyle};

use super::photos::{GateArgs, PhotoArgs};

/// `facegate enroll …`
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Site template database (created if absent).
    #[arg(long, default_value = "site.fgdb")]
    db: PathBuf,
    /// The engine blob the boards run (`facegate quantize`).
    #[arg(long)]
    model: PathBuf,
    /// Person id (unique in the site), 0 to 2147483647.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(facegate_core::matcher::PersonId::MAX)))]
    id: u32,
    /// Display name (≤ 32 bytes).
    #[arg(long)]
    name: String,
    /// Replace the person already enrolled under this id.
    #[arg(long)]
    replace: bool,
    /// Templates to keep (the photos that agree best with the others).
    #[arg(long, default_value_t = 5)]
    keep: usize,
    /// A photo whose best cosine to the person's other photos is below this is rejected as an outlier.
    #[arg(long, default_value_t = 0.3, allow_negative_numbers = true)]
    min_agreement: f32,
    #[command(flatten)]
    photo: PhotoArgs,
    #[command(flatten)]
    gates: GateArgs,
    /// Photos of the person (JPEG, PNG or PNM; one face each, or choose with --face).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
}

/// Runs `facegate enroll`.
pub fn run(a: EnrollArgs) -> Result<ExitCode> {
    if a.keep == 0 || a.keep > MAX_TEMPLATES {
        bail!("--keep must be 1..={MAX_TEMPLATES}");
    }
    let engine = EngineEmbedder::load(&a.model).map_err(anyhow::Error::msg)?;
    let model = engine.model_hash();
    let mut people: Vec<PersonRecord> = Vec::new();
    if a.db.exists() {
        let (db_model, existing) = super::db::load_people(&a.db)?;
        if db_model != model {
            bail!(
                "{} cannot take templates of {}: it holds templates of model {db_model}",
                a.db.display(),
                a.model.display()
            );
        }
        people = existing;
    }
    if let Some(existing) = people.iter().find(|p| p.id == PersonId(a.id)) {
        if !a.replace {
            bail!(
                "id {} is already enrolled in {} as {:?}; pass --replace to re-enroll them, or choose another id",
                a.id,
                a.db.display(),
                existing.name.as_str()
            );
        }
    }
    let mut person = PersonRecord::new(PersonId(a.id), &a.name)?;
    let loader = a.photo.loader()?;
    let gates = a.gates.gates();

    let bar = ProgressBar::new(a.photos.len() as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg}")?
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("enrolling {}", a.name));
    // Printed above the bar (a hidden bar would swallow `bar.println`).
    let say = |line: String| bar.suspend(|| println!("{line}"));
    let mut embedded: Vec<(PathBuf, Template)> = Vec::new();
    let mut rejected = 0usize;
    for p in &a.photos {
        bar.set_message(p.display().to_string());
        let face = loader.load(p).and_then(|f| {
            if let Some(q) = &f.quality {
                gates
                    .check(q)
                    .map_err(|g| format!("{}: {g}", p.display()))?;
            }
            Ok(f)
        });
        let outcome = face.and_then(|f| {
            let raw = engine.embed(&f.face)?;
            let e = Embedding::<EMBEDDING_DIM>::from_slice(&raw).map_err(|e| e.to_string())?;
            Ok((f, Template::quantize(&e)))
        });
        match outcome {
            Ok((f, t)) => {
                if let Some(q) = f.quality {
                    say(format!(
                        "face in {}: eyes {:.0} px apart, sharpness {:.0}, yaw {:+.2}, pitch {:+.2}{}",
                        p.display(),
                        q.eye_distance,
                        q.sharpness,
                        q.yaw,
                        q.pitch,
                        if f.faces_in_photo > 1 {
                            format!(" (chosen among {})", f.faces_in_photo)
                        } else {
                            String::new()
                        }
                    ));
                }
                embedded.push((p.clone(), t));
            }
            Err(e) => {
                rejected += 1;
                // Errors from the loader already name the photo.
                let e = if e.starts_with(&p.display().to_string()) {
                    e
                } else {
                    format!("{}: {e}", p.display())
                };
                say(format!("rejected {e}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if embedded.is_empty() {
        bail!(
            "no usable photo of {} ({} rejected; reasons above)",
            a.name,
            rejected
        );
    }
    // Agreement: each photo's best match among the person's other photos.
    let mut scored: Vec<(f32, &PathBuf, Template)> = embedded
        .iter()
        .enumerate()
        .map(|(i, (p, t))| {
            let best = embedded
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, u))| t.cosine(u))
                .fold(f32::NEG_INFINITY, f32::max);
            (if embedded.len() == 1 { 1.0 } else { best }, p, *t)
        })
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0));
    for (agreement, p, t) in &scored {
        if *agreement < a.min_agreement {
            rejected += 1;
            println!(
                "rejected {}: agrees with the other photos only to {agreement:.2} (< {}); a different person or a poor photo",
                p.display(),
                a.min_agreement
            );
        } else if person.templates.len() < a.keep {
            person.push_template(*t)?;
            println!("template from {} (agreement {agreement:.2})", p.display());
        }
    }
    if person.templates.is_empty() {
        bail!(
            "every photo of {} was rejected; check that they show the same person",
            a.name
        );
    }
    people.retain(|p| p.id != person.id);
    people.push(person);

    super::db::write_people(&a.db, model, &people)?;
    println!(
        "enrolled {} ({}) with {} template(s) from {} photo(s), {} rejected; {} now holds {} people",
        a.name,
        a.id,
        people.last().map_or(0, |p| p.templates.len()),
        a.photos.len(),
        rejected,
        a.db.display(),
        people.len()
    );
    Ok(ExitCode::SUCCESS)
}
