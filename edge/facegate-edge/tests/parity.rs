//! The edge embedder against its references, on whatever CPU runs the test
//! (x86 here, aarch64 under `qemu-aarch64` in `cargo xtask test`):
//!
//! - its embeddings equal the x86 host's, cosine ≥ 0.9999, when
//!   `FACEGATE_EDGE_EXPECTED` names the host's embeddings of the same faces
//!   (`cargo xtask test` runs this test on x86 with `FACEGATE_EDGE_WRITE`
//!   first);
//! - its accept/reject decisions equal the int8 engine's (the MCU's, bit for
//!   bit) on the same probes against templates enrolled with the engine.

use std::path::{Path, PathBuf};

use facegate_core::{EMBEDDING_DIM, Embedding, Template};
use facegate_e2e::shared_data;
use facegate_edge::embedder::{TractEmbedder, cosine};
use facegate_eval::embedder::Embedder as _;
use facegate_eval::faces::Face;
use facegate_quant::engine::EngineEmbedder;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The faces both checks use: a few LFW people, several photos each.
pub fn parity_faces(data: &Path) -> Vec<PathBuf> {
    [
        "Colin_Powell",
        "Tony_Blair",
        "Hugo_Chavez",
        "Serena_Williams",
    ]
    .iter()
    .flat_map(|who| {
        (1..=PHOTOS_PER_PERSON)
            .map(move |n| data.join(format!("lfw/aligned_112/{who}/{who}_{n:04}.jpg")))
    })
    .collect()
}

/// Photos of each parity person: the first enrolls them, the others probe.
/// Six, so that enough probes stay clear of the threshold to compare
/// decisions (with a better model more scores sit near it).
const PHOTOS_PER_PERSON: usize = 6;

fn template(v: &[f32]) -> Template {
    Template::quantize(&Embedding::<EMBEDDING_DIM>::from_slice(v).unwrap())
}

#[test]
fn embeddings_match_the_host_and_decisions_match_the_engine() {
    let Some(data) = shared_data() else {
        panic!("the parity test needs ../shared/data");
    };
    let blob = repo().join("models/nano.fgm");
    let faces: Vec<Face> = parity_faces(&data)
        .iter()
        .map(|p| Face::load(p).unwrap())
        .collect();
    let tract = TractEmbedder::load(&repo().join("models/nano.onnx"), &blob, &faces[..2]).unwrap();
    let engine = EngineEmbedder::load(&blob).unwrap();
    let float: Vec<Vec<f32>> = faces.iter().map(|f| tract.embed_face(f).unwrap()).collect();
    let int8: Vec<Vec<f32>> = faces.iter().map(|f| engine.embed(f).unwrap()).collect();

    if let Some(out) = std::env::var_os("FACEGATE_EDGE_WRITE") {
        let lines: Vec<String> = float
            .iter()
            .map(|v| {
                v.iter()
                    .map(|x| format!("{x:e}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        std::fs::write(out, lines.join("\n") + "\n").unwrap();
    }
    if let Some(expected) = std::env::var_os("FACEGATE_EDGE_EXPECTED") {
        let text = std::fs::read_to_string(&expected).unwrap();
        let host: Vec<Vec<f32>> = text
            .lines()
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert_eq!(host.len(), float.len());
        let worst = host
            .iter()
            .zip(&float)
            .map(|(h, f)| cosine(h, f))
            .fold(1.0f32, f32::min);
        eprintln!(
            "{} faces: worst cosine to the x86 host's embedding {worst:.6}",
            host.len()
        );
        assert!(worst >= 0.9999, "worst cosine {worst}");
    } else {
        eprintln!(
            "FACEGATE_EDGE_EXPECTED unset: host comparison is `cargo xtask test`'s aarch64 step"
        );
    }

    // Person k enrolled from their first photo with the engine; every other
    // photo probed: the float decision equals the engine's at the deployed threshold.
    let deployment = std::fs::read_to_string(repo().join("models/nano.deployment.toml")).unwrap();
    #[allow(clippy::cast_possible_truncation)]
    let threshold = facegate_eval::deploy::DeploymentAdvice::from_toml(&deployment)
        .unwrap()
        .threshold as f32;
    let gallery: Vec<(usize, Template)> = (0..4)
        .map(|k| (k, template(&int8[PHOTOS_PER_PERSON * k])))
        .collect();
    let decide = |probe: &Template| {
        let (who, best) = gallery
            .iter()
            .map(|(k, t)| (*k, t.cosine(probe)))
            .fold((usize::MAX, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
        ((best >= threshold).then_some(who), best)
    };
    // Float and int8 scores differ by under a hundredth with the shipped
    // model (at most 0.009 over these probes); a probe within 0.015 of the
    // threshold may fall either side, so it is reported, not asserted.
    const NEAR: f32 = 0.015;
    let (mut same, mut total, mut near) = (0, 0, 0);
    for i in (0..faces.len()).filter(|i| i % PHOTOS_PER_PERSON != 0) {
        let (a, fs) = decide(&template(&float[i]));
        let (b, es) = decide(&template(&int8[i]));
        eprintln!("face {i}: tract {a:?} at {fs:.4}, engine {b:?} at {es:.4}");
        if (es - threshold).abs() < NEAR {
            near += 1;
            continue;
        }
        total += 1;
        same += usize::from(a == b);
        assert_eq!(a, b, "face {i}: tract decided {a:?}, the engine {b:?}");
    }
    eprintln!(
        "{same}/{total} decisions equal to the int8 engine's ({near} probes within {NEAR} of the threshold not compared)"
    );
    assert!(total >= 8, "too few clear probes ({total})");
}
