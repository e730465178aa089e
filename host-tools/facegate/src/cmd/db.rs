//! `facegate db`: look inside a template database, check it for damage.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use facegate_core::EMBEDDING_DIM;
use facegate_core::db::{DbReader, HeaderHealth};

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
    }
}

/// Renders the database at `file`; returns the text and the number of damaged parts.
pub fn inspect(file: &std::path::Path) -> Result<(String, usize)> {
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
