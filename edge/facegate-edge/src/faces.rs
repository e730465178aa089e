//! Camera frames from a folder: each new image file dropped into it (an
//! aligned 112×112 face crop, e.g. from an external detector) is presented
//! to the door once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use facegate_eval::faces::{Face, FaceError};

/// A folder watched for new face images.
#[derive(Debug)]
pub struct FaceFolder {
    dir: PathBuf,
    seen: BTreeSet<PathBuf>,
}

impl FaceFolder {
    /// Watches `dir`; files already there count as seen.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let mut f = Self {
            dir: dir.to_path_buf(),
            seen: BTreeSet::new(),
        };
        f.seen = f.listing()?;
        Ok(f)
    }

    fn listing(&self) -> std::io::Result<BTreeSet<PathBuf>> {
        Ok(std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                })
            })
            .collect())
    }

    /// New images since the last call, oldest name first, decoded.
    pub fn poll(&mut self) -> std::io::Result<Vec<(PathBuf, Result<Face, FaceError>)>> {
        let now = self.listing()?;
        let new: Vec<PathBuf> = now.difference(&self.seen).cloned().collect();
        self.seen = now;
        Ok(new
            .into_iter()
            .map(|p| {
                let face = Face::load(&p);
                (p, face)
            })
            .collect())
    }
}
