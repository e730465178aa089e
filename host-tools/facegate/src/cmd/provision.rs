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
use facegate_eval::deploy::DeploymentAdvice;
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
    /// Instead of --deployment's one-to-one threshold, pick from its FAR
    /// curve the threshold that keeps a stranger's chance of being accepted
    /// by any of the site's templates at most this (e.g. 0.01): the more
    /// templates enrolled, the stricter. Run again after enrolling more.
    #[arg(long, requires = "deployment", conflicts_with = "threshold", value_parser = probability)]
    open_set_far: Option<f64>,
    /// How long the lock stays open after an accept, in milliseconds.
    #[arg(long)]
    unlock_ms: Option<u32>,
    /// Installer private key (`facegate keygen --out installer.key`): signs
    /// the claim of a board built or started with that installer's public
    /// key (`FACEGATE_CLAIM_KEY`, `facegate-edge serve --claim-key`).
    #[arg(long, conflicts_with = "claim_token")]
    installer_key: Option<PathBuf>,
    /// A claim token for this board and site key, made by its installer
    /// (`facegate claim-token`), as 128 hex digits.
    #[arg(long)]
    claim_token: Option<String>,
}

struct SitePerson {
    name: String,
    templates: Vec<Template>,
    digest: u32,
}

/// Every template of the site: a stranger at the door is compared with each.
fn site_templates(site: &BTreeMap<u32, SitePerson>) -> usize {
    site.values().map(|p| p.templates.len()).sum()
}

/// `--open-set-far`'s argument: a probability in (0, 1].
fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("{s} is not a probability in (0, 1]")),
    }
}

/// The threshold to set, if any, and what it means at this site's size.
fn site_threshold(
    a: &ProvisionArgs,
    advice: Option<&(&PathBuf, DeploymentAdvice)>,
    templates: usize,
) -> Result<Option<f32>> {
    #[allow(clippy::cast_possible_truncation)]
    let threshold = match (a.threshold, advice, a.open_set_far) {
        (Some(t), _, _) => Some(t),
        (None, Some((path, adv)), Some(target)) => {
            // An empty site still gets the threshold of one template.
            let p = adv
                .threshold_for_open_set_far(target, templates.max(1))
                .with_context(|| {
                    let strictest = adv.far_curve.last().map_or(String::from("none: the file predates curves; run `facegate eval` again"), |p| format!("1:1 FAR {:.0e}", p.far));
                    format!(
                        "{} has no threshold that keeps {templates} templates under open-set FAR {target} (its strictest point: {strictest}): aim higher, or enroll fewer templates",
                        path.display()
                    )
                })?;
            println!(
                "threshold {:.4}: open-set FAR at most {target} with {templates} templates (1:1 FAR {:.1e} on {}, where {:.1} % of genuine comparisons pass)",
                p.threshold,
                p.far,
                adv.measured_on,
                100.0 * p.tar
            );
            Some(p.threshold as f32)
        }
        (None, Some((_, adv)), None) => Some(adv.threshold as f32),
        (None, None, _) => None,
    };
    if let (Some(t), Some((path, adv))) = (threshold, advice) {
        if (f64::from(t) - adv.threshold).abs() < 1e-6 {
            for h in &adv.held_out {
                println!(
                    "held out (strangers the threshold was not chosen on): {}: {:.3} % of {} pairs accepted",
                    h.set,
                    100.0 * h.far,
                    h.impostor_pairs
                );
            }
        }
        match adv.open_set_far(f64::from(t), templates) {
            Some(f) => {
                println!(
                    "at threshold {t:.4} a stranger is accepted by one of the site's {templates} templates with probability at most {:.2} % ({templates} × the 1:1 FAR on {})",
                    100.0 * f,
                    adv.measured_on
                );
                if f > 0.01 && a.open_set_far.is_none() {
                    eprintln!(
                        "warning: that is above 1 %; `--open-set-far 0.01` picks the threshold that keeps it under 1 % for this site"
                    );
                }
            }
            None if adv.far_curve.is_empty() => eprintln!(
                "note: {} has no FAR curve (written before them): run `facegate eval` again to see what the threshold means for {templates} templates",
                path.display()
            ),
            None => eprintln!(
                "warning: threshold {t:.4} is below {}'s curve (a 1:1 FAR above 1e-2): strangers will often be accepted",
                path.display()
            ),
        }
    }
    Ok(threshold)
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
    let advice = match &a.deployment {
        Some(p) => Some((p, super::verify::deployment(p, &db.header().model_hash)?)),
        None => None,
    };
    let threshold = site_threshold(&a, advice.as_ref(), site_templates(&site))?;

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
            let token: Vec<u8> = match (&a.installer_key, &a.claim_token) {
                (Some(path), _) => facegate_link::claim_token(
                    &load_site_key(path)?,
                    &info.device_id,
                    &key.verifying_key(),
                )
                .to_vec(),
                (None, Some(text)) => super::claim_token::parse_token(text)?.to_vec(),
                (None, None) if info.claim_needs_token => bail!(
                    "this board only accepts a claim its installer signed: pass --installer-key installer.key, or --claim-token from `facegate claim-token`"
                ),
                (None, None) => Vec::new(),
            };
            board.claim(&key.verifying_key(), &token).map_err(|e| match e {
                LinkError::Refused(ErrorCode::BadSignature) => anyhow::anyhow!(
                    "the board refused the claim token: it was made for another board, another site key, or by another installer"
                ),
                e => e.into(),
            })?;
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
        .list(&key)?
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
    if threshold.is_none() && info.threshold >= facegate_core::matcher::FACTORY_THRESHOLD {
        eprintln!(
            "note: the board has its factory threshold {:.4} and opens for no one: pass --deployment (the model's deployment file) or --threshold to set one",
            info.threshold
        );
    }
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
        .list(&key)?
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
