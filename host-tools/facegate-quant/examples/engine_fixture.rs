//! Writes the data the firmware's engine check compiles in: a quantised
//! model blob, a few faces and the host engine's embeddings of them.
//!
//! `cargo run -p facegate-quant --example engine_fixture -- OUT_DIR [DATA_DIR]`
//!
//! The model is `tests/fixtures/tiny_mfn_random.onnx` (MobileFaceNet blocks,
//! few channels, untrained). With LFW in DATA_DIR it is calibrated on 32 LFW
//! faces and checked on 3 others; without, on synthetic images.

use std::path::PathBuf;

use facegate_core::engine::Model;
use facegate_eval::faces::{Face, FaceSet};
use facegate_eval::onnx::InputNorm;
use facegate_quant::graph::FloatNet;
use facegate_quant::quantize::{calibrate, quantize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: engine_fixture OUT_DIR [DATA_DIR]")?,
    );
    let data = args.next().map(PathBuf::from);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let net = FloatNet::load(&root.join("tests/fixtures/tiny_mfn_random.onnx"))?;

    let lfw = data
        .map(|d| d.join("lfw/aligned_112"))
        .filter(|d| d.is_dir());
    let (calib, probes, source) = match &lfw {
        Some(dir) => {
            let set = FaceSet::scan(dir)?;
            let mut seen = std::collections::HashSet::new();
            let firsts: Vec<_> = set
                .files
                .iter()
                .filter(|f| seen.insert(f.identity))
                .collect();
            let load = |f: &&facegate_eval::faces::FaceFile| Face::load(&set.root.join(&f.path));
            let calib = firsts
                .iter()
                .take(32)
                .map(load)
                .collect::<Result<Vec<_>, _>>()?;
            let probes = firsts
                .iter()
                .skip(200)
                .take(3)
                .map(load)
                .collect::<Result<Vec<_>, _>>()?;
            (calib, probes, "LFW")
        }
        None => {
            let synth = |k: usize| Face {
                rgb: (0..112 * 112 * 3)
                    .map(|i| ((i * 7 + k * 31) % 251) as u8)
                    .collect(),
            };
            (
                (0..8).map(synth).collect(),
                (100..103).map(synth).collect(),
                "synthetic images",
            )
        }
    };
    let ranges = calibrate(&net, &calib, InputNorm::ArcFace)?;
    let q = quantize(&net, &ranges, InputNorm::ArcFace)?;
    let model = Model::parse(&q.blob)?;
    let mut arena = vec![0i8; model.arena_len()];
    let mut expected = Vec::new();
    let mut faces = Vec::new();
    for p in &probes {
        let mut emb = vec![0.0f32; model.embedding_dim()];
        model.embed(&p.rgb, &mut arena, &mut emb)?;
        expected.extend(emb.iter().flat_map(|x| x.to_le_bytes()));
        faces.extend_from_slice(&p.rgb);
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("model.fgm"), &q.blob)?;
    std::fs::write(out.join("faces.rgb"), &faces)?;
    std::fs::write(out.join("expected.f32"), &expected)?;
    println!(
        "engine fixture: {} B blob, {} B arena, {} faces from {source} → {}",
        q.blob.len(),
        model.arena_len(),
        probes.len(),
        out.display()
    );
    Ok(())
}
