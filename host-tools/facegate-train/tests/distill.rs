//! Distillation pulls the student's embeddings toward the teacher's: on ORL,
//! with a made-up teacher that gives each person a random direction, a run
//! with the distillation loss ends far closer to those directions (on the
//! faces it trained on and on held-out ones) than the same run without it.
//! A teacher file that misses a training face is refused before training.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use facegate_eval::faces::Face;
use facegate_train::data::FaceFolders;
use facegate_train::distill::{DistillSettings, TeacherError};
use facegate_train::model::Preset;
use facegate_train::training::{RunDir, RunOptions, TrainConfig, TrainError, embed_faces, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TRAIN_PER_PERSON: usize = 7;
const PEOPLE: usize = 10;

/// A unit direction per person, written as a teacher file for all their faces.
fn teacher_file(folders: &FaceFolders, width: usize, path: &Path) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut text = String::new();
    let mut directions = Vec::new();
    for id in &folders.identities {
        let mut d: Vec<f32> = (0..width).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let n = d.iter().map(|v| v * v).sum::<f32>().sqrt();
        d.iter_mut().for_each(|v| *v /= n);
        let row = d.iter().map(f32::to_string).collect::<Vec<_>>().join(" ");
        for f in &id.files {
            writeln!(text, "{}\t{row}\t{row}", f.display()).expect("string");
        }
        directions.push(d);
    }
    std::fs::write(path, text).expect("teacher file");
    directions
}

/// Mean cosine between each face's embedding and its person's direction,
/// over the training faces and over the held-out ones.
fn agreement(run: &Path, folders: &FaceFolders, directions: &[Vec<f32>]) -> (f32, f32) {
    let device = Device::flex();
    let net = RunDir {
        root: run.to_path_buf(),
    }
    .load_embedder(&device)
    .expect("trained embedder");
    let (mut seen, mut held_out) = (Vec::new(), Vec::new());
    for (id, d) in folders.identities.iter().zip(directions) {
        for (k, f) in id.files.iter().enumerate() {
            let face = Face::load(f).expect("ORL face").rgb;
            let e = embed_faces(&net, &[face.as_slice()], &device).remove(0);
            let cos: f32 = e.iter().zip(d).map(|(a, b)| a * b).sum();
            if k < TRAIN_PER_PERSON {
                seen.push(cos);
            } else {
                held_out.push(cos);
            }
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    (mean(&seen), mean(&held_out))
}

#[test]
fn distillation_pulls_embeddings_toward_the_teacher() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let orl = data.join("orl");
    // Ten people: few enough directions for the tiny net's 32-d layer to reach.
    let folders = FaceFolders::scan(std::slice::from_ref(&orl))
        .expect("ORL")
        .truncated(PEOPLE, usize::MAX);
    let tmp = tempfile::tempdir().expect("tempdir");
    let teacher = tmp.path().join("teacher.tsv");
    let width = Preset::Tiny.architecture().embedding;
    let directions = teacher_file(&folders, width, &teacher);

    let mut cfg = TrainConfig::new(Preset::Tiny, vec![orl]);
    cfg.epochs = 16;
    cfg.batch_size = 14;
    cfg.max_identities = Some(PEOPLE);
    cfg.warmup_epochs = 0.5;
    cfg.max_images_per_identity = Some(TRAIN_PER_PERSON);
    let plain = tmp.path().join("plain");
    train(&cfg, &plain, RunOptions::default()).expect("plain run");
    cfg.distill = Some(DistillSettings {
        teacher: teacher.clone(),
        weight: 30.0,
    });
    let distilled = tmp.path().join("distilled");
    train(&cfg, &distilled, RunOptions::default()).expect("distilled run");

    let (plain_seen, plain_held) = agreement(&plain, &folders, &directions);
    let (dist_seen, dist_held) = agreement(&distilled, &folders, &directions);
    eprintln!(
        "mean cosine to the teacher: without {plain_seen:.3} / {plain_held:.3} (trained / held-out), with {dist_seen:.3} / {dist_held:.3}"
    );
    assert!(dist_seen > 0.4, "distilled, trained faces: {dist_seen}");
    assert!(dist_held > 0.35, "distilled, held-out faces: {dist_held}");
    assert!(dist_seen > plain_seen + 0.3, "{dist_seen} vs {plain_seen}");
    assert!(dist_held > plain_held + 0.3, "{dist_held} vs {plain_held}");
}

#[test]
fn a_teacher_missing_a_training_face_is_refused() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let orl = data.join("orl");
    let folders = FaceFolders::scan(std::slice::from_ref(&orl))
        .expect("ORL")
        .truncated(3, 2);
    let tmp = tempfile::tempdir().expect("tempdir");
    let teacher = tmp.path().join("teacher.tsv");
    let width = Preset::Tiny.architecture().embedding;
    teacher_file(&folders, width, &teacher);
    // Drop the last face's row.
    let text = std::fs::read_to_string(&teacher).expect("read");
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&teacher, kept[..kept.len() - 1].join("\n")).expect("write");
    let last: &PathBuf = folders.identities[2].files.last().expect("face");

    let mut cfg = TrainConfig::new(Preset::Tiny, vec![orl]);
    cfg.max_identities = Some(3);
    cfg.max_images_per_identity = Some(2);
    cfg.distill = Some(DistillSettings {
        teacher,
        weight: 1.0,
    });
    match train(&cfg, &tmp.path().join("run"), RunOptions::default()) {
        Err(TrainError::Teacher(TeacherError::Missing { missing: 1, first })) => {
            assert_eq!(first.file_name(), last.file_name());
        }
        other => panic!("expected the missing face to be named, got {other:?}"),
    }
}
