//! The board's link: arbitrary bytes through the COBS frame reader and the
//! request handler of a claimed board with a face pipeline. Nothing may
//! panic, every frame gets at most one bounded answer, and no unsigned
//! input may change the store.
#![no_main]

use facegate_core::protocol::MAX_FRAME;
use facegate_core::protocol::device::{BoardInfo, NoDiagnostics, RamStore, answer_byte};
use facegate_core::protocol::frame::FrameReader;
use libfuzzer_sys::fuzz_target;

const BOARD: BoardInfo<'static> = BoardInfo {
    firmware: "fuzz",
    model_hash: facegate_core::ModelHash([7; 32]),
    device_id: *b"facegate-fuzz-01",
    claim_key: None,
};

fuzz_target!(|data: &[u8]| {
    let mut store = RamStore::<4>::default();
    store.site_key = Some(
        ed25519_dalek::SigningKey::from_bytes(&[3; 32])
            .verifying_key()
            .to_bytes(),
    );
    let before = store.clone();
    let mut reader = FrameReader::default();
    let mut out = [0u8; MAX_FRAME];
    for &b in data {
        if let Some(n) = answer_byte(
            &mut reader,
            b,
            &BOARD,
            &mut store,
            &mut NoDiagnostics,
            &mut out,
        ) {
            assert!(n <= MAX_FRAME);
        }
    }
    // Random bytes cannot carry a valid signature by the site key.
    assert_eq!(store, before);
});
