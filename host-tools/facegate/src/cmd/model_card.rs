//! `facegate model card`: `models/MODEL_CARD.md` and `model_card.json`,
//! measured from the committed models and the shared data (never typed).
//!
//! For each shipped model `models/<name>.{onnx,int8.onnx,fgm}` with its
//! training config `models/<name>.recipe.toml` and history
//! `models/<name>.train.csv`: cost (params, MACs, flash, arena), LFW
//! 10-fold and all-pairs TAR@FAR for the float model (tract), the QDQ model
//! (tract) and the int8 engine (bit-exact with the boards), the door
//! threshold for FAR 1e-3 on the engine (also written to
//! `<name>.deployment.toml`), and the loss comparison if `losses.json` is there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use facegate_core::embedding::cosine;
use facegate_core::engine::Model;
use facegate_eval::allpairs::Embeddings;
use facegate_eval::embedder::Embedder;
use facegate_eval::faces::FaceSet;
use facegate_eval::lfw::{EvalReport, evaluate};
use facegate_eval::lighting::Lighting;
use facegate_eval::onnx::{InputNorm, OnnxEmbedder};
use facegate_quant::engine::EngineEmbedder;
use facegate_train::training::TrainConfig;
use serde::Serialize;

use super::bench::HostLatency;
use super::bench_losses::LossRow;

mod robustness;
use robustness::Robustness;

/// `facegate model card …`
#[derive(Debug, Args)]
pub struct CardArgs {
    /// The models folder.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// LFW folder (`aligned_112` + pair lists).
    #[arg(long, default_value = "../shared/data/lfw")]
    lfw: PathBuf,
    /// Face data folder holding `orl/` and `utkface/` (strangers from
    /// sources the door threshold is not chosen on).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Reuse cached embeddings (keyed by model hash; the numbers are the same).
    #[arg(long)]
    cache: bool,
}

#[derive(Debug, Serialize)]
struct Variant {
    variant: String,
    file: String,
    lfw_accuracy: f64,
    lfw_std: f64,
    auc: Option<f64>,
    tar_at_far: Vec<(f64, f64)>,
    threshold_far_1e3: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ModelEntry {
    name: String,
    preset: String,
    head: String,
    data: Vec<String>,
    /// The teacher file and weight of a distilled model.
    distill: Option<String>,
    epochs: usize,
    params: usize,
    macs: u64,
    flash_bytes: usize,
    arena_bytes: usize,
    model_hash: String,
    variants: Vec<Variant>,
    final_train: Option<String>,
    agreement: Agreement,
    cortex_m7: Option<CortexM7Cost>,
    host_latency: Option<HostLatency>,
    enrollment: Option<Enrollment>,
    /// What `facegate provision --open-set-far 0.01` sets, by site size.
    open_set: Vec<OpenSetThreshold>,
    /// The engine under other light and on other sources.
    robustness: Option<Robustness>,
}

/// The engine's threshold that keeps the open-set FAR bound (templates ×
/// one-to-one FAR) at [`OPEN_SET_FAR`] for a site of `templates` templates.
#[derive(Debug, Serialize)]
struct OpenSetThreshold {
    templates: usize,
    threshold: f64,
    one_to_one_far: f64,
    tar: f64,
}

/// The open-set FAR the card's site-size row holds.
const OPEN_SET_FAR: f64 = 0.01;
/// Site sizes for that row: 1, 5, 20 and 50 people of three templates.
const SITE_TEMPLATES: [usize; 4] = [3, 15, 60, 150];

/// How closely the int8 engine's embeddings follow the QDQ model on tract
/// and the float model, face by face over the whole set.
#[derive(Debug, Serialize)]
struct Agreement {
    faces: usize,
    engine_vs_qdq: CosineStats,
    engine_vs_float: CosineStats,
    qdq_vs_float: CosineStats,
}

/// Mean and minimum cosine between two embedders' embeddings of the same faces.
#[derive(Debug, Serialize)]
struct CosineStats {
    mean: f64,
    min: f64,
    /// The face with the minimum (its path in the set), when the rows are the set's files.
    min_face: Option<String>,
    /// Faces whose cosine is below [`LOW_COSINE`]: a mean hides a few outliers.
    below_low: usize,
}

/// Where a face's embedding counts as far from the other embedder's.
const LOW_COSINE: f64 = 0.95;

impl CosineStats {
    /// `names` are the faces of the rows, if known.
    fn of(a: &Embeddings, b: &Embeddings, names: Option<&[String]>) -> Result<Self> {
        let n = a.rows().min(b.rows());
        let (mut sum, mut min, mut at, mut below_low) = (0.0, f64::INFINITY, 0, 0);
        for i in 0..n {
            let c = f64::from(cosine(a.row(i), b.row(i)).with_context(|| format!("face {i}"))?);
            sum += c;
            if c < min {
                (min, at) = (c, i);
            }
            below_low += usize::from(c < LOW_COSINE);
        }
        Ok(Self {
            mean: sum / n.max(1) as f64,
            min,
            min_face: names
                .filter(|names| names.len() == n)
                .and_then(|names| names.get(at).cloned()),
            below_low,
        })
    }

    /// `min 0.6335, Name_0002.jpg; 11 below 0.95`.
    fn min_text(&self) -> String {
        let face = self.min_face.as_deref().map_or_else(String::new, |f| {
            format!(", {}", f.rsplit('/').next().unwrap_or(f))
        });
        format!(
            "min {:.4}{face}; {} below {LOW_COSINE}",
            self.min, self.below_low
        )
    }
}

/// The fields of `<name>.enrollment.json` (`facegate eval-enroll --out`) the card shows.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Enrollment {
    model_hash: String,
    threshold: f32,
    people: usize,
    photos_per_person: usize,
    genuine_probes: usize,
    impostor_probes: usize,
    rank1: f64,
    frr: f64,
    far: f64,
    target_far: f64,
    threshold_for_target: f32,
    frr_at_target: f64,
}

/// `<name>.cortex-m7.json`, written by `cargo xtask qemu --cost-out`.
#[derive(Debug, Serialize, serde::Deserialize)]
struct CortexM7Cost {
    model_hash: String,
    instructions_per_embedding: u64,
    macs: u64,
}

/// A record written by a measuring command, if it was measured on this very
/// blob (`hash`); `what` names it in errors, `rerun` is the command that
/// writes it (the path is appended).
fn recorded<T: serde::de::DeserializeOwned>(
    path: &Path,
    hash: &str,
    model_hash: fn(&T) -> &str,
    what: &str,
    rerun: &str,
) -> Result<Option<T>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let rec: T =
        serde_json::from_str(&text).with_context(|| format!("{} is not {what}", path.display()))?;
    if model_hash(&rec) != hash {
        eprintln!(
            "{} was measured on another blob: rerun `{rerun} {}`",
            path.display(),
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(rec))
}

#[derive(Debug, Serialize)]
struct Card {
    models: Vec<ModelEntry>,
    losses: Option<Vec<LossRow>>,
    /// The board's face detector, when `models/detector` holds it.
    detector: Option<DetectorCard>,
}

/// The board's detector: its blobs, its cost on the Cortex-M7 and its
/// agreement with the host's detector.
#[derive(Debug, Serialize)]
struct DetectorCard {
    /// `(net, blob bytes, arena bytes, MACs a run)`.
    nets: Vec<(String, usize, usize, usize)>,
    /// `models/detector.cortex-m7.json`, when current for these blobs.
    cortex_m7: Option<serde_json::Value>,
    /// `models/detector/eval-door.json` (`facegate detector eval --door --json`).
    eval_door: Option<serde_json::Value>,
    /// `models/detector/eval.json` (`facegate detector eval --json`).
    eval: Option<serde_json::Value>,
}

/// Reads the detector's blobs and records; `None` without the blobs.
fn detector_card(models: &Path) -> Option<DetectorCard> {
    use facegate_quant::detector::PNET_SMALL_TILES;
    let mut nets = Vec::new();
    let mut hashes = Vec::new();
    let small = PNET_SMALL_TILES.map(|(n, _)| n);
    for net in ["pnet", "rnet", "onet"].into_iter().chain(small) {
        let Ok(blob) = std::fs::read(models.join(format!("detector/{net}.fgm"))) else {
            if small.contains(&net) {
                continue; // the smaller P-Net tiles are optional
            }
            return None;
        };
        let m = Model::parse(&blob).ok()?;
        hashes.push(m.hash().to_string());
        nets.push((net.to_string(), blob.len(), m.arena_len(), m.macs()));
    }
    let json = |p: PathBuf| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    // A cost measured on other blobs is not these blobs' cost.
    let cortex_m7 = json(models.join("detector.cortex-m7.json")).filter(|v| {
        ["pnet", "rnet", "onet"]
            .iter()
            .zip(&hashes)
            .all(|(n, h)| v["model_hashes"][n].as_str() == Some(h.as_str()))
    });
    Some(DetectorCard {
        nets,
        cortex_m7,
        eval: json(models.join("detector/eval.json")),
        eval_door: json(models.join("detector/eval-door.json")),
    })
}

fn detector_markdown(s: &mut String, d: &DetectorCard) {
    let _ = writeln!(
        s,
        "## Face detector on the board
"
    );
    let _ = writeln!(
        s,
        "MTCNN's three nets as int8 blobs on the engine (`models/detector`, `facegate detector build`; `facegate_core::detect`); P-Net also quantised for 48-, 32- and 16-pixel tiles with the 64-pixel tile's scales, so small pyramid levels cost what they hold and every cell scores the same.
"
    );
    let _ = writeln!(
        s,
        "| net | flash | arena | MACs a run |
|---|---|---|---|"
    );
    for (net, bytes, arena, macs) in &d.nets {
        let _ = writeln!(
            s,
            "| {net} | {bytes} B | {arena} B | {:.2} M |",
            *macs as f64 / 1e6
        );
    }
    let arena = d.nets.iter().map(|n| n.2).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "
RAM on the board: the detector borrows the embedder's arena between embeddings (it needs {arena} B), its working lists take {} B (`Scratch`), and the frame a QVGA camera gives is {} B in RGB565 ({} B in RGB888).",
        size_of::<facegate_core::detect::Scratch>(),
        320 * 240 * 2,
        320 * 240 * 3
    );
    if let Some(e) = &d.eval {
        let n = |k: &str| e[k].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "
Against the host's float detector on {} raw LFW photos (`facegate detector eval --json models/detector/eval.json`): recall {} of its {} faces (IoU ≥ 0.5), precision {}, landmarks {:.3} eye distances off on average; the board's best face is the host's best in {} of the photos.",
            n("photos"),
            pct(n("matched") / n("host_faces")),
            n("host_faces"),
            pct(n("board_matched") / n("board_faces")),
            n("landmark_error"),
            pct(n("best_face_matched") / n("photos_with_faces"))
        );
    }
    if let Some(e) = &d.eval_door {
        let n = |k: &str| e[k].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "
The door's cascade (`DetectConfig::DOOR`: O-Net on the two boxes R-Net likes best, R-Net on the 8 best proposals; `facegate detector eval --door --json models/detector/eval-door.json`): in {} of the {} photos with one face the board's best face is that face, and in {} of all photos the host's best; {:.1} ms a photo on this host against {:.1} ms for the full cascade.",
            pct(n("single_face_matched") / n("single_face_photos")),
            n("single_face_photos"),
            pct(n("best_face_matched") / n("photos_with_faces")),
            n("board_ms"),
            d.eval
                .as_ref()
                .and_then(|e| e["board_ms"].as_f64())
                .unwrap_or(f64::NAN)
        );
    }
    match &d.cortex_m7 {
        Some(c) => {
            let n = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "
Cortex-M7 (QEMU `-icount`, `cargo xtask qemu --cost-out models`, the door's cascade), one 250×250 photo with one face: {:.1} M instructions to detect ({:.2} s at 480 MHz), {:.1} M from the photo to the `nano` embedding ({:.2} s){}.
",
                n("instructions_to_detect") / 1e6,
                n("instructions_to_detect") / 480e6,
                n("instructions_photo_to_nano_embedding") / 1e6,
                n("instructions_photo_to_nano_embedding") / 480e6,
                c["instructions_photo_to_decision_max"]
                    .as_f64()
                    .map_or(String::new(), |d| format!(
                        "; the slowest of three raw door photos took {:.1} M from the photo to the door's decision ({:.2} s)",
                        d / 1e6,
                        d / 480e6
                    ))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "
Cortex-M7 cost: not measured for these blobs (`cargo xtask qemu --cost-out models`).
"
            );
        }
    }
}

fn measure(
    e: &dyn Embedder,
    variant: &str,
    file: &Path,
    a: &CardArgs,
) -> Result<(Variant, EvalReport)> {
    eprintln!("evaluating {variant}: {}", file.display());
    let report = evaluate(
        e,
        &robustness::lfw_config(&a.lfw, Lighting::Colour, a.cache),
    )?;
    let k = report
        .view2
        .as_ref()
        .and_then(|v| v.kfold.clone())
        .context("LFW View 2 did not run: is pairs.txt in --lfw?")?;
    let all = report.all_pairs.as_ref();
    let v = Variant {
        variant: variant.into(),
        file: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        lfw_accuracy: k.mean,
        lfw_std: k.std,
        auc: all.map(|p| p.auc),
        tar_at_far: all.map_or_else(Vec::new, |p| {
            p.tar_at_far
                .iter()
                .filter(|o| o.far >= 5e-5)
                .map(|o| (o.far, o.tar))
                .collect()
        }),
        threshold_far_1e3: report.advice.as_ref().map(|a| a.threshold),
    };
    Ok((v, report))
}

/// Runs `facegate model card`.
pub fn run(a: CardArgs) -> Result<ExitCode> {
    let mut names: Vec<String> = std::fs::read_dir(&a.models)
        .with_context(|| format!("cannot read {}", a.models.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".fgm").map(str::to_string))
        })
        .collect();
    names.sort();
    anyhow::ensure!(!names.is_empty(), "no <name>.fgm in {}", a.models.display());
    let mut card = Card {
        models: Vec::new(),
        losses: None,
        detector: detector_card(&a.models),
    };
    // The faces in the embeddings' row order, to name the one the engine
    // and float disagree on most.
    let face_names: Option<Vec<String>> =
        FaceSet::scan(&a.lfw.join("aligned_112")).ok().map(|set| {
            set.files
                .iter()
                .map(|f| f.path.to_string_lossy().into_owned())
                .collect()
        });
    for name in names {
        let f = |ext: &str| a.models.join(format!("{name}{ext}"));
        let recipe = f(".recipe.toml");
        let text = std::fs::read_to_string(&recipe).with_context(|| {
            format!(
                "{}: every shipped model needs its training config",
                recipe.display()
            )
        })?;
        let cfg: TrainConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a training config", recipe.display()))?;
        let info = cfg.preset.architecture().info();
        let float = OnnxEmbedder::load(&f(".onnx"), InputNorm::ArcFace)?;
        let qdq = OnnxEmbedder::load(&f(".int8.onnx"), InputNorm::ArcFace)?;
        let engine = EngineEmbedder::load(&f(".fgm")).map_err(anyhow::Error::msg)?;
        let blob_len = engine.blob().len();
        let arena = engine.arena_len();
        let hash: String = engine
            .model_hash()
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut variants = Vec::new();
        let mut embeddings = Vec::new();
        let mut open_set = Vec::new();
        let mut robust = None;
        for (label, e, file) in [
            ("float (tract)", &float as &dyn Embedder, f(".onnx")),
            ("int8 QDQ (tract)", &qdq, f(".int8.onnx")),
            ("int8 engine (boards)", &engine, f(".fgm")),
        ] {
            let (v, report) = measure(e, label, &file, &a)?;
            if label.starts_with("int8 engine") {
                // The door's threshold holds under every lighting, not
                // only under LFW's colour photos.
                let (rows, adv) = robustness::measure(e, &hash, &report, &a.lfw, &a.data, a.cache)?;
                robust = Some(rows);
                {
                    std::fs::write(f(".deployment.toml"), adv.to_toml())?;
                    open_set = SITE_TEMPLATES
                        .iter()
                        .filter_map(|&templates| {
                            let p = adv.threshold_for_open_set_far(OPEN_SET_FAR, templates)?;
                            Some(OpenSetThreshold {
                                templates,
                                threshold: p.threshold,
                                one_to_one_far: p.far,
                                tar: p.tar,
                            })
                        })
                        .collect();
                }
            }
            variants.push(v);
            embeddings.push(report.embeddings);
        }
        // In the order measured above: float, QDQ, engine.
        let (float_emb, qdq_emb, engine_emb) = (&embeddings[0], &embeddings[1], &embeddings[2]);
        let agreement = Agreement {
            faces: engine_emb.rows(),
            engine_vs_qdq: CosineStats::of(engine_emb, qdq_emb, face_names.as_deref())?,
            engine_vs_float: CosineStats::of(engine_emb, float_emb, face_names.as_deref())?,
            qdq_vs_float: CosineStats::of(qdq_emb, float_emb, face_names.as_deref())?,
        };
        let final_train = std::fs::read_to_string(f(".train.csv"))
            .ok()
            .and_then(|t| t.lines().last().map(str::to_string));
        let cortex_m7 = recorded(
            &f(".cortex-m7.json"),
            &hash,
            |r: &CortexM7Cost| &r.model_hash,
            "a cost record",
            "cargo xtask qemu --cost-out",
        )?;
        let host_latency = recorded(
            &f(".host-latency.json"),
            &hash,
            |r: &HostLatency| &r.model_hash,
            "a latency record",
            "facegate bench engine … --record",
        )?;
        let enrollment = recorded(
            &f(".enrollment.json"),
            &hash,
            |r: &Enrollment| &r.model_hash,
            "an enrollment report",
            "facegate eval-enroll --out",
        )?
        // It reports FRR and FAR at the door's threshold: one it was not
        // measured at would be a wrong row.
        .filter(|r| {
            let deployed = robust.as_ref().map(|x| x.threshold as f32);
            let same = deployed.is_none_or(|t| (t - r.threshold).abs() < 1e-6);
            if !same {
                eprintln!(
                    "{} was measured at threshold {}, not the deployed {:?}: rerun `facegate eval-enroll --model {} --deployment {} --out {}`",
                    f(".enrollment.json").display(),
                    r.threshold,
                    deployed.unwrap_or_default(),
                    f(".fgm").display(),
                    f(".deployment.toml").display(),
                    f(".enrollment.json").display(),
                );
            }
            same
        });
        card.models.push(ModelEntry {
            name: name.clone(),
            preset: format!("{:?}", cfg.preset).to_lowercase(),
            head: format!("{:?}", cfg.head),
            data: cfg.data.iter().map(|p| p.display().to_string()).collect(),
            distill: cfg.distill.as_ref().map(|d| {
                format!(
                    "`{}` (weight {}): a teacher's embeddings of the same faces",
                    d.teacher.display(),
                    d.weight
                )
            }),
            epochs: cfg.epochs,
            params: info.params,
            macs: info.macs,
            flash_bytes: blob_len,
            arena_bytes: arena,
            model_hash: hash,
            variants,
            final_train,
            agreement,
            cortex_m7,
            host_latency,
            enrollment,
            open_set,
            robustness: robust,
        });
    }
    card.losses = std::fs::read_to_string(a.models.join("losses.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    std::fs::write(
        a.models.join("model_card.json"),
        serde_json::to_string_pretty(&card)?,
    )?;
    let md = markdown(&card);
    std::fs::write(a.models.join("MODEL_CARD.md"), &md)?;
    print!("{md}");
    Ok(ExitCode::SUCCESS)
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn markdown(c: &Card) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# facegate model card\n");
    let _ = writeln!(
        s,
        "Generated by `facegate model card` from the files in `models/` and the shared data; do not edit by hand.\n"
    );
    let _ = writeln!(
        s,
        "**Data and terms.** Trained on the shared CelebA identities (`celeba/wild_112`, `celeba/align10k_112`: research use only, see `../shared/data/README.md`); LFW is only evaluated on, never trained on. The models inherit the data's research-only terms.\n"
    );
    if c.models.iter().any(|m| m.distill.is_some()) {
        let _ = writeln!(
            s,
            "**Distilled models** also learnt from a teacher network's embeddings of those CelebA faces (never of LFW faces). Their LFW figures then also rest on what the teacher learnt from its own training data; for dlib's ResNet (`scripts/build-teacher-embeddings.sh`) that is about 3 million faces of 7,485 identities which its author states avoid overlap with LFW's (`davisking/dlib-models` README; the list is not published). So the split stays LFW-disjoint by his account, but the figures are not CelebA-only results (`docs/training.md`, *Distillation*).\n"
        );
    }
    for m in &c.models {
        let _ = writeln!(s, "## `{}`\n", m.name);
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| preset | `{}` |", m.preset);
        let _ = writeln!(s, "| head | {} |", m.head);
        let _ = writeln!(s, "| data | {} |", m.data.join(", "));
        if let Some(d) = &m.distill {
            let _ = writeln!(s, "| distilled from | {d} |");
        }
        let _ = writeln!(
            s,
            "| epochs | {} (recipe: `models/{}.recipe.toml`) |",
            m.epochs, m.name
        );
        let _ = writeln!(s, "| parameters | {} |", m.params);
        let _ = writeln!(s, "| MACs per face | {:.1} M |", m.macs as f64 / 1e6);
        let _ = writeln!(s, "| flash (`.fgm` blob) | {} B |", m.flash_bytes);
        let _ = writeln!(s, "| arena (RAM) | {} B |", m.arena_bytes);
        let _ = writeln!(s, "| model hash | `{}` |", m.model_hash);
        if let Some(c) = &m.cortex_m7 {
            let _ = writeln!(
                s,
                "| Cortex-M7 instructions per embedding (QEMU `-icount`) | {:.1} M ({:.2} per MAC; `cargo xtask qemu --cost-out models`) |",
                c.instructions_per_embedding as f64 / 1e6,
                c.instructions_per_embedding as f64 / c.macs.max(1) as f64,
            );
        }
        let ag = &m.agreement;
        let _ = writeln!(
            s,
            "| int8 engine's embeddings vs QDQ on tract / vs float, cosine per face over the {} LFW faces | mean {:.5} ({}) / mean {:.5} ({}); QDQ vs float mean {:.5} ({}) |",
            ag.faces,
            ag.engine_vs_qdq.mean,
            ag.engine_vs_qdq.min_text(),
            ag.engine_vs_float.mean,
            ag.engine_vs_float.min_text(),
            ag.qdq_vs_float.mean,
            ag.qdq_vs_float.min_text()
        );
        if let Some(h) = &m.host_latency {
            let _ = writeln!(
                s,
                "| host latency, batch 1, one thread (recorded on {}, median of {} faces; `facegate bench engine{} --record models/{}.host-latency.json`) | int8 engine {:.2} ms, tract float {:.2} ms{}{} |",
                h.cpu,
                h.faces,
                if h.onnxruntime.is_some() {
                    " --onnxruntime"
                } else {
                    ""
                },
                m.name,
                h.engine_ms,
                h.tract_float_ms,
                h.tract_qdq_ms
                    .map_or(String::new(), |q| format!(", tract QDQ {q:.2} ms")),
                h.onnxruntime.as_ref().map_or(String::new(), |o| format!(
                    "; onnxruntime {} float {:.2} ms{}",
                    o.version,
                    o.float_ms,
                    o.qdq_ms
                        .map_or(String::new(), |q| format!(", QDQ {q:.2} ms"))
                ))
            );
        }
        if let Some(e) = &m.enrollment {
            let _ = writeln!(
                s,
                "| door identification from raw photos (`facegate eval-enroll --out models/{}.enrollment.json`: {} LFW people enrolled from {} detected photos each, {} genuine and {} impostor probes) | rank-1 {}; at threshold {:.4}: FRR {}, open-set FAR {}; FAR {} needs threshold {:.4} (FRR {}) |",
                m.name,
                e.people,
                e.photos_per_person,
                e.genuine_probes,
                e.impostor_probes,
                pct(e.rank1),
                e.threshold,
                pct(e.frr),
                pct(e.far),
                pct(e.target_far),
                e.threshold_for_target,
                pct(e.frr_at_target)
            );
        }
        if !m.open_set.is_empty() {
            let sizes: Vec<String> = m
                .open_set
                .iter()
                .map(|o| {
                    format!(
                        "{} templates: {:.4} (1:1 FAR {:.0e}, TAR {})",
                        o.templates,
                        o.threshold,
                        o.one_to_one_far,
                        pct(o.tar)
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "| threshold for open-set FAR ≤ {} by site size (`facegate provision --open-set-far {OPEN_SET_FAR}`; bound: templates × the engine's 1:1 FAR, the worst of the door threshold's stranger sets) | {} |",
                pct(OPEN_SET_FAR),
                sizes.join("; ")
            );
        }
        if let Some(t) = &m.final_train {
            let _ = writeln!(
                s,
                "| last epoch (`epoch,loss,train_acc,lfw_dev,lr,img/s`) | `{t}` |"
            );
        }
        let _ = writeln!(s);
        let fars: Vec<f64> = m
            .variants
            .first()
            .map(|v| v.tar_at_far.iter().map(|p| p.0).collect())
            .unwrap_or_default();
        let _ = write!(s, "| variant | LFW 10-fold | AUC |");
        for f in &fars {
            let _ = write!(s, " TAR @ FAR {f:.0e} |");
        }
        let _ = writeln!(s, " threshold @ FAR 1e-3 |");
        let _ = writeln!(s, "|---|---|---|{}---|", "---|".repeat(fars.len()));
        for v in &m.variants {
            let _ = write!(
                s,
                "| {} | {} ± {:.2} | {} |",
                v.variant,
                pct(v.lfw_accuracy),
                100.0 * v.lfw_std,
                v.auc.map_or("–".into(), |a| format!("{a:.4}"))
            );
            for (_, tar) in &v.tar_at_far {
                let _ = write!(s, " {} |", pct(*tar));
            }
            let _ = writeln!(
                s,
                " {} |",
                v.threshold_far_1e3
                    .map_or("–".into(), |t| format!("{t:.4}"))
            );
        }
        if let (Some(f), Some(e)) = (m.variants.first(), m.variants.last()) {
            let _ = writeln!(
                s,
                "\nint8 drop on the engine: {:+.2} pt of LFW accuracy.\n",
                100.0 * (e.lfw_accuracy - f.lfw_accuracy),
            );
        }
        if let Some(r) = &m.robustness {
            s.push_str(&robustness::markdown(r, &m.name));
        }
    }
    if let Some(d) = &c.detector {
        detector_markdown(&mut s, d);
    }
    if let Some(rows) = &c.losses {
        let _ = writeln!(s, "## Loss comparison\n");
        let _ = writeln!(
            s,
            "From `facegate bench losses --config models/recipes/losses-nano.toml` (the same `nano`, data, epochs and seed per loss; see the recipe), 2-D and 3-D pictures in `models/losses-2d.png` and `models/losses-3d.png` (`facegate viz`, `facegate viz --dim 3`).\n"
        );
        let _ = writeln!(
            s,
            "| loss | LFW 10-fold | TAR @ FAR 1e-3 | AUC (all pairs) | train acc |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for r in rows {
            let _ = writeln!(
                s,
                "| {} | {} ± {:.2} | {} | {} | {:.3} |",
                r.loss,
                pct(r.lfw_accuracy),
                100.0 * r.lfw_std,
                r.tar_at_far_1e3.map_or("–".into(), pct),
                r.auc.map_or("–".into(), |a| format!("{a:.4}")),
                r.train_accuracy
            );
        }
    }
    let _ = writeln!(
        s,
        "\nThe Cortex-M7 instruction count is deterministic (QEMU `-icount`); host latencies are records of one run on the CPU named, not regenerated with the card."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_stats_name_the_worst_face_and_count_the_low_ones() {
        // Three faces in 2-D: identical, 60° apart (cos 0.5), 10° apart (cos 0.985).
        let (s, c) = (60f32.to_radians().sin(), 10f32.to_radians());
        let a = Embeddings::new(2, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0]).unwrap();
        let b = Embeddings::new(2, vec![1.0, 0.0, 0.5, s, c.cos(), c.sin()]).unwrap();
        let names: Vec<String> = ["x/a_1.jpg", "y/b_1.jpg", "z/c_1.jpg"]
            .map(String::from)
            .into();
        let st = CosineStats::of(&a, &b, Some(&names)).unwrap();
        assert!((st.min - 0.5).abs() < 1e-6, "{}", st.min);
        assert_eq!(st.min_face.as_deref(), Some("y/b_1.jpg"));
        assert_eq!(st.below_low, 1);
        assert_eq!(st.min_text(), "min 0.5000, b_1.jpg; 1 below 0.95");
        // Names of another length do not belong to these rows: none is named.
        let st = CosineStats::of(&a, &b, Some(&names[..2])).unwrap();
        assert_eq!(st.min_face, None);
    }
}
