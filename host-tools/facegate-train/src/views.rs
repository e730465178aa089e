//! A consistent teacher: augmented views of the training faces, each
//! embedded by the teacher, shown to the student exactly as the teacher saw
//! them.
//!
//! Distilling toward the teacher's embedding of the *clean* face while the
//! student sees a grey, side-lit or blurred copy asks the student for
//! something the teacher never said (Beyer et al., "Knowledge distillation: A
//! good teacher is patient and consistent", CVPR 2022). Running the teacher
//! beside training is too slow on a CPU, so a fixed number of views per face
//! are rendered once ([`write_views`], `facegate train-views`), embedded by
//! the teacher like any face (`scripts/build-teacher-views.sh`), and during
//! training a share of the samples shows one of them with its own target
//! instead of the freshly augmented face ([`ViewSet`]).

use std::path::{Path, PathBuf};

use facegate_eval::faces::{FACE_SIZE, Face};
use indicatif::ParallelProgressIterator;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{Augment, DecodedFaces, FACE_BYTES, progress_bar, render};
use crate::distill::{TeacherEmbeddings, TeacherError, face_key};

/// Most views per face a run may ask for.
pub const MAX_VIEWS_PER_FACE: usize = 64;

/// The teacher's views of a run (`[distill.views]` in a recipe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewSettings {
    /// Where [`write_views`] put them.
    pub dir: PathBuf,
    /// The teacher's embeddings of the views (the format of
    /// [`crate::distill`]).
    pub teacher: PathBuf,
    /// Views per face to use (the first ones: `.v0` …).
    pub per_face: usize,
    /// Share of the samples that show a view instead of the augmented face.
    pub share: f32,
}

/// Errors writing or reading views.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// A face or a view file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The teacher file of the views is unusable.
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    /// Settings out of range.
    #[error("views: {0}")]
    Settings(String),
    /// Not one view has both a file and a teacher target.
    #[error(
        "none of the {expected} views under {dir} has a teacher embedding: render them with \
         `facegate train-views` and embed them with scripts/build-teacher-views.sh"
    )]
    NoneUsable {
        /// Views looked for.
        expected: usize,
        /// The views folder.
        dir: PathBuf,
    },
}

/// The file of view `j` of `face`: `<dir>/<root>/<identity>/<stem>.v<j>.png`,
/// so the teacher's `<root>/<identity>/<file>` key tells views apart.
pub fn view_path(dir: &Path, face: &Path, j: usize) -> PathBuf {
    let key = face_key(face);
    let mut parts: Vec<&str> = key.split('/').collect();
    let file = parts.pop().unwrap_or_default();
    let stem = Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned());
    let mut out = dir.to_path_buf();
    out.extend(parts);
    out.join(format!("{stem}.v{j}.png"))
}

/// The random stream of view `j` of `face`: fixed by the face's key, not its
/// position in a listing, so adding faces or views later keeps the old ones.
fn view_rng(seed: u64, face: &Path, j: usize) -> ChaCha8Rng {
    // FNV-1a: stable across platforms and Rust versions, unlike `Hash`.
    let key = face_key(face);
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ hash);
    rng.set_stream(j as u64);
    rng
}

/// How much of another person a mixed view holds: 20–45 %, so the face
/// the view is filed under (and whose class it keeps) stays the larger part.
pub const MIX_WEIGHT: std::ops::Range<f32> = 0.2..0.45;

/// Renders views `0..per_face` of every face in `files` under `augment` into
/// `dir` (existing views are rewritten identically). A share `mix` of the
/// views is blended with another person's face ([`MIX_WEIGHT`]): function
/// matching (Beyer et al.), inputs between faces whose teacher embedding
/// the student must reproduce. With `mix` 0 the views are those of earlier
/// releases; raising it changes only the views it picks. Returns the number
/// of views written.
pub fn write_views(
    files: &[PathBuf],
    per_face: usize,
    augment: &Augment,
    seed: u64,
    mix: f32,
    dir: &Path,
    progress: bool,
) -> Result<usize, ViewError> {
    if per_face == 0 || per_face > MAX_VIEWS_PER_FACE {
        return Err(ViewError::Settings(format!(
            "{per_face} views per face; use 1 to {MAX_VIEWS_PER_FACE}"
        )));
    }
    if !(0.0..=1.0).contains(&mix) {
        return Err(ViewError::Settings(format!(
            "mix {mix}: a share of the views, 0 to 1"
        )));
    }
    let load = |face: &PathBuf| {
        Face::load(face)
            .map(|f| f.rgb)
            .map_err(|e| ViewError::File {
                path: face.clone(),
                reason: e.to_string(),
            })
    };
    let bar = progress_bar(files.len(), "rendering views of faces", progress);
    files
        .par_iter()
        .progress_with(bar.clone())
        .try_for_each(|face| {
            let rgb = load(face)?;
            for j in 0..per_face {
                let mut rng = view_rng(seed, face, j);
                let mut view = render(&rgb, augment, &mut rng);
                // Drawn after the render, so unmixed views do not change.
                if rng.random::<f32>() < mix
                    && let Some(other) = partner(files, face, &mut rng)
                {
                    let weight = rng.random_range(MIX_WEIGHT);
                    blend(&mut view, &load(other)?, weight);
                }
                let path = view_path(dir, face, j);
                let fail = |reason: String| ViewError::File {
                    path: path.clone(),
                    reason,
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
                }
                image::save_buffer(
                    &path,
                    &view,
                    FACE_SIZE,
                    FACE_SIZE,
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(|e| fail(e.to_string()))?;
            }
            Ok::<(), ViewError>(())
        })?;
    bar.finish_and_clear();
    Ok(files.len() * per_face)
}

/// Another person's face for a mixed view (a face of another identity
/// folder), or `None` when every face is the same person's.
fn partner<'a>(files: &'a [PathBuf], face: &Path, rng: &mut ChaCha8Rng) -> Option<&'a PathBuf> {
    let start = rng.random_range(0..files.len());
    // Identity folders hold a few faces each: the next other person is near.
    (0..files.len())
        .map(|k| &files[(start + k) % files.len()])
        .find(|f| f.parent() != face.parent())
}

/// `view ← (1 − weight) · view + weight · other`, per byte.
fn blend(view: &mut [u8], other: &[u8], weight: f32) {
    for (v, &o) in view.iter_mut().zip(other) {
        let mixed = (1.0 - weight) * f32::from(*v) + weight * f32::from(o);
        // Between two bytes, so in 0..=255.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let byte = mixed.round() as u8;
        *v = byte;
    }
}

/// The views of a decoded training set and their teacher targets, in the
/// set's order: view `j` of face `i` is slot `i · per_face + j`.
#[derive(Clone, Debug, Default)]
pub struct ViewSet {
    per_face: usize,
    share: f32,
    pixels: Vec<u8>,
    usable: Vec<bool>,
    targets: Vec<f32>,
}

impl ViewSet {
    /// Decodes the views of every face of `set` that has a file and a
    /// teacher target; the others are left out (those faces are then shown
    /// only augmented). Fails when none is usable.
    pub fn load(
        set: &DecodedFaces,
        settings: &ViewSettings,
        width: usize,
        progress: bool,
    ) -> Result<Self, ViewError> {
        let k = settings.per_face;
        if k == 0 || k > MAX_VIEWS_PER_FACE || !(0.0..=1.0).contains(&settings.share) {
            return Err(ViewError::Settings(format!(
                "per_face {k} (1 to {MAX_VIEWS_PER_FACE}) and share {} (0 to 1)",
                settings.share
            )));
        }
        let teacher = TeacherEmbeddings::load(&settings.teacher)?;
        if teacher.width() != width {
            return Err(TeacherError::Width {
                teacher: teacher.width(),
                student: width,
            }
            .into());
        }
        let slots: Vec<PathBuf> = set
            .files
            .iter()
            .flat_map(|f| (0..k).map(move |j| view_path(&settings.dir, f, j)))
            .collect();
        let bar = progress_bar(slots.len(), "decoding teacher views", progress);
        let decoded: Vec<Option<(Vec<u8>, Vec<f32>)>> = slots
            .par_iter()
            .progress_with(bar.clone())
            .map(|p| {
                let target = teacher.target(p)?;
                let face = Face::load(p).ok()?;
                Some((face.rgb, target.to_vec()))
            })
            .collect();
        bar.finish_and_clear();
        let mut out = Self {
            per_face: k,
            share: settings.share,
            pixels: vec![0; slots.len() * FACE_BYTES],
            usable: vec![false; slots.len()],
            targets: vec![0.0; slots.len() * width],
        };
        for (s, d) in decoded.into_iter().enumerate() {
            if let Some((rgb, target)) = d {
                out.pixels[s * FACE_BYTES..(s + 1) * FACE_BYTES].copy_from_slice(&rgb);
                out.targets[s * width..(s + 1) * width].copy_from_slice(&target);
                out.usable[s] = true;
            }
        }
        if out.usable() == 0 {
            return Err(ViewError::NoneUsable {
                expected: slots.len(),
                dir: settings.dir.clone(),
            });
        }
        Ok(out)
    }

    /// Views with a file and a target.
    pub fn usable(&self) -> usize {
        self.usable.iter().filter(|&&u| u).count()
    }

    /// Views looked for (faces × views per face).
    pub fn slots(&self) -> usize {
        self.usable.len()
    }

    /// The teacher targets, one row per slot (zeros where unusable).
    pub fn targets(&self) -> &[f32] {
        &self.targets
    }

    /// Which view sample `face` shows, if any: `rng` draws whether it is
    /// one of the [`ViewSettings::share`] and which one.
    pub fn pick(&self, face: usize, rng: &mut impl Rng) -> Option<usize> {
        if self.per_face == 0 || !rng.random_bool(f64::from(self.share)) {
            return None;
        }
        let slot = face * self.per_face + rng.random_range(0..self.per_face);
        self.usable
            .get(slot)
            .copied()
            .unwrap_or(false)
            .then_some(slot)
    }

    /// The pixels of view `slot`.
    pub fn view(&self, slot: usize) -> &[u8] {
        &self.pixels[slot * FACE_BYTES..(slot + 1) * FACE_BYTES]
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use burn::tensor::Device;

    use super::*;
    use crate::data::{batch, normalise_chw};

    /// Two faces on disk, their views, and a teacher file that embeds all
    /// views but `missing`: view `j` of face `i` gets the target `e_(2i+j)`.
    fn fixture(missing: Option<(usize, usize)>) -> (tempfile::TempDir, DecodedFaces, ViewSettings) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut set = DecodedFaces::default();
        for i in 0..2 {
            let rgb: Vec<u8> = (0..FACE_BYTES).map(|p| (p * (i + 3) % 251) as u8).collect();
            let file = tmp.path().join(format!("root/p{i}/f.png"));
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            image::save_buffer(
                &file,
                &rgb,
                FACE_SIZE,
                FACE_SIZE,
                image::ExtendedColorType::Rgb8,
            )
            .expect("face");
            set.pixels.extend_from_slice(&rgb);
            set.labels.push(i);
            set.files.push(file);
            set.names.push(format!("p{i}"));
        }
        let dir = tmp.path().join("views");
        assert_eq!(
            write_views(&set.files, 2, &Augment::DOOR_VIEWS, 1, 0.0, &dir, false).expect("views"),
            4
        );
        let mut text = String::new();
        for (i, f) in set.files.iter().enumerate() {
            for j in 0..2 {
                if missing == Some((i, j)) {
                    continue;
                }
                let row: Vec<String> = (0..4)
                    .map(|d| if d == 2 * i + j { "1" } else { "0" }.into())
                    .collect();
                let row = row.join(" ");
                writeln!(text, "{}\t{row}\t{row}", view_path(&dir, f, j).display()).expect("text");
            }
        }
        let teacher = tmp.path().join("views.tsv");
        std::fs::write(&teacher, text).expect("teacher");
        let settings = ViewSettings {
            dir,
            teacher,
            per_face: 2,
            share: 1.0,
        };
        (tmp, set, settings)
    }

    #[test]
    fn every_sample_shows_a_view_with_its_own_target_when_the_share_is_one() {
        let (_tmp, set, settings) = fixture(None);
        let views = ViewSet::load(&set, &settings, 4, false).expect("views");
        assert_eq!((views.usable(), views.slots()), (4, 4));
        let b = batch(
            &set,
            &[0, 1, 1, 0],
            Some((&Augment::NONE, 3, 0)),
            Some(&views),
            &Device::flex(),
        );
        let pixels = b.faces.into_data().try_to_vec::<f32>().expect("pixels");
        // Normalised CHW floats per face: as many as the face's bytes.
        let size = FACE_BYTES;
        for (row, (&face, &target)) in [0, 1, 1, 0].iter().zip(&b.targets).enumerate() {
            // Targets past the faces' rows are views; a view is one of its own face's.
            let slot = target.checked_sub(set.len()).expect("a view");
            assert_eq!(slot / 2, face);
            // The view is shown as stored (no augmentation asked for).
            let mut expect = vec![0.0; size];
            normalise_chw(views.view(slot), &mut expect);
            assert_eq!(&pixels[row * size..(row + 1) * size], &expect[..]);
            // Its target row is e_slot.
            let t = &views.targets()[slot * 4..slot * 4 + 4];
            assert_eq!(t.iter().position(|&x| x > 0.5), Some(slot), "{t:?}");
        }
        // A view keeps its face's class.
        assert_eq!(b.labels, vec![0, 1, 1, 0]);
    }

    #[test]
    fn a_view_the_teacher_did_not_embed_is_never_shown() {
        let (_tmp, set, settings) = fixture(Some((1, 0)));
        let views = ViewSet::load(&set, &settings, 4, false).expect("views");
        assert_eq!(views.usable(), 3);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let picks: Vec<Option<usize>> = (0..200).map(|_| views.pick(1, &mut rng)).collect();
        assert!(picks.contains(&Some(3)));
        assert!(!picks.contains(&Some(2)));
        // Face 1 falls back to itself when the missing view is drawn.
        assert!(picks.contains(&None));
    }

    #[test]
    fn views_without_any_teacher_embedding_are_refused() {
        let (_tmp, set, mut settings) = fixture(None);
        std::fs::write(&settings.teacher, "").expect("empty teacher");
        assert!(matches!(
            ViewSet::load(&set, &settings, 4, false),
            Err(ViewError::Teacher(TeacherError::Width { .. }))
        ));
        settings.share = 1.5;
        assert!(matches!(
            ViewSet::load(&set, &settings, 4, false),
            Err(ViewError::Settings(_))
        ));
    }

    #[test]
    fn a_view_keeps_root_identity_and_stem_and_says_which_view_it_is() {
        let p = view_path(
            Path::new("runs/views"),
            Path::new("/data/celeba/wild_112/1042/000123.jpg"),
            3,
        );
        assert_eq!(p, PathBuf::from("runs/views/wild_112/1042/000123.v3.png"));
        assert_eq!(face_key(&p), "wild_112/1042/000123.v3.png");
    }

    #[test]
    fn a_view_depends_on_the_face_and_the_view_not_on_the_listing() {
        let a = Path::new("x/wild_112/1/a.jpg");
        let b = Path::new("y/wild_112/1/b.jpg");
        let draw = |f: &Path, j| view_rng(7, f, j).random::<u64>();
        assert_eq!(draw(a, 0), draw(Path::new("elsewhere/wild_112/1/a.jpg"), 0));
        assert_ne!(draw(a, 0), draw(a, 1));
        assert_ne!(draw(a, 0), draw(b, 0));
    }

    #[test]
    fn mixed_views_blend_in_another_person_and_leave_the_rest_unchanged() {
        let (tmp, set, settings) = fixture(None);
        let read = |p: &Path| image::open(p).expect("view").to_rgb8().into_raw();
        let mixed = tmp.path().join("mixed");
        write_views(&set.files, 2, &Augment::DOOR_VIEWS, 1, 1.0, &mixed, false).expect("views");
        for (i, face) in set.files.iter().enumerate() {
            let other = read(&set.files[1 - i]);
            for j in 0..2 {
                let plain = read(&view_path(&settings.dir, face, j));
                let blended = read(&view_path(&mixed, face, j));
                assert_ne!(plain, blended, "view {j} of face {i} is mixed");
                // Each byte lies between the plain view's and the other
                // person's, nearer the plain view (the weight is below ½).
                for ((&v, &o), &m) in plain.iter().zip(&other).zip(&blended) {
                    let (lo, hi) = (v.min(o), v.max(o));
                    assert!((lo..=hi).contains(&m), "{m} outside {lo}..={hi}");
                    assert!(m.abs_diff(v) <= m.abs_diff(o) + 1);
                }
            }
        }
        // No share mixes nothing; a share outside 0..=1 is refused.
        let none = tmp.path().join("none");
        write_views(&set.files, 2, &Augment::DOOR_VIEWS, 1, 0.0, &none, false).expect("views");
        for f in &set.files {
            assert_eq!(
                read(&view_path(&none, f, 1)),
                read(&view_path(&settings.dir, f, 1))
            );
        }
        assert!(matches!(
            write_views(&set.files, 2, &Augment::DOOR_VIEWS, 1, 1.5, &none, false),
            Err(ViewError::Settings(_))
        ));
    }
}
