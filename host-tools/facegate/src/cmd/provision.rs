//! `facegate provision`: make a board hold exactly the site database.
//!
//! Claims an unclaimed board with the site key, then compares what the
//! board lists (id and a digest of name and templates) with the database
//! and sends only the differences as signed commands: enroll what is new or
//! changed, remove what the site no longer has, set the threshold. A second
//! run finds nothing to do; a run cut short (unplugged cable) is finished by
//! the next. The board's list is read back at the end to prove the sync.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_core::db::DbReader;
use facegate_core::protocol::{Command, ErrorCode, person_digest};
use facegate_core::{EMBEDDING_DIM, Template};
use facegate_link::{LinkError, encode_templates};
use indicatif::{ProgressBar, ProgressStyle};

use super::board::{connect, describe, hex, load_site_key};

/// `facegate provision …`
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// `tcp:HOST:PORT` (QEMU board, edge board) or a serial device (`/dev/ttyACM0[@BAUD]`).
    #[arg(long)]
    port: String,
    /// Site private key (`facegate keygen`).
    #[arg(long, default_value = "site.key")]
    key: PathBuf,
    /// Site template database (`facegate enroll`).
    #[arg(long, default_value = "site.fgdb")]
    db: PathBuf,
    /// Deployment file written by `facegate eval`: its threshold goes to the board.
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// Threshold to set (overrides --deployment).
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f32>,
    /// How long the lock stays open after an accept, in milliseconds.
    #[arg(long)]
    unlock_ms: Option<u32>,
}

struct SitePerson {
    name: String,
    templates: Vec<Template>,
    digest: u32,
}

/// Runs `facegate provision`.
pub fn run(a: ProvisionArgs) -> Result<ExitCode> {
    let key = load_site_key(&a.key)?;
    let bytes = std::fs::read(&a.db).with_context(|| format!("cannot read {}", a.db.display()))?;
    let db = DbReader::<EMBEDDING_DIM>::open(&bytes)
        .with_context(|| format!("{} is not a facegate template database", a.db.display()))?;
    let mut site = BTreeMap::new();
    for (i, r) in db.records().enumerate() {
        let r = r.with_context(|| {
            format!(
                "{}: record {i} is damaged; nothing was sent (re-enroll that person)",
                a.db.display()
            )
        })?;
        let templates: Vec<Template> = r.templates().collect();
        let digest = person_digest(r.name(), &templates);
        site.insert(
            r.id().0,
            SitePerson {
                name: r.name().to_string(),
                templates,
                digest,
            },
        );
    }
    let threshold = match (a.threshold, &a.deployment) {
        (Some(t), _) => Some(t),
        (None, Some(p)) => Some(super::verify::deployment_threshold(
            p,
            &db.header().model_hash,
        )?),
        (None, None) => None,
    };

    let mut board = connect(&a.port)?;
    let info = board.info()?;
    if info.model_hash != db.header().model_hash.0 {
        bail!(
            "the board runs model {} but {} was enrolled with model {}: enroll with the board's model (or flash the site's)",
            hex(&info.model_hash),
            a.db.display(),
            db.header().model_hash
        );
    }
    let public = key.verifying_key().to_bytes();
    match info.site_key {
        None => {
            board.claim(&key.verifying_key())?;
            println!("claimed the board for site key {}…", &hex(&public)[..16]);
        }
        Some(k) if k != public => bail!(
            "the board belongs to another site key ({}…, not {}…): use that site's key, or reset the board",
            &hex(&k)[..16],
            &hex(&public)[..16]
        ),
        Some(_) => {}
    }
    if usize::from(info.capacity) < site.len() {
        bail!(
            "the board holds {} people, the site has {}",
            info.capacity,
            site.len()
        );
    }

    let on_board: BTreeMap<u32, u32> = board
        .list()?
        .into_iter()
        .map(|p| (p.id, p.digest))
        .collect();
    let stale: Vec<u32> = on_board
        .keys()
        .filter(|id| !site.contains_key(id))
        .copied()
        .collect();
    let changed: Vec<u32> = site
        .iter()
        .filter(|(id, p)| on_board.get(id) != Some(&p.digest))
        .map(|(id, _)| *id)
        .collect();
    let set_threshold = threshold.filter(|t| (t - info.threshold).abs() > 1e-6);
    let set_unlock = a.unlock_ms.filter(|&ms| ms != info.unlock_ms);

    let steps = stale.len()
        + changed.len()
        + usize::from(set_threshold.is_some())
        + usize::from(set_unlock.is_some());
    if steps == 0 {
        println!(
            "already in sync: {} people, threshold {:.4}; nothing sent",
            site.len(),
            info.threshold
        );
        return Ok(ExitCode::SUCCESS);
    }
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let refused = |what: String| {
        move |e: LinkError| match e {
            LinkError::Refused(ErrorCode::BadSignature) => anyhow::anyhow!(
                "{what}: the board refused the signature (claimed by another site key?)"
            ),
            e => anyhow::Error::new(e).context(what),
        }
    };
    // Removals first: they free the room new people need.
    for id in &stale {
        bar.set_message(format!("remove {id}"));
        board
            .signed(&key, &Command::Remove { id: *id })
            .map_err(refused(format!("remove person {id}")))?;
        bar.inc(1);
    }
    for id in &changed {
        let p = &site[id];
        bar.set_message(format!("enroll {id} {}", p.name));
        board
            .signed(
                &key,
                &Command::Enroll {
                    id: *id,
                    name: &p.name,
                    templates: &encode_templates(&p.templates),
                },
            )
            .map_err(refused(format!("enroll person {id} ({})", p.name)))?;
        bar.inc(1);
    }
    if let Some(t) = set_threshold {
        bar.set_message(format!("threshold {t:.4}"));
        board
            .signed(&key, &Command::SetThreshold { threshold: t })
            .map_err(refused("set the threshold".into()))?;
        bar.inc(1);
    }
    if let Some(ms) = set_unlock {
        bar.set_message(format!("unlock time {ms} ms"));
        board
            .signed(&key, &Command::SetUnlockTime { ms })
            .map_err(refused("set the unlock time".into()))?;
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Read back: the board must now list exactly the site.
    let listed: BTreeMap<u32, u32> = board
        .list()?
        .into_iter()
        .map(|p| (p.id, p.digest))
        .collect();
    let wanted: BTreeMap<u32, u32> = site.iter().map(|(id, p)| (*id, p.digest)).collect();
    if listed != wanted {
        bail!("read-back differs from the site database: the board lists {listed:?}");
    }
    let info = board.info()?;
    println!(
        "provisioned: {} enrolled or updated, {} removed, {} unchanged",
        changed.len(),
        stale.len(),
        site.len() - changed.len()
    );
    print!("{}", describe(&a.port, &info));
    Ok(ExitCode::SUCCESS)
}
