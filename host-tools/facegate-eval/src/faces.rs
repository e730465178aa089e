//! Identity-per-folder face sets (`root/<identity>/<image>`) and decoding.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

/// Side of the aligned faces every embedder takes (ArcFace template).
pub const FACE_SIZE: u32 = 112;

pub use facegate_image::{ImageBounds, ImageReadError, decode_image, read_image};

/// One image of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaceFile {
    /// Index of the identity in [`FaceSet::identities`].
    pub identity: u32,
    /// Path relative to the set's root.
    pub path: PathBuf,
}

/// A scanned identity-per-folder set, in sorted (deterministic) order.
#[derive(Clone, Debug)]
pub struct FaceSet {
    /// The folder scanned.
    pub root: PathBuf,
    /// Identity (folder) names, sorted.
    pub identities: Vec<String>,
    /// Images, sorted by identity then file name.
    pub files: Vec<FaceFile>,
}

/// Errors reading face sets and images.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// A folder or file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An image could not be decoded (or is larger than [`ImageBounds::FACE`]).
    #[error("{}: not a readable face image ({source})", path.display())]
    Decode {
        /// Where.
        path: PathBuf,
        /// Why.
        source: ImageReadError,
    },
    /// The set has no images.
    #[error("{}: no identity folders with images", .0.display())]
    Empty(PathBuf),
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "jpg" | "jpeg" | "png" | "pgm" | "ppm"
        )
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, FaceError> {
    let io = |source| FaceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut v = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    v.sort();
    Ok(v)
}

impl FaceSet {
    /// Scans `root/<identity>/<image>`.
    pub fn scan(root: &Path) -> Result<Self, FaceError> {
        let mut identities = Vec::new();
        let mut files = Vec::new();
        for dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let images: Vec<PathBuf> = sorted_entries(&dir)?
                .into_iter()
                .filter(|p| is_image(p))
                .collect();
            if images.is_empty() {
                continue;
            }
            let id = u32::try_from(identities.len()).unwrap_or(u32::MAX);
            identities.push(
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            for img in images {
                let rel = img.strip_prefix(root).unwrap_or(&img).to_path_buf();
                files.push(FaceFile {
                    identity: id,
                    path: rel,
                });
            }
        }
        if files.is_empty() {
            return Err(FaceError::Empty(root.to_path_buf()));
        }
        Ok(Self {
            root: root.to_path_buf(),
            identities,
            files,
        })
    }

    /// Identity label of every file, in file order.
    pub fn labels(&self) -> Vec<u32> {
        self.files.iter().map(|f| f.identity).collect()
    }

    /// Position of a file given its relative path.
    pub fn index_of(&self) -> std::collections::HashMap<&Path, usize> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.as_path(), i))
            .collect()
    }
}

/// A decoded face, 112×112 RGB, row-major, 3 bytes per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Face {
    /// Pixels.
    pub rgb: Vec<u8>,
}

impl Face {
    /// Decodes an image file; other sizes (ORL's 92×112) are resized to 112×112.
    pub fn load(path: &Path) -> Result<Self, FaceError> {
        let img = read_image(path, ImageBounds::FACE)
            .map_err(|source| match source {
                ImageReadError::Io(source) => FaceError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                source => FaceError::Decode {
                    path: path.to_path_buf(),
                    source,
                },
            })?
            .to_rgb8();
        let img = if img.dimensions() == (FACE_SIZE, FACE_SIZE) {
            img
        } else {
            image::imageops::resize(&img, FACE_SIZE, FACE_SIZE, FilterType::Triangle)
        };
        Ok(Self {
            rgb: img.into_raw(),
        })
    }

    /// The horizontally mirrored face (for flip-test embeddings).
    pub fn mirrored(&self) -> Self {
        let w = FACE_SIZE as usize;
        let mut rgb = vec![0; self.rgb.len()];
        for (dst_row, src_row) in rgb
            .chunks_exact_mut(w * 3)
            .zip(self.rgb.chunks_exact(w * 3))
        {
            for x in 0..w {
                dst_row[x * 3..x * 3 + 3].copy_from_slice(&src_row[(w - 1 - x) * 3..(w - x) * 3]);
            }
        }
        Self { rgb }
    }
}
