//! facegate-eval against an independent implementation (numpy + scikit-learn)
//! on real scores: the baseline embedder's LFW View 2 pairs.

use std::path::PathBuf;
use std::process::Command;

use facegate_e2e::shared_data;
use facegate_eval::embedder::{EmbedOptions, PixelBaseline, embed_set};
use facegate_eval::faces::FaceSet;
use facegate_eval::pairs::parse_pairs;
use facegate_eval::roc::{DEFAULT_BINS, Roc, histograms};
use facegate_eval::verification::kfold_accuracy;

/// The reference interpreter: `$FACEGATE_PYTHON`, else the venv `scripts/setup.sh` makes.
fn python() -> PathBuf {
    std::env::var_os("FACEGATE_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
        PathBuf::from,
    )
}

#[test]
fn view2_metrics_agree_with_numpy_and_sklearn() {
    let Some(data) = shared_data() else { return };
    let py = python();
    assert!(
        py.exists(),
        "{} missing: run scripts/setup.sh (it creates the reference venv with numpy and scikit-learn)",
        py.display()
    );
    let lfw = data.join("lfw");
    let set = FaceSet::scan(&lfw.join("aligned_112")).unwrap();
    let emb = embed_set(&PixelBaseline, &set, EmbedOptions::default()).unwrap();
    assert!(emb.failed.is_empty());
    let file = lfw.join("pairs.txt");
    let list = parse_pairs(&std::fs::read_to_string(&file).unwrap(), &file).unwrap();
    let index = set.index_of();
    let (mut scores, mut same) = (Vec::new(), Vec::new());
    for p in &list.pairs {
        let a = emb.embeddings.row(index[p.a.relative_path().as_path()]);
        let b = emb.embeddings.row(index[p.b.relative_path().as_path()]);
        scores.push(a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
        same.push(p.same);
    }
    let ours = kfold_accuracy(&scores, &same, 10).unwrap();
    let (g, i) = histograms(&scores, &same, DEFAULT_BINS);
    let roc = Roc::new(&g, &i).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("scores.tsv");
    let text: String = scores
        .iter()
        .zip(&same)
        .map(|(s, y)| format!("{s:?}\t{}\n", u8::from(*y)))
        .collect();
    std::fs::write(&tsv, text).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference/eval_reference.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&tsv)
        .args(["10", "0.01", "0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Same rule, same f32 scores: fold accuracies are equal to the last bit.
    let folds: Vec<f64> = reference["fold_accuracy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let ours_folds: Vec<f64> = ours.folds.iter().map(|f| f.accuracy).collect();
    assert_eq!(ours_folds, folds);
    assert!((ours.mean - reference["mean"].as_f64().unwrap()).abs() < 1e-12);
    assert!((ours.std - reference["std"].as_f64().unwrap()).abs() < 1e-12);
    // Histogram AUC vs scikit-learn's exact AUC: bins of 1e-4 merge near-ties only.
    let auc = reference["auc"].as_f64().unwrap();
    assert!(
        (roc.auc() - auc).abs() < 2e-4,
        "auc {} vs sklearn {auc}",
        roc.auc()
    );
    // TAR at FAR: equal up to the genuine pairs inside one 1e-4 bin of the threshold.
    for far in ["0.01", "0.1"] {
        let r = reference["tar_at_far"][far].as_f64().unwrap();
        let o = roc.tar_at_far(far.parse().unwrap()).unwrap().tar;
        assert!(
            (o - r).abs() <= 2.0 / 3000.0,
            "TAR@FAR {far}: ours {o} reference {r}"
        );
    }
    eprintln!(
        "reference agrees: 10-fold {:.4} ± {:.4}, AUC {:.5} (sklearn {auc:.5})",
        ours.mean,
        ours.std,
        roc.auc()
    );
}
