//! The detector against the shared data: on the raw LFW photos of
//! `lfw/raw_subset` it finds the landmarks listed in `lfw/landmarks_mtcnn.tsv`
//! and its aligned crops land on `lfw/aligned_112`; the quality gates pass
//! real photos and refuse blurred or turned ones; bad inputs get typed errors.
//!
//! Needs the MTCNN weights (`bash scripts/setup.sh`) and `../shared/data`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use facegate_core::align::{ARCFACE_TEMPLATE, Similarity};
use facegate_detect::{Choice, FaceFinder, GateFailure, MtcnnConfig, PhotoError, QualityGates};
use facegate_e2e::shared_data;
use image::RgbImage;

fn finder_with(config: MtcnnConfig) -> FaceFinder {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(facegate_detect::DEFAULT_WEIGHTS);
    FaceFinder::load(&dir, config).unwrap_or_else(|e| panic!("{e}"))
}

fn finder() -> FaceFinder {
    finder_with(MtcnnConfig::default())
}

fn landmarks(data: &Path) -> HashMap<String, [[f32; 2]; 5]> {
    let tsv = std::fs::read_to_string(data.join("lfw/landmarks_mtcnn.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[1] == "ok").then(|| {
                let v: Vec<f32> = f[4..14].iter().map(|x| x.parse().unwrap()).collect();
                (
                    f[0].to_string(),
                    core::array::from_fn(|k| [v[2 * k], v[2 * k + 1]]),
                )
            })
        })
        .collect()
}

/// Every third photo of each raw_subset person (216 of 648).
fn photos(data: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut people: Vec<PathBuf> = std::fs::read_dir(data.join("lfw/raw_subset"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    people.sort();
    for person in people {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&person)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files.into_iter().step_by(3) {
            let key = format!(
                "{}/{}",
                person.file_name().unwrap().to_str().unwrap(),
                f.file_name().unwrap().to_str().unwrap()
            );
            out.push((key, f));
        }
    }
    out
}

/// How far apart two alignments put the face, in crop pixels: the
/// template's five points mapped into the photo by `ours` and back by
/// `theirs`, the worst of them.
fn crop_displacement(ours: &[[f32; 2]; 5], theirs: &[[f32; 2]; 5]) -> f32 {
    let to_crop = |lm: &[[f32; 2]; 5]| Similarity::estimate(lm, &ARCFACE_TEMPLATE).unwrap();
    let (ours, theirs) = (to_crop(ours), to_crop(theirs));
    let back = ours.inverse().unwrap();
    ARCFACE_TEMPLATE
        .iter()
        .map(|&q| {
            let p = theirs.apply(back.apply(q));
            (p[0] - q[0]).hypot(p[1] - q[1])
        })
        .fold(0.0, f32::max)
}

#[test]
fn finds_the_shared_landmarks_and_reproduces_the_shared_alignment() {
    let Some(data) = shared_data() else { return };
    let finder = finder();
    let truth = landmarks(&data);
    let gates = QualityGates::default();
    let (mut n, mut errors, mut shifts, mut failed_gates) = (0, Vec::new(), Vec::new(), Vec::new());
    for (key, path) in photos(&data) {
        let Some(t) = truth.get(&key) else { continue };
        let found = finder
            .find_in_file(&path, Choice::Central)
            .unwrap_or_else(|e| panic!("{e}"));
        n += 1;
        let lm = &found.detection.landmarks;
        let err = lm
            .iter()
            .zip(t)
            .map(|(p, q)| (p[0] - q[0]).hypot(p[1] - q[1]))
            .sum::<f32>()
            / 5.0;
        errors.push(err);
        shifts.push(crop_displacement(lm, t));
        if let Err(g) = gates.check(&found.quality) {
            failed_gates.push(format!("{key}: {g}"));
        }
    }
    let pct = |v: &mut Vec<f32>, q: usize| {
        v.sort_by(f32::total_cmp);
        v[v.len() * q / 100]
    };
    let (median, p95) = (pct(&mut errors, 50), pct(&mut errors, 95));
    let (shift_median, shift_p95) = (pct(&mut shifts, 50), pct(&mut shifts, 95));
    eprintln!(
        "{n} photos: landmark error median {median:.2} px, p95 {p95:.2} px; \
         aligned crop displacement median {shift_median:.2} px, p95 {shift_p95:.2} px, max {:.2} px; \
         {} fail the gates: {failed_gates:#?}",
        shifts[shifts.len() - 1],
        failed_gates.len()
    );
    assert!(n >= 200, "{n}");
    // The same cascade (the shared data's detector): the same landmarks up
    // to resizing filters.
    assert!(
        median <= 1.5 && p95 <= 3.0,
        "landmark error median {median}, p95 {p95}"
    );
    // The same alignment within a few pixels anywhere in the crop.
    assert!(
        shift_median <= 1.5 && shift_p95 <= 3.0,
        "crop displacement median {shift_median}, p95 {shift_p95}"
    );
    // Real LFW photos pass the gates, save the clearly turned heads LFW has.
    assert!(failed_gates.len() * 100 <= n * 8, "{failed_gates:?}");
}

fn blur(img: &RgbImage, sigma: f32) -> RgbImage {
    image::imageops::blur(img, sigma)
}

#[test]
fn gates_refuse_blurred_and_turned_faces() {
    let Some(data) = shared_data() else { return };
    let finder = finder();
    let gates = QualityGates::default();
    let path = data.join("lfw/raw_subset/Al_Gore/Al_Gore_0001.jpg");
    let img = image::open(&path).unwrap().to_rgb8();
    let sharp = finder.find(&img, Choice::Central, &path).unwrap();
    assert_eq!(gates.check(&sharp.quality), Ok(()), "{:?}", sharp.quality);
    let blurred = finder
        .find(&blur(&img, 3.0), Choice::Central, &path)
        .unwrap();
    assert!(
        matches!(
            gates.check(&blurred.quality),
            Err(GateFailure::Blurred { .. })
        ),
        "{:?}",
        blurred.quality
    );
    // A face shrunk to 60 px across: too few pixels between the eyes.
    let small = image::imageops::resize(&img, 100, 100, image::imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(250, 250, image::Rgb([90, 90, 90]));
    image::imageops::overlay(&mut canvas, &small, 75, 75);
    let finder_small = finder_with(MtcnnConfig {
        min_face: 20.0,
        ..Default::default()
    });
    let found = finder_small.find(&canvas, Choice::Central, &path).unwrap();
    assert!(
        matches!(
            gates.check(&found.quality),
            Err(GateFailure::TooSmall { .. })
        ),
        "{:?}",
        found.quality
    );
}

#[test]
fn bad_photos_get_typed_errors() {
    let Some(data) = shared_data() else { return };
    let finder = finder();
    let dir = std::env::temp_dir().join(format!("facegate-detect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.jpg");
    assert!(matches!(
        finder.find_in_file(&missing, Choice::Only),
        Err(PhotoError::Io { .. })
    ));
    let text = dir.join("notes.jpg");
    std::fs::write(&text, "not a photo").unwrap();
    assert!(matches!(
        finder.find_in_file(&text, Choice::Only),
        Err(PhotoError::Decode { .. })
    ));
    let truncated = dir.join("truncated.jpg");
    let bytes = std::fs::read(data.join("lfw/raw_subset/Al_Gore/Al_Gore_0001.jpg")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    assert!(matches!(
        finder.find_in_file(&truncated, Choice::Only),
        Err(PhotoError::Decode { .. } | PhotoError::NoFace { .. })
    ));
    let wall = RgbImage::from_pixel(200, 150, image::Rgb([180, 170, 160]));
    assert!(matches!(
        finder.find(&wall, Choice::Only, &missing),
        Err(PhotoError::NoFace { .. })
    ));

    // Two people side by side: `Only` refuses and lists both, the others choose.
    let a = image::open(data.join("lfw/raw_subset/Al_Gore/Al_Gore_0001.jpg"))
        .unwrap()
        .to_rgb8();
    let b = image::open(data.join("lfw/raw_subset/Adrien_Brody/Adrien_Brody_0001.jpg"))
        .unwrap()
        .to_rgb8();
    let b = image::imageops::resize(&b, 150, 150, image::imageops::FilterType::Triangle);
    let mut pair = RgbImage::from_pixel(420, 250, image::Rgb([0, 0, 0]));
    image::imageops::overlay(&mut pair, &a, 0, 0);
    image::imageops::overlay(&mut pair, &b, 260, 50);
    let err = finder.find(&pair, Choice::Only, &missing).unwrap_err();
    assert!(
        matches!(&err, PhotoError::SeveralFaces { faces, .. } if faces.len() >= 2),
        "{err}"
    );
    assert!(err.to_string().contains("--face largest"), "{err}");
    let largest = finder.find(&pair, Choice::Largest, &missing).unwrap();
    assert!(
        largest.detection.centre()[0] < 250.0,
        "{:?}",
        largest.detection
    );
    assert!(largest.faces_in_photo >= 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_weights_say_how_to_get_them() {
    let err = FaceFinder::load(Path::new("/nonexistent/mtcnn"), Default::default()).unwrap_err();
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
}

#[test]
fn large_photos_are_searched_downscaled_and_answer_at_full_scale() {
    let Some(data) = shared_data() else { return };
    let finder = finder();
    let path = data.join("lfw/raw_subset/Al_Gore/Al_Gore_0004.jpg");
    let img = image::open(&path).unwrap().to_rgb8();
    let small = finder.find(&img, Choice::Central, &path).unwrap();
    // 2,000 px: above the search limit.
    let big = image::imageops::resize(&img, 2000, 2000, image::imageops::FilterType::CatmullRom);
    const { assert!(2000 > facegate_detect::mtcnn::MAX_SEARCH_SIDE) };
    let found = finder.find(&big, Choice::Central, &path).unwrap();
    for (p, q) in found
        .detection
        .landmarks
        .iter()
        .zip(small.detection.landmarks)
    {
        let (dx, dy) = (p[0] - 8.0 * q[0], p[1] - 8.0 * q[1]);
        // A few pixels at 250 px, times eight.
        assert!(dx.hypot(dy) < 8.0 * 3.0, "{p:?} vs 8 × {q:?}");
    }
    assert!((found.quality.eye_distance - 8.0 * small.quality.eye_distance).abs() < 8.0 * 2.0);
}
