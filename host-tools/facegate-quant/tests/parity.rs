//! Quantizer and int8 engine against the float model and tract, on real faces.

use std::path::PathBuf;

use facegate_core::embedding::cosine;
use facegate_core::engine::{BlobError, EngineError, Model};
use facegate_e2e::shared_data;
use facegate_eval::embedder::Embedder;
use facegate_eval::faces::{Face, FaceSet};
use facegate_eval::onnx::{InputNorm, OnnxEmbedder};
use facegate_quant::engine::{EngineEmbedder, FloatEmbedder};
use facegate_quant::graph::FloatNet;
use facegate_quant::quantize::{ArenaPlan, calibrate, quantize, quantize_within};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// `n` faces of distinct LFW identities, starting at identity `skip`.
fn faces(data: &std::path::Path, skip: usize, n: usize) -> Vec<Face> {
    let set = FaceSet::scan(&data.join("lfw/aligned_112")).unwrap();
    let mut seen = std::collections::HashSet::new();
    set.files
        .iter()
        .filter(|f| seen.insert(f.identity))
        .skip(skip)
        .take(n)
        .map(|f| Face::load(&set.root.join(&f.path)).unwrap())
        .collect()
}

fn mean_and_min(a: &dyn Embedder, b: &dyn Embedder, faces: &[Face]) -> (f32, f32) {
    let cs: Vec<f32> = faces
        .iter()
        .map(|f| cosine(&a.embed(f).unwrap(), &b.embed(f).unwrap()).unwrap())
        .collect();
    (
        cs.iter().sum::<f32>() / cs.len() as f32,
        cs.iter().copied().fold(1.0, f32::min),
    )
}

#[test]
fn float_executor_equals_tract() {
    let Some(data) = shared_data() else { return };
    let path = fixture("tiny_mfn_random.onnx");
    let net = FloatNet::load(&path).unwrap();
    let ours = FloatEmbedder::new(net, InputNorm::ArcFace, &std::fs::read(&path).unwrap());
    let tract = OnnxEmbedder::load(&path, InputNorm::ArcFace).unwrap();
    let (mean, min) = mean_and_min(&ours, &tract, &faces(&data, 0, 20));
    assert!(
        min > 0.99999,
        "float executor vs tract: mean {mean} min {min}"
    );
}

#[test]
fn int8_engine_tracks_the_float_model() {
    let Some(data) = shared_data() else { return };
    let path = fixture("tiny_mfn_random.onnx");
    let net = FloatNet::load(&path).unwrap();
    let calib = faces(&data, 0, 32);
    let ranges = calibrate(&net, &calib, InputNorm::ArcFace).unwrap();
    let q = quantize(&net, &ranges, InputNorm::ArcFace).unwrap();
    let engine = EngineEmbedder::new("tiny".into(), q.blob.clone()).unwrap();
    let float = FloatEmbedder::new(net, InputNorm::ArcFace, &std::fs::read(&path).unwrap());
    // Faces of other people than the calibration set.
    let (mean, min) = mean_and_min(&engine, &float, &faces(&data, 100, 100));
    eprintln!(
        "engine vs float on 100 LFW faces: mean cosine {mean:.5}, min {min:.5}; blob {} B, arena {} B",
        q.blob.len(),
        q.arena_len
    );
    assert!(mean >= 0.99, "mean cosine {mean} (min {min})");

    // The same blob and face give the same bits every time.
    let f = &calib[0];
    assert_eq!(engine.embed(f).unwrap(), engine.embed(f).unwrap());
    // Quantizing again from the same inputs gives the same blob, hence the same model hash.
    let again = quantize(&FloatNet::load(&path).unwrap(), &ranges, InputNorm::ArcFace).unwrap();
    assert_eq!(again.blob, q.blob);
}

fn synthetic_faces(n: u8) -> Vec<Face> {
    (0..n)
        .map(|k| Face {
            rgb: (0..112 * 112 * 3)
                .map(|i| ((i * 7 + usize::from(k) * 31) % 251) as u8)
                .collect(),
        })
        .collect()
}

/// The tiny model and its ranges, calibrated on synthetic faces (no data needed).
fn tiny_net() -> (FloatNet, Vec<(f32, f32)>) {
    let net = FloatNet::load(&fixture("tiny_mfn_random.onnx")).unwrap();
    let ranges = calibrate(&net, &synthetic_faces(4), InputNorm::ArcFace).unwrap();
    (net, ranges)
}

/// A blob of the tiny model.
fn tiny_blob() -> Vec<u8> {
    let (net, ranges) = tiny_net();
    quantize(&net, &ranges, InputNorm::ArcFace).unwrap().blob
}

/// The tiny model with every bottleneck expansion kept in row bands: the
/// smallest arena the planner can reach.
fn tiny_banded_blob() -> Vec<u8> {
    let (net, ranges) = tiny_net();
    quantize_within(&net, &ranges, InputNorm::ArcFace, ArenaPlan::BandEvery)
        .unwrap()
        .blob
}

fn embed_bits(blob: &[u8], face: &Face) -> Vec<u32> {
    let m = Model::parse(blob).unwrap();
    let mut out = vec![0.0f32; m.embedding_dim()];
    m.embed(&face.rgb, &mut vec![0i8; m.arena_len()], &mut out)
        .unwrap();
    out.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn row_bands_shrink_the_arena_and_keep_every_bit() {
    let (net, ranges) = tiny_net();
    let plain = quantize(&net, &ranges, InputNorm::ArcFace).unwrap();
    // A budget the plain plan meets changes nothing: same blob, same hash.
    let roomy = quantize_within(
        &net,
        &ranges,
        InputNorm::ArcFace,
        ArenaPlan::Fit(plain.arena_len),
    )
    .unwrap();
    assert_eq!(roomy.blob, plain.blob);
    // One byte less: the largest expansion goes into row bands.
    let one = quantize_within(
        &net,
        &ranges,
        InputNorm::ArcFace,
        ArenaPlan::Fit(plain.arena_len - 1),
    )
    .unwrap();
    let all = tiny_banded_blob();
    let (m1, m_all) = (
        Model::parse(&one.blob).unwrap(),
        Model::parse(&all).unwrap(),
    );
    assert_eq!(u16::from_le_bytes([one.blob[4], one.blob[5]]), 2);
    assert_eq!(m1.banded_tensors(), 1);
    assert!(m_all.banded_tensors() > 1, "{}", m_all.banded_tensors());
    assert!(one.arena_len < plain.arena_len);
    assert!(m_all.arena_len() <= one.arena_len);
    eprintln!(
        "tiny arena: plain {} B, one band {} B, all {} expansions banded {} B",
        plain.arena_len,
        one.arena_len,
        m_all.banded_tensors(),
        m_all.arena_len()
    );
    // The same faces give the same bits, banded or not.
    let mut faces = synthetic_faces(3);
    if let Some(data) = shared_data() {
        faces.extend(self::faces(&data, 200, 5));
    }
    for f in &faces {
        let want = embed_bits(&plain.blob, f);
        assert_eq!(embed_bits(&one.blob, f), want);
        assert_eq!(embed_bits(&all, f), want);
    }
    // The banded blob's arena is all it needs; one byte less is refused.
    let face = &faces[0];
    let mut out = vec![0.0; m_all.embedding_dim()];
    assert!(matches!(
        m_all.embed(&face.rgb, &mut vec![0i8; m_all.arena_len() - 1], &mut out),
        Err(EngineError::ArenaTooSmall { .. })
    ));
    // A budget below even the fully banded plan is a clear error.
    let err = quantize_within(&net, &ranges, InputNorm::ArcFace, ArenaPlan::Fit(1000)).unwrap_err();
    assert!(
        err.to_string().contains("over the budget of 1000 B"),
        "{err}"
    );
}

#[test]
fn bands_outside_their_rules_are_refused() {
    use facegate_core::engine::blob::{CRC_AT, HEADER_LEN, TENSOR_LEN, blob_crc};
    let plain = tiny_blob();
    let banded = tiny_banded_blob();
    let reseal = |b: &mut Vec<u8>| {
        let crc = blob_crc(b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    };
    let m = Model::parse(&banded).unwrap();
    let n_tensors = usize::from(u16::from_le_bytes([banded[12], banded[13]]));
    let band_byte = |t: usize| HEADER_LEN + t * TENSOR_LEN + 7;
    let banded_ids: Vec<usize> = (0..n_tensors)
        .filter(|&t| banded[band_byte(t)] > 0)
        .collect();
    assert_eq!(banded_ids.len(), m.banded_tensors());
    // Version 1 has no bands: a band byte there is refused.
    let mut v1 = plain.clone();
    v1[band_byte(3)] = 3;
    reseal(&mut v1);
    assert!(matches!(
        Model::parse(&v1),
        Err(BlobError::BadTensor { .. })
    ));
    // The model's input or output, or a value an Add reads, cannot be banded.
    let id_at = |at: usize| usize::from(u16::from_le_bytes([banded[at], banded[at + 1]]));
    let (input, output) = (id_at(20), id_at(22));
    for t in [input, output] {
        let mut b = banded.clone();
        b[band_byte(t)] = 1;
        reseal(&mut b);
        assert!(Model::parse(&b).is_err(), "tensor {t}");
    }
    // A band shorter than the depthwise window is refused.
    let mut short = banded.clone();
    short[band_byte(banded_ids[0])] = 2;
    reseal(&mut short);
    assert!(matches!(Model::parse(&short), Err(BlobError::BadOp { .. })));
    // Banding any tensor that is not an expansion read by a depthwise op is refused.
    let mut refused = 0;
    for t in (0..n_tensors).filter(|t| !banded_ids.contains(t) && ![input, output].contains(t)) {
        let mut b = banded.clone();
        b[band_byte(t)] = 3;
        reseal(&mut b);
        match Model::parse(&b) {
            Err(_) => refused += 1,
            // Only another expansion with a depthwise reader may be banded.
            Ok(m2) => assert_eq!(m2.banded_tensors(), banded_ids.len() + 1, "tensor {t}"),
        }
    }
    assert!(refused > 0);
}

#[test]
fn bad_blobs_and_buffers_are_typed_errors() {
    let blob = tiny_blob();
    let m = Model::parse(&blob).unwrap();
    let face = vec![128u8; 112 * 112 * 3];
    let mut out = vec![0.0; m.embedding_dim()];
    let mut small = vec![0i8; m.arena_len() - 1];
    assert_eq!(
        m.embed(&face, &mut small, &mut out),
        Err(EngineError::ArenaTooSmall {
            need: m.arena_len() as u32,
            have: small.len() as u32
        })
    );
    let mut arena = vec![0i8; m.arena_len()];
    assert!(matches!(
        m.embed(&face[1..], &mut arena, &mut out),
        Err(EngineError::InputSize { .. })
    ));
    assert!(matches!(
        m.embed(&face, &mut arena, &mut out[1..]),
        Err(EngineError::OutputSize { .. })
    ));
    m.embed(&face, &mut arena, &mut out).unwrap();

    assert_eq!(
        Model::parse(&blob[..blob.len() - 1]).unwrap_err(),
        BlobError::Truncated
    );
    assert_eq!(
        Model::parse(&blob[..100]).unwrap_err(),
        BlobError::Truncated
    );
    let mut v4 = blob.clone();
    v4[4] = 4;
    assert_eq!(
        Model::parse(&v4).unwrap_err(),
        BlobError::UnsupportedVersion { found: 4 }
    );
    let mut bad = blob.clone();
    bad[0] = b'X';
    assert_eq!(Model::parse(&bad).unwrap_err(), BlobError::BadMagic);
    for at in [130, blob.len() / 2, blob.len() - 1] {
        let mut flipped = blob.clone();
        flipped[at] ^= 0x10;
        assert_eq!(
            Model::parse(&flipped).unwrap_err(),
            BlobError::Crc,
            "flip at {at}"
        );
    }
    // `parse_intact` skips only the CRC: the damaged CRC field is ignored,
    // structural damage is still refused.
    let mut stale_crc = blob.clone();
    stale_crc[facegate_core::engine::blob::CRC_AT] ^= 0x01;
    assert_eq!(Model::parse(&stale_crc).unwrap_err(), BlobError::Crc);
    assert_eq!(Model::parse_intact(&stale_crc).unwrap().hash(), m.hash());
    assert_eq!(
        Model::parse_intact(&blob[..blob.len() - 1]).unwrap_err(),
        BlobError::Truncated
    );
    assert_eq!(Model::parse_intact(&bad).unwrap_err(), BlobError::BadMagic);
    let other = facegate_core::ModelHash([9; 32]);
    assert_eq!(
        Model::parse_for(&blob, &other).unwrap_err(),
        BlobError::ModelMismatch
    );
    assert!(Model::parse_for(&blob, &m.hash()).is_ok());
}

mod fuzz {
    use facegate_core::engine::Model;
    use facegate_core::engine::blob::{CRC_AT, blob_crc};
    use proptest::prelude::*;

    fn reseal(b: &mut [u8]) {
        if b.len() >= 128 {
            let crc = blob_crc(b);
            b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }

    /// Parses (with and without the CRC check); if the blob is accepted,
    /// runs it. Any outcome but a panic is fine.
    fn exercise(bytes: &[u8]) {
        let parsed = [Model::parse(bytes), Model::parse_intact(bytes)];
        for m in parsed.into_iter().filter_map(Result::ok) {
            if m.arena_len() <= 1 << 22 && m.macs() <= 50_000_000 {
                let (h, w) = m.input_size();
                let mut arena = vec![0i8; m.arena_len()];
                let mut out = vec![0.0; m.embedding_dim()];
                let _ = m.embed(&vec![77u8; h * w * 3], &mut arena, &mut out);
            }
        }
    }

    // Counted: 2,000 arbitrary byte strings and 1,500 damaged-then-resealed blobs per `cargo test`.
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn parser_survives_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            version in 1u16..=2,
        ) {
            let mut bytes = bytes;
            if bytes.len() >= 8 {
                bytes[..4].copy_from_slice(b"FGM1");
                bytes[4..6].copy_from_slice(&version.to_le_bytes());
            }
            reseal(&mut bytes);
            exercise(&bytes);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_500))]
        #[test]
        fn parser_survives_damaged_blobs(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            header_edits in proptest::collection::vec((0usize..128, any::<u8>()), 0..3),
            banded in any::<bool>(),
        ) {
            let mut b = if banded {
                super::tiny_banded_blob_cached().to_vec()
            } else {
                super::tiny_blob_cached().to_vec()
            };
            for (at, v) in &edits {
                let i = at.index(b.len());
                b[i] = *v;
            }
            for (at, v) in &header_edits {
                b[*at] = *v;
            }
            // Re-seal so that the damage reaches the structural checks, not
            // only the CRC (`parse_intact` skips the CRC, so the same holds
            // for it on the damaged bytes as they are).
            exercise(&b);
            reseal(&mut b);
            exercise(&b);
        }
    }
}

fn tiny_blob_cached() -> &'static [u8] {
    static BLOB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOB.get_or_init(tiny_blob)
}

fn tiny_banded_blob_cached() -> &'static [u8] {
    static BLOB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOB.get_or_init(tiny_banded_blob)
}

#[test]
fn engine_and_qdq_on_tract_agree() {
    let Some(data) = shared_data() else { return };
    let path = fixture("tiny_mfn_random.onnx");
    let net = FloatNet::load(&path).unwrap();
    let ranges = calibrate(&net, &faces(&data, 0, 32), InputNorm::ArcFace).unwrap();
    let q = quantize(&net, &ranges, InputNorm::ArcFace).unwrap();
    let engine = EngineEmbedder::new("tiny".into(), q.blob).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let qdq_path = dir.path().join("tiny.int8.onnx");
    std::fs::write(&qdq_path, facegate_quant::qdq::export_qdq(&net, &ranges)).unwrap();
    let qdq = OnnxEmbedder::load(&qdq_path, InputNorm::ArcFace).unwrap();
    let probe = faces(&data, 100, 100);
    let (mean, min) = mean_and_min(&engine, &qdq, &probe);
    // tract runs the export's QDQ arithmetic faithfully: against the Rust simulation of it, near 1.
    let mut sim_vs_tract = 1.0f32;
    for f in &probe[..20] {
        let sim = facegate_quant::quantize::simulate(
            &net,
            &ranges,
            facegate_quant::quantize::normalise(f, InputNorm::ArcFace),
        );
        sim_vs_tract = sim_vs_tract.min(cosine(&sim, &qdq.embed(f).unwrap()).unwrap());
    }
    eprintln!(
        "engine vs QDQ on tract, 100 LFW faces: mean cosine {mean:.5}, min {min:.5}; simulated QDQ vs tract QDQ: min {sim_vs_tract:.5}"
    );
    assert!(
        sim_vs_tract > 0.998,
        "QDQ export vs its simulation: {sim_vs_tract}"
    );
    // Untrained, this 22-op net amplifies 1-LSB rounding differences (fixed point vs
    // float ties); the 0.999 target is for trained models (issue 5's parity suite).
    assert!(mean >= 0.99, "engine vs QDQ: mean {mean} min {min}");
}

#[test]
fn every_calibration_method_gives_a_working_engine() {
    let Some(data) = shared_data() else { return };
    use facegate_quant::quantize::{Calibration, calibrate_with};
    let path = fixture("tiny_mfn_random.onnx");
    let net = FloatNet::load(&path).unwrap();
    let calib = faces(&data, 0, 32);
    let probe = faces(&data, 100, 40);
    let float = FloatEmbedder::new(
        net.clone(),
        InputNorm::ArcFace,
        &std::fs::read(&path).unwrap(),
    );
    for method in [
        Calibration::MinMax,
        Calibration::Percentile(99.99),
        Calibration::Mse,
    ] {
        let ranges = calibrate_with(&net, &calib, InputNorm::ArcFace, method).unwrap();
        let minmax = calibrate(&net, &calib, InputNorm::ArcFace).unwrap();
        // Percentile and MSE only ever narrow the observed range.
        for (r, m) in ranges.iter().zip(&minmax) {
            assert!(
                r.0 >= m.0.min(0.0) - 1e-6 && r.1 <= m.1.max(0.0) + 1e-6,
                "{method:?}: {r:?} outside {m:?}"
            );
        }
        let engine = EngineEmbedder::new(
            "tiny".into(),
            quantize(&net, &ranges, InputNorm::ArcFace).unwrap().blob,
        )
        .unwrap();
        let (mean, min) = mean_and_min(&engine, &float, &probe);
        eprintln!("{method:?}: engine vs float mean cosine {mean:.5}, min {min:.5}");
        assert!(mean > 0.98, "{method:?}: {mean}");
    }
}
