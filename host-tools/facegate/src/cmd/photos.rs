//! Photos → aligned faces, shared by `enroll`, `verify` and `board verify`:
//! MTCNN detection and 5-point alignment by default, or `--aligned` for
//! crops that are already 112×112 ArcFace-aligned (`../shared/data`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use facegate_detect::{Choice, FaceFinder, MtcnnConfig, Quality, QualityGates};
use facegate_eval::faces::Face;

/// Which face to take from a photo showing several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FaceChoice {
    /// Exactly one face, else an error listing them.
    Only,
    /// The largest face.
    Largest,
    /// The face nearest the centre (LFW's convention).
    Central,
}

/// How photos become faces.
#[derive(Clone, Debug, Args)]
pub struct PhotoArgs {
    /// The photos are already aligned 112×112 face crops (as in
    /// ../shared/data/*/aligned_112): skip detection.
    #[arg(long)]
    pub aligned: bool,
    /// Folder with the MTCNN weights (pnet/rnet/onet.onnx; `bash scripts/setup.sh` fetches them).
    #[arg(long, env = "FACEGATE_MTCNN", hide_env_values = true)]
    pub detector: Option<PathBuf>,
    /// Which face to take when a photo shows several.
    #[arg(long, value_enum, default_value = "only")]
    pub face: FaceChoice,
    /// Smallest face the detector looks for, in pixels.
    #[arg(long, default_value_t = 40.0)]
    pub min_face: f32,
}

/// A face taken from a photo.
#[derive(Debug)]
pub struct PhotoFace {
    /// The aligned crop.
    pub face: Face,
    /// Measurements, when it was detected (not for `--aligned`).
    pub quality: Option<Quality>,
    /// Faces the photo shows (1 for `--aligned`).
    pub faces_in_photo: usize,
}

/// Loads photos as [`PhotoArgs`] say.
#[derive(Debug)]
pub struct PhotoLoader {
    finder: Option<FaceFinder>,
    choice: Choice,
}

/// The weights folder: `--detector`, else `models/third_party/mtcnn` under
/// the working directory, else under the checkout this binary was built in.
fn weights_dir(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(default_weights, Path::to_path_buf)
}

/// The MTCNN weights folder when none is named: `models/third_party/mtcnn`
/// under the working directory, else under the checkout this binary was built in.
pub fn default_weights() -> PathBuf {
    let here = PathBuf::from(facegate_detect::DEFAULT_WEIGHTS);
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(facegate_detect::DEFAULT_WEIGHTS)
}

impl PhotoArgs {
    /// Loads the detector unless `--aligned`.
    pub fn loader(&self) -> Result<PhotoLoader> {
        let finder = if self.aligned {
            None
        } else {
            let dir = weights_dir(self.detector.as_deref());
            let config = MtcnnConfig {
                min_face: self.min_face,
                ..MtcnnConfig::default()
            };
            Some(FaceFinder::load(&dir, config).context(
                "cannot load the face detector (photos that are already aligned 112×112 crops can skip it with --aligned)",
            )?)
        };
        let choice = match self.face {
            FaceChoice::Only => Choice::Only,
            FaceChoice::Largest => Choice::Largest,
            FaceChoice::Central => Choice::Central,
        };
        Ok(PhotoLoader { finder, choice })
    }
}

impl PhotoLoader {
    /// The face in `path`, or why there is none.
    pub fn load(&self, path: &Path) -> Result<PhotoFace, String> {
        match &self.finder {
            None => Face::load(path)
                .map(|face| PhotoFace {
                    face,
                    quality: None,
                    faces_in_photo: 1,
                })
                .map_err(|e| e.to_string()),
            Some(finder) => finder
                .find_in_file(path, self.choice)
                .map(|f| PhotoFace {
                    face: Face {
                        rgb: f.aligned.to_vec(),
                    },
                    quality: Some(f.quality),
                    faces_in_photo: f.faces_in_photo,
                })
                .map_err(|e| e.to_string()),
        }
    }
}

/// Enrollment quality limits (see `facegate_detect::QualityGates`).
#[derive(Clone, Debug, Args)]
pub struct GateArgs {
    /// Smallest distance between the eyes, in photo pixels.
    #[arg(long, default_value_t = QualityGates::default().min_eye_distance)]
    pub min_eye_px: f32,
    /// Smallest sharpness (variance of the Laplacian of the aligned face).
    #[arg(long, default_value_t = QualityGates::default().min_sharpness)]
    pub min_sharpness: f32,
    /// Largest head turn (|yaw| from the landmarks; 0 frontal, 1 profile).
    #[arg(long, default_value_t = QualityGates::default().max_yaw)]
    pub max_yaw: f32,
    /// Largest head tilt (|pitch| from the landmarks; 0 frontal).
    #[arg(long, default_value_t = QualityGates::default().max_pitch)]
    pub max_pitch: f32,
}

impl GateArgs {
    /// The limits.
    pub fn gates(&self) -> QualityGates {
        QualityGates {
            min_eye_distance: self.min_eye_px,
            min_sharpness: self.min_sharpness,
            max_yaw: self.max_yaw,
            max_pitch: self.max_pitch,
        }
    }
}
