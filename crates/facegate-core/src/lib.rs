//! facegate-core: the part of facegate that runs everywhere, boards included.
//!
//! `no_std`, no allocator. Everything with a capacity returns a `Result`
//! when it is full, and every byte that comes from outside (template
//! databases, later model blobs and wire frames) is parsed with bounds checks
//! into typed errors: nothing here may panic on input.
//!
//! - [`embedding`]: float embeddings, L2 normalisation, cosine.
//! - [`template`]: int8 templates (one scale per vector) and the int8 dot product.
//! - [`matcher`]: 1:1 verification and 1:N identification with a decision policy.
//! - [`db`]: the versioned, CRC-protected template database format.
//! - [`detect`]: MTCNN face detection on the int8 engine, over bounded lists.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
// Input must never panic the device: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod align;
pub mod audit;
pub mod camera;
pub mod db;
pub mod detect;
pub mod door;
pub mod embedding;
pub mod engine;
pub mod face_service;
pub mod flash_store;
pub mod lockout;
pub mod matcher;
pub mod protocol;
pub mod template;

pub use embedding::{EMBEDDING_DIM, Embedding, EmbeddingError};
pub use matcher::{Decision, Matcher, MatcherConfig, PersonId, RejectReason, Score};
pub use template::Template;

/// SHA-256 (32 bytes) of the model that produced a set of templates.
///
/// Templates are only comparable with embeddings of the very same model, so
/// every template store carries this hash and a board refuses a store made
/// by another model.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelHash(pub [u8; 32]);

impl core::fmt::Debug for ModelHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Short hex prefix, like git: enough to tell models apart in logs.
        write!(f, "ModelHash(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl core::fmt::Display for ModelHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
