//! The board's link: arbitrary bytes through the COBS frame reader and the
//! request handler of a claimed board with a face pipeline and an eye (the
//! shipped `nano` and detector blobs, a small frame buffer), so face and
//! frame staging meet the bytes too. Nothing may panic, every frame gets at
//! most one bounded answer, no unsigned input may change the store, and
//! nothing is judged (the audit log stays empty).
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use facegate_core::detect::{DetectConfig, Detector, Scratch};
use facegate_core::door::{AuditEvent, AuditLog, Clock, Door, EngineEmbedder};
use facegate_core::engine::Model;
use facegate_core::face_service::{AuditHistory, Eye, FaceService};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::device::{BoardInfo, RamStore, answer_byte};
use facegate_core::protocol::frame::FrameReader;
use facegate_core::protocol::{AUDIT_PAGE, AuditEntry, ErrorCode, FACE_BYTES, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

static NANO: &[u8] = include_bytes!("../../models/nano.fgm");
static PNET: &[u8] = include_bytes!("../../models/detector/pnet.fgm");
static RNET: &[u8] = include_bytes!("../../models/detector/rnet.fgm");
static ONET: &[u8] = include_bytes!("../../models/detector/onet.fgm");

const BOARD: BoardInfo<'static> = BoardInfo {
    firmware: "fuzz",
    model_hash: facegate_core::ModelHash([7; 32]),
    device_id: *b"facegate-fuzz-01",
    claim_key: None,
};

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

struct Still;

impl Clock for Still {
    fn now_ms(&self) -> u64 {
        1_000
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
        _: u16,
        _: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode> {
        Ok(false)
    }
}

fuzz_target!(|data: &[u8]| {
    // Parsed (and CRC-checked) once, not per input.
    static NETS: OnceLock<Option<(Model<'static>, Detector<'static>)>> = OnceLock::new();
    let Some((model, detector)) = NETS
        .get_or_init(|| {
            let model = Model::parse(NANO).ok()?;
            let detector = Detector::new(PNET, RNET, ONET, DetectConfig::DOOR).ok()?;
            Some((model, detector))
        })
        .clone()
    else {
        return;
    };
    let mut store = RamStore::<4>::default();
    store.site_key = Some(
        ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .to_bytes(),
    );
    let before = store.clone();
    let mut arena = vec![0i8; model.arena_len().max(detector.arena_len())];
    let mut scratch = Box::new(Scratch::new());
    // Small, so that staging past its end is reachable.
    let mut frame = vec![0u8; 4096];
    let mut face = Box::new([0u8; FACE_BYTES]);
    let door = Door::new(Lock, LockoutPolicy::default(), None);
    let embedder = EngineEmbedder {
        model,
        arena: &mut arena,
    };
    let mut service = FaceService::new(door, embedder, Log::default(), Still, &mut face)
        .with_eye(Eye::new(detector, &mut scratch, &mut frame));
    let mut reader = FrameReader::default();
    let mut out = [0u8; MAX_FRAME];
    for &b in data {
        if let Some(n) = answer_byte(&mut reader, b, &BOARD, &mut store, &mut service, &mut out) {
            assert!(n <= MAX_FRAME);
        }
    }
    // Random bytes cannot carry a valid signature by the site key: no
    // change to the store, nothing judged.
    assert_eq!(store, before);
    assert!(service.audit_mut().0.is_empty());
});
