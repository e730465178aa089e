//! `facegate model info`, `facegate train`'s errors and the benchmarks' peer
//! set-up hints, as users see them.

use std::process::Command;

fn facegate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .output()
        .expect("facegate runs")
}

#[test]
fn model_info_of_the_presets() {
    for preset in ["mfn", "nano"] {
        let out = facegate(&["model", "info", "--preset", preset]);
        assert!(out.status.success());
        insta::assert_snapshot!(
            format!("model_info_{preset}"),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn train_without_data_says_what_to_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = facegate(&["train", "--out", &dir.path().join("run").to_string_lossy()]);
    assert!(!out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_broken_recipe_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(&recipe, "preset = \"huge\"\n").expect("write");
    let out = facegate(&[
        "train",
        "--config",
        &recipe.to_string_lossy(),
        "--out",
        &dir.path().join("run").to_string_lossy(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("recipe.toml is not a training recipe"),
        "{err}"
    );
    assert!(err.contains("huge"), "{err}");
}

#[test]
fn libtorch_without_the_tch_build_names_the_build_script() {
    if cfg!(feature = "tch") {
        return; // this binary has LibTorch: nothing to refuse
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = facegate(&[
        "train",
        "--data",
        &dir.path().to_string_lossy(),
        "--out",
        &dir.path().join("run").to_string_lossy(),
        "--device",
        "tch-cuda:1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tch-cuda:1 needs LibTorch"), "{err}");
    assert!(err.contains("scripts/build-tch.sh"), "{err}");
    let out = facegate(&["train", "--out", "x", "--device", "gpu"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use flex, tch-cpu or tch-cuda[:N]"), "{err}");
}

#[test]
fn bench_train_measures_burn_and_says_how_to_set_up_the_peer() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let orl = data.join("orl");
    let out = facegate(&[
        "bench",
        "train",
        "--preset",
        "tiny",
        "--data",
        &orl.to_string_lossy(),
        "--images",
        "24",
        "--batch",
        "8",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--python",
        "/nonexistent/python",
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("24 faces of"), "{stdout}");
    assert!(stdout.contains("burn 0.22 flex"), "{stdout}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bench/setup-torch.sh"), "{err}");
}

#[test]
fn bench_engine_times_engine_and_tract_and_says_how_to_set_up_onnxruntime() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let path = |f: &str| models.join(f).to_string_lossy().into_owned();
    let out = facegate(&[
        "bench",
        "engine",
        "--blob",
        &path("nano.fgm"),
        "--float",
        &path("nano.onnx"),
        "--faces",
        &data.join("lfw/aligned_112").to_string_lossy(),
        "--images",
        "2",
        "--onnxruntime",
        "--python",
        "/nonexistent/python",
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("facegate int8 engine"), "{stdout}");
    assert!(stdout.contains("engine/tract-float = "), "{stdout}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bench/setup-ort.sh"), "{err}");
}
