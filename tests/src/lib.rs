//! Helpers for facegate's end-to-end tests (the tests are in `tests/tests/`).
//!
//! The face data lives outside the repository (research-only terms); tests
//! find it through `FACEGATE_DATA`, defaulting to `../shared/data` beside the
//! checkout, and skip with a clear message only where it is absent.
#![deny(missing_docs)]

use std::path::PathBuf;

/// Environment variable naming the shared data folder.
pub const DATA_ENV: &str = "FACEGATE_DATA";

/// The shared data folder, if present.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os(DATA_ENV).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
        PathBuf::from,
    );
    if dir.join("lfw").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: no face data at {} (set {DATA_ENV}); this test needs ../shared/data",
            dir.display()
        );
        None
    }
}
