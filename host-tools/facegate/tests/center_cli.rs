//! `facegate center`: the written model is the old one minus the faces'
//! mean embedding, so centring twice on the same faces moves nothing; bad
//! input is named.

use std::path::Path;
use std::process::{Command, Output};

use facegate_e2e::shared_data;

fn facegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .output()
        .unwrap()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

/// The number after `label` in the command's report.
fn number(out: &Output, label: &str) -> f64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"))
}

#[test]
fn centring_twice_on_the_same_faces_moves_nothing() {
    let Some(data) = shared_data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let faces = data.join("celeba/wild_112");
    let (once, twice) = (tmp.path().join("once.onnx"), tmp.path().join("twice.onnx"));
    let center = |from: &Path, to: &Path| {
        let out = facegate(&[
            "center",
            "--model",
            from.to_str().unwrap(),
            "--faces",
            faces.to_str().unwrap(),
            "--images",
            "40",
            "--out",
            to.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let first = center(&repo().join("models/nano.onnx"), &once);
    // Centred on these 40 faces, their mean points nowhere in particular
    // (40 random unit vectors in 128 dimensions average to about 0.03).
    let text = String::from_utf8_lossy(&first.stdout).into_owned();
    let after: f64 = text
        .split("mean direction")
        .nth(1)
        .and_then(|s| s.split('→').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(after < 0.1, "{text}");
    assert!(
        text.contains("40 from 1 folder(s) (0 unreadable)"),
        "{text}"
    );
    // The second run finds the mean already at the origin.
    let second = center(&once, &twice);
    let raw = number(&second, "center length");
    assert!(raw < 1e-3, "{}", String::from_utf8_lossy(&second.stdout));
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("no-faces");
    std::fs::create_dir(&empty).unwrap();
    let out = tmp.path().join("out.onnx");
    let run = |model: &Path, faces: &Path| {
        facegate(&[
            "center",
            "--model",
            model.to_str().unwrap(),
            "--faces",
            faces.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let not_onnx = tmp.path().join("model.onnx");
    std::fs::write(&not_onnx, b"not a model").unwrap();
    let r = run(&not_onnx, &empty);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("model.onnx"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let r = run(&repo().join("models/nano.onnx"), &empty);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("no-faces: no identity folders"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(!out.exists(), "nothing is written on an error");
}
