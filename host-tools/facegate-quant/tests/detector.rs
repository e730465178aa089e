//! MTCNN's three nets through the importer, the quantizer and the int8
//! engine, on crops of real photos: our float executor equals tract on the
//! ONNX files (after turning the nets' width-first input into ordinary
//! images), and the engine's detector blobs track the float nets and the
//! quantisation they simulate.
//!
//! Needs the MTCNN weights (`bash scripts/setup.sh`) and `../shared/data`.

use std::path::{Path, PathBuf};

use facegate_core::engine::Model;
use facegate_e2e::shared_data;
use facegate_eval::faces::{ImageBounds, read_image};
use facegate_eval::onnx::InputNorm;
use facegate_quant::graph::{FloatNet, Head, LoadOptions};
use facegate_quant::quantize::{
    ArenaPlan, Calibration, calibrate_inputs, channel_ranges, normalise_rgb, quantize_detector,
    simulate_detector,
};
use image::imageops::FilterType;
use tract_onnx::prelude::*;

fn weights(net: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/third_party/mtcnn")
        .join(format!("{net}.onnx"));
    assert!(
        p.exists(),
        "{}: MTCNN weights missing; `bash scripts/setup.sh` fetches them",
        p.display()
    );
    p
}

/// `n` RGB crops of `side × side` from the raw LFW photos, starting at
/// photo `skip`: the face region, the whole photo and an off-face corner,
/// so the nets see faces and background.
fn crops(data: &Path, skip: usize, n: usize, side: u32) -> Vec<Vec<u8>> {
    let root = data.join("lfw/raw_subset");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    let regions = [(70, 60, 110, 130), (0, 0, 250, 250), (0, 150, 100, 100)];
    files
        .iter()
        .skip(skip)
        .flat_map(|f| {
            let img = read_image(f, ImageBounds::PHOTO).unwrap();
            regions.map(|(x, y, w, h)| {
                img.crop_imm(x, y, w, h)
                    .resize_exact(side, side, FilterType::Triangle)
                    .to_rgb8()
                    .into_raw()
            })
        })
        .take(n)
        .collect()
}

/// tract's outputs for a row-major `h × w` RGB crop, fed width-first as
/// the nets expect: every output as (shape, values).
fn tract_run(path: &Path, rgb: &[u8], h: usize, w: usize) -> Vec<(Vec<usize>, Vec<f32>)> {
    let model = onnx()
        .model_for_path(path)
        .unwrap()
        .with_input_fact(0, f32::fact([1, w, h, 3]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = tract_ndarray::Array4::from_shape_fn((1, w, h, 3), |(_, xx, yy, c)| {
        (f32::from(rgb[(yy * w + xx) * 3 + c]) - 127.5) / 128.0
    });
    model
        .run(tvec!(Tensor::from(x).into()))
        .unwrap()
        .iter()
        .map(|t| {
            let a = t.to_plain_array_view::<f32>().unwrap();
            (a.shape().to_vec(), a.iter().copied().collect())
        })
        .collect()
}

/// Our output (NHWC, heads side by side) in tract's layout: each head
/// width-first, softmax applied where the graph has one.
fn as_tract(out: &[f32], h: usize, w: usize, heads: &[Head]) -> Vec<Vec<f32>> {
    let c = heads.last().map_or(0, |hd| hd.channels.end);
    heads
        .iter()
        .map(|hd| {
            let mut v = Vec::new();
            for x in 0..w {
                for y in 0..h {
                    let px = &out[(y * w + x) * c..(y * w + x + 1) * c][hd.channels.clone()];
                    if hd.softmax {
                        let m = px.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let e: Vec<f32> = px.iter().map(|l| (l - m).exp()).collect();
                        let s: f32 = e.iter().sum();
                        v.extend(e.iter().map(|x| x / s));
                    } else {
                        v.extend_from_slice(px);
                    }
                }
            }
            v
        })
        .collect()
}

fn load(net: &str, side: usize) -> (FloatNet, Vec<Head>) {
    let opts = LoadOptions {
        input: Some((side, side)),
    };
    let (mut n, heads) = FloatNet::load_heads(&weights(net), &opts).unwrap();
    n.transpose_spatial();
    (n, heads)
}

const NETS: [(&str, usize); 3] = [("pnet", 64), ("rnet", 24), ("onet", 48)];

#[test]
fn heads_are_merged_in_the_graphs_output_order() {
    let summary: Vec<Vec<(String, std::ops::Range<usize>, bool)>> = NETS
        .iter()
        .map(|&(net, side)| {
            load(net, side)
                .1
                .into_iter()
                .map(|h| (h.name, h.channels, h.softmax))
                .collect()
        })
        .collect();
    let expect = |v: &[(&str, std::ops::Range<usize>, bool)]| -> Vec<_> {
        v.iter()
            .map(|(n, r, s)| ((*n).to_string(), r.clone(), *s))
            .collect()
    };
    assert_eq!(
        summary,
        [
            expect(&[("conv2d_4", 0..4, false), ("softmax", 4..6, true)]),
            expect(&[("dense_2", 0..4, false), ("softmax_1", 4..6, true)]),
            expect(&[
                ("dense_5", 0..4, false),
                ("dense_6", 4..14, false),
                ("softmax_2", 14..16, true)
            ]),
        ]
    );
}

#[test]
fn float_executor_equals_tract_on_the_mtcnn_nets() {
    let Some(data) = shared_data() else { return };
    for (net, side) in NETS {
        let (n, heads) = load(net, side);
        let out = n.shapes[n.output];
        for rgb in crops(&data, 0, 6, side as u32) {
            let ours = n.run(normalise_rgb(&rgb, InputNorm::ArcFace));
            let ours = as_tract(&ours[n.output], out.h, out.w, &heads);
            let theirs = tract_run(&weights(net), &rgb, side, side);
            assert_eq!(ours.len(), theirs.len());
            for (a, (_, b)) in ours.iter().zip(&theirs) {
                assert_eq!(a.len(), b.len(), "{net}");
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst < 1e-4,
                    "{net}: float executor vs tract differ by {worst}"
                );
            }
        }
    }
}

#[test]
fn detector_blobs_track_the_float_nets_and_their_simulation() {
    let Some(data) = shared_data() else { return };
    for (net, side) in NETS {
        let (n, heads) = load(net, side);
        let norm = |c: &Vec<u8>| normalise_rgb(c, InputNorm::ArcFace);
        let calib: Vec<Vec<f32>> = crops(&data, 10, 60, side as u32).iter().map(norm).collect();
        let ranges = calibrate_inputs(&n, &calib, InputNorm::ArcFace, Calibration::MinMax).unwrap();
        let out_ranges = channel_ranges(&n, &calib, n.output);
        let q = quantize_detector(
            &n,
            &ranges,
            &out_ranges,
            InputNorm::ArcFace,
            ArenaPlan::Whole,
        )
        .unwrap();
        let model = Model::parse(&q.blob).unwrap();
        assert_eq!(model.input_size(), (side, side));
        let mut arena = vec![0i8; model.arena_len()];
        let o = n.shapes[n.output];
        let scales = facegate_quant::quantize::channel_scales(&out_ranges);
        let (mut worst_sim, mut worst_prob, mut worst_box) = (0.0f32, 0.0f32, 0.0f32);
        let (mut sum_sim, mut count) = (0.0f32, 0usize);
        for rgb in crops(&data, 30, 12, side as u32) {
            let engine = model.run(&rgb, &mut arena).unwrap();
            assert_eq!(engine.shape(), (o.h, o.w, o.c));
            let ours: Vec<f32> = (0..engine.len()).map(|i| engine.value(i)).collect();
            let sim = simulate_detector(&n, &ranges, &out_ranges, norm(&rgb));
            for (i, (a, b)) in ours.iter().zip(&sim).enumerate() {
                let steps = (a - b).abs() / scales[i % o.c];
                worst_sim = worst_sim.max(steps);
                sum_sim += steps;
                count += 1;
            }
            let float = n.run(norm(&rgb)).swap_remove(n.output);
            let (e, f) = (
                as_tract(&ours, o.h, o.w, &heads),
                as_tract(&float, o.h, o.w, &heads),
            );
            for ((hd, a), b) in heads.iter().zip(&e).zip(&f) {
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                if hd.softmax {
                    worst_prob = worst_prob.max(d);
                } else {
                    worst_box = worst_box.max(d);
                }
            }
        }
        eprintln!(
            "{net}: engine vs simulation {worst_sim:.2} steps (mean {:.3}); vs float: probability {worst_prob:.4}, offsets {worst_box:.4}",
            sum_sim / count as f32
        );
        // Fixed point and float round ties differently, and a one-step
        // difference early grows through the layers: measured 0.29–0.46
        // steps on average (worst 3–8) for the three nets. A wrong
        // multiplier, pad or head order is off by far more on average.
        let mean = sum_sim / count as f32;
        assert!(
            mean < 0.75,
            "{net}: engine vs simulation {mean} steps on average"
        );
        assert!(
            worst_sim <= 16.0,
            "{net}: engine vs simulation {worst_sim} steps"
        );
        // Measured: probabilities within 0.18 (P-Net) / 0.02 / 0.002,
        // offsets (fractions of the box) within 0.05.
        assert!(
            worst_prob < 0.25,
            "{net}: face probability off by {worst_prob}"
        );
        assert!(worst_box < 0.1, "{net}: offsets off by {worst_box}");
    }
}

#[test]
fn detector_blobs_outside_their_rules_are_refused() {
    use facegate_core::engine::BlobError;
    use facegate_core::engine::blob::{OP_LEN, OP_MAX_POOL, OUT_SCALES_AT, TENSOR_LEN};
    let (n, _) = load("pnet", 64);
    // Synthetic calibration: the rules, not the accuracy, are under test.
    let calib: Vec<Vec<f32>> = (0..4u8)
        .map(|k| {
            let rgb: Vec<u8> = (0..64 * 64 * 3)
                .map(|i| ((i * 7 + usize::from(k) * 50) % 256) as u8)
                .collect();
            normalise_rgb(&rgb, InputNorm::ArcFace)
        })
        .collect();
    let ranges = calibrate_inputs(&n, &calib, InputNorm::ArcFace, Calibration::MinMax).unwrap();
    let out_ranges = channel_ranges(&n, &calib, n.output);
    let blob = quantize_detector(
        &n,
        &ranges,
        &out_ranges,
        InputNorm::ArcFace,
        ArenaPlan::Whole,
    )
    .unwrap()
    .blob;
    Model::parse(&blob).unwrap();
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u16_at = |b: &[u8], at: usize| usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let ops = u32_at(&blob, 68) as usize;
    let pool = (0..u16_at(&blob, 14))
        .map(|i| ops + i * OP_LEN)
        .find(|&at| blob[at] == OP_MAX_POOL)
        .expect("P-Net has a max pooling");
    let pool_out = u16_at(&blob, pool + 4);
    let tensor_at = |t: usize| u32_at(&blob, 64) as usize + t * TENSOR_LEN;
    let refused = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = blob.clone();
        edit(&mut b);
        Model::parse_intact(&b).unwrap_err()
    };
    let bad_pool = BlobError::BadOp {
        index: ((pool - ops) / OP_LEN) as u16,
    };
    // A pad as large as the kernel: a window with no pixel.
    assert_eq!(refused(&|b| b[pool + 11] = b[pool + 8]), bad_pool);
    // The pooled tensor in another quantisation than its input.
    let scale_at = tensor_at(pool_out) + 8;
    assert_eq!(refused(&|b| b[scale_at] ^= 1), bad_pool);
    // Output rows that do not follow from the pool's geometry.
    assert_eq!(refused(&|b| b[pool + 10] = 3), bad_pool);
    // Pooling in an embedder blob (version 1), and a version-1 header on a
    // map output.
    assert!(matches!(
        refused(&|b| b[4] = 1),
        BlobError::BadTensor { .. } | BlobError::BadOp { .. }
    ));
    // Output scales that are not usable numbers, or lie outside the data.
    let scales = u32_at(&blob, 72) as usize + u32_at(&blob, OUT_SCALES_AT) as usize;
    assert!(matches!(
        refused(&|b| b[scales..scales + 4].copy_from_slice(&f32::NAN.to_le_bytes())),
        BlobError::BadTensor { .. }
    ));
    assert!(matches!(
        refused(&|b| b[scales..scales + 4].copy_from_slice(&(-1.0f32).to_le_bytes())),
        BlobError::BadTensor { .. }
    ));
    assert_eq!(
        refused(&|b| b[OUT_SCALES_AT..OUT_SCALES_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes())),
        BlobError::OutOfBounds
    );
    // The embedder quantizer refuses a net with pooling.
    assert_eq!(
        facegate_quant::quantize::quantize(&n, &ranges, InputNorm::ArcFace).unwrap_err(),
        facegate_quant::quantize::QuantError::PoolingInEmbedder
    );
}

#[test]
fn the_shipped_detector_finds_the_face_in_grey_and_rgb565_frames() {
    use facegate_core::detect::boxes::overlap;
    use facegate_core::detect::{DetectConfig, Detector, Face, Frame, PixelFormat, Scratch};
    let Some(data) = shared_data() else { return };
    let blob = |n: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../models/detector/{n}.fgm")),
        )
        .unwrap()
    };
    let (p, r, o) = (blob("pnet"), blob("rnet"), blob("onet"));
    let det = Detector::new(&p, &r, &o, DetectConfig::default()).unwrap();
    let mut arena = vec![0i8; det.arena_len()];
    let mut scratch = Box::new(Scratch::new());
    let img = read_image(
        &data.join("lfw/raw_subset/Abdullah_Gul/Abdullah_Gul_0001.jpg"),
        ImageBounds::PHOTO,
    )
    .unwrap()
    .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let rgb = img.as_raw();
    let grey: Vec<u8> = rgb
        .chunks_exact(3)
        .map(|p| ((u16::from(p[0]) * 77 + u16::from(p[1]) * 150 + u16::from(p[2]) * 29) >> 8) as u8)
        .collect();
    let rgb565: Vec<u8> = rgb
        .chunks_exact(3)
        .flat_map(|p| facegate_core::detect::rgb565([p[0], p[1], p[2]]))
        .collect();
    let mut found = |f: Frame<'_>| {
        let mut faces: heapless::Vec<Face, 8> = heapless::Vec::new();
        det.detect(&f, &mut arena, &mut scratch, &mut faces)
            .unwrap();
        faces
    };
    let colour = found(Frame::rgb(rgb, w, h).unwrap());
    assert_eq!(colour.len(), 1);
    for (name, faces) in [
        (
            "grey",
            found(Frame::new(&grey, w, h, PixelFormat::Grey8).unwrap()),
        ),
        (
            "rgb565",
            found(Frame::new(&rgb565, w, h, PixelFormat::Rgb565).unwrap()),
        ),
    ] {
        assert_eq!(faces.len(), 1, "{name}");
        let iou = overlap(&faces[0].bbox, &colour[0].bbox, false);
        assert!(iou > 0.8, "{name}: IoU {iou} with the colour frame's face");
    }
}

#[test]
fn a_pyramid_ratio_of_one_still_ends() {
    use facegate_core::detect::{DetectConfig, Detector, Face, Frame, MAX_LEVELS, Scratch};
    let blob = |n: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../models/detector/{n}.fgm")),
        )
        .unwrap()
    };
    let (p, r, o) = (blob("pnet"), blob("rnet"), blob("onet"));
    let config = DetectConfig {
        scale_factor: 1.0,
        ..DetectConfig::default()
    };
    let det = Detector::new(&p, &r, &o, config).unwrap();
    let px = vec![90u8; 64 * 64 * 3];
    let mut faces: heapless::Vec<Face, 4> = heapless::Vec::new();
    let stats = det
        .detect(
            &Frame::rgb(&px, 64, 64).unwrap(),
            &mut vec![0i8; det.arena_len()],
            &mut Box::new(Scratch::new()),
            &mut faces,
        )
        .unwrap();
    assert_eq!(stats.levels, MAX_LEVELS);
}

#[test]
fn smaller_pnet_tiles_find_the_same_faces_with_less_work() {
    use facegate_core::detect::{DetectConfig, Detector, Face, Frame, Scratch};
    use facegate_quant::detector::{PNET_SMALL_TILES, board_detector};
    let Some(data) = shared_data() else { return };
    let blob = |n: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../models/detector/{n}.fgm")),
        )
        .unwrap()
    };
    let blobs: Vec<Vec<u8>> = ["pnet", "rnet", "onet"]
        .into_iter()
        .chain(PNET_SMALL_TILES.map(|(n, _)| n))
        .map(blob)
        .collect();
    let one = Detector::new(&blobs[0], &blobs[1], &blobs[2], DetectConfig::default()).unwrap();
    let all = board_detector(&blobs, DetectConfig::default()).unwrap();
    assert_eq!(all.tiles().collect::<Vec<_>>(), [64, 48, 32, 16]);
    assert_eq!(
        all.arena_len(),
        one.arena_len(),
        "O-Net's arena is the largest"
    );
    let mut arena = vec![0i8; all.arena_len()];
    let mut scratch = Box::new(Scratch::new());
    let root = data.join("lfw/raw_subset");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .collect();
    photos.sort();
    let (mut tiles_one, mut tiles_all, mut faces_seen) = (0u32, 0u32, 0usize);
    for photo in photos.iter().step_by(50).take(12) {
        let img = read_image(photo, ImageBounds::PHOTO).unwrap().to_rgb8();
        let frame = Frame::rgb(img.as_raw(), img.width() as usize, img.height() as usize).unwrap();
        let mut run = |d: &Detector<'_>| {
            let mut faces: heapless::Vec<Face, 8> = heapless::Vec::new();
            let stats = d
                .detect(&frame, &mut arena, &mut scratch, &mut faces)
                .unwrap();
            (faces, stats)
        };
        let (a, sa) = run(&one);
        let (b, sb) = run(&all);
        // Every cell's window lies inside its tile and the nets share
        // their scales: the same faces, bit for bit.
        assert_eq!(a, b, "{}", photo.display());
        assert_eq!((sa.proposals, sa.refined), (sb.proposals, sb.refined));
        tiles_one += u32::from(sa.tiles);
        tiles_all += u32::from(sb.tiles);
        faces_seen += a.len();
    }
    assert!(faces_seen >= 10, "{faces_seen} faces in 12 photos");
    eprintln!("P-Net runs: {tiles_one} of 64 px vs {tiles_all} of mixed sizes");
}
