//! Faces from photos: MTCNN finds faces and their five landmarks, the
//! core's 5-point similarity aligns the chosen face onto the 112×112 ArcFace
//! crop every facegate model takes, and quality gates say whether it is good
//! enough to enroll.
//!
//! ```no_run
//! use facegate_detect::{Choice, FaceFinder};
//! let finder = FaceFinder::load("models/third_party/mtcnn".as_ref(), Default::default()).unwrap();
//! let face = finder.find_in_file("alice.jpg".as_ref(), Choice::Only).unwrap();
//! println!("sharpness {:.0}", face.quality.sharpness);
//! ```

#![deny(missing_docs)]

pub mod mtcnn;
pub mod quality;

use std::path::{Path, PathBuf};

use facegate_core::align::{FACE_SIDE, align_face};
use facegate_image::{ImageBounds, ImageReadError, read_image};
use image::RgbImage;

pub use mtcnn::{Detection, Mtcnn, MtcnnConfig, MtcnnError};
pub use quality::{GateFailure, Quality, QualityGates};

/// Where the set-up script puts the MTCNN weights, relative to the repository.
pub const DEFAULT_WEIGHTS: &str = "models/third_party/mtcnn";

/// Which face to take from a photo that shows several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Choice {
    /// Exactly one face, or an error listing them.
    #[default]
    Only,
    /// The largest face.
    Largest,
    /// The face nearest the centre (LFW's convention).
    Central,
}

/// Why no usable face came out of a photo.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not an image facegate reads, or one larger than
    /// [`ImageBounds::PHOTO`].
    #[error("{}: not a readable image (JPEG, PNG or PNM up to 8192 px a side): {source}", path.display())]
    Decode {
        /// Where.
        path: PathBuf,
        /// Why.
        source: ImageReadError,
    },
    /// No face found.
    #[error("{}: no face found (faces must be at least {min_face:.0} px across)", path.display())]
    NoFace {
        /// Where.
        path: PathBuf,
        /// The detector's smallest face.
        min_face: f32,
    },
    /// Several faces and [`Choice::Only`].
    #[error(
        "{}: {} faces ({}); pass --face largest or --face central to choose one",
        path.display(), faces.len(), describe(faces)
    )]
    SeveralFaces {
        /// Where.
        path: PathBuf,
        /// All of them.
        faces: Vec<Detection>,
    },
    /// The landmarks cannot be aligned (degenerate).
    #[error("{}: the face's landmarks cannot be aligned", path.display())]
    Align {
        /// Where.
        path: PathBuf,
    },
    /// The detector failed.
    #[error("{}: {source}", path.display())]
    Detector {
        /// Where.
        path: PathBuf,
        /// Why.
        source: MtcnnError,
    },
}

fn describe(faces: &[Detection]) -> String {
    faces
        .iter()
        .map(|d| {
            let [x, y] = d.centre();
            format!("{:.0} px at ({x:.0}, {y:.0})", d.width())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A face found in a photo, aligned and measured.
#[derive(Clone, Debug)]
pub struct FoundFace {
    /// The detection chosen.
    pub detection: Detection,
    /// How many faces the photo shows.
    pub faces_in_photo: usize,
    /// The aligned 112×112 RGB crop.
    pub aligned: Box<[u8; FACE_SIDE * FACE_SIDE * 3]>,
    /// Its measurements (for the gates).
    pub quality: Quality,
}

/// Detector + alignment.
#[derive(Debug)]
pub struct FaceFinder {
    mtcnn: Mtcnn,
}

impl FaceFinder {
    /// Loads the MTCNN weights from `dir`.
    pub fn load(dir: &Path, config: MtcnnConfig) -> Result<Self, MtcnnError> {
        Ok(Self {
            mtcnn: Mtcnn::load(dir, config)?,
        })
    }

    /// The detector.
    pub fn detector(&self) -> &Mtcnn {
        &self.mtcnn
    }

    /// Decodes `path` and finds the chosen face in it.
    pub fn find_in_file(&self, path: &Path, choice: Choice) -> Result<FoundFace, PhotoError> {
        let img = read_image(path, ImageBounds::PHOTO)
            .map_err(|source| match source {
                ImageReadError::Io(source) => PhotoError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                source => PhotoError::Decode {
                    path: path.to_path_buf(),
                    source,
                },
            })?
            .to_rgb8();
        self.find(&img, choice, path)
    }

    /// Finds the chosen face in a decoded image (`path` names it in errors).
    pub fn find(
        &self,
        img: &RgbImage,
        choice: Choice,
        path: &Path,
    ) -> Result<FoundFace, PhotoError> {
        let faces = self
            .mtcnn
            .detect(img)
            .map_err(|source| PhotoError::Detector {
                path: path.to_path_buf(),
                source,
            })?;
        let (w, h) = (img.width() as f32, img.height() as f32);
        let centre_distance = |d: &Detection| {
            let [x, y] = d.centre();
            (x - w / 2.0).hypot(y - h / 2.0)
        };
        let chosen = match (choice, faces.len()) {
            (_, 0) => None,
            (_, 1) => Some(faces[0]),
            (Choice::Only, _) => {
                return Err(PhotoError::SeveralFaces {
                    path: path.to_path_buf(),
                    faces,
                });
            }
            (Choice::Largest, _) => faces
                .iter()
                .max_by(|a, b| (a.width() * a.height()).total_cmp(&(b.width() * b.height())))
                .copied(),
            (Choice::Central, _) => faces
                .iter()
                .min_by(|a, b| centre_distance(a).total_cmp(&centre_distance(b)))
                .copied(),
        };
        let Some(detection) = chosen else {
            return Err(PhotoError::NoFace {
                path: path.to_path_buf(),
                min_face: self.mtcnn.config().min_face,
            });
        };
        let mut aligned = Box::new([0u8; FACE_SIDE * FACE_SIDE * 3]);
        align_face(
            img.as_raw(),
            img.width() as usize,
            img.height() as usize,
            &detection.landmarks,
            &mut aligned,
        )
        .map_err(|_| PhotoError::Align {
            path: path.to_path_buf(),
        })?;
        let quality = quality::measure(&detection, &aligned);
        Ok(FoundFace {
            detection,
            faces_in_photo: faces.len(),
            aligned,
            quality,
        })
    }
}
