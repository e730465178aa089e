//! Helpers for facegate's end-to-end tests (the tests are in `tests/tests/`).
//!
//! The face data lives outside the repository (research-only terms); tests
//! find it through `FACEGATE_DATA`, defaulting to `../shared/data` beside the
//! checkout, and skip with a clear message only where it is absent.

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

/// One LFW verification pair: two images and whether they show the same person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    /// First image, relative to `aligned_112/`.
    pub a: String,
    /// Second image.
    pub b: String,
    /// Same person?
    pub same: bool,
}

/// Parses LFW pair lines (`name i j` or `name1 i name2 j`), skipping a `10 300` header.
pub fn parse_pairs(text: &str) -> Result<Vec<Pair>, String> {
    let image = |name: &str, n: &str| -> Result<String, String> {
        let n: u32 = n.parse().map_err(|_| format!("bad image number {n:?}"))?;
        Ok(format!("{name}/{name}_{n:04}.jpg"))
    };
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            [_, _] if i == 0 => {} // "folds pairs-per-fold" header of pairs.txt
            [name, x, y] => pairs.push(Pair {
                a: image(name, x)?,
                b: image(name, y)?,
                same: true,
            }),
            [n1, x, n2, y] => pairs.push(Pair {
                a: image(n1, x)?,
                b: image(n2, y)?,
                same: false,
            }),
            _ => return Err(format!("line {}: unexpected {line:?}", i + 1)),
        }
    }
    Ok(pairs)
}
