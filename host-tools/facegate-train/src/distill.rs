//! Embedding distillation: the student's embedding is pulled toward a
//! stronger teacher's embedding of the same face, joint with the margin head.
//!
//! With a few thousand training identities the margin head alone overfits
//! them; a teacher trained on millions of faces carries what generalises.
//! Its embeddings are computed once, outside training (for dlib's ResNet:
//! `scripts/build-teacher-embeddings.sh`), into a tab-separated file:
//!
//! ```text
//! <path>\t<d floats: the face>\t<d floats: its mirror image>
//! <path>\terror\t<why the teacher could not read it>
//! ```
//!
//! Faces are matched by the last three components of their path
//! (`<root>/<identity>/<file>`), so the file travels between machines. The
//! target of a face is the normalised mean of its two embeddings: flip
//! augmentation then needs no bookkeeping, and the target is the teacher's
//! own flip test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::views::ViewSettings;

/// The distillation weight when a teacher is named without one: as large as
/// CosFace's scale s = 30, so that early in training both pull on the
/// embedding about equally hard.
pub const DEFAULT_WEIGHT: f32 = 30.0;

/// Distillation settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillSettings {
    /// The teacher's embeddings of the training faces (the format above).
    pub teacher: PathBuf,
    /// Weight of `1 − cos(student, teacher)`, averaged over the batch,
    /// added to the head's loss.
    pub weight: f32,
    /// Weight of the relational term: the mean squared difference between
    /// the student's and the teacher's in-batch cosine matrices (0: off).
    /// The door thresholds exactly these cosines, so they are matched
    /// directly, not only through each embedding on its own.
    #[serde(default)]
    pub relational: f32,
    /// Identities of the training data with fewer than `min_images` faces
    /// still train as teacher targets (no class, no head loss) instead of
    /// being dropped.
    #[serde(default)]
    pub keep_small_identities: bool,
    /// Folders of faces without identity labels (images anywhere below
    /// them), used as teacher targets only: the teacher needs no labels.
    #[serde(default)]
    pub unlabelled: Vec<PathBuf>,
    /// Augmented views the teacher embedded, shown to the student as the
    /// teacher saw them ([`crate::views`]).
    #[serde(default)]
    pub views: Option<ViewSettings>,
}

impl DistillSettings {
    /// Plain embedding distillation from `teacher` with `weight`: no
    /// relational term, no unlabelled faces.
    pub fn new(teacher: PathBuf, weight: f32) -> Self {
        Self {
            teacher,
            weight,
            relational: 0.0,
            keep_small_identities: false,
            unlabelled: Vec::new(),
            views: None,
        }
    }
}

/// Errors reading teacher embeddings.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    /// The file could not be read.
    #[error("cannot read the teacher embeddings {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `path, d floats, d floats`.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Training faces the teacher has no embedding for.
    #[error(
        "the teacher has no embedding for {missing} of the training faces (first: {first}); \
         rebuild the teacher file for this data (scripts/build-teacher-embeddings.sh)"
    )]
    Missing {
        /// How many.
        missing: usize,
        /// The first one.
        first: PathBuf,
    },
    /// The teacher's width differs from the student's embedding.
    #[error("the teacher gives {teacher}-d embeddings, the network embeds {student}-d")]
    Width {
        /// Teacher width.
        teacher: usize,
        /// Student width.
        student: usize,
    },
}

/// A teacher's unit-length targets, by face key.
#[derive(Clone, Debug, Default)]
pub struct TeacherEmbeddings {
    width: usize,
    targets: HashMap<String, Vec<f32>>,
    unreadable: usize,
}

/// The key a face is matched by: `<root>/<identity>/<file>`.
pub fn face_key(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .rev()
        .take(3)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}

fn unit_mean(a: &[f32], b: &[f32]) -> Option<Vec<f32>> {
    let mut v: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + y).collect();
    facegate_core::embedding::l2_normalize(&mut v).ok()?;
    Some(v)
}

impl TeacherEmbeddings {
    /// Reads a teacher file.
    pub fn load(path: &Path) -> Result<Self, TeacherError> {
        let text = std::fs::read_to_string(path).map_err(|source| TeacherError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses a teacher file's text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, TeacherError> {
        let mut out = Self::default();
        for (n, line) in text.lines().enumerate() {
            let bad = |reason: String| TeacherError::Line {
                path: path.to_path_buf(),
                line: n + 1,
                reason,
            };
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.get(1) == Some(&"error") {
                out.unreadable += 1;
                continue;
            }
            let [face, own, mirror] = fields[..] else {
                return Err(bad(format!(
                    "{} tab-separated fields, expected 3 (path, embedding, mirror embedding)",
                    fields.len()
                )));
            };
            let floats = |s: &str| -> Result<Vec<f32>, TeacherError> {
                s.split_ascii_whitespace()
                    .map(|v| match v.parse::<f32>() {
                        Ok(x) if x.is_finite() => Ok(x),
                        _ => Err(bad(format!("{v:?} is not a finite number"))),
                    })
                    .collect()
            };
            let (own, mirror) = (floats(own)?, floats(mirror)?);
            if own.is_empty() || own.len() != mirror.len() {
                return Err(bad(format!(
                    "embedding widths {} and {} (mirror) differ or are zero",
                    own.len(),
                    mirror.len()
                )));
            }
            if out.width == 0 {
                out.width = own.len();
            } else if own.len() != out.width {
                return Err(bad(format!(
                    "{}-d embedding where earlier lines are {}-d",
                    own.len(),
                    out.width
                )));
            }
            let target =
                unit_mean(&own, &mirror).ok_or_else(|| bad("zero embedding".to_string()))?;
            out.targets.insert(face_key(Path::new(face)), target);
        }
        Ok(out)
    }

    /// Embedding width (0 when the file held none).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Faces with a target.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether no face has a target.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Lines the teacher marked as unreadable.
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// The target of one file, if the teacher embedded it.
    pub fn target(&self, file: &Path) -> Option<&[f32]> {
        self.targets.get(&face_key(file)).map(Vec::as_slice)
    }

    /// The targets of `files`, row after row, for a student of width
    /// `student`; every file must have one.
    pub fn targets_for(&self, files: &[PathBuf], student: usize) -> Result<Vec<f32>, TeacherError> {
        if self.width != student {
            return Err(TeacherError::Width {
                teacher: self.width,
                student,
            });
        }
        let mut rows = Vec::with_capacity(files.len() * student);
        let mut missing = Vec::new();
        for f in files {
            match self.targets.get(&face_key(f)) {
                Some(t) => rows.extend_from_slice(t),
                None => missing.push(f),
            }
        }
        match missing.first() {
            Some(first) => Err(TeacherError::Missing {
                missing: missing.len(),
                first: (*first).clone(),
            }),
            None => Ok(rows),
        }
    }
}

/// The rows `indices` of a `width`-wide target table as a tensor.
pub fn targets_tensor(
    table: &[f32],
    width: usize,
    indices: &[usize],
    device: &Device,
) -> Tensor<2> {
    let mut rows = Vec::with_capacity(indices.len() * width);
    for &i in indices {
        rows.extend_from_slice(&table[i * width..(i + 1) * width]);
    }
    Tensor::from_data(TensorData::new(rows, [indices.len(), width]), device)
}

/// `weight · mean(1 − cos(student_i, teacher_i))`; `teacher` rows are unit length.
pub fn distillation_loss(student: Tensor<2>, teacher: Tensor<2>, weight: f32) -> Tensor<1> {
    let cos = (unit_rows(student) * teacher).sum_dim(1);
    (cos.neg() + 1.0).mean() * weight
}

/// Each row divided by its L2 norm (zero rows stay zero).
fn unit_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `weight · mean_{i≠j} (ŝ_i·ŝ_j − t_i·t_j)²`: the student's in-batch cosine
/// matrix (rows `ŝ` normalised) against the teacher's (`teacher` rows unit
/// length). The diagonal is 1 on both sides and is left out of the mean.
pub fn relational_loss(student: Tensor<2>, teacher: Tensor<2>, weight: f32) -> Tensor<1> {
    let [n, _] = student.dims();
    let s = unit_rows(student);
    let gram_s = s.clone().matmul(s.transpose());
    let gram_t = teacher.clone().matmul(teacher.transpose());
    let pairs = (n * n.saturating_sub(1)).max(1) as f32;
    (gram_s - gram_t).powi_scalar(2).sum() * (weight / pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(lines: &[&str]) -> Result<TeacherEmbeddings, TeacherError> {
        TeacherEmbeddings::parse(&lines.join("\n"), Path::new("t.tsv"))
    }

    #[test]
    fn faces_are_matched_by_root_identity_and_file() {
        assert_eq!(
            face_key(Path::new("/data/celeba/wild_112/101/000123.jpg")),
            "wild_112/101/000123.jpg"
        );
        assert_eq!(
            face_key(Path::new("../shared/data/celeba/wild_112/101/000123.jpg")),
            "wild_112/101/000123.jpg"
        );
    }

    #[test]
    fn targets_are_the_unit_mean_of_face_and_mirror() {
        let t = file(&[
            "/x/r/a/1.jpg\t3 0\t1 0",
            "/x/r/a/2.jpg\terror\tno face",
            "",
            "/x/r/b/1.jpg\t0 2\t2 0",
        ])
        .expect("valid");
        assert_eq!((t.width(), t.len(), t.unreadable()), (2, 2, 1));
        let files = [PathBuf::from("r/b/1.jpg"), PathBuf::from("../y/r/a/1.jpg")];
        let rows = t.targets_for(&files, 2).expect("all present");
        let h = std::f32::consts::FRAC_1_SQRT_2;
        let want = [h, h, 1.0, 0.0];
        assert!(
            rows.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{rows:?}"
        );
    }

    #[test]
    fn damaged_lines_are_refused_with_their_number() {
        let line_of = |r: Result<TeacherEmbeddings, TeacherError>| match r {
            Err(TeacherError::Line { line, .. }) => line,
            other => panic!("expected a line error, got {other:?}"),
        };
        assert_eq!(line_of(file(&["a/b/c\t1 2\t1 2", "a/b/d\t1 2"])), 2);
        assert_eq!(line_of(file(&["a/b/c\t1 x\t1 2"])), 1);
        assert_eq!(line_of(file(&["a/b/c\t1 NaN\t1 2"])), 1);
        assert_eq!(line_of(file(&["a/b/c\t1 2\t1 2 3"])), 1);
        assert_eq!(
            line_of(file(&["a/b/c\t1 2\t1 2", "a/b/d\t1 2 3\t1 2 3"])),
            2
        );
        assert_eq!(line_of(file(&["a/b/c\t1 0\t-1 0"])), 1);
    }

    #[test]
    fn missing_faces_and_other_widths_are_named() {
        let t = file(&["/x/r/a/1.jpg\t1 0\t1 0"]).expect("valid");
        match t.targets_for(&[PathBuf::from("r/a/1.jpg"), PathBuf::from("r/a/9.jpg")], 2) {
            Err(TeacherError::Missing { missing: 1, first }) => {
                assert_eq!(first, PathBuf::from("r/a/9.jpg"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            t.targets_for(&[PathBuf::from("r/a/1.jpg")], 3),
            Err(TeacherError::Width {
                teacher: 2,
                student: 3
            })
        ));
    }

    #[test]
    fn loss_is_the_weighted_mean_cosine_distance() {
        let device = Device::flex();
        let student = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 0.0, 5.0, -1.0, 0.0], [3, 2]),
            &device,
        );
        // Aligned (0), orthogonal (1), opposite (2): mean 1, times the weight.
        let teacher = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0], [3, 2]),
            &device,
        );
        let loss = distillation_loss(student, teacher, 3.0).into_scalar::<f32>();
        assert!((loss - 3.0).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn relational_loss_matches_a_hand_computed_cosine_matrix() {
        let device = Device::flex();
        // Student rows (unnormalised): (2,0), (0,3), (1,1)/√2·√2 → cosines
        // s01 = 0, s02 = 1/√2, s12 = 1/√2.
        let student = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 0.0, 3.0, 1.0, 1.0], [3, 2]),
            &device,
        );
        // Teacher rows: (1,0), (1,0), (0,1) → t01 = 1, t02 = 0, t12 = 0.
        let teacher = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0], [3, 2]),
            &device,
        );
        let h = std::f32::consts::FRAC_1_SQRT_2;
        // Each off-diagonal pair appears twice; 6 ordered pairs in all.
        let want = 2.0 * (1.0 + h * h + h * h) / 6.0 * 4.0;
        let loss = relational_loss(student, teacher, 4.0).into_scalar::<f32>();
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
    }

    #[test]
    fn relational_loss_is_zero_when_the_student_is_the_teacher_scaled() {
        let device = Device::flex();
        let t = vec![0.6f32, 0.8, 1.0, 0.0, 0.0, -1.0];
        let teacher = Tensor::<2>::from_data(TensorData::new(t.clone(), [3, 2]), &device);
        let student = Tensor::<2>::from_data(
            TensorData::new(t.iter().map(|v| v * 7.0).collect::<Vec<_>>(), [3, 2]),
            &device,
        );
        let loss = relational_loss(student, teacher, 10.0).into_scalar::<f32>();
        assert!(loss.abs() < 1e-6, "{loss}");
    }

    #[test]
    fn rows_are_gathered_by_index() {
        let device = Device::flex();
        let t = targets_tensor(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 2, &[2, 0], &device);
        let v = t.into_data().try_to_vec::<f32>().expect("f32");
        assert_eq!(v, vec![4.0, 5.0, 0.0, 1.0]);
    }
}
