//! Identity-per-folder face sets (`root/<identity>/<image>`) and decoding.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

/// Side of the aligned faces every embedder takes (ArcFace template).
pub const FACE_SIZE: u32 = 112;

/// Bounds on an image file from outside (a photo, a camera frame, a face
/// crop): a few kilobytes of PNG can declare a 13,000 × 13,000 image and
/// make a naive decoder allocate a gigabyte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageBounds {
    /// Largest file read, in bytes.
    pub max_file_bytes: u64,
    /// Largest width and height.
    pub max_side: u32,
    /// Largest decoder allocation, in bytes.
    pub max_alloc: u64,
}

impl ImageBounds {
    /// Aligned face crops (112×112; ORL's 92×112; anything up to 1024 px is
    /// resized).
    pub const FACE: Self = Self {
        max_file_bytes: 8 << 20,
        max_side: 1024,
        max_alloc: 16 << 20,
    };
    /// Raw photos and camera frames (up to 8192 px a side, 40 megapixels).
    pub const PHOTO: Self = Self {
        max_file_bytes: 64 << 20,
        max_side: 8192,
        max_alloc: 160 << 20,
    };
}

/// Why a bounded image read failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageReadError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is larger than the bounds allow (it is not read).
    #[error("the file is over {max} bytes")]
    TooLarge {
        /// The bound.
        max: u64,
    },
    /// The bytes are not a readable image, or it is larger than the bounds.
    #[error("{0}")]
    Decode(#[from] image::ImageError),
}

/// Reads and decodes `path` within `bounds`: the file size is checked
/// before reading, the declared dimensions before decoding, and the
/// decoder's allocations are capped.
pub fn read_image(path: &Path, bounds: ImageBounds) -> Result<image::DynamicImage, ImageReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(bounds.max_file_bytes + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > bounds.max_file_bytes {
        return Err(ImageReadError::TooLarge {
            max: bounds.max_file_bytes,
        });
    }
    decode_image(&bytes, bounds)
}

/// Decodes `bytes` within `bounds` (see [`read_image`]).
pub fn decode_image(
    bytes: &[u8],
    bounds: ImageBounds,
) -> Result<image::DynamicImage, ImageReadError> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(bounds.max_side);
    limits.max_image_height = Some(bounds.max_side);
    limits.max_alloc = Some(bounds.max_alloc);
    reader.limits(limits);
    Ok(reader.decode()?)
}

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
