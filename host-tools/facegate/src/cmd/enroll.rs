//! `facegate enroll`: aligned face photos of one person → int8 templates in
//! the site database, with the engine the boards run (same model hash).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use facegate_core::db::{MAX_TEMPLATES, PersonRecord};
use facegate_core::{EMBEDDING_DIM, Embedding, PersonId, Template};
use facegate_eval::embedder::Embedder;
use facegate_eval::faces::Face;
use facegate_quant::engine::EngineEmbedder;

/// `facegate enroll …`
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Site template database (created if absent).
    #[arg(long, default_value = "site.fgdb")]
    db: PathBuf,
    /// The engine blob the boards run (`facegate quantize`).
    #[arg(long)]
    model: PathBuf,
    /// Person id (unique in the site).
    #[arg(long)]
    id: u32,
    /// Display name (≤ 32 bytes).
    #[arg(long)]
    name: String,
    /// Templates to keep (the photos that agree best with the others).
    #[arg(long, default_value_t = 5)]
    keep: usize,
    /// A photo whose best cosine to the person's other photos is below this is rejected as an outlier.
    #[arg(long, default_value_t = 0.3, allow_negative_numbers = true)]
    min_agreement: f32,
    /// Aligned 112×112 face photos of the person (detection from raw photos is not built yet).
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
    let mut person = PersonRecord::new(PersonId(a.id), &a.name)?;

    let mut embedded: Vec<(PathBuf, Template)> = Vec::new();
    for p in &a.photos {
        match Face::load(p)
            .map_err(|e| e.to_string())
            .and_then(|f| engine.embed(&f))
        {
            Ok(raw) => {
                let e = Embedding::<EMBEDDING_DIM>::from_slice(&raw)?;
                embedded.push((p.clone(), Template::quantize(&e)));
            }
            Err(e) => eprintln!("rejected {}: {e}", p.display()),
        }
    }
    if embedded.is_empty() {
        bail!("no usable photo of {}", a.name);
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
            eprintln!(
                "rejected {}: agrees with the other photos only to {agreement:.2} (< {})",
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
        "enrolled {} ({}) with {} template(s); {} now holds {} people",
        a.name,
        a.id,
        people.last().map_or(0, |p| p.templates.len()),
        a.db.display(),
        people.len()
    );
    Ok(ExitCode::SUCCESS)
}
