//! The door flow with fakes: lock pulses, rejections, lockout, audit.

use std::cell::Cell;
use std::convert::Infallible;

use ed25519_dalek::{Signer, SigningKey};
use facegate_core::ModelHash;
use facegate_core::camera::Camera;
use facegate_core::detect::{DetectConfig, Detector, Scratch};
use facegate_core::door::{AuditEvent, AuditLog, Clock, Door, Embedder, EngineEmbedder, Outcome};
use facegate_core::engine::{EngineError, Model};
use facegate_core::face_service::{AuditHistory, Eye, FaceService, LookError};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::device::{BoardInfo, DoorStore, RamStore, StoredPerson, handle_with};
use facegate_core::protocol::frame::{decode, encode};
use facegate_core::protocol::{
    AUDIT_PAGE, AuditEntry, Command, DecisionKind, ErrorCode, FACE_BYTES, FACE_CHUNK, FRAME_CHUNK,
    FrameFormat, FrameSpec, Request, Response, signing_message,
};
use facegate_core::{Embedding, PersonId, Template};
use sha2::{Digest, Sha256};

/// Records every level the lock relay was driven to.
#[derive(Default)]
struct FakeLock(Vec<bool>);

impl embedded_hal::digital::ErrorType for FakeLock {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for FakeLock {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.push(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.push(true);
        Ok(())
    }
}

struct FakeClock(Cell<u64>);

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// "Faces" are one byte: a person number; 255 makes the embedder fail.
/// `[k, 0xEE]` is another photo of person `k`: close to `[k]`, not identical.
struct FakeEmbedder;

fn direction(k: u8) -> [f32; 128] {
    core::array::from_fn(|i| {
        if i == usize::from(k) {
            1.0
        } else {
            0.01 * ((i * 7 + usize::from(k)) % 5) as f32
        }
    })
}

impl Embedder for FakeEmbedder {
    fn embed(&mut self, face: &[u8], out: &mut [f32]) -> Result<(), EngineError> {
        match face.first() {
            Some(255) | None => Err(EngineError::InputSize {
                expected: 1,
                found: 0,
            }),
            Some(&k) => {
                out.copy_from_slice(&direction(k));
                if face == [k, 0xEE] {
                    out[(usize::from(k) + 1) % 128] += 0.2;
                }
                Ok(())
            }
        }
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

fn store() -> RamStore<8> {
    let mut s = RamStore::<8>::default();
    for k in [1u8, 2] {
        let mut p = StoredPerson::new(PersonId(u32::from(k) * 100), "p").unwrap();
        p.push_template(Template::quantize(
            &Embedding::normalize(direction(k)).unwrap(),
        ))
        .unwrap();
        assert!(s.enroll(&p).unwrap());
    }
    s.threshold = 0.8;
    s.unlock_ms = 2_000;
    s
}

#[test]
fn enrolled_face_pulses_the_lock_for_the_unlock_time() {
    let mut s = store();
    let clock = FakeClock(Cell::new(10_000));
    let mut door = Door::new(FakeLock::default(), LockoutPolicy::default(), Some(0.1));
    let mut log = Log::default();
    let out = door.present_face(&[2], &mut FakeEmbedder, &mut s, &clock, &mut log);
    assert!(
        matches!(out, Outcome::Unlocked { id: PersonId(200), score } if score > 0.99),
        "{out:?}"
    );
    assert!(door.is_open());
    clock.0.set(11_999);
    door.poll(&clock);
    assert!(door.is_open());
    clock.0.set(12_000);
    door.poll(&clock);
    assert!(!door.is_open());
    assert_eq!(
        log.0,
        [AuditEvent {
            time_ms: 10_000,
            outcome: out
        }]
    );
}

#[test]
fn a_board_never_given_a_threshold_opens_for_no_one() {
    let mut s = store();
    s.threshold = RamStore::<8>::default().threshold;
    assert_eq!(s.threshold, facegate_core::matcher::FACTORY_THRESHOLD);
    let clock = FakeClock(Cell::new(0));
    let mut door = Door::new(FakeLock::default(), LockoutPolicy::default(), None);
    let mut log = Log::default();
    // Another photo of an enrolled person: a clear match at any real threshold…
    let out = door.present_face(&[2, 0xEE], &mut FakeEmbedder, &mut s, &clock, &mut log);
    assert!(
        matches!(out, Outcome::Rejected { best: Some(b) } if b > 0.9 && b < 1.0),
        "{out:?}"
    );
    assert!(!door.is_open());
    // …which opens the door once provisioning has set one.
    s.threshold = 0.8;
    let out = door.present_face(&[2, 0xEE], &mut FakeEmbedder, &mut s, &clock, &mut log);
    assert!(
        matches!(
            out,
            Outcome::Unlocked {
                id: PersonId(200),
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn unknown_face_and_faults_never_open() {
    let mut s = store();
    let clock = FakeClock(Cell::new(0));
    let mut door = Door::new(FakeLock::default(), LockoutPolicy::default(), None);
    let mut log = Log::default();
    assert!(
        matches!(door.present_face(&[7], &mut FakeEmbedder, &mut s, &clock, &mut log), Outcome::Rejected { best: Some(b) } if b < 0.5)
    );
    assert_eq!(
        door.present_face(&[255], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Fault
    );
    assert!(!door.is_open());
    assert_eq!(log.0.len(), 2);
    let mut empty = RamStore::<8>::default();
    assert_eq!(
        door.present_face(&[1], &mut FakeEmbedder, &mut empty, &clock, &mut log),
        Outcome::Rejected { best: None }
    );
}

#[test]
fn five_rejects_then_back_off_and_an_accept_resets() {
    let mut s = store();
    let clock = FakeClock(Cell::new(0));
    let policy = LockoutPolicy {
        free_attempts: 5,
        base_ms: 1_000,
        max_ms: 60_000,
    };
    let mut door = Door::new(FakeLock::default(), policy, None);
    let mut log = Log::default();
    for _ in 0..5 {
        assert!(matches!(
            door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
            Outcome::Rejected { .. }
        ));
    }
    // The 5th reject armed no delay yet; the 6th does.
    assert!(matches!(
        door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Rejected { .. }
    ));
    // Even the right face must wait now.
    assert_eq!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::LockedOut { wait_ms: 1_000 }
    );
    clock.0.set(1_000);
    assert!(matches!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Unlocked { .. }
    ));
    // Counting starts over after an accept.
    assert!(matches!(
        door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Rejected { .. }
    ));
    assert!(matches!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Unlocked { .. }
    ));
    assert_eq!(log.0.len(), 10);
}

/// Issue 25 #10: someone at the camera cannot flood the audit log until it
/// forgets who came in. Inside a lockout wait, refusals after the first add
/// no entry; a presenter adds at most two entries per wait (the judged
/// reject and one refusal), and the waits double up to the policy's cap.
#[test]
fn a_presenter_cannot_flood_the_audit_log() {
    let mut s = store();
    let clock = FakeClock(Cell::new(0));
    let policy = LockoutPolicy {
        free_attempts: 5,
        base_ms: 1_000,
        max_ms: 8_000,
    };
    let mut door = Door::new(FakeLock::default(), policy, None);
    let mut log = Log::default();
    assert!(matches!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Unlocked { .. }
    ));
    // A stranger tries ten times a second for a minute.
    let mut judged = 0;
    for t in (10_000..70_000).step_by(100) {
        clock.0.set(t);
        if !matches!(
            door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
            Outcome::LockedOut { .. }
        ) {
            judged += 1;
        }
    }
    let refusals = log
        .0
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::LockedOut { .. }))
        .count();
    // 600 attempts: 5 free, then waits of 1, 2, 4 and 8 s… (about 12 judged).
    assert!((10..=16).contains(&judged), "{judged} judged");
    assert_eq!(log.0.len(), 1 + judged + refusals, "{:?}", log.0);
    assert!(
        refusals <= judged,
        "{refusals} refusals logged for {judged} judged"
    );
    assert!(log.0.len() < 40, "{} entries for 600 attempts", log.0.len());
    // The owner's entry is still the first.
    assert!(matches!(log.0[0].outcome, Outcome::Unlocked { .. }));
}

/// Issue 25 #7: the reject count lives in the store, so a restart (a new
/// `Door`, the clock back at 0) neither resets it nor shortens the wait.
#[test]
fn a_restart_is_not_a_free_retry() {
    let mut s = store();
    let clock = FakeClock(Cell::new(50_000));
    let policy = LockoutPolicy::default();
    let mut door = Door::new(FakeLock::default(), policy, None);
    let mut log = Log::default();
    for k in 1..=6u32 {
        assert!(matches!(
            door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
            Outcome::Rejected { .. }
        ));
        assert_eq!(s.lockout_rejects, k, "stored after reject {k}");
    }
    // Power cycle: a new door, time since boot starts again.
    clock.0.set(0);
    let mut door = Door::new(FakeLock::default(), policy, None);
    assert_eq!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::LockedOut { wait_ms: 1_000 }
    );
    clock.0.set(1_000);
    assert!(matches!(
        door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Rejected { .. }
    ));
    assert_eq!(s.lockout_rejects, 7);
    clock.0.set(3_000);
    assert!(matches!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Unlocked { .. }
    ));
    assert_eq!(s.lockout_rejects, 0, "an accept clears the stored count");
}

const BOARD: BoardInfo<'static> = BoardInfo {
    firmware: "test",
    model_hash: ModelHash([3; 32]),
    device_id: *b"fg-test-board-02",
    claim_key: None,
};

/// One request through `handle_with`; the decoded response.
fn ask<S: DoorStore, D: facegate_core::protocol::device::Diagnostics<S>>(
    store: &mut S,
    diag: &mut D,
    req: &Request<'_>,
) -> Response<'static> {
    let mut frame = [0u8; 2048];
    let n = encode(req, &mut frame).unwrap();
    let mut out = vec![0u8; 2048];
    let m = handle_with(&BOARD, store, diag, &mut frame[..n], &mut out).unwrap();
    out.truncate(m);
    decode::<Response<'static>>(Box::leak(out.into_boxed_slice())).unwrap()
}

fn site() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// The signed `VerifyFace` frame for `face` at `nonce`, signed by `key`.
fn verify_request(key: &SigningKey, nonce: u32, face: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let face_sha256: [u8; 32] = Sha256::digest(face).into();
    sign(key, nonce, &Command::VerifyFace { face_sha256 })
}

/// `command` and `key`'s signature of it at `nonce`.
fn sign(key: &SigningKey, nonce: u32, command: &Command<'_>) -> (Vec<u8>, Vec<u8>) {
    let mut buf = [0u8; 256];
    let command = postcard::to_slice(command, &mut buf).unwrap().to_vec();
    let mut msg = vec![0u8; 512];
    let msg = signing_message(&BOARD.device_id, nonce, &command, &mut msg).unwrap();
    (command, key.sign(msg).to_bytes().to_vec())
}

/// Asks the board `command`, signed by `key` at the store's current nonce.
fn ask_signed(
    store: &mut RamStore<8>,
    diag: &mut impl facegate_core::protocol::device::Diagnostics<RamStore<8>>,
    key: &SigningKey,
    command: &Command<'_>,
) -> Response<'static> {
    let nonce = store.nonce;
    let (command, signature) = sign(key, nonce, command);
    ask(
        store,
        diag,
        &Request::Signed {
            nonce,
            command: &command,
            signature: &signature,
        },
    )
}

/// Asks the board, with `key`'s signature, for the audit page at `start`.
fn read_audit(
    store: &mut RamStore<8>,
    diag: &mut impl facegate_core::protocol::device::Diagnostics<RamStore<8>>,
    key: &SigningKey,
    start: u16,
) -> Response<'static> {
    ask_signed(store, diag, key, &Command::ReadAudit { start })
}

/// Asks the board, with `key`'s signature, to verify the staged `face`.
fn verify(
    store: &mut RamStore<8>,
    diag: &mut impl facegate_core::protocol::device::Diagnostics<RamStore<8>>,
    key: &SigningKey,
    face: &[u8],
) -> Response<'static> {
    let face_sha256: [u8; 32] = Sha256::digest(face).into();
    ask_signed(store, diag, key, &Command::VerifyFace { face_sha256 })
}

/// Stages `face` chunk by chunk; returns the last `Staged` count.
fn stage<S: DoorStore, D: facegate_core::protocol::device::Diagnostics<S>>(
    store: &mut S,
    diag: &mut D,
    face: &[u8],
) -> u32 {
    let mut received = 0;
    for (k, chunk) in face.chunks(FACE_CHUNK).enumerate() {
        let offset = u32::try_from(k * FACE_CHUNK).unwrap();
        match ask(
            store,
            diag,
            &Request::FaceChunk {
                offset,
                bytes: chunk,
            },
        ) {
            Response::Staged { received: r } => received = r,
            other => panic!("chunk {k}: {other:?}"),
        }
    }
    received
}

#[test]
fn faces_over_the_link_go_through_the_same_door() {
    let mut s = store();
    s.site_key = Some(site().verifying_key().to_bytes());
    let key = site();
    let clock = FakeClock(Cell::new(5_000));
    let door = Door::new(FakeLock::default(), LockoutPolicy::default(), None);
    let mut face = Box::new([0u8; FACE_BYTES]);
    let mut svc = FaceService::new(door, FakeEmbedder, Log::default(), &clock, &mut face);

    let mut known = vec![0u8; FACE_BYTES];
    known[0] = 2;
    // Verifying before a whole face arrived is refused and decides nothing.
    assert_eq!(
        verify(&mut s, &mut svc, &key, &known),
        Response::Error(ErrorCode::FaceIncomplete)
    );
    assert_eq!(stage(&mut s, &mut svc, &known), FACE_BYTES as u32);
    // Nobody without the site key may ask (issue 25 #1), nor name another
    // face than the staged one; neither decides anything or spends the nonce.
    let stranger_key = SigningKey::from_bytes(&[1; 32]);
    assert_eq!(
        verify(&mut s, &mut svc, &stranger_key, &known),
        Response::Error(ErrorCode::BadSignature)
    );
    let mut other = known.clone();
    other[1] = 1;
    assert_eq!(
        verify(&mut s, &mut svc, &key, &other),
        Response::Error(ErrorCode::FaceMismatch)
    );
    assert_eq!(s.nonce, 0);
    assert!(!svc.door().is_open());
    let (command, signature) = verify_request(&key, 0, &known);
    let recorded = Request::Signed {
        nonce: 0,
        command: &command,
        signature: &signature,
    };
    let Response::Decision { entry: d, nonce } = ask(&mut s, &mut svc, &recorded) else {
        panic!("no decision");
    };
    assert_eq!(nonce, 1);
    // A recorded verification cannot be played again to pulse the lock.
    stage(&mut s, &mut svc, &known);
    assert_eq!(
        ask(&mut s, &mut svc, &recorded),
        Response::Error(ErrorCode::BadNonce)
    );
    assert_eq!(
        (d.kind, d.person, d.time_ms),
        (DecisionKind::Unlocked, Some(200), 5_000)
    );
    assert!(d.score.unwrap() > 0.99);
    assert!(svc.door().is_open());
    clock.0.set(7_000);
    svc.poll();
    assert!(!svc.door().is_open(), "the pulse ends after unlock_ms");

    // A face is presented once: the second verify needs a new face.
    assert!(matches!(
        verify(&mut s, &mut svc, &key, &known),
        Response::Decision { .. }
    ));
    clock.0.set(9_500);
    svc.poll();
    assert_eq!(
        verify(&mut s, &mut svc, &key, &known),
        Response::Error(ErrorCode::FaceIncomplete)
    );
    // Chunks out of order, too large or past the end are refused.
    assert_eq!(
        ask(
            &mut s,
            &mut svc,
            &Request::FaceChunk {
                offset: 8,
                bytes: &[1; 8]
            }
        ),
        Response::Error(ErrorCode::FaceIncomplete)
    );
    assert_eq!(
        ask(
            &mut s,
            &mut svc,
            &Request::FaceChunk {
                offset: 0,
                bytes: &[1; FACE_CHUNK + 1]
            }
        ),
        Response::Error(ErrorCode::Invalid)
    );
    let mut stranger = vec![0u8; FACE_BYTES];
    stranger[0] = 9;
    stage(&mut s, &mut svc, &stranger[..FACE_BYTES - 4]);
    assert_eq!(
        ask(
            &mut s,
            &mut svc,
            &Request::FaceChunk {
                offset: (FACE_BYTES - 4) as u32,
                bytes: &[0; 8]
            }
        ),
        Response::Error(ErrorCode::Invalid)
    );
    // Ten strangers: rejected, no pulse; the sixth reject arms the lockout.
    let mut kinds = Vec::new();
    for _ in 0..10 {
        stage(&mut s, &mut svc, &stranger);
        let Response::Decision { entry: d, .. } = verify(&mut s, &mut svc, &key, &stranger) else {
            panic!("no decision");
        };
        kinds.push(d.kind);
        assert!(!svc.door().is_open());
    }
    assert_eq!(kinds[..6], [DecisionKind::Rejected; 6]);
    assert_eq!(kinds[6], DecisionKind::LockedOut);

    // The audit log pages back in order, 8 + 1 events (the four refusals
    // inside one wait are one entry), with scores, to the
    // site key only; every page spends a nonce.
    assert_eq!(
        read_audit(&mut s, &mut svc, &stranger_key, 0),
        Response::Error(ErrorCode::BadSignature)
    );
    let nonce_before = s.nonce;
    let Response::Audit {
        events,
        more,
        nonce,
    } = read_audit(&mut s, &mut svc, &key, 0)
    else {
        panic!("no audit");
    };
    assert_eq!(nonce, nonce_before + 1);
    assert!(more);
    assert_eq!(events.len(), AUDIT_PAGE);
    assert_eq!(events[0], d);
    assert!(events[0].score.is_some(), "{events:?}");
    let Response::Audit { events, more, .. } = read_audit(&mut s, &mut svc, &key, 8) else {
        panic!("no audit");
    };
    assert!(!more);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, DecisionKind::LockedOut);
    assert!(events[0].wait_ms > 0);
}

/// The shipped detector and `nano` blobs (an eye needs real nets).
static PNET: &[u8] = include_bytes!("../../../models/detector/pnet.fgm");
static RNET: &[u8] = include_bytes!("../../../models/detector/rnet.fgm");
static ONET: &[u8] = include_bytes!("../../../models/detector/onet.fgm");
static NANO: &[u8] = include_bytes!("../../../models/nano.fgm");

/// A camera that hands out `frame` of `spec`, counting captures.
struct StillCamera<'a> {
    spec: FrameSpec,
    frame: &'a [u8],
    captures: usize,
}

impl Camera for StillCamera<'_> {
    type Error = &'static str;
    fn capture(&mut self, buf: &mut [u8]) -> Result<FrameSpec, Self::Error> {
        self.captures += 1;
        let dst = buf.get_mut(..self.frame.len()).ok_or("frame too large")?;
        dst.copy_from_slice(self.frame);
        Ok(self.spec)
    }
}

/// Stages `frame` chunk by chunk; returns the last answer.
fn stage_frame<S: DoorStore, D: facegate_core::protocol::device::Diagnostics<S>>(
    store: &mut S,
    diag: &mut D,
    frame: &[u8],
) -> Response<'static> {
    let mut last = Response::Error(ErrorCode::Invalid);
    for (k, bytes) in frame.chunks(FRAME_CHUNK).enumerate() {
        let offset = u32::try_from(k * FRAME_CHUNK).unwrap();
        last = ask(store, diag, &Request::FrameChunk { offset, bytes });
    }
    last
}

/// Signed `VerifyFrame` of `spec` naming `frame`'s digest.
fn verify_frame(
    store: &mut RamStore<8>,
    diag: &mut impl facegate_core::protocol::device::Diagnostics<RamStore<8>>,
    key: &SigningKey,
    spec: FrameSpec,
    frame: &[u8],
) -> Response<'static> {
    let frame_sha256: [u8; 32] = Sha256::digest(frame).into();
    ask_signed(
        store,
        diag,
        key,
        &Command::VerifyFrame { spec, frame_sha256 },
    )
}

#[test]
fn frames_over_the_link_are_checked_before_anything_is_judged() {
    let mut s = store();
    s.site_key = Some(site().verifying_key().to_bytes());
    let key = site();
    let clock = FakeClock(Cell::new(5_000));
    let model = Model::parse(NANO).unwrap();
    let detector = Detector::new(PNET, RNET, ONET, DetectConfig::default()).unwrap();
    let mut arena = vec![0i8; detector.arena_len().max(model.arena_len())];
    let mut scratch = Box::new(Scratch::new());
    let mut buffer = vec![0u8; 8000];
    let mut face = Box::new([0u8; FACE_BYTES]);

    // Without an eye, frames are not offered.
    {
        let door = Door::new(FakeLock::default(), LockoutPolicy::default(), None);
        let mut blind = FaceService::new(door, FakeEmbedder, Log::default(), &clock, &mut face);
        assert_eq!(
            stage_frame(&mut s, &mut blind, &[0; 10]),
            Response::Error(ErrorCode::Unsupported)
        );
    }

    let door = Door::new(FakeLock::default(), LockoutPolicy::default(), None);
    let embedder = EngineEmbedder {
        model,
        arena: &mut arena,
    };
    let mut svc = FaceService::new(door, embedder, Log::default(), &clock, &mut face)
        .with_eye(Eye::new(detector, &mut scratch, &mut buffer));
    // A plain grey wall: a whole frame, but no face in it.
    let spec = FrameSpec {
        width: 80,
        height: 60,
        format: FrameFormat::Grey8,
    };
    let wall: Vec<u8> = (0..spec.bytes()).map(|i| (i % 7 * 3 + 100) as u8).collect();
    assert_eq!(
        stage_frame(&mut s, &mut svc, &wall),
        Response::Staged {
            received: spec.bytes() as u32
        }
    );
    // Another frame than the staged one, another size, a size of nothing,
    // or a caller without the site key: refused, no nonce spent.
    let mut other = wall.clone();
    other[17] ^= 1;
    assert_eq!(
        verify_frame(&mut s, &mut svc, &key, spec, &other),
        Response::Error(ErrorCode::FaceMismatch)
    );
    let narrower = FrameSpec { width: 79, ..spec };
    assert_eq!(
        verify_frame(&mut s, &mut svc, &key, narrower, &wall[..narrower.bytes()]),
        Response::Error(ErrorCode::FaceIncomplete)
    );
    let empty = FrameSpec { width: 0, ..spec };
    assert_eq!(
        verify_frame(&mut s, &mut svc, &key, empty, &[]),
        Response::Error(ErrorCode::Invalid)
    );
    assert_eq!(
        verify_frame(
            &mut s,
            &mut svc,
            &SigningKey::from_bytes(&[1; 32]),
            spec,
            &wall
        ),
        Response::Error(ErrorCode::BadSignature)
    );
    assert_eq!(s.nonce, 0);
    // The right frame: judged, no face found, nothing logged.
    assert_eq!(
        verify_frame(&mut s, &mut svc, &key, spec, &wall),
        Response::Error(ErrorCode::NoFace)
    );
    assert_eq!(s.nonce, 1, "the command was carried out");
    assert!(svc.audit_mut().0.is_empty(), "no face, no audit event");
    // A frame is judged once.
    assert_eq!(
        verify_frame(&mut s, &mut svc, &key, spec, &wall),
        Response::Error(ErrorCode::FaceIncomplete)
    );
    // Chunks out of order, too large or past the buffer are refused.
    let zeros = [0u8; FRAME_CHUNK + 1];
    for (offset, len, answer) in [
        (8, 8, ErrorCode::FaceIncomplete),
        (0, FRAME_CHUNK + 1, ErrorCode::Invalid),
    ] {
        let req = Request::FrameChunk {
            offset,
            bytes: &zeros[..len],
        };
        assert_eq!(ask(&mut s, &mut svc, &req), Response::Error(answer));
    }
    stage_frame(&mut s, &mut svc, &[0u8; 8000 - 4]);
    let past_the_end = Request::FrameChunk {
        offset: 8000 - 4,
        bytes: &zeros[..8],
    };
    assert_eq!(
        ask(&mut s, &mut svc, &past_the_end),
        Response::Error(ErrorCode::FaceIncomplete)
    );

    // The camera path: a frame without a face judges nothing; a camera
    // whose frame does not fit, or that fails, is an error, not a panic.
    let mut camera = StillCamera {
        spec,
        frame: &wall,
        captures: 0,
    };
    assert_eq!(svc.look(&mut camera, &mut s), Ok(None));
    assert_eq!(camera.captures, 1);
    let mut liar = StillCamera {
        spec: FrameSpec { width: 800, ..spec },
        frame: &wall,
        captures: 0,
    };
    assert_eq!(svc.look(&mut liar, &mut s), Err(LookError::BadFrame));
    let big = vec![0u8; 9000];
    let mut too_big = StillCamera {
        spec,
        frame: &big,
        captures: 0,
    };
    assert_eq!(
        svc.look(&mut too_big, &mut s),
        Err(LookError::Camera("frame too large"))
    );
    assert!(svc.audit_mut().0.is_empty());
}
