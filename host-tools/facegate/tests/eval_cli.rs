//! `facegate eval` on the shared LFW data with the model-free baseline.

use std::path::Path;
use std::process::Command;

use facegate_e2e::shared_data;

fn facegate(args: &[&str], cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .env("FACEGATE_CACHE", cache)
        .output()
        .unwrap()
}

fn numbers(report: &serde_json::Value) -> serde_json::Value {
    let mut r = report.clone();
    // Timings differ between runs; everything else must not.
    r["embed_seconds"] = 0.into();
    r["protocol_seconds"] = 0.into();
    r
}

#[test]
fn baseline_eval_counts_every_pair_and_is_deterministic() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let mut reports = Vec::new();
    for run in ["a", "b"] {
        // Run b reads the embedding cache written by run a: same numbers either way.
        let out_dir = tmp.path().join(run);
        let out = facegate(
            &[
                "eval",
                "--data",
                data.to_str().unwrap(),
                "--out",
                out_dir.to_str().unwrap(),
            ],
            &cache,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
                .unwrap();
        reports.push(json);
        assert!(out_dir.join("report.md").is_file() && out_dir.join("deployment.toml").is_file());
        for chart in ["roc.png", "scores.png"] {
            let png = std::fs::read(out_dir.join(chart)).unwrap();
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "{chart}: {} bytes",
                png.len()
            );
        }
    }
    assert_eq!(numbers(&reports[0]), numbers(&reports[1]));
    assert_eq!(
        reports[1]["embed_seconds"], 0.0,
        "second run should hit the cache"
    );
    let r = &reports[0];
    assert_eq!(r["images"], 13233);
    assert_eq!(r["set"], "LFW");
    assert_eq!(r["view2"]["pairs"], 6000);
    assert_eq!(r["view2"]["skipped_pairs"], 0);
    // Every unordered pair of LFW is counted exactly once.
    let (g, i) = (
        r["all_pairs"]["genuine"].as_u64().unwrap(),
        r["all_pairs"]["impostor"].as_u64().unwrap(),
    );
    assert_eq!(g + i, 13233 * 13232 / 2);
    // Raw pixels are a weak but real signal on LFW: above chance, far below a face model.
    let acc = r["view2"]["kfold"]["mean"].as_f64().unwrap();
    assert!((0.55..0.75).contains(&acc), "baseline accuracy {acc}");
}

#[test]
fn a_pair_naming_a_missing_image_is_reported_with_file_and_line() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // A tiny LFW: two identities linked from the shared data, and a pair list with a typo on line 3.
    let lfw = tmp.path().join("lfw");
    let aligned = lfw.join("aligned_112");
    std::fs::create_dir_all(&aligned).unwrap();
    for name in ["Abel_Pacheco", "Akhmed_Zakayev"] {
        std::os::unix::fs::symlink(data.join("lfw/aligned_112").join(name), aligned.join(name))
            .unwrap();
    }
    std::fs::write(
        lfw.join("pairs.txt"),
        "1\t1\nAbel_Pacheco\t1\t2\nAbel_Pacheco\t1\tAkhmed_Zakayev\t9\n",
    )
    .unwrap();
    let out = facegate(
        &["eval", "--data", tmp.path().to_str().unwrap(), "--no-cache"],
        tmp.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pairs.txt:3: image Akhmed_Zakayev/Akhmed_Zakayev_0009.jpg is not in"),
        "{err}"
    );
}

#[test]
fn onnx_model_runs_through_tract_on_all_of_lfw() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/tiny_embedder.onnx"
    );
    let out_dir = tmp.path().join("out");
    let out = facegate(
        &[
            "eval",
            "--model",
            model,
            "--data",
            data.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--no-all-pairs",
        ],
        &tmp.path().join("cache"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(r["model"], "tiny_embedder.onnx");
    assert_eq!(r["failed_images"].as_array().unwrap().len(), 0);
    assert_eq!(r["view2"]["pairs"], 6000);
    assert!(r["all_pairs"].is_null());
    // Advice then comes from View 2's 3,000 impostor pairs.
    let advice = std::fs::read_to_string(out_dir.join("deployment.toml")).unwrap();
    assert!(advice.contains("LFW View 2 pairs"), "{advice}");
}

#[test]
fn a_file_that_is_not_a_model_is_named_in_the_error() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bogus = tmp.path().join("face.onnx");
    std::fs::write(&bogus, b"not protobuf").unwrap();
    let out = facegate(
        &[
            "eval",
            "--model",
            bogus.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("face.onnx: cannot run as a face embedder taking 1×3×112×112"),
        "{err}"
    );
}

#[test]
fn any_identity_per_folder_set_gets_all_pairs_and_one_to_n() {
    let Some(data) = shared_data() else { return };
    let orl = data.join("orl");
    if !orl.is_dir() {
        eprintln!("SKIP: no ORL in {}", data.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = facegate(
        &[
            "eval",
            "--set",
            orl.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--no-cache",
        ],
        tmp.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    // ORL: 40 people × 10 grey 92×112 photos.
    assert_eq!(
        (r["set"].as_str(), r["images"].as_u64()),
        (Some("orl"), Some(400))
    );
    assert!(r["view2"].is_null());
    assert_eq!(r["all_pairs"]["genuine"], 40 * 45);
    assert_eq!(r["all_pairs"]["impostor"], 400 * 399 / 2 - 40 * 45);
    assert_eq!(r["identification"]["gallery"], 40);
    assert!(
        std::fs::read_to_string(out_dir.join("deployment.toml"))
            .unwrap()
            .contains("orl all pairs")
    );
}
