//! The door judging whole camera frames over the link: raw LFW photos go to
//! a board (the core's server loop behind a TCP socket, as in the QEMU door
//! image) as RGB565 frames, the board finds, aligns and judges the face
//! with the shipped detector (the doors' cascade) and `nano`, and every decision and score
//! equals the same pipeline run directly. Also: a frame without a face is
//! refused and logs nothing; a frame larger than the board's buffer is
//! refused while staging. (Frames that differ from what was signed:
//! `crates/facegate-core/tests/door.rs`.)

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use facegate_core::align::FACE_SIDE;
use facegate_core::detect::{DetectConfig, Detector, Face, Frame, PixelFormat, Scratch, rgb565};
use facegate_core::door::{AuditEvent, AuditLog, Clock, Door, EngineEmbedder};
use facegate_core::engine::Model;
use facegate_core::face_service::{AuditHistory, Eye, FaceService};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::matcher::{Matcher, MatcherConfig, PersonId};
use facegate_core::protocol::device::{BoardInfo, RamStore, answer_byte};
use facegate_core::protocol::frame::FrameReader;
use facegate_core::protocol::{
    AUDIT_PAGE, AuditEntry, Command, DecisionKind, ErrorCode, FACE_BYTES, FrameFormat, FrameSpec,
    MAX_FRAME,
};
use facegate_core::{Embedding, ModelHash, Template};
use facegate_e2e::shared_data;
use facegate_link::{Board, LinkError};

/// The frame buffer of the test board: a QVGA RGB565 frame.
const FRAME_BUFFER: usize = 320 * 240 * 2;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> &'static [u8] {
    let p = repo(rel);
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Box::leak(b.into_boxed_slice())
}

/// A raw LFW photo as an RGB565 frame (what a DCMI camera gives).
fn rgb565_frame(data: &Path, who: &str, n: u32) -> (FrameSpec, Vec<u8>) {
    let p = data
        .join("lfw/raw_subset")
        .join(who)
        .join(format!("{who}_{n:04}.jpg"));
    let img = image::open(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .to_rgb8();
    let pixels = img.pixels().flat_map(|p| rgb565(p.0)).collect();
    let spec = FrameSpec {
        width: u16::try_from(img.width()).unwrap(),
        height: u16::try_from(img.height()).unwrap(),
        format: FrameFormat::Rgb565,
    };
    (spec, pixels)
}

/// The door's pipeline run directly: the best face's template.
fn template_of(detector: &Detector<'_>, model: &Model<'_>, spec: FrameSpec, px: &[u8]) -> Template {
    let frame = Frame::new(
        px,
        usize::from(spec.width),
        usize::from(spec.height),
        PixelFormat::Rgb565,
    )
    .unwrap();
    let mut arena = vec![0i8; detector.arena_len().max(model.arena_len())];
    let mut scratch = Box::new(Scratch::new());
    let mut faces: heapless::Vec<Face, 4> = heapless::Vec::new();
    detector
        .detect(&frame, &mut arena, &mut scratch, &mut faces)
        .unwrap();
    let mut crop = vec![0u8; FACE_SIDE * FACE_SIDE * 3];
    Detector::align(&frame, &faces[0], (&mut crop[..]).try_into().unwrap()).unwrap();
    let mut emb = [0.0f32; 128];
    model.embed(&crop, &mut arena, &mut emb).unwrap();
    Template::quantize(&Embedding::normalize(emb).unwrap())
}

struct Lock;

impl embedded_hal::digital::ErrorType for Lock {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for Lock {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct Wall(Instant);

impl Clock for Wall {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[derive(Default)]
struct Log(Vec<AuditEvent>);

impl AuditLog for Log {
    fn record(&mut self, e: AuditEvent) {
        self.0.push(e);
    }
}

impl AuditHistory for Log {
    fn page(
        &mut self,
        start: u16,
        out: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode> {
        let rest = self.0.iter().skip(usize::from(start));
        for e in rest.clone().take(AUDIT_PAGE) {
            out.push((*e).into()).unwrap();
        }
        Ok(rest.count() > AUDIT_PAGE)
    }
}

/// The shipped detector, with the doors' cascade, and `nano`.
fn shipped() -> (Detector<'static>, Model<'static>) {
    let net = |n: &str| read(&format!("models/detector/{n}.fgm"));
    let mut detector =
        Detector::new(net("pnet"), net("rnet"), net("onet"), DetectConfig::DOOR).unwrap();
    for small in ["pnet48", "pnet32", "pnet16"] {
        detector = detector.with_pnet(net(small)).unwrap();
    }
    (detector, Model::parse(read("models/nano.fgm")).unwrap())
}

/// Boots a board with an eye on a local TCP port; returns `tcp:…`.
fn boot_board(detector: Detector<'static>, model: Model<'static>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = format!("tcp:{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let arena = vec![0i8; detector.arena_len().max(model.arena_len())].leak();
        let scratch = Box::leak(Box::new(Scratch::new()));
        let frame = vec![0u8; FRAME_BUFFER].leak();
        let face = Box::leak(Box::new([0u8; FACE_BYTES]));
        let door = Door::new(Lock, LockoutPolicy::default(), None);
        let mut service = FaceService::new(
            door,
            EngineEmbedder { model, arena },
            Log::default(),
            Wall(Instant::now()),
            face,
        )
        .with_eye(Eye::new(detector, scratch, frame));
        let board = BoardInfo {
            firmware: "frame-door-test",
            model_hash: ModelHash(model.hash().0),
            device_id: *b"fg-frame-door-01",
            claim_key: None,
        };
        let mut store = RamStore::<8>::default();
        let (mut link, _) = listener.accept().unwrap();
        let mut reader = FrameReader::default();
        let mut out = [0u8; MAX_FRAME];
        let mut bytes = [0u8; 4096];
        loop {
            let n = match link.read(&mut bytes) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for &b in &bytes[..n] {
                if let Some(len) =
                    answer_byte(&mut reader, b, &board, &mut store, &mut service, &mut out)
                {
                    link.write_all(&out[..len]).unwrap();
                }
            }
        }
    });
    port
}

#[test]
fn the_board_judges_raw_frames_as_the_pipeline_does() {
    let Some(data) = shared_data() else { return };
    let (detector, model) = shipped();
    // The door's threshold for `nano` (FAR 1e-3, `models/nano.deployment.toml`).
    let deployment = String::from_utf8(read("models/nano.deployment.toml").to_vec()).unwrap();
    let threshold: f32 = deployment
        .lines()
        .find_map(|l| l.strip_prefix("threshold = "))
        .unwrap()
        .parse()
        .unwrap();

    let mut board = Board::connect(&boot_board(detector.clone(), model)).unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    board.claim(&key.verifying_key(), &[]).unwrap();
    board
        .signed(&key, &Command::SetThreshold { threshold })
        .unwrap();
    // Enrolled from three raw photos (as the demo does), through the same pipeline.
    let enrolled: Vec<Template> = (1..=3)
        .map(|n| {
            let (spec, px) = rgb565_frame(&data, "Abdullah_Gul", n);
            template_of(&detector, &model, spec, &px)
        })
        .collect();
    let mut templates = Vec::new();
    for t in &enrolled {
        templates.extend(t.scale().to_le_bytes());
        templates.extend(t.values().iter().map(|v| v.to_le_bytes()[0]));
    }
    board
        .signed(
            &key,
            &Command::Enroll {
                id: 7,
                name: "Abdullah Gul",
                templates: &templates,
            },
        )
        .unwrap();
    let matcher = Matcher::new(MatcherConfig {
        threshold,
        margin: None,
    })
    .unwrap();

    let mut kinds = Vec::new();
    for (who, n) in [("Abdullah_Gul", 4), ("Alan_Greenspan", 1)] {
        let (spec, px) = rgb565_frame(&data, who, n);
        let want = matcher.identify(
            &template_of(&detector, &model, spec, &px),
            enrolled.iter().map(|t| (PersonId(7), t)),
        );
        let got = board.verify_frame(&key, spec, &px).unwrap();
        assert_eq!(got.person, want.accepted().map(|p| p.0), "{who} {n}");
        assert_eq!(
            got.score.map(f32::to_bits),
            want.best_score().map(f32::to_bits),
            "{who} {n}: the board's score is the pipeline's, bit for bit"
        );
        kinds.push((got.kind, got.score));
    }
    // The enrolled person is let in from another photo; the stranger is not.
    assert!(
        matches!(
            kinds[..],
            [(DecisionKind::Unlocked, _), (DecisionKind::Rejected, _)]
        ),
        "{kinds:?} at threshold {threshold}"
    );
    assert_eq!(board.audit(&key).unwrap().len(), 2);

    // A frame with no face: refused, nothing decided or logged.
    let spec = FrameSpec {
        width: 200,
        height: 150,
        format: FrameFormat::Grey8,
    };
    let grey = vec![128u8; spec.bytes()];
    assert!(matches!(
        board.verify_frame(&key, spec, &grey),
        Err(LinkError::Refused(ErrorCode::NoFace))
    ));
    assert_eq!(board.audit(&key).unwrap().len(), 2, "no face, no event");

    // A frame past the board's buffer is refused while staging.
    let big = FrameSpec {
        width: 400,
        height: 300,
        format: FrameFormat::Rgb888,
    };
    assert!(matches!(
        board.verify_frame(&key, big, &vec![0u8; big.bytes()]),
        Err(LinkError::Refused(ErrorCode::FaceIncomplete))
    ));
}

struct StillCamera {
    spec: FrameSpec,
    frame: Vec<u8>,
    captures: usize,
}

impl facegate_core::camera::Camera for StillCamera {
    type Error = &'static str;
    fn capture(&mut self, buf: &mut [u8]) -> Result<FrameSpec, Self::Error> {
        self.captures += 1;
        buf.get_mut(..self.frame.len())
            .ok_or("frame too large")?
            .copy_from_slice(&self.frame);
        Ok(self.spec)
    }
}

struct Manual(std::cell::Cell<u64>);

impl Clock for Manual {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

#[test]
fn a_camera_door_judges_a_person_standing_there_once_per_pause() {
    use facegate_core::face_service::LOOK_PAUSE_MS;
    let Some(data) = shared_data() else { return };
    let (detector, model) = shipped();
    let (spec, frame) = rgb565_frame(&data, "Alan_Greenspan", 1);
    let mut camera = StillCamera {
        spec,
        frame,
        captures: 0,
    };
    let mut arena = vec![0i8; detector.arena_len().max(model.arena_len())];
    let mut scratch = Box::new(Scratch::new());
    let mut buffer = vec![0u8; FRAME_BUFFER];
    let mut face = Box::new([0u8; FACE_BYTES]);
    let clock = Manual(std::cell::Cell::new(1_000));
    let door = Door::new(Lock, LockoutPolicy::default(), None);
    let embedder = EngineEmbedder {
        model,
        arena: &mut arena,
    };
    let mut door = FaceService::new(door, embedder, Log::default(), &clock, &mut face)
        .with_eye(Eye::new(detector, &mut scratch, &mut buffer));
    let mut store = RamStore::<8>::default();
    // Nobody enrolled: the stranger standing there is rejected once...
    let first = door.look(&mut camera, &mut store).unwrap().unwrap();
    assert_eq!(first.kind, DecisionKind::Rejected);
    // ...and not judged again (nor captured) until the pause is over.
    clock.0.set(1_000 + LOOK_PAUSE_MS - 1);
    assert_eq!(door.look(&mut camera, &mut store), Ok(None));
    assert_eq!(camera.captures, 1);
    clock.0.set(1_000 + LOOK_PAUSE_MS + 1);
    assert!(door.look(&mut camera, &mut store).unwrap().is_some());
    assert_eq!(camera.captures, 2);
    assert_eq!(door.audit_mut().0.len(), 2);
}
