//! The training loop: a run directory with its config, checkpoints,
//! `metrics.csv` and charts; resumable.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Augment, Batch, DecodedFaces, FaceFolders, UNLABELLED, batch, scan_unlabelled};
use crate::device::{ComputeDevice, DeviceError};
use crate::distill::{
    DistillSettings, TeacherEmbeddings, TeacherError, distillation_loss, relational_loss,
    targets_tensor,
};
use crate::heads::{Annealing, CenterLoss, HeadKind, MarginHead, labels_tensor};
use crate::lfw_dev::LfwDev;
use crate::model::{Embedder, Preset};
use crate::views::{ViewError, ViewSet};

/// Optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Optimizer {
    /// SGD with (heavy-ball) momentum.
    Sgd {
        /// Momentum.
        momentum: f64,
    },
    /// AdamW (decoupled weight decay).
    AdamW,
}

/// Learning-rate schedule after the linear warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine from `lr` to 0 over the remaining epochs.
    Cosine,
    /// Multiply by `gamma` at each milestone epoch.
    Step {
        /// Epochs at which the rate drops.
        milestones: Vec<usize>,
        /// Factor.
        gamma: f64,
    },
}

/// Center loss settings (joint with the head's loss).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CenterSettings {
    /// Weight λ.
    pub lambda: f32,
    /// Centre update rate α.
    pub alpha: f32,
}

/// Everything a run depends on; saved as `config.toml` in the run folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Network.
    pub preset: Preset,
    /// Classification head.
    pub head: HeadKind,
    /// Center loss on top of the head (Softmax + Center in the paper).
    pub center: Option<CenterSettings>,
    /// λ schedule of L-Softmax / A-Softmax.
    pub annealing: Annealing,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Linear warm-up, in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// Schedule after warm-up.
    pub schedule: Schedule,
    /// Epochs.
    pub epochs: usize,
    /// Faces per step.
    pub batch_size: usize,
    /// Seed of initialisation, shuffling, split and augmentation.
    pub seed: u64,
    /// Identity-per-folder roots, merged by folder name.
    pub data: Vec<PathBuf>,
    /// Identities with fewer images are left out.
    pub min_images: usize,
    /// At most this many identities (first by name; for quick runs).
    pub max_identities: Option<usize>,
    /// At most this many images per identity.
    pub max_images_per_identity: Option<usize>,
    /// Identity-disjoint validation share.
    pub val_fraction: f64,
    /// Augmentation.
    pub augment: Augment,
    /// Dropout on the pooled features before the embedding layer while
    /// training (0: none); inference and export never drop.
    #[serde(default)]
    pub dropout: f64,
    /// Embedding distillation from a teacher's embeddings of the training
    /// faces, joint with the head (`None`: the head alone).
    #[serde(default)]
    pub distill: Option<DistillSettings>,
    /// LFW folder (with `aligned_112` and `pairsDev*.txt`) for the per-epoch
    /// dev accuracy; `None` skips it.
    pub lfw: Option<PathBuf>,
    /// Worker threads (0: all cores).
    pub threads: usize,
}

impl TrainConfig {
    /// A config with facegate's defaults for `preset` on `data`.
    pub fn new(preset: Preset, data: Vec<PathBuf>) -> Self {
        Self {
            preset,
            head: HeadKind::default(),
            center: None,
            annealing: Annealing::default(),
            optimizer: Optimizer::Sgd { momentum: 0.9 },
            lr: 0.1,
            weight_decay: 5e-4,
            warmup_epochs: 1.0,
            schedule: Schedule::Cosine,
            epochs: 20,
            batch_size: 64,
            seed: 1,
            data,
            min_images: 2,
            max_identities: None,
            max_images_per_identity: None,
            val_fraction: 0.0,
            augment: Augment::default(),
            dropout: 0.0,
            distill: None,
            lfw: None,
            threads: 0,
        }
    }

    /// Refuses settings the loop cannot use (probabilities outside [0, 1],
    /// an empty batch…) with the name of the setting.
    pub fn check(&self) -> Result<(), TrainError> {
        let a = &self.augment;
        let probabilities = [
            ("augment.grey", f64::from(a.grey)),
            ("augment.low_res", f64::from(a.low_res)),
            ("augment.erase", f64::from(a.erase)),
            ("augment.side_light", f64::from(a.side_light)),
        ];
        for (name, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return Err(TrainError::Setting(format!(
                    "{name} is a probability in [0, 1], got {p}"
                )));
            }
        }
        if !(0.0..0.95).contains(&self.dropout) {
            return Err(TrainError::Setting(format!(
                "dropout must be in [0, 0.95), got {}",
                self.dropout
            )));
        }
        if let Some(d) = &self.distill {
            for (name, w) in [
                ("distill.weight", d.weight),
                ("distill.relational", d.relational),
            ] {
                if !(w.is_finite() && w >= 0.0) {
                    return Err(TrainError::Setting(format!(
                        "{name} must be a finite number ≥ 0, got {w}"
                    )));
                }
            }
            if let Some(v) = &d.views {
                if !(1..=crate::views::MAX_VIEWS_PER_FACE).contains(&v.per_face) {
                    return Err(TrainError::Setting(format!(
                        "distill.views.per_face must be 1 to {}, got {}",
                        crate::views::MAX_VIEWS_PER_FACE,
                        v.per_face
                    )));
                }
                if !(0.0..=1.0).contains(&v.share) {
                    return Err(TrainError::Setting(format!(
                        "distill.views.share is a probability in [0, 1], got {}",
                        v.share
                    )));
                }
            }
        }
        if self.batch_size == 0 || self.epochs == 0 {
            return Err(TrainError::Setting(
                "batch_size and epochs must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Learning rate at a (fractional) epoch.
    pub fn lr_at(&self, epoch: f64) -> f64 {
        if epoch < self.warmup_epochs {
            return self.lr * (epoch + 1e-3) / self.warmup_epochs;
        }
        match &self.schedule {
            Schedule::Cosine => {
                let span = (self.epochs as f64 - self.warmup_epochs).max(1e-9);
                let t = ((epoch - self.warmup_epochs) / span).clamp(0.0, 1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Step { milestones, gamma } => {
                let drops = milestones.iter().filter(|&&m| epoch >= m as f64).count();
                self.lr * gamma.powi(i32::try_from(drops).unwrap_or(i32::MAX))
            }
        }
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Data problem.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Too little data to train.
    #[error("{0}")]
    TooLittleData(String),
    /// File I/O in the run folder.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A checkpoint or config could not be read back.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// LFW dev pairs could not be read.
    #[error("LFW dev pairs: {0}")]
    Lfw(String),
    /// The compute device cannot be used.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The teacher's embeddings cannot be used.
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    /// The teacher's views cannot be used.
    #[error(transparent)]
    Views(#[from] ViewError),
    /// A setting of the config is out of its range.
    #[error("{0}")]
    Setting(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The embedder and its head, optimised together.
#[derive(Module, Debug)]
pub struct Trainable {
    /// The network that ships.
    pub embedder: Embedder,
    /// The classification head (training only).
    pub head: MarginHead,
}

/// One epoch's numbers (a row of `metrics.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy: nearest class centre by cosine.
    pub train_accuracy: f64,
    /// Learning rate at the epoch's end.
    pub lr: f64,
    /// LFW View 1 accuracy (threshold on DevTrain, accuracy on DevTest).
    pub lfw_dev_accuracy: Option<f64>,
    /// Training images per second.
    pub images_per_second: f64,
}

/// Where a run stands (saved with each checkpoint).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RunState {
    epochs_done: usize,
    iteration: u64,
    center: Option<CenterLoss>,
    history: Vec<EpochMetrics>,
    classes: usize,
}

/// Files of a run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// The run's config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// Per-epoch metrics.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    /// The trained embedder (burnpack).
    pub fn embedder(&self) -> PathBuf {
        self.root.join("embedder.bpk")
    }
    fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    /// The trained embedder as float ONNX.
    pub fn onnx(&self) -> PathBuf {
        self.root.join("embedder.onnx")
    }
    /// Loads the embedder from the last checkpoint (a run still training).
    pub fn load_checkpoint_embedder(&self, device: &Device) -> Result<Embedder, TrainError> {
        let cfg = self.load_config()?;
        let p = self.checkpoint().join("state.json");
        let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
        let state: RunState =
            serde_json::from_str(&text).map_err(|e| checkpoint_err(&p)(e.to_string()))?;
        let arch = cfg.preset.architecture();
        let model = Trainable {
            embedder: arch.init(device),
            head: MarginHead::new(cfg.head, state.classes, arch.embedding, device),
        };
        let p = self.checkpoint().join("model.bpk");
        let model = model
            .try_load_file(&p)
            .map_err(|e| checkpoint_err(&p)(e.to_string()))?;
        Ok(model.embedder)
    }
    /// Reads the run's config.
    pub fn load_config(&self) -> Result<TrainConfig, TrainError> {
        let path = self.config();
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        toml::from_str(&text).map_err(|e| TrainError::Checkpoint {
            path,
            reason: e.to_string(),
        })
    }
    /// Loads the trained embedder of a finished (or checkpointed) run, for inference.
    pub fn load_embedder(&self, device: &Device) -> Result<Embedder, TrainError> {
        let cfg = self.load_config()?;
        let path = self.embedder();
        cfg.preset
            .architecture()
            .init(device)
            .try_load_file(&path)
            .map_err(|e| TrainError::Checkpoint {
                path,
                reason: e.to_string(),
            })
    }
}

/// Options of [`train`] that do not change the result.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Continue from the run folder's checkpoint.
    pub resume: bool,
    /// Progress bars.
    pub progress: bool,
    /// Where to compute (flex unless LibTorch is built in and asked for).
    pub device: ComputeDevice,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// Per-epoch metrics (all epochs, including resumed ones).
    pub history: Vec<EpochMetrics>,
    /// Faces trained on (with and without a class).
    pub faces: usize,
    /// Of those, faces without a class (teacher targets only).
    pub unlabelled: usize,
    /// Classes of the head.
    pub classes: usize,
    /// Teacher views usable beside the faces ([`crate::views`]).
    pub views: usize,
    /// Files skipped as undecodable.
    pub skipped: Vec<(PathBuf, String)>,
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn checkpoint_err(path: &Path) -> impl Fn(String) -> TrainError + '_ {
    move |reason| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    }
}

/// Trains (or resumes) a run in `run_dir`.
pub fn train(
    cfg: &TrainConfig,
    run_dir: &Path,
    opts: RunOptions,
) -> Result<RunSummary, TrainError> {
    // A bad setting or an unusable device is refused before any data is read.
    cfg.check()?;
    let plain_device = opts.device.device(cfg.threads)?;
    let run = RunDir {
        root: run_dir.to_path_buf(),
    };
    std::fs::create_dir_all(run.checkpoint()).map_err(io_err(run_dir))?;
    if opts.resume {
        let saved = run.load_config()?;
        if &saved != cfg {
            return Err(TrainError::Checkpoint {
                path: run.config(),
                reason: "--resume with a different config than the run's; resume with the run's own config.toml".into(),
            });
        }
    }
    let text =
        toml::to_string_pretty(cfg).map_err(|e| checkpoint_err(&run.config())(e.to_string()))?;
    write_file(&run.config(), text.as_bytes())?;

    // A missing or damaged teacher file is refused before the faces are decoded.
    let teacher_file = cfg
        .distill
        .as_ref()
        .map(|d| TeacherEmbeddings::load(&d.teacher))
        .transpose()?;

    let keep_small = cfg
        .distill
        .as_ref()
        .is_some_and(|d| d.keep_small_identities);
    let (mut folders, mut unlabelled) = if keep_small {
        FaceFolders::scan(&cfg.data)?.split_min_images(cfg.min_images)
    } else {
        (
            FaceFolders::scan(&cfg.data)?.with_min_images(cfg.min_images),
            Vec::new(),
        )
    };
    if let Some(d) = &cfg.distill {
        unlabelled.extend(scan_unlabelled(&d.unlabelled)?);
    }
    if let Some(n) = cfg.max_identities {
        folders = folders.truncated(n, cfg.max_images_per_identity.unwrap_or(usize::MAX));
    } else if let Some(per) = cfg.max_images_per_identity {
        folders = folders.truncated(usize::MAX, per);
    }
    let (train_folders, _val) = folders.split(cfg.val_fraction, cfg.seed);
    if train_folders.identities.len() < 2 {
        return Err(TrainError::TooLittleData(format!(
            "{} identities with ≥ {} images in {:?}: need at least 2",
            train_folders.identities.len(),
            cfg.min_images,
            cfg.data
        )));
    }
    let mut set = DecodedFaces::decode(&train_folders, opts.progress);
    if set.len() < 2 || set.classes() < 2 {
        return Err(TrainError::TooLittleData(format!(
            "{} decodable faces of {} identities",
            set.len(),
            set.classes()
        )));
    }
    // Faces without a class train toward their teacher targets only.
    set.append_unlabelled(&unlabelled, opts.progress);
    let lfw = match &cfg.lfw {
        Some(dir) => Some(LfwDev::load(dir).map_err(TrainError::Lfw)?),
        None => None,
    };

    let arch = cfg.preset.architecture();
    // One row of unit-length teacher targets per decoded face, in the set's
    // order, then one per teacher view.
    let mut views = None;
    let teacher = match (teacher_file, &cfg.distill) {
        (Some(t), Some(d)) => {
            let mut table = t.targets_for(&set.files, arch.embedding)?;
            if let Some(v) = &d.views {
                let loaded = ViewSet::load(&set, v, arch.embedding, opts.progress)?;
                table.extend_from_slice(loaded.targets());
                views = Some(loaded);
            }
            Some((table, d))
        }
        _ => None,
    };
    let device = plain_device.clone().autodiff();
    device.seed(cfg.seed);
    let mut model = Trainable {
        embedder: arch.init(&device),
        head: MarginHead::new(cfg.head, set.classes(), arch.embedding, &device),
    };
    let mut optim: ModuleOptimizer = match cfg.optimizer {
        Optimizer::Sgd { momentum } => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(momentum)
                    .with_dampening(0.0),
            ))
            .with_weight_decay(Some(WeightDecayConfig::new(cfg.weight_decay as f32)))
            .init(),
        Optimizer::AdamW => AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .init(),
    };
    let mut state = RunState {
        center: cfg
            .center
            .map(|c| CenterLoss::new(c.lambda, c.alpha, set.classes(), arch.embedding)),
        classes: set.classes(),
        ..RunState::default()
    };
    let ck = run.checkpoint();
    if opts.resume && ck.join("state.json").is_file() {
        let p = ck.join("state.json");
        let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
        state = serde_json::from_str(&text).map_err(|e| checkpoint_err(&p)(e.to_string()))?;
        if state.classes != set.classes() {
            return Err(checkpoint_err(&p)(format!(
                "checkpoint has {} classes, the data now gives {}",
                state.classes,
                set.classes()
            )));
        }
        let p = ck.join("model.bpk");
        model = model
            .try_load_file(&p)
            .map_err(|e| checkpoint_err(&p)(e.to_string()))?;
        let p = ck.join("optimizer.bin");
        optim = optim
            .load(&p)
            .map_err(|e| checkpoint_err(&p)(e.to_string()))?;
    }

    let steps_per_epoch = set.len() / cfg.batch_size.max(2);
    let steps_per_epoch = steps_per_epoch.max(1);
    let bar = if opts.progress {
        ProgressBar::new((steps_per_epoch * cfg.batch_size) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} faces {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    for epoch in state.epochs_done..cfg.epochs {
        let started = Instant::now();
        bar.reset();
        bar.set_prefix(format!("{}/{}", epoch + 1, cfg.epochs));
        let mut order: Vec<usize> = (0..set.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            cfg.seed ^ (epoch as u64 + 1) << 20,
        ));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        // Every face stepped through, with or without a class.
        let mut processed = 0usize;
        let mut lr = cfg.lr;
        for (step, idx) in order
            .chunks_exact(cfg.batch_size.min(set.len()))
            .take(steps_per_epoch)
            .enumerate()
        {
            lr = cfg.lr_at(epoch as f64 + step as f64 / steps_per_epoch as f64);
            let lambda = cfg.annealing.lambda(state.iteration);
            let Batch {
                faces: x,
                labels: all_labels,
                targets: target_rows,
            } = batch(
                &set,
                idx,
                Some((&cfg.augment, cfg.seed, epoch)),
                views.as_ref(),
                &device,
            );
            let emb_all = model.embedder.forward_train(x, cfg.dropout);
            // The head and the centres see only the faces that have a class.
            let rows: Vec<usize> = (0..all_labels.len())
                .filter(|&r| all_labels[r] != UNLABELLED)
                .collect();
            let labels: Vec<usize> = rows.iter().map(|&r| all_labels[r]).collect();
            let emb = if rows.len() == all_labels.len() {
                emb_all.clone()
            } else {
                emb_all.clone().select(0, labels_tensor(&rows, &device))
            };
            let lt = labels_tensor(&labels, &device);
            let mut loss = if labels.is_empty() {
                emb_all.clone().sum() * 0.0
            } else {
                model.head.loss(emb.clone(), lt.clone(), lambda)
            };
            if let Some(c) = &state.center
                && !labels.is_empty()
            {
                loss = loss + c.loss(emb.clone(), &labels);
            }
            if let Some((table, d)) = &teacher {
                let t = targets_tensor(table, arch.embedding, &target_rows, &device);
                if d.relational > 0.0 {
                    loss = loss + relational_loss(emb_all.clone(), t.clone(), d.relational);
                }
                loss = loss + distillation_loss(emb_all.clone(), t, d.weight);
            }
            let feats = emb.detach();
            if !labels.is_empty() {
                let pred = model
                    .head
                    .cosines(feats.clone())
                    .argmax(1)
                    .reshape([labels.len()]);
                correct += pred
                    .equal(lt)
                    .int()
                    .sum()
                    .into_scalar::<i64>()
                    .try_into()
                    .unwrap_or(0usize);
            }
            seen += labels.len();
            let value = f64::from(loss.clone().into_scalar::<f32>());
            loss_sum += value;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            if let Some(c) = &mut state.center
                && !labels.is_empty()
            {
                let f = feats
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| checkpoint_err(run_dir)(format!("{e:?}")))?;
                c.update(&f, &labels);
            }
            state.iteration += 1;
            processed += all_labels.len();
            bar.inc(all_labels.len() as u64);
            bar.set_message(format!(
                "loss {:.3} acc {:.3}",
                loss_sum / (step + 1) as f64,
                correct as f64 / seen.max(1) as f64
            ));
        }
        let secs = started.elapsed().as_secs_f64();
        let lfw_dev_accuracy = match &lfw {
            Some(l) => Some(l.accuracy(&model.embedder.valid(), &plain_device)),
            None => None,
        };
        let m = EpochMetrics {
            epoch: epoch + 1,
            loss: loss_sum / steps_per_epoch as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            lr,
            lfw_dev_accuracy,
            images_per_second: processed as f64 / secs.max(1e-9),
        };
        if opts.progress {
            bar.println(format!(
                "epoch {:>3}: loss {:.4}  train acc {:.4}  lfw dev {}  lr {:.2e}  {:.1} img/s",
                m.epoch,
                m.loss,
                m.train_accuracy,
                m.lfw_dev_accuracy.map_or("-".into(), |a| format!("{a:.4}")),
                m.lr,
                m.images_per_second
            ));
        }
        state.history.push(m);
        state.epochs_done = epoch + 1;
        save_checkpoint(&run, &model, &optim, &state)?;
        write_metrics(&run, &state.history)?;
    }
    bar.finish_and_clear();
    let p = run.embedder();
    let embedder = model.embedder.valid();
    embedder
        .clone()
        .save_file(&p)
        .map_err(|e| checkpoint_err(&p)(e.to_string()))?;
    crate::export::write_onnx(&embedder, &arch, &run.onnx()).map_err(io_err(&run.onnx()))?;
    Ok(RunSummary {
        history: state.history,
        faces: set.len(),
        unlabelled: set.len() - set.labelled(),
        classes: set.classes(),
        views: views.as_ref().map_or(0, ViewSet::usable),
        skipped: set.skipped,
    })
}

fn save_checkpoint(
    run: &RunDir,
    model: &Trainable,
    optim: &ModuleOptimizer,
    state: &RunState,
) -> Result<(), TrainError> {
    // Each file is written beside its final name and renamed, so a kill
    // mid-save leaves the previous checkpoint whole.
    let ck = run.checkpoint();
    let tmp = ck.join("model.bpk.tmp");
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| checkpoint_err(&tmp)(e.to_string()))?;
    let tmp_actual = if tmp.is_file() {
        tmp.clone()
    } else {
        tmp.with_extension("tmp.bpk")
    };
    std::fs::rename(&tmp_actual, ck.join("model.bpk")).map_err(io_err(&tmp_actual))?;
    let tmp = ck.join("optimizer.bin.tmp");
    optim
        .save(&tmp)
        .map_err(|e| checkpoint_err(&tmp)(e.to_string()))?;
    std::fs::rename(&tmp, ck.join("optimizer.bin")).map_err(io_err(&tmp))?;
    let text = serde_json::to_string(state).map_err(|e| checkpoint_err(&ck)(e.to_string()))?;
    write_file(&ck.join("state.json"), text.as_bytes())
}

fn write_metrics(run: &RunDir, history: &[EpochMetrics]) -> Result<(), TrainError> {
    let mut csv = Vec::new();
    let _ = writeln!(
        csv,
        "epoch,loss,train_accuracy,lfw_dev_accuracy,lr,images_per_second"
    );
    for m in history {
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{},{:.6e},{:.2}",
            m.epoch,
            m.loss,
            m.train_accuracy,
            m.lfw_dev_accuracy
                .map_or(String::new(), |a| format!("{a:.6}")),
            m.lr,
            m.images_per_second
        );
    }
    write_file(&run.metrics(), &csv)?;
    use facegate_eval::plot::{Series, line_chart};
    let pts = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|m| f(m).map(|v| (m.epoch as f64, v)))
            .collect()
    };
    let loss = [Series {
        label: "training loss",
        points: pts(&|m| Some(m.loss)),
    }];
    let acc = [
        Series {
            label: "train accuracy (nearest class)",
            points: pts(&|m| Some(m.train_accuracy)),
        },
        Series {
            label: "LFW dev accuracy",
            points: pts(&|m| m.lfw_dev_accuracy),
        },
    ];
    // Charts are a convenience: a machine without a font still trains.
    let _ = line_chart(
        &run.root.join("loss.png"),
        "training loss",
        ("epoch", "loss"),
        &loss,
    );
    let _ = line_chart(
        &run.root.join("accuracy.png"),
        "accuracy",
        ("epoch", "accuracy"),
        &acc,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_teacher_file_is_refused_before_any_face_is_read() {
        // No faces either: the teacher must be the error reported.
        let mut cfg = TrainConfig::new(Preset::Tiny, vec![PathBuf::from("no-such-faces")]);
        cfg.distill = Some(DistillSettings::new(
            PathBuf::from("no-such-teacher.tsv"),
            1.0,
        ));
        let run = tempfile::tempdir().expect("tempdir");
        match train(&cfg, run.path(), RunOptions::default()) {
            Err(TrainError::Teacher(TeacherError::Io { path, .. })) => {
                assert_eq!(path, PathBuf::from("no-such-teacher.tsv"));
            }
            other => panic!("expected the teacher file to be named, got {other:?}"),
        }
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let ok = TrainConfig::new(Preset::Tiny, vec![PathBuf::from("faces")]);
        assert!(ok.check().is_ok());
        let refused = |edit: fn(&mut TrainConfig), name: &str| {
            let mut cfg = ok.clone();
            edit(&mut cfg);
            let e = cfg.check().expect_err(name).to_string();
            assert!(e.contains(name), "{e}");
        };
        refused(|c| c.augment.grey = 1.5, "augment.grey");
        refused(|c| c.augment.low_res = -0.1, "augment.low_res");
        refused(|c| c.augment.erase = f32::NAN, "augment.erase");
        refused(|c| c.dropout = 0.95, "dropout");
        refused(|c| c.batch_size = 0, "batch_size");
        refused(|c| c.augment.side_light = 2.0, "augment.side_light");
        let with_views = |per_face, share| {
            move |c: &mut TrainConfig| {
                let mut d = DistillSettings::new(PathBuf::from("t.tsv"), 1.0);
                d.views = Some(crate::views::ViewSettings {
                    dir: PathBuf::from("views"),
                    teacher: PathBuf::from("views.tsv"),
                    per_face,
                    share,
                });
                c.distill = Some(d);
            }
        };
        let mut cfg = ok.clone();
        with_views(4, 0.5)(&mut cfg);
        assert!(cfg.check().is_ok());
        for (per_face, share) in [(0, 0.5), (65, 0.5), (4, 1.5), (4, f32::NAN)] {
            let mut cfg = ok.clone();
            with_views(per_face, share)(&mut cfg);
            let e = cfg.check().expect_err("views").to_string();
            assert!(e.contains("distill.views"), "{e}");
        }
    }

    #[test]
    fn recipes_written_before_the_new_settings_still_read() {
        let mut text = toml::to_string(&TrainConfig::new(Preset::Nano, vec![])).unwrap_or_default();
        for line in ["dropout = 0.0\n", "low_res = 0.0\n", "erase = 0.0\n"] {
            assert!(text.contains(line), "{text}");
            text = text.replace(line, "");
        }
        let cfg: TrainConfig = toml::from_str(&text).expect("old recipe");
        assert_eq!(cfg, TrainConfig::new(Preset::Nano, vec![]));
    }
}
