//! The card's robustness rows: the engine under grey and side light, the
//! door threshold that holds under all of them, and strangers from sources
//! the threshold was not chosen on (ORL's grey faces, UTKFace).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use facegate_detect::{Choice, FaceFinder, MtcnnConfig};
use facegate_eval::allpairs::{Embeddings, all_pairs};
use facegate_eval::deploy::{DeploymentAdvice, HeldOutCheck};
use facegate_eval::embedder::{EmbedOptions, Embedder, embed_set_cached};
use facegate_eval::faces::{Face, FaceFile, FaceSet};
use facegate_eval::lfw::{EvalConfig, EvalReport, evaluate};
use facegate_eval::lighting::{Lighting, far_at, strictest_advice};
use facegate_eval::roc::{DEFAULT_BINS, Roc};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The FAR the door threshold is chosen for.
pub const TARGET_FAR: f64 = 1e-3;

/// LFW under one lighting, on the engine.
#[derive(Debug, Serialize, Deserialize)]
pub struct LightingRow {
    pub lighting: String,
    pub lfw_accuracy: f64,
    pub lfw_std: f64,
    pub auc: f64,
    /// TAR at FAR 1e-3 with this lighting's own threshold.
    pub tar_at_1e3: Option<f64>,
    pub threshold_at_1e3: Option<f64>,
    /// FAR and TAR at the deployed threshold.
    pub far_deployed: f64,
    pub tar_deployed: f64,
}

/// Strangers (and owners, where labelled) from a set the threshold was not
/// chosen on.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeldOutRow {
    pub set: String,
    pub faces: usize,
    /// Photos the detector found no face in (not counted).
    pub not_found: usize,
    pub genuine: u64,
    pub impostor: u64,
    pub tar_at_1e3: Option<f64>,
    pub far_deployed: f64,
    pub tar_deployed: Option<f64>,
}

/// Everything the robustness section shows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Robustness {
    pub lighting: Vec<LightingRow>,
    pub held_out: Vec<HeldOutRow>,
    pub threshold: f64,
    pub promised_far: f64,
}

/// The config of one LFW run of the card under `lighting`.
pub fn lfw_config(lfw: &Path, lighting: Lighting, cache: bool) -> EvalConfig {
    EvalConfig {
        set: lfw.join("aligned_112"),
        set_name: "LFW".into(),
        pair_lists: Some(lfw.to_path_buf()),
        flip: false,
        lighting,
        all_pairs: true,
        identification: false,
        target_far: TARGET_FAR,
        cache: cache.then(facegate_eval::cache::default_dir),
        progress: true,
    }
}

fn roc_of(emb: &Embeddings, labels: &[u32]) -> Result<Roc> {
    let (g, i) = all_pairs(emb, labels, DEFAULT_BINS)?;
    Ok(Roc::new(&g, &i)?)
}

/// Measures the engine under every lighting (`colour` is its LFW report on
/// the stored faces, already run) and on the held-out sets; returns the rows
/// and the deployment advice that holds under every lighting.
pub fn measure(
    engine: &dyn Embedder,
    hash: &str,
    colour: &EvalReport,
    lfw: &Path,
    data: &Path,
    cache: bool,
) -> Result<(Robustness, DeploymentAdvice)> {
    let mut reports = Vec::new();
    for lighting in Lighting::ALL {
        let report = if lighting == Lighting::Colour {
            None
        } else {
            eprintln!("evaluating the engine on LFW, {} light", lighting.name());
            Some(evaluate(engine, &lfw_config(lfw, lighting, cache))?)
        };
        let r = report.as_ref().unwrap_or(colour);
        if !r.failed_images.is_empty() {
            bail!("{} LFW faces could not be embedded", r.failed_images.len());
        }
        // The evaluation's own all-pairs ROC, not a second pass over 87 M pairs.
        let roc = r
            .all_pairs_roc
            .clone()
            .context("the all-pairs protocol did not run")?;
        reports.push((lighting, report, roc));
    }
    let rocs: Vec<(Lighting, &Roc)> = reports.iter().map(|(l, _, r)| (*l, r)).collect();
    let advice = strictest_advice(&rocs, TARGET_FAR, hash, engine.name(), "LFW")
        .context("FAR 1e-3 is not resolvable on LFW all pairs")?;
    let t = advice.threshold;
    let mut lighting = Vec::new();
    for (l, report, roc) in &reports {
        let r = report.as_ref().unwrap_or(colour);
        let k = r
            .view2
            .as_ref()
            .and_then(|v| v.kfold.clone())
            .context("LFW View 2 did not run")?;
        let at = roc.at_threshold(t);
        lighting.push(LightingRow {
            lighting: l.name().into(),
            lfw_accuracy: k.mean,
            lfw_std: k.std,
            auc: roc.auc(),
            tar_at_1e3: roc.tar_at_far(TARGET_FAR).map(|p| p.tar),
            threshold_at_1e3: roc.tar_at_far(TARGET_FAR).map(|p| p.threshold),
            far_deployed: at.far,
            tar_deployed: at.tar,
        });
    }
    let held_out = vec![
        orl(engine, &data.join("orl"), t)?,
        utkface(engine, data, t, cache)?,
    ];
    // The deployment file states how far its promise carries, too.
    let mut advice = advice;
    advice.held_out = held_out
        .iter()
        .map(|h| HeldOutCheck {
            set: h.set.clone(),
            impostor_pairs: h.impostor,
            far: h.far_deployed,
        })
        .collect();
    Ok((
        Robustness {
            lighting,
            held_out,
            threshold: t,
            promised_far: advice.measured_far,
        },
        advice,
    ))
}

/// Embeds faces in memory (L2-normalised rows).
fn embed_faces(engine: &dyn Embedder, faces: &[Face]) -> Result<Embeddings> {
    let rows: Vec<Vec<f32>> = faces
        .par_iter()
        .map(|f| {
            let mut v = engine.embed(f)?;
            facegate_core::embedding::l2_normalize(&mut v).map_err(|e| e.to_string())?;
            Ok(v)
        })
        .collect::<Result<_, String>>()
        .map_err(anyhow::Error::msg)?;
    Ok(Embeddings::new(engine.dim(), rows.concat())?)
}

/// ORL: 40 people, 10 grey 92×112 photos each (not aligned to our template):
/// detected and aligned by MTCNN as the door would, then every pair.
fn orl(engine: &dyn Embedder, dir: &Path, threshold: f64) -> Result<HeldOutRow> {
    let weights = super::super::photos::default_weights();
    let finder = FaceFinder::load(&weights, MtcnnConfig::default())
        .context("the ORL row needs the MTCNN weights (bash scripts/setup.sh)")?;
    let mut photos: Vec<(u32, PathBuf)> = Vec::new();
    for (id, person) in (1..=40).map(|k| (k, dir.join(format!("s{k}")))) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&person)
            .with_context(|| format!("cannot read {}", person.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pgm"))
            .collect();
        files.sort();
        photos.extend(files.into_iter().map(|f| (id, f)));
    }
    eprintln!("aligning {} ORL photos", photos.len());
    let found: Vec<Option<(u32, Face)>> = photos
        .par_iter()
        .map(|(id, p)| {
            finder.find_in_file(p, Choice::Largest).ok().map(|f| {
                (
                    *id,
                    Face {
                        rgb: f.aligned.to_vec(),
                    },
                )
            })
        })
        .collect();
    let not_found = found.iter().filter(|f| f.is_none()).count();
    let (labels, faces): (Vec<u32>, Vec<Face>) = found.into_iter().flatten().unzip();
    let roc = roc_of(&embed_faces(engine, &faces)?, &labels)?;
    let at = roc.at_threshold(threshold);
    Ok(HeldOutRow {
        set: "ORL (grey, 40 people; MTCNN-aligned)".into(),
        faces: faces.len(),
        not_found,
        genuine: roc.genuine,
        impostor: roc.impostor,
        tar_at_1e3: roc.tar_at_far(TARGET_FAR).map(|p| p.tar),
        far_deployed: at.far,
        tar_deployed: Some(at.tar),
    })
}

/// UTKFace, unlabelled: every pair counts as two strangers (the few repeat
/// people make this FAR an upper bound).
fn utkface(engine: &dyn Embedder, data: &Path, threshold: f64, cache: bool) -> Result<HeldOutRow> {
    let root = data.join("utkface/aligned_112");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&root)
        .with_context(|| format!("cannot read {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
        .collect();
    names.sort();
    let set = FaceSet {
        root: root.clone(),
        identities: names.iter().map(|n| n.display().to_string()).collect(),
        files: names
            .iter()
            .enumerate()
            .map(|(i, path)| FaceFile {
                identity: u32::try_from(i).unwrap_or(u32::MAX),
                path: path.clone(),
            })
            .collect(),
    };
    eprintln!("embedding {} UTKFace faces", names.len());
    let (r, _) = embed_set_cached(
        engine,
        &set,
        EmbedOptions {
            progress: true,
            ..EmbedOptions::default()
        },
        cache.then(facegate_eval::cache::default_dir).as_deref(),
    )?;
    if let Some((i, why)) = r.failed.first() {
        bail!("{}: {why}", set.files[*i].path.display());
    }
    let emb = r.embeddings;
    let (_, impostor) = all_pairs(&emb, &set.labels(), DEFAULT_BINS)?;
    Ok(HeldOutRow {
        set: "UTKFace (unlabelled: every pair a stranger pair)".into(),
        faces: names.len(),
        not_found: 0,
        genuine: 0,
        impostor: impostor.total(),
        tar_at_1e3: None,
        far_deployed: far_at(&impostor, threshold).unwrap_or(0.0),
        tar_deployed: None,
    })
}

/// The section of the card for one model.
pub fn markdown(r: &Robustness, name: &str) -> String {
    use std::fmt::Write as _;

    use super::pct;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "**Light and other sources (int8 engine).** The door threshold `{:.4}` (`models/{name}.deployment.toml`) is the strictest of the thresholds for FAR 1e-3 under four lightings of LFW (`facegate eval --lighting …`); it promises FAR ≤ {} on all of them. Held-out rows are people and sources it was not chosen on: their FAR divided by the promise is what a site should expect.\n",
        r.threshold,
        pct(r.promised_far),
    );
    let _ = writeln!(
        s,
        "| LFW lighting | 10-fold | AUC | TAR @ FAR 1e-3 (own threshold) | own threshold | FAR at the door threshold | TAR at the door threshold |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for l in &r.lighting {
        let _ = writeln!(
            s,
            "| {} | {} ± {:.2} | {:.4} | {} | {} | {} | {} |",
            l.lighting,
            pct(l.lfw_accuracy),
            100.0 * l.lfw_std,
            l.auc,
            l.tar_at_1e3.map_or("–".into(), pct),
            l.threshold_at_1e3.map_or("–".into(), |t| format!("{t:.4}")),
            pct(l.far_deployed),
            pct(l.tar_deployed),
        );
    }
    let _ = writeln!(
        s,
        "\n| held-out set | faces | genuine / impostor pairs | TAR @ FAR 1e-3 (own threshold) | FAR at the door threshold (× promise) | TAR at the door threshold |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for h in &r.held_out {
        let ratio = if r.promised_far > 0.0 {
            format!("{:.2}×", h.far_deployed / r.promised_far)
        } else {
            "–".into()
        };
        let faces = if h.not_found > 0 {
            format!("{} ({} without a detected face)", h.faces, h.not_found)
        } else {
            h.faces.to_string()
        };
        let _ = writeln!(
            s,
            "| {} | {faces} | {} / {} | {} | {} ({ratio}) | {} |",
            h.set,
            h.genuine,
            h.impostor,
            h.tar_at_1e3.map_or("–".into(), pct),
            pct(h.far_deployed),
            h.tar_deployed.map_or("–".into(), pct),
        );
    }
    s.push('\n');
    s
}
