//! `facegate model info`, `facegate train`'s errors, `facegate
//! train-views` and the benchmarks' peer set-up hints, as users see them.

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
fn bench_photo_decides_on_raw_photos_and_says_how_to_set_up_dlib() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let photos = data.join("lfw/raw_subset").to_string_lossy().into_owned();
    let model = models.join("nano.fgm").to_string_lossy().into_owned();
    let args = [
        "bench",
        "photo",
        "--photos",
        &photos,
        "--model",
        &model,
        "--images",
        "2",
        "--enrolled",
        "1",
    ];
    let out = facegate(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("median of 2 photos"), "{stdout}");
    assert!(stdout.contains("faces found in 2/2"), "{stdout}");
    // The peer is opt-in: without it the run stops before timing anything.
    let out = facegate(
        &[
            &args[..],
            &["--dlib", "--dlib-tool", "/nonexistent/dlib_photo"],
        ]
        .concat(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bench/setup-dlib.sh"), "{err}");
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

#[test]
fn train_views_writes_the_views_the_teacher_will_see_and_never_of_lfw() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // Two people of ORL, three faces each.
    let root = dir.path().join("orl");
    for person in ["s1", "s2"] {
        std::fs::create_dir_all(root.join(person)).expect("mkdir");
        for face in ["1.pgm", "2.pgm", "3.pgm"] {
            std::fs::copy(
                data.join("orl").join(person).join(face),
                root.join(person).join(face),
            )
            .expect("copy");
        }
    }
    let views = dir.path().join("views");
    let run = |root: &std::path::Path| {
        facegate(&[
            "train-views",
            "--data",
            &root.to_string_lossy(),
            "--per-face",
            "2",
            "--out",
            &views.to_string_lossy(),
            "--quiet",
        ])
    };
    let out = run(&root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("12 views of 6 faces"));
    let first = std::fs::read(views.join("orl/s1/1.v0.png")).expect("view 0 of s1/1");
    assert!(views.join("orl/s2/3.v1.png").is_file());
    // The same seed renders the same views.
    assert!(run(&root).status.success());
    assert_eq!(
        std::fs::read(views.join("orl/s1/1.v0.png")).expect("again"),
        first
    );

    let out = run(&data.join("lfw"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to render training views of LFW")
    );
}
