//! Camera frames from a folder: each new image file dropped into it (an
//! aligned 112×112 face crop, e.g. from an external detector) is presented
//! to the door once.

use std::path::{Path, PathBuf};

use facegate_eval::faces::{Face, FaceError};

use crate::camera::PhotoFolder;

/// A folder watched for new face images.
#[derive(Debug)]
pub struct FaceFolder(PhotoFolder);

impl FaceFolder {
    /// Watches `dir`; files already there count as seen.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        PhotoFolder::new(dir).map(Self)
    }

    /// New images since the last call, oldest name first, decoded.
    pub fn poll(&mut self) -> std::io::Result<Vec<(PathBuf, Result<Face, FaceError>)>> {
        Ok(self
            .0
            .poll()?
            .into_iter()
            .map(|p| {
                let face = Face::load(&p);
                (p, face)
            })
            .collect())
    }
}
