//! The edge door sees (issue 26): raw photos, not crops, stream into the
//! door as MJPEG through a FIFO, as `ffmpeg` writes a camera's frames; the
//! board finds, aligns and judges the face itself, and one person standing
//! in view is one decision. An enrolled person's photo unlocks, a
//! stranger's is refused, and the frames in between (nobody in view)
//! decide nothing.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Door, repo};
use ed25519_dalek::SigningKey;
use facegate_core::protocol::{Command, DecisionKind};
use facegate_core::{EMBEDDING_DIM, Embedding, Template};
use facegate_detect::{Choice, FaceFinder, QualityGates};
use facegate_e2e::shared_data;
use facegate_edge::door_app::{CameraConfig, CameraSource};
use facegate_eval::deploy::DeploymentAdvice;
use facegate_eval::embedder::Embedder as _;
use facegate_eval::faces::Face;
use facegate_link::encode_templates;
use facegate_quant::engine::EngineEmbedder;

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// One person enrolled from three raw photos with a fourth the engine
/// accepts clearly, and a stranger's photo it refuses clearly (so that
/// tract on the board cannot flip either decision).
struct Cast {
    templates: Vec<Template>,
    probe: PathBuf,
    stranger: PathBuf,
}

fn cast(data: &Path, finder: &FaceFinder, engine: &EngineEmbedder, threshold: f32) -> Cast {
    let margin = 0.06f32.min((1.0 - threshold) / 3.0);
    let gates = QualityGates::default();
    let embed = |p: &Path| {
        let f = finder.find_in_file(p, Choice::Central).ok()?;
        gates.check(&f.quality).ok()?;
        let raw = engine
            .embed(&Face {
                rgb: f.aligned.to_vec(),
            })
            .ok()?;
        Some(Template::quantize(
            &Embedding::<EMBEDDING_DIM>::from_slice(&raw).ok()?,
        ))
    };
    let best =
        |t: &Template, of: &[Template]| of.iter().map(|e| e.cosine(t)).fold(f32::MIN, f32::max);
    let folders = sorted(&data.join("lfw/raw_subset"));
    for (k, folder) in folders.iter().enumerate() {
        let photos = sorted(folder);
        let templates: Vec<Template> = photos.iter().take(3).filter_map(|p| embed(p)).collect();
        if templates.len() < 3 {
            continue;
        }
        let Some(probe) = photos[3..]
            .iter()
            .find(|p| embed(p).is_some_and(|t| best(&t, &templates) > threshold + margin))
        else {
            continue;
        };
        let stranger = folders[k + 1..]
            .iter()
            .filter_map(|f| sorted(f).into_iter().next())
            .find(|p| embed(p).is_some_and(|t| best(&t, &templates) < threshold - margin))
            .expect("a stranger clearly below the threshold");
        return Cast {
            templates,
            probe: probe.clone(),
            stranger,
        };
    }
    panic!("no raw_subset person with a clearly accepted photo");
}

/// A grey frame with nobody in it.
fn empty_frame() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(250, 250, image::Rgb([128, 128, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[test]
fn one_person_in_view_is_one_decision_from_raw_camera_frames() {
    let Some(data) = shared_data() else {
        panic!("the camera test needs ../shared/data");
    };
    let weights = repo().join(facegate_detect::DEFAULT_WEIGHTS);
    let finder = FaceFinder::load(&weights, Default::default()).unwrap();
    let engine = EngineEmbedder::load(&repo().join("models/nano.fgm")).unwrap();
    let advice = DeploymentAdvice::from_toml(
        &std::fs::read_to_string(repo().join("models/nano.deployment.toml")).unwrap(),
    )
    .unwrap();
    let threshold = advice.threshold as f32;
    let cast = cast(&data, &finder, &engine, threshold);

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("camera.mjpeg");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    // The door answers although no camera writes yet: it never waits for one.
    let (door, mut board) = Door::boot(&dir.path().join("state"), |c| {
        c.camera = Some(CameraConfig {
            source: CameraSource::Mjpeg {
                path: fifo.clone(),
                fps: None,
            },
            detector: weights,
            min_face: 40.0,
        });
    });
    let started = Instant::now();
    let key = SigningKey::from_bytes(&[7; 32]);
    board.claim(&key.verifying_key(), &[]).unwrap();
    board
        .signed(
            &key,
            &Command::Enroll {
                id: 1,
                name: "owner",
                templates: &encode_templates(&cast.templates),
            },
        )
        .unwrap();
    board
        .signed(&key, &Command::SetThreshold { threshold })
        .unwrap();

    // The camera: 10 frames a second. The owner for a second, nobody for
    // 2.5 s, a stranger for a second, nobody.
    let mut camera = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let (owner, stranger) = (
        std::fs::read(&cast.probe).unwrap(),
        std::fs::read(&cast.stranger).unwrap(),
    );
    let empty = empty_frame();
    let scenes: [(&[u8], usize); 4] = [(&owner, 10), (&empty, 25), (&stranger, 10), (&empty, 25)];
    for (frame, n) in scenes {
        for _ in 0..n {
            camera.write_all(frame).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    drop(camera);

    let events = loop {
        let events = board.audit(&key).unwrap();
        if events.len() >= 2 || started.elapsed() > Duration::from_secs(120) {
            break events;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    door.stop();
    let kinds: Vec<(DecisionKind, Option<u32>)> =
        events.iter().map(|e| (e.kind, e.person)).collect();
    assert_eq!(
        kinds,
        [
            (DecisionKind::Unlocked, Some(1)),
            (DecisionKind::Rejected, None)
        ],
        "{} then {}: {events:?}",
        cast.probe.display(),
        cast.stranger.display()
    );
}
