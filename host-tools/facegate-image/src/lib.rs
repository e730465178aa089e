//! Bounded image reading: every image facegate decodes from outside (a
//! photo, a camera frame, a face crop, a training file) goes through
//! [`read_image`] or [`decode_image`], so a file cannot make a decoder
//! allocate without bound.
#![deny(missing_docs)]

use std::path::Path;

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
    /// Raw photos and camera frames (up to 8192 px a side, 160 MiB decoded).
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
