//! facegate on Cortex-A Linux boards (Raspberry Pi class).
//!
//! The same door as the Cortex-M firmware — `facegate_core`'s door logic,
//! encrypted power-cut-safe store, audit log, lockout and provisioning
//! protocol — with the board pieces of a Linux machine:
//!
//! - [`embedder`]: tract-onnx runs the float ONNX model (QDQ selectable),
//!   checked at start-up against the int8 blob the site's templates belong to;
//! - [`file_flash`]: NOR-flash semantics over a file, so the same
//!   sequential-storage store keeps its power-loss guarantees;
//! - [`lock`]: the relay on a GPIO line (feature `gpio`) or logged only;
//! - [`link`]: the provisioning protocol on a TCP socket or a serial device;
//! - [`camera`]: camera frames (an MJPEG stream or new photos in a folder)
//!   → the host's MTCNN detection, alignment and quality gates → one door
//!   decision per person in view;
//! - [`faces`]: aligned face crops dropped into a folder are camera frames;
//! - [`bench`](mod@bench): what the camera path costs per photo on this board.
#![deny(missing_docs)]

pub mod bench;
pub mod camera;
pub mod door_app;
pub mod embedder;
pub mod faces;
pub mod file_flash;
pub mod link;
pub mod lock;

/// Milliseconds since the runtime started.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock(pub std::time::Instant);

impl facegate_core::door::Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
