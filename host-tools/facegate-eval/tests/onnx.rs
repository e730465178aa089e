//! The tract embedder on a tiny ONNX model whose output is known exactly.

use std::path::PathBuf;

use facegate_eval::embedder::Embedder;
use facegate_eval::faces::Face;
use facegate_eval::onnx::{InputNorm, OnnxEmbedder, OnnxError};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// A face with a different value in every channel and position.
fn face() -> Face {
    let rgb = (0..112 * 112)
        .flat_map(|i| {
            let (y, x) = (i / 112, i % 112);
            [(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8]
        })
        .collect();
    Face { rgb }
}

#[test]
fn tiny_model_output_equals_direct_computation() {
    let e = OnnxEmbedder::load(&fixture("tiny_embedder.onnx"), InputNorm::ArcFace).unwrap();
    assert_eq!(e.dim(), 147);
    let f = face();
    let got = e.embed(&f).unwrap();
    // 16×16 average pooling per channel of the normalised planar image, channel-major.
    let mut want = vec![0.0f32; 147];
    for c in 0..3 {
        for by in 0..7 {
            for bx in 0..7 {
                let mut s = 0.0f32;
                for y in by * 16..by * 16 + 16 {
                    for x in bx * 16..bx * 16 + 16 {
                        s += (f32::from(f.rgb[(y * 112 + x) * 3 + c]) - 127.5) / 128.0;
                    }
                }
                want[c * 49 + by * 7 + bx] = s / 256.0;
            }
        }
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() < 1e-5, "component {i}: tract {g} direct {w}");
    }
    // Same file, same hash; the hash is the file's SHA-256.
    let again = OnnxEmbedder::load(&fixture("tiny_embedder.onnx"), InputNorm::Unit).unwrap();
    assert_eq!(again.model_hash(), e.model_hash());
}

#[test]
fn not_a_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("model.onnx");
    std::fs::write(&bogus, b"this is not protobuf").unwrap();
    let err = OnnxEmbedder::load(&bogus, InputNorm::ArcFace).unwrap_err();
    assert!(matches!(err, OnnxError::Model { .. }));
    assert!(
        err.to_string()
            .contains("model.onnx: cannot run as a face embedder"),
        "{err}"
    );
    let err = OnnxEmbedder::load(&dir.path().join("absent.onnx"), InputNorm::ArcFace).unwrap_err();
    assert!(matches!(err, OnnxError::Io { .. }));
}

#[test]
fn a_model_for_another_input_size_is_refused_by_name() {
    let err = OnnxEmbedder::load(&fixture("wrong_input_8x8.onnx"), InputNorm::ArcFace).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("wrong_input_8x8.onnx: cannot run as a face embedder taking 1×3×112×112"),
        "{msg}"
    );
}
