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
use facegate_train::inference::embed_faces;
use facegate_train::model::Preset;
use facegate_train::training::{RunDir, RunOptions, TrainConfig, TrainError, train};
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
    cfg.distill = Some(DistillSettings::new(teacher.clone(), 30.0));
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
    cfg.distill = Some(DistillSettings::new(teacher, 1.0));
    match train(&cfg, &tmp.path().join("run"), RunOptions::default()) {
        Err(TrainError::Teacher(TeacherError::Missing { missing: 1, first })) => {
            assert_eq!(first.file_name(), last.file_name());
        }
        other => panic!("expected the missing face to be named, got {other:?}"),
    }
}

/// Copies `files` into `dir` (created), returning the copies.
fn copy_into(dir: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    files
        .iter()
        .map(|f| {
            let to = dir.join(f.file_name().expect("file name"));
            std::fs::copy(f, &to).expect("copy");
            to
        })
        .collect()
}

#[test]
fn unlabelled_faces_train_toward_their_teacher_targets_only() {
    let Some(data) = facegate_e2e::shared_data() else {
        return;
    };
    let orl = FaceFolders::scan(&[data.join("orl")])
        .expect("ORL")
        .truncated(PEOPLE, usize::MAX);
    // People 0–4 are labelled identities; people 5–9 appear only without a
    // class: one photo each in an identity folder (too few for the head)
    // and their other training photos in a flat, unlabelled folder.
    let tmp = tempfile::tempdir().expect("tempdir");
    let labelled_root = tmp.path().join("people");
    let flat = tmp.path().join("unlabelled");
    let mut folders = FaceFolders::default();
    for (k, id) in orl.identities.iter().enumerate() {
        let train_files = &id.files[..TRAIN_PER_PERSON];
        let held_out = &id.files[TRAIN_PER_PERSON..];
        let mut files = if k < PEOPLE / 2 {
            copy_into(&labelled_root.join(&id.name), train_files)
        } else {
            let mut one = copy_into(&labelled_root.join(&id.name), &train_files[..1]);
            std::fs::create_dir_all(&flat).expect("mkdir");
            for f in &train_files[1..] {
                // Flat names must not collide across people.
                let name = f.file_name().expect("name").to_string_lossy();
                let to = flat.join(format!("{}_{name}", id.name));
                std::fs::copy(f, &to).expect("copy");
                one.push(to);
            }
            one
        };
        files.extend(held_out.iter().cloned());
        folders.identities.push(facegate_train::data::Identity {
            name: id.name.clone(),
            files,
        });
    }
    let teacher = tmp.path().join("teacher.tsv");
    let width = Preset::Tiny.architecture().embedding;
    let directions = teacher_file(&folders, width, &teacher);

    let mut cfg = TrainConfig::new(Preset::Tiny, vec![labelled_root]);
    cfg.epochs = 16;
    cfg.batch_size = 14;
    cfg.warmup_epochs = 0.5;
    cfg.distill = Some(DistillSettings::new(teacher.clone(), 30.0));
    let without = tmp.path().join("without");
    let a = train(&cfg, &without, RunOptions::default()).expect("labelled only");
    assert_eq!((a.classes, a.unlabelled), (PEOPLE / 2, 0));

    let mut d = DistillSettings::new(teacher, 30.0);
    d.keep_small_identities = true;
    d.unlabelled = vec![flat];
    d.relational = 10.0;
    cfg.distill = Some(d);
    let with = tmp.path().join("with");
    let b = train(&cfg, &with, RunOptions::default()).expect("with unlabelled faces");
    // The head still has only the labelled people; every other training
    // photo joined as a teacher target.
    assert_eq!(b.classes, PEOPLE / 2);
    assert_eq!(b.unlabelled, (PEOPLE / 2) * TRAIN_PER_PERSON);
    assert_eq!(b.faces, PEOPLE * TRAIN_PER_PERSON);

    // Agreement with the teacher on the people who never had a class.
    let only_unlabelled = FaceFolders {
        identities: folders.identities[PEOPLE / 2..].to_vec(),
    };
    let (a_seen, a_held) = agreement(&without, &only_unlabelled, &directions[PEOPLE / 2..]);
    let (b_seen, b_held) = agreement(&with, &only_unlabelled, &directions[PEOPLE / 2..]);
    eprintln!(
        "people without a class, cosine to the teacher: labelled-only run {a_seen:.3} / {a_held:.3}, \
         with unlabelled faces {b_seen:.3} / {b_held:.3} (trained / held-out photos)"
    );
    assert!(b_seen > a_seen + 0.3, "{b_seen} vs {a_seen}");
    assert!(b_held > a_held + 0.2, "{b_held} vs {a_held}");
}
