//! The whole evaluation of one embedder on an identity-per-folder set: LFW's
//! pair lists where the set has them (View 2 10-fold, View 1 dev split), all
//! pairs, 1:N, and the threshold advice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::EvalError;
use crate::allpairs::{Embeddings, all_pairs};
use crate::deploy::{CURVE_FARS, DeploymentAdvice};
use crate::embedder::{EmbedOptions, Embedder, embed_set_cached};
use crate::faces::{FaceError, FaceSet};
use crate::identification::{IdentificationReport, identify};
use crate::lighting::Lighting;
use crate::pairs::{PairList, PairsError, parse_pairs};
use crate::roc::{DEFAULT_BINS, OperatingPoint, Roc, histograms};
use crate::verification::{KFoldReport, accuracy_at, best_threshold, kfold_accuracy};

/// FAR targets of the all-pairs protocol.
pub const FAR_TARGETS: [f64; 4] = [1e-2, 1e-3, 1e-4, 1e-5];

/// What to run.
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// The identity-per-folder set to embed (LFW: `lfw/aligned_112`).
    pub set: PathBuf,
    /// Name of the set in reports ("LFW", or the folder's name).
    pub set_name: String,
    /// Folder with LFW's pair lists (`pairs.txt`, `pairsDevTrain.txt`, `pairsDevTest.txt`)
    /// naming images of `set`; `None` for sets without pair lists (all pairs and 1:N only).
    pub pair_lists: Option<PathBuf>,
    /// Flip-test embeddings.
    pub flip: bool,
    /// The light the faces are seen under.
    pub lighting: Lighting,
    /// Run the all-pairs (low FAR) protocol.
    pub all_pairs: bool,
    /// Run 1:N identification.
    pub identification: bool,
    /// FAR the threshold advice aims at.
    pub target_far: f64,
    /// Embedding cache folder (`None`: no cache).
    pub cache: Option<PathBuf>,
    /// Progress bars.
    pub progress: bool,
}

/// Errors of an evaluation run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading the face set.
    #[error(transparent)]
    Faces(#[from] FaceError),
    /// A pair list is malformed.
    #[error(transparent)]
    Pairs(#[from] PairsError),
    /// A pair names an image that is not in the set.
    #[error("{}:{line}: image {image} is not in {}", file.display(), set.display())]
    MissingImage {
        /// Pair list.
        file: PathBuf,
        /// Line of the pair.
        line: usize,
        /// The image.
        image: String,
        /// The set searched.
        set: PathBuf,
    },
    /// A protocol failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Reading a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Pair-list protocol outcome.
#[derive(Clone, Debug, Serialize)]
pub struct PairProtocol {
    /// Pairs scored.
    pub pairs: usize,
    /// Pairs skipped because an image could not be embedded.
    pub skipped_pairs: usize,
    /// k-fold accuracy (View 2) …
    pub kfold: Option<KFoldReport>,
    /// … or train-threshold / test-accuracy (View 1).
    pub dev: Option<DevReport>,
    /// ROC summary of these pairs.
    pub auc: f64,
    /// Equal error rate point.
    pub eer: OperatingPoint,
    /// ROC for plots (log-spaced FAR).
    pub roc_curve: Vec<OperatingPoint>,
}

/// View 1: threshold from `pairsDevTrain`, accuracy on `pairsDevTest`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DevReport {
    /// Threshold chosen on the training list.
    pub threshold: f64,
    /// Accuracy on the training list.
    pub train_accuracy: f64,
    /// Accuracy on the test list.
    pub test_accuracy: f64,
}

/// All-pairs protocol outcome.
#[derive(Clone, Debug, Serialize)]
pub struct AllPairsReport {
    /// Genuine comparisons.
    pub genuine: u64,
    /// Impostor comparisons.
    pub impostor: u64,
    /// Area under the ROC.
    pub auc: f64,
    /// Equal error rate point.
    pub eer: OperatingPoint,
    /// TAR at each resolvable FAR target.
    pub tar_at_far: Vec<OperatingPoint>,
    /// ROC for plots (log-spaced FAR).
    pub roc_curve: Vec<OperatingPoint>,
    /// Genuine score histogram (100 bins over [-1, 1]) for plots.
    pub genuine_hist: Vec<u64>,
    /// Impostor score histogram (100 bins over [-1, 1]).
    pub impostor_hist: Vec<u64>,
}

/// Everything one evaluation measured.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Embedder name.
    pub model: String,
    /// Its hash (hex).
    pub model_hash: String,
    /// Flip test used.
    pub flip: bool,
    /// The light the faces were seen under.
    pub lighting: Lighting,
    /// Images in the set.
    pub images: usize,
    /// Images that could not be embedded, with the reason.
    pub failed_images: Vec<(String, String)>,
    /// The evaluated set.
    pub set: String,
    /// LFW View 2 (10 folds of `pairs.txt`), when the set has pair lists.
    pub view2: Option<PairProtocol>,
    /// LFW View 1 (`pairsDevTrain` → `pairsDevTest`), if the lists are present.
    pub view1: Option<PairProtocol>,
    /// All genuine and impostor pairs.
    pub all_pairs: Option<AllPairsReport>,
    /// Open-set 1:N.
    pub identification: Option<IdentificationReport>,
    /// Threshold advice (from all pairs, else from View 2 pairs).
    pub advice: Option<DeploymentAdvice>,
    /// Seconds spent embedding (0 when cached).
    pub embed_seconds: f64,
    /// Seconds spent on the protocols.
    pub protocol_seconds: f64,
    /// The embedding of every image of the set, in `FaceSet` order (not
    /// serialised: reports stay small).
    #[serde(skip)]
    pub embeddings: Embeddings,
    /// The full-resolution ROC of all pairs, when that protocol ran (not
    /// serialised; `all_pairs` has its summary).
    #[serde(skip)]
    pub all_pairs_roc: Option<Roc>,
}

fn read(path: &Path) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs the evaluation.
pub fn evaluate(embedder: &dyn Embedder, cfg: &EvalConfig) -> Result<EvalReport, RunError> {
    let set_root = &cfg.set;
    let set = FaceSet::scan(set_root)?;
    let index = set.index_of();
    // Resolve every pair before the long embedding step: a bad list fails in a second.
    let mut view2_lists = None;
    let mut dev = None;
    if let Some(lists) = &cfg.pair_lists {
        let view2_file = lists.join("pairs.txt");
        let view2_list = parse_pairs(&read(&view2_file)?, &view2_file)?;
        view2_lists = Some((
            resolve(&view2_list, &index, &view2_file, set_root)?,
            view2_list.folds,
        ));
        let dev_files = [
            lists.join("pairsDevTrain.txt"),
            lists.join("pairsDevTest.txt"),
        ];
        if dev_files.iter().all(|f| f.is_file()) {
            let mut v = Vec::new();
            for f in &dev_files {
                let l = parse_pairs(&read(f)?, f)?;
                v.push(resolve(&l, &index, f, set_root)?);
            }
            dev = Some(v);
        }
    }

    let t = Instant::now();
    let hash = embedder.model_hash();
    let (embedded, from_cache) = embed_set_cached(
        embedder,
        &set,
        EmbedOptions {
            flip: cfg.flip,
            progress: cfg.progress,
            lighting: cfg.lighting,
        },
        cfg.cache.as_deref(),
    )?;
    let (emb, failed) = (embedded.embeddings, embedded.failed);
    let embed_seconds = if from_cache {
        0.0
    } else {
        t.elapsed().as_secs_f64()
    };
    let bad: std::collections::HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();

    let t = Instant::now();
    let view2 = match &view2_lists {
        Some((pairs, folds)) => Some(pair_protocol(&emb, pairs, &bad, Some(*folds))?),
        None => None,
    };
    let view1 = match &dev {
        Some(v) => Some(dev_protocol(&emb, &v[0], &v[1], &bad)?),
        None => None,
    };
    let labels = set.labels();
    let good: Vec<usize> = (0..set.files.len()).filter(|i| !bad.contains(i)).collect();
    let (good_emb, good_labels) = subset(&emb, &labels, &good);
    let (all, all_roc) = if cfg.all_pairs {
        let (r, roc) = all_pairs_report(&good_emb, &good_labels)?;
        (Some(r), Some(roc))
    } else {
        (None, None)
    };
    let identification = if cfg.identification {
        Some(identify(&good_emb, &good_labels, &FAR_TARGETS[..3])?)
    } else {
        None
    };
    let hash_hex = hash.to_string();
    let view2_pairs = view2_lists.as_ref().map(|(p, _)| p);
    let advice = advise(
        embedder,
        &hash_hex,
        cfg,
        all_roc.as_ref(),
        &emb,
        view2_pairs,
        &bad,
    )?;
    Ok(EvalReport {
        model: embedder.name(),
        model_hash: hash_hex,
        flip: cfg.flip,
        lighting: cfg.lighting,
        set: cfg.set_name.clone(),
        images: set.files.len(),
        failed_images: failed
            .into_iter()
            .map(|(i, e)| (set.files[i].path.display().to_string(), e))
            .collect(),
        view2,
        view1,
        all_pairs: all,
        identification,
        advice,
        embed_seconds,
        protocol_seconds: t.elapsed().as_secs_f64(),
        embeddings: emb,
        all_pairs_roc: all_roc,
    })
}

type PairIdx = Vec<(usize, usize, bool)>;

fn resolve(
    list: &PairList,
    index: &HashMap<&Path, usize>,
    file: &Path,
    set: &Path,
) -> Result<PairIdx, RunError> {
    list.pairs
        .iter()
        .map(|p| {
            let find = |r: &crate::pairs::ImageRef| {
                index
                    .get(r.relative_path().as_path())
                    .copied()
                    .ok_or_else(|| RunError::MissingImage {
                        file: file.to_path_buf(),
                        line: p.line,
                        image: r.relative_path().display().to_string(),
                        set: set.to_path_buf(),
                    })
            };
            Ok((find(&p.a)?, find(&p.b)?, p.same))
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scores of the pairs whose images both embedded; the rest are counted.
fn score_pairs(
    emb: &Embeddings,
    pairs: &PairIdx,
    bad: &std::collections::HashSet<usize>,
) -> (Vec<f32>, Vec<bool>, usize) {
    let (mut s, mut y, mut skipped) = (Vec::new(), Vec::new(), 0);
    for &(a, b, same) in pairs {
        if bad.contains(&a) || bad.contains(&b) {
            skipped += 1;
            continue;
        }
        s.push(dot(emb.row(a), emb.row(b)));
        y.push(same);
    }
    (s, y, skipped)
}

fn pair_protocol(
    emb: &Embeddings,
    pairs: &PairIdx,
    bad: &std::collections::HashSet<usize>,
    folds: Option<usize>,
) -> Result<PairProtocol, RunError> {
    let (s, y, skipped) = score_pairs(emb, pairs, bad);
    // With skipped pairs the folds are no longer equal; 10-fold then needs every pair.
    let kfold = match folds {
        Some(k) if skipped == 0 => Some(kfold_accuracy(&s, &y, k)?),
        _ => None,
    };
    let (g, i) = histograms(&s, &y, DEFAULT_BINS);
    let roc = Roc::new(&g, &i)?;
    Ok(PairProtocol {
        pairs: s.len(),
        skipped_pairs: skipped,
        kfold,
        dev: None,
        auc: roc.auc(),
        eer: roc.eer(),
        roc_curve: roc.curve(120),
    })
}

fn dev_protocol(
    emb: &Embeddings,
    train: &PairIdx,
    test: &PairIdx,
    bad: &std::collections::HashSet<usize>,
) -> Result<PairProtocol, RunError> {
    let (ts, ty, tskip) = score_pairs(emb, train, bad);
    let (threshold, train_accuracy) = best_threshold(&ts, &ty)?;
    let mut p = pair_protocol(emb, test, bad, None)?;
    let (s, y, _) = score_pairs(emb, test, bad);
    p.skipped_pairs += tskip;
    p.dev = Some(DevReport {
        threshold,
        train_accuracy,
        test_accuracy: accuracy_at(&s, &y, threshold),
    });
    Ok(p)
}

fn subset(emb: &Embeddings, labels: &[u32], keep: &[usize]) -> (Embeddings, Vec<u32>) {
    let data = keep
        .iter()
        .flat_map(|&i| emb.row(i).iter().copied())
        .collect();
    let e = Embeddings::new(emb.dim(), data).unwrap_or_else(|_| unreachable!("same width"));
    (e, keep.iter().map(|&i| labels[i]).collect())
}

fn coarse(h: &crate::roc::ScoreHistogram, bins: usize) -> Vec<u64> {
    let per = h.len() / bins;
    h.counts()
        .chunks(per.max(1))
        .map(|c| c.iter().sum())
        .collect()
}

fn all_pairs_report(emb: &Embeddings, labels: &[u32]) -> Result<(AllPairsReport, Roc), RunError> {
    let (g, i) = all_pairs(emb, labels, DEFAULT_BINS)?;
    let roc = Roc::new(&g, &i)?;
    let report = AllPairsReport {
        genuine: roc.genuine,
        impostor: roc.impostor,
        auc: roc.auc(),
        eer: roc.eer(),
        tar_at_far: FAR_TARGETS
            .iter()
            .filter_map(|&f| roc.tar_at_far(f))
            .collect(),
        roc_curve: roc.curve(200),
        genuine_hist: coarse(&g, 100),
        impostor_hist: coarse(&i, 100),
    };
    Ok((report, roc))
}

fn advise(
    embedder: &dyn Embedder,
    hash: &str,
    cfg: &EvalConfig,
    all: Option<&Roc>,
    emb: &Embeddings,
    view2: Option<&PairIdx>,
    bad: &std::collections::HashSet<usize>,
) -> Result<Option<DeploymentAdvice>, RunError> {
    let name = &cfg.set_name;
    // The curve: one point per resolvable CURVE_FARS entry, threshold rising.
    let curve = |roc: &Roc| {
        let mut v: Vec<OperatingPoint> = CURVE_FARS
            .iter()
            .filter_map(|&f| roc.tar_at_far(f))
            .collect();
        v.dedup_by(|a, b| a.threshold == b.threshold);
        v
    };
    let (point, on, far_curve) = if let Some(roc) = all {
        let on = format!(
            "{name} all pairs ({} genuine, {} impostor)",
            roc.genuine, roc.impostor
        );
        (roc.tar_at_far(cfg.target_far), on, curve(roc))
    } else if let Some(view2) = view2 {
        let (s, y, _) = score_pairs(emb, view2, bad);
        let (g, i) = histograms(&s, &y, DEFAULT_BINS);
        let roc = Roc::new(&g, &i)?;
        let on = format!(
            "{name} View 2 pairs ({} genuine, {} impostor)",
            roc.genuine, roc.impostor
        );
        (roc.tar_at_far(cfg.target_far), on, curve(&roc))
    } else {
        return Ok(None);
    };
    Ok(point.map(|p| DeploymentAdvice {
        model_hash: hash.into(),
        model: embedder.name(),
        target_far: cfg.target_far,
        threshold: p.threshold,
        measured_far: p.far,
        expected_tar: p.tar,
        measured_on: on,
        flip_test: cfg.flip,
        far_curve,
        held_out: Vec::new(),
    }))
}
