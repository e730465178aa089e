//! The facegate door application, independent of any board.
//!
//! Boards (see `../boards/`) provide the runtime, the log transport and the
//! exit path; everything they run lives here so it can grow into the full
//! verify / store / provision app without touching board code.
#![no_std]
#![deny(missing_docs)]

pub mod clock;
pub mod demo;
pub mod detect_check;
pub mod door_check;
pub mod engine_check;
pub mod eye;
pub mod nb_link;
pub mod server;

/// The installer's public key, from the build environment
/// (`FACEGATE_CLAIM_KEY=<64 hex digits>`, `facegate keygen`'s `.pub`): a
/// board built with it accepts only a claim its installer signed
/// (`facegate claim-token`); without it, whoever reaches the unclaimed
/// board first owns it. A malformed value stops the build.
pub const CLAIM_KEY: Option<[u8; 32]> = match option_env!("FACEGATE_CLAIM_KEY") {
    Some(hex) => match facegate_core::protocol::key_from_hex(hex) {
        Some(k) => Some(k),
        None => panic!("FACEGATE_CLAIM_KEY must be 64 hex digits (facegate keygen's .pub)"),
    },
    None => None,
};
