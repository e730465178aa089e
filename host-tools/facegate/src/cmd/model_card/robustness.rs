//! The card's robustness rows: the engine under grey and side light, the
//! door threshold that holds for strangers of three sources (LFW under four
//! lightings, UTKFace's teenagers and adults in colour and grey side-lit,
//! ORL's one-room grey faces), how such a promise carries to a source left
//! out, and strangers it is not promised for (UTKFace's children).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use facegate_detect::{Choice, FaceFinder, MtcnnConfig};
use facegate_eval::allpairs::{Embeddings, all_pairs};
use facegate_eval::calibration::{
    FarCurve, Strangers, Transfer, leave_one_source_out, strictest_advice,
};
use facegate_eval::deploy::{DeploymentAdvice, HeldOutCheck};
use facegate_eval::embedder::{EmbedOptions, Embedder, embed_set_cached};
use facegate_eval::faces::{Face, FaceFile, FaceSet};
use facegate_eval::lfw::{EvalConfig, EvalReport, evaluate};
use facegate_eval::lighting::Lighting;
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

/// Strangers from a source other than LFW that the threshold was chosen on.
#[derive(Debug, Serialize, Deserialize)]
pub struct StrangerRow {
    pub set: String,
    pub lighting: String,
    pub faces: usize,
    /// Photos the detector found no face in (not counted).
    #[serde(default)]
    pub not_found: usize,
    pub impostor: u64,
    /// The threshold this set alone needs for FAR 1e-3.
    pub threshold_at_1e3: Option<f64>,
    pub far_deployed: f64,
    /// Genuine pairs and their TAR at the door threshold, where labelled.
    #[serde(default)]
    pub genuine: u64,
    #[serde(default)]
    pub tar_deployed: Option<f64>,
    /// Pairs of people with a false accept at the door threshold, of all
    /// pairs of people, where labelled.
    #[serde(default)]
    pub people_confused: Option<(usize, usize)>,
}

/// A source left out of the threshold's choice, and (for labelled sets)
/// how many pairs of its people the others' threshold confuses.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransferRow {
    #[serde(flatten)]
    pub transfer: Transfer,
    #[serde(default)]
    pub people_confused: Option<(usize, usize)>,
}

/// Everything the robustness section shows.
#[derive(Debug, Serialize, Deserialize)]
pub struct Robustness {
    pub lighting: Vec<LightingRow>,
    /// Other sources the threshold was chosen on (empty in cards before them).
    #[serde(default)]
    pub strangers: Vec<StrangerRow>,
    /// Each source left out of the choice in turn.
    #[serde(default)]
    pub transfer: Vec<TransferRow>,
    pub held_out: Vec<HeldOutRow>,
    pub threshold: f64,
    pub promised_far: f64,
}

/// UTKFace's source name for people aged 13 and older.
const UTK_OLDER: &str = "UTKFace (13 and older)";

/// ORL's source name: 40 people photographed by one camera in one room.
const ORL: &str = "ORL (40 people, one camera and room; MTCNN-aligned)";

/// The lightings UTKFace's strangers are measured under: as stored, and
/// the harshest of LFW's four (where thresholds rise most).
const UTK_LIGHTINGS: [Lighting; 2] = [Lighting::Colour, Lighting::GreySideLit];

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
/// the stored faces, already run), on UTKFace and on the held-out sets;
/// returns the rows and the deployment advice that holds for every stranger
/// set it was chosen on.
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
    // Strangers of every source and lighting; the threshold is the
    // strictest any of them needs.
    let mut strangers: Vec<Strangers> = reports
        .iter()
        .map(|(l, _, roc)| Strangers {
            source: "LFW".into(),
            condition: l.name().into(),
            curve: FarCurve::from_roc(roc),
        })
        .collect();
    let (older, children) = utkface_sets(data)?;
    for l in UTK_LIGHTINGS {
        strangers.push(Strangers {
            source: UTK_OLDER.into(),
            condition: l.name().into(),
            curve: stranger_curve(engine, &older, l, cache)?,
        });
    }
    let orl = orl(engine, &data.join("orl"))?;
    strangers.push(Strangers {
        source: ORL.into(),
        condition: Lighting::Grey.name().into(),
        curve: FarCurve::from_roc(&orl.roc),
    });
    let colour_roc = colour
        .all_pairs_roc
        .as_ref()
        .context("the all-pairs protocol did not run")?;
    let advice = strictest_advice(
        colour_roc,
        "LFW's stored faces (all pairs)",
        &strangers,
        TARGET_FAR,
        hash,
        engine.name(),
    )
    .context("FAR 1e-3 is not resolvable on every stranger set")?;
    let transfer = leave_one_source_out(&strangers, TARGET_FAR)
        .into_iter()
        .map(|x| TransferRow {
            people_confused: (x.left_out == ORL).then(|| orl.people_confused(x.threshold)),
            transfer: x,
        })
        .collect();
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
    // Every set chosen on but LFW's (whose rows are the lighting table).
    let orl_at = orl.roc.at_threshold(t);
    let stranger_rows: Vec<StrangerRow> = strangers
        .iter()
        .filter(|x| x.source != "LFW")
        .map(|x| {
            let is_orl = x.source == ORL;
            StrangerRow {
                set: x.source.clone(),
                lighting: x.condition.clone(),
                faces: if is_orl { orl.faces } else { older.files.len() },
                not_found: if is_orl { orl.not_found } else { 0 },
                impostor: x.curve.impostor_pairs(),
                threshold_at_1e3: x.curve.threshold_for(TARGET_FAR),
                far_deployed: x.curve.far_at(t),
                genuine: if is_orl { orl.roc.genuine } else { 0 },
                tar_deployed: is_orl.then_some(orl_at.tar),
                people_confused: is_orl.then(|| orl.people_confused(t)),
            }
        })
        .collect();
    let children_curve = stranger_curve(engine, &children, Lighting::Colour, cache)?;
    let held_out = vec![HeldOutRow {
        set: "UTKFace children aged 0–12 (unlabelled: every pair a stranger pair)".into(),
        faces: children.files.len(),
        not_found: 0,
        genuine: 0,
        impostor: children_curve.impostor_pairs(),
        tar_at_1e3: None,
        far_deployed: children_curve.far_at(t),
        tar_deployed: None,
    }];
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
            strangers: stranger_rows,
            transfer,
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

/// ORL's faces as the door sees them, and every pair of them.
struct Orl {
    faces: usize,
    not_found: usize,
    roc: Roc,
    embeddings: Embeddings,
    labels: Vec<u32>,
}

impl Orl {
    /// Pairs of different people with at least one pair of photos scoring
    /// `threshold` or more, and all pairs of people: 40 people give 780,
    /// so a FAR of 1e-3 over their 76,830 photo pairs may be one look-alike
    /// pair of people.
    fn people_confused(&self, threshold: f64) -> (usize, usize) {
        let n = self.labels.len();
        let s = self.embeddings.similarities(0..n, &self.embeddings, 0..n);
        let mut confused = std::collections::BTreeSet::new();
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (self.labels[i], self.labels[j]);
                if a != b && f64::from(s[(i, j)]) >= threshold {
                    confused.insert((a.min(b), a.max(b)));
                }
            }
        }
        let mut people = self.labels.clone();
        people.dedup();
        let k = people.len();
        (confused.len(), k * k.saturating_sub(1) / 2)
    }
}

/// ORL: 40 people, 10 grey 92×112 photos each (not aligned to our template):
/// detected and aligned by MTCNN as the door would, then every pair: one
/// camera, one light, one background, as at a door.
fn orl(engine: &dyn Embedder, dir: &Path) -> Result<Orl> {
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
    let embeddings = embed_faces(engine, &faces)?;
    Ok(Orl {
        faces: faces.len(),
        not_found,
        roc: roc_of(&embeddings, &labels)?,
        embeddings,
        labels,
    })
}

/// UTKFace's faces, split by the age in their file names
/// (`age_gender_race_date.jpg.chip.jpg`): 13 and older, and children aged
/// 0–12 — where face recognition is known to fail (faces still forming),
/// so they are reported, not promised for. Unlabelled: every pair counts as
/// two strangers, so the few people pictured twice can only make a FAR
/// higher and a threshold stricter.
fn utkface_sets(data: &Path) -> Result<(FaceSet, FaceSet)> {
    let root = data.join("utkface/aligned_112");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&root)
        .with_context(|| format!("cannot read {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .filter_map(|p| p.strip_prefix(&root).ok().map(Path::to_path_buf))
        .collect();
    names.sort();
    let (mut older, mut children) = (Vec::new(), Vec::new());
    for n in names {
        let age: u32 = n
            .to_str()
            .and_then(|s| s.split('_').next())
            .and_then(|a| a.parse().ok())
            .with_context(|| {
                format!(
                    "{}: a UTKFace name starts with the age (age_gender_race_date.jpg.chip.jpg)",
                    n.display()
                )
            })?;
        if age >= 13 { &mut older } else { &mut children }.push(n);
    }
    let set = |names: Vec<PathBuf>| FaceSet {
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
    Ok((set(older), set(children)))
}

/// Every pair of an unlabelled set under `lighting`, as strangers.
fn stranger_curve(
    engine: &dyn Embedder,
    set: &FaceSet,
    lighting: Lighting,
    cache: bool,
) -> Result<FarCurve> {
    eprintln!(
        "embedding {} UTKFace faces, {} light",
        set.files.len(),
        lighting.name()
    );
    let (r, _) = embed_set_cached(
        engine,
        set,
        EmbedOptions {
            progress: true,
            lighting,
            ..EmbedOptions::default()
        },
        cache.then(facegate_eval::cache::default_dir).as_deref(),
    )?;
    if let Some((i, why)) = r.failed.first() {
        bail!("{}: {why}", set.files[*i].path.display());
    }
    let (_, impostor) = all_pairs(&r.embeddings, &set.labels(), DEFAULT_BINS)?;
    FarCurve::from_impostors(&impostor).context("fewer than two faces")
}

/// The section of the card for one model.
pub fn markdown(r: &Robustness, name: &str) -> String {
    use std::fmt::Write as _;

    use super::pct;
    let mut s = String::new();
    let conditions = r.lighting.len() + r.strangers.len();
    let _ = writeln!(
        s,
        "**Light and other sources (int8 engine).** The door threshold `{:.4}` (`models/{name}.deployment.toml`) is the strictest of the thresholds for FAR 1e-3 that {conditions} stranger sets need: LFW under four lightings (`facegate eval --lighting …`), UTKFace's {} faces of people aged 13 and older in colour and grey side-lit light (unlabelled: every pair counted as strangers, so the few people pictured twice make the threshold stricter, not looser), and ORL's 40 people photographed by one camera in one room, as a door sees its visitors. It promises FAR ≤ {} on all of them. The transfer rows choose the threshold with one source left out and measure the FAR on it: how far the promise carries to people and photos it was not chosen on. Held-out rows were never chosen on.\n",
        r.threshold,
        r.strangers.first().map_or(0, |x| x.faces),
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
    if !r.strangers.is_empty() {
        let _ = writeln!(
            s,
            "\n| other strangers chosen on | light | faces | genuine / impostor pairs | own threshold for FAR 1e-3 | FAR at the door threshold | TAR at the door threshold |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for x in &r.strangers {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} / {} | {} | {}{} | {} |",
                x.set,
                x.lighting,
                faces_cell(x.faces, x.not_found),
                x.genuine,
                x.impostor,
                x.threshold_at_1e3.map_or("–".into(), |t| format!("{t:.4}")),
                pct(x.far_deployed),
                people_cell(x.people_confused),
                x.tar_deployed.map_or("–".into(), pct),
            );
        }
    }
    if !r.transfer.is_empty() {
        let _ = writeln!(
            s,
            "\n| transfer: source left out of the choice | threshold the others choose | FAR they promise | FAR on the left-out source (× promise) |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for x in &r.transfer {
            let (t, confused) = (&x.transfer, people_cell(x.people_confused));
            let _ = writeln!(
                s,
                "| {} | {:.4} | {} | {} ({:.2}×){confused} |",
                t.left_out,
                t.threshold,
                pct(t.promised_far),
                pct(t.far),
                t.ratio(),
            );
        }
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
        let _ = writeln!(
            s,
            "| {} | {} | {} / {} | {} | {} ({ratio}) | {} |",
            h.set,
            faces_cell(h.faces, h.not_found),
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

/// "397 (3 without a detected face)".
fn faces_cell(faces: usize, not_found: usize) -> String {
    if not_found > 0 {
        format!("{faces} ({not_found} without a detected face)")
    } else {
        faces.to_string()
    }
}

/// " (16 of 780 pairs of people)" where counted.
fn people_cell(confused: Option<(usize, usize)>) -> String {
    confused.map_or(String::new(), |(k, of)| {
        format!(" ({k} of {of} pairs of people)")
    })
}
