//! `facegate db`: look inside a template database, check it for damage,
//! remove people, move people between databases.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use facegate_core::db::{
    DbReader, DbWriter, HEADER_LEN, HeaderHealth, MAX_TEMPLATES, PersonRecord, record_size,
};
use facegate_core::{EMBEDDING_DIM, ModelHash, PersonId};

/// `facegate db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Print the header and every person; damaged records are listed, not fatal.
    Show {
        /// Template database file (`.fgdb`).
        file: PathBuf,
    },
    /// Exit non-zero if any part of the database is damaged.
    Check {
        /// Template database file (`.fgdb`).
        file: PathBuf,
    },
    /// One line per person: id, name, templates.
    List {
        /// Template database file (`.fgdb`).
        file: PathBuf,
    },
    /// Remove people (the next `facegate provision` removes them from boards).
    Remove {
        /// Template database file (`.fgdb`).
        file: PathBuf,
        /// Person ids.
        #[arg(long = "id", required = true)]
        ids: Vec<u32>,
    },
    /// Write some people (default: everybody) to a new database, e.g. for another site.
    Export {
        /// Template database file (`.fgdb`).
        file: PathBuf,
        /// Person ids (default: all).
        #[arg(long = "id")]
        ids: Vec<u32>,
        /// The new database (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add the people of another database made with the same model.
    Import {
        /// Template database to add to (created if absent).
        file: PathBuf,
        /// Database to read people from.
        #[arg(long)]
        from: PathBuf,
        /// Replace people whose id is already there (default: refuse).
        #[arg(long)]
        replace: bool,
    },
}

/// Reads every person of `file`; a damaged record is an error naming it.
pub fn load_people(file: &Path) -> Result<(ModelHash, Vec<PersonRecord>)> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let db = DbReader::<EMBEDDING_DIM>::open(&bytes)
        .with_context(|| format!("{} is not a usable template database", file.display()))?;
    let mut people = Vec::new();
    for (i, r) in db.records().enumerate() {
        let r = r.with_context(|| {
            format!(
                "{}: record {i} is damaged; run `facegate db check`",
                file.display()
            )
        })?;
        people.push(r.to_record()?);
    }
    Ok((db.header().model_hash, people))
}

/// Writes `people` to `file` atomically: beside it, then renamed, so a crash
/// mid-write leaves the old database whole.
pub fn write_people(file: &Path, model: ModelHash, people: &[PersonRecord]) -> Result<()> {
    let slots = u8::try_from(MAX_TEMPLATES)?;
    let mut buf =
        vec![0u8; 2 * HEADER_LEN + people.len() * record_size(EMBEDDING_DIM, MAX_TEMPLATES)];
    let mut w = DbWriter::<EMBEDDING_DIM>::new(&mut buf, model, slots)?;
    for p in people {
        w.push(p)?;
    }
    let n = w.finish();
    let tmp = file.with_extension("fgdb.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buf[..n])?;
        // On disk before it replaces the old database, so a power cut
        // leaves one whole database or the other.
        f.sync_all()
    };
    write().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    // The rename itself is durable once the folder is synced (best effort:
    // not every platform lets a folder be opened).
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Runs a `db` subcommand.
pub fn run(cmd: DbCommand) -> Result<ExitCode> {
    match cmd {
        DbCommand::Show { file } => {
            let (report, _) = inspect(&file)?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Check { file } => {
            let (report, damaged) = inspect(&file)?;
            print!("{report}");
            if damaged == 0 {
                println!("ok: no damage found");
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "damaged: {damaged} problem(s); restore the file from a backup or re-enroll the people missing above"
                );
                Ok(ExitCode::from(2))
            }
        }
        DbCommand::List { file } => {
            for p in load_people(&file)?.1 {
                println!("{:>10}  {:<32}  {}", p.id.0, p.name, p.templates.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Remove { file, ids } => {
            let (model, mut people) = load_people(&file)?;
            for id in &ids {
                if !people.iter().any(|p| p.id == PersonId(*id)) {
                    bail!("{} has no person {id}; nothing removed", file.display());
                }
            }
            people.retain(|p| !ids.contains(&p.id.0));
            write_people(&file, model, &people)?;
            println!("removed {} people; {} remain", ids.len(), people.len());
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Export { file, ids, out } => {
            if out.exists() {
                bail!("{} exists; choose a new file", out.display());
            }
            let (model, people) = load_people(&file)?;
            for id in &ids {
                if !people.iter().any(|p| p.id == PersonId(*id)) {
                    bail!("{} has no person {id}", file.display());
                }
            }
            let chosen: Vec<PersonRecord> = people
                .into_iter()
                .filter(|p| ids.is_empty() || ids.contains(&p.id.0))
                .collect();
            write_people(&out, model, &chosen)?;
            println!("exported {} people to {}", chosen.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Import {
            file,
            from,
            replace,
        } => {
            let (their_model, theirs) = load_people(&from)?;
            let (model, mut people) = if file.exists() {
                load_people(&file)?
            } else {
                (their_model, Vec::new())
            };
            if model != their_model {
                bail!(
                    "{} was made with model {their_model}, {} with {model}: templates of different models cannot be mixed; re-enroll with one model",
                    from.display(),
                    file.display()
                );
            }
            let clash: Vec<u32> = theirs
                .iter()
                .filter(|t| people.iter().any(|p| p.id == t.id))
                .map(|t| t.id.0)
                .collect();
            if !clash.is_empty() && !replace {
                bail!(
                    "ids {clash:?} are in both databases; nothing imported (--replace takes the imported ones)"
                );
            }
            people.retain(|p| !theirs.iter().any(|t| t.id == p.id));
            let n = theirs.len();
            people.extend(theirs);
            write_people(&file, model, &people)?;
            println!(
                "imported {n} people; {} now holds {}",
                file.display(),
                people.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Renders the database at `file`; returns the text and the number of damaged parts.
pub fn inspect(file: &Path) -> Result<(String, usize)> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let db = DbReader::<EMBEDDING_DIM>::open(&bytes)
        .with_context(|| format!("{} is not a usable template database", file.display()))?;
    let h = db.header();
    let mut damaged = 0;
    let mut out = String::new();
    let health = match db.header_health() {
        HeaderHealth::Intact => "intact (both copies)",
        HeaderHealth::PrimaryDamaged => "primary copy damaged, backup used",
        HeaderHealth::BackupDamaged => "backup copy damaged, primary used",
    };
    if db.header_health() != HeaderHealth::Intact {
        damaged += 1;
    }
    let _ = writeln!(out, "template database {}", file.display());
    let _ = writeln!(
        out,
        "  format    v{}, {}-d int8 templates, {} per person",
        facegate_core::db::VERSION,
        h.dim,
        h.max_templates
    );
    let _ = writeln!(out, "  model     {}", h.model_hash);
    let _ = writeln!(out, "  header    {health}");
    let _ = writeln!(out, "  records   {} ({} B)", h.record_count, bytes.len());
    let _ = writeln!(out, "  {:>10}  {:<32}  templates", "id", "name");
    for rec in db.records() {
        match rec {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "  {:>10}  {:<32}  {}",
                    r.id().0,
                    r.name(),
                    r.template_count()
                );
            }
            Err(e) => {
                damaged += 1;
                let _ = writeln!(out, "  {:>10}  !! {e}", "-");
            }
        }
    }
    Ok((out, damaged))
}
