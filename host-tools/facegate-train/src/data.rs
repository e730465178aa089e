//! Training data: identity-per-folder face trees, decoded once into memory,
//! augmented deterministically under a seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use facegate_eval::faces::{FACE_SIZE, Face};
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::views::ViewSet;

/// Side of the faces handed to the network.
pub const SIDE: usize = FACE_SIZE as usize;
/// Bytes of one decoded face (RGB).
pub const FACE_BYTES: usize = SIDE * SIDE * 3;

/// Errors reading a data tree.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A root could not be listed.
    #[error("cannot read the face folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing usable was found.
    #[error("no identity with at least {min} images under {roots}")]
    Empty {
        /// The roots, joined.
        roots: String,
        /// The filter.
        min: usize,
    },
}

/// One person: a folder name and its images (from every root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Folder name (the identity's key across roots).
    pub name: String,
    /// Image files.
    pub files: Vec<PathBuf>,
}

/// Identities gathered from one or more identity-per-folder roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaceFolders {
    /// Identities, sorted by name.
    pub identities: Vec<Identity>,
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("jpg" | "jpeg" | "png" | "pgm" | "ppm" | "bmp")
    )
}

impl FaceFolders {
    /// Scans roots; folders of the same name in several roots are one identity.
    pub fn scan(roots: &[PathBuf]) -> Result<Self, DataError> {
        let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataError::Io { path, source }
        };
        for root in roots {
            for entry in std::fs::read_dir(root).map_err(io(root))? {
                let entry = entry.map_err(io(root))?;
                let dir = entry.path();
                if !dir.is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(io(&dir))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && is_image(p))
                    .collect();
                files.sort();
                by_name.entry(name).or_default().extend(files);
            }
        }
        Ok(Self {
            identities: by_name
                .into_iter()
                .filter(|(_, f)| !f.is_empty())
                .map(|(name, files)| Identity { name, files })
                .collect(),
        })
    }

    /// Keeps identities with at least `min` images.
    pub fn with_min_images(mut self, min: usize) -> Self {
        self.identities.retain(|i| i.files.len() >= min);
        self
    }

    /// Splits identities with at least `min` images from the files of those
    /// with fewer (which can still serve as unlabelled teacher targets).
    pub fn split_min_images(self, min: usize) -> (Self, Vec<PathBuf>) {
        let (kept, small): (Vec<Identity>, Vec<Identity>) = self
            .identities
            .into_iter()
            .partition(|i| i.files.len() >= min);
        (
            Self { identities: kept },
            small.into_iter().flat_map(|i| i.files).collect(),
        )
    }

    /// Keeps the first `n` identities (by name) and at most `per` images each: tiny slices for tests.
    pub fn truncated(mut self, n: usize, per: usize) -> Self {
        self.identities.truncate(n);
        for i in &mut self.identities {
            i.files.truncate(per);
        }
        self
    }

    /// Total images.
    pub fn images(&self) -> usize {
        self.identities.iter().map(|i| i.files.len()).sum()
    }

    /// Splits off a validation set of whole identities (about `fraction` of
    /// them, chosen under `seed`): no person is in both.
    pub fn split(self, fraction: f64, seed: u64) -> (Self, Self) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5917);
        let (mut train, mut val) = (Self::default(), Self::default());
        for id in self.identities {
            if rng.random_bool(fraction.clamp(0.0, 1.0)) {
                val.identities.push(id);
            } else {
                train.identities.push(id);
            }
        }
        (train, val)
    }
}

/// Every image file below `roots` (at any depth), sorted: faces without
/// identity labels.
pub fn scan_unlabelled(roots: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        let io = |source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.is_file() && is_image(&path) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for root in roots {
        walk(root, &mut out)?;
    }
    out.sort();
    Ok(out)
}

/// The label of a face that has no identity: it trains toward its teacher
/// target only, never through the classification head.
pub const UNLABELLED: usize = usize::MAX;

/// A progress bar over `len` items named `what` (hidden unless `show`).
pub(crate) fn progress_bar(len: usize, what: &str, show: bool) -> ProgressBar {
    let bar = if show {
        ProgressBar::new(len as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn decode_files(files: Vec<&PathBuf>, progress: bool) -> Vec<(&PathBuf, Result<Face, String>)> {
    let bar = progress_bar(files.len(), "decoding faces", progress);
    let decoded = files
        .into_par_iter()
        .progress_with(bar.clone())
        .map(|f| (f, Face::load(f).map_err(|e| e.to_string())))
        .collect();
    bar.finish_and_clear();
    decoded
}

/// Faces decoded to 112×112 RGB bytes, kept in memory, with class labels.
#[derive(Clone, Debug, Default)]
pub struct DecodedFaces {
    /// `FACE_BYTES` per face.
    pub pixels: Vec<u8>,
    /// Class of each face (index into `names`).
    pub labels: Vec<usize>,
    /// The file of each face.
    pub files: Vec<PathBuf>,
    /// Identity names, by class.
    pub names: Vec<String>,
    /// Files that could not be decoded, with the reason (skipped, never fatal).
    pub skipped: Vec<(PathBuf, String)>,
}

impl DecodedFaces {
    /// Decodes every image in parallel; identities left with no image are dropped.
    pub fn decode(folders: &FaceFolders, progress: bool) -> Self {
        let (classes, files): (Vec<usize>, Vec<&PathBuf>) = folders
            .identities
            .iter()
            .enumerate()
            .flat_map(|(c, id)| id.files.iter().map(move |f| (c, f)))
            .unzip();
        let decoded = decode_files(files, progress);
        let mut out = Self::default();
        let mut class_of: BTreeMap<usize, usize> = BTreeMap::new();
        for (c, (f, r)) in classes.into_iter().zip(decoded) {
            match r {
                Ok(face) => {
                    let next = class_of.len();
                    let class = *class_of.entry(c).or_insert(next);
                    if class == out.names.len() {
                        out.names.push(folders.identities[c].name.clone());
                    }
                    out.pixels.extend_from_slice(&face.rgb);
                    out.labels.push(class);
                    out.files.push(f.clone());
                }
                Err(e) => out.skipped.push((f.clone(), e)),
            }
        }
        out
    }

    /// Decodes `files` and appends them as [`UNLABELLED`] faces.
    pub fn append_unlabelled(&mut self, files: &[PathBuf], progress: bool) {
        for (f, r) in decode_files(files.iter().collect(), progress) {
            match r {
                Ok(face) => {
                    self.pixels.extend_from_slice(&face.rgb);
                    self.labels.push(UNLABELLED);
                    self.files.push(f.clone());
                }
                Err(e) => self.skipped.push((f.clone(), e)),
            }
        }
    }

    /// Faces with an identity label.
    pub fn labelled(&self) -> usize {
        self.labels.iter().filter(|&&l| l != UNLABELLED).count()
    }

    /// Number of faces.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no face.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.names.len()
    }

    /// The bytes of face `i`.
    pub fn face(&self, i: usize) -> &[u8] {
        &self.pixels[i * FACE_BYTES..(i + 1) * FACE_BYTES]
    }
}

/// Augmentation settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Mirror half of the faces.
    pub flip: bool,
    /// Scale jitter: the face is zoomed by a factor in `[1 − s, 1 + s]`.
    pub scale: f32,
    /// Shift jitter in pixels, each axis in `[−t, t]`.
    pub shift: f32,
    /// Brightness jitter, added in `[−b, b]` (0–255 scale).
    pub brightness: f32,
    /// Contrast jitter, a factor in `[1 − c, 1 + c]`.
    pub contrast: f32,
    /// Probability of turning a face grey.
    pub grey: f32,
    /// Probability of softening a face: shrunk to a random side in
    /// [`LOW_RES_SIDES`] and scaled back up. CelebA's `align10k` faces are
    /// upsampled from ~89 px while LFW's are sharp; this teaches the net to
    /// ignore the difference.
    #[serde(default)]
    pub low_res: f32,
    /// Probability of hiding a random rectangle (2–15 % of the face) behind a
    /// flat patch: robustness to glasses, hands and scarves.
    #[serde(default)]
    pub erase: f32,
    /// Probability of light from one direction: brightness falls linearly
    /// across the face, from 100–140 % on the lit side toward 15–80 % on
    /// the other (both reached across the diagonal), the direction anywhere
    /// around the face. A door's lamp or a
    /// window beside it lights faces like this.
    #[serde(default)]
    pub side_light: f32,
}

/// The sides a softened face is shrunk to (see [`Augment::low_res`]).
pub const LOW_RES_SIDES: std::ops::RangeInclusive<usize> = 40..=96;

impl Default for Augment {
    fn default() -> Self {
        Self {
            flip: true,
            scale: 0.06,
            shift: 4.0,
            brightness: 20.0,
            contrast: 0.2,
            grey: 0.1,
            low_res: 0.0,
            erase: 0.0,
            side_light: 0.0,
        }
    }
}

impl Augment {
    /// No augmentation (evaluation).
    pub const NONE: Self = Self {
        flip: false,
        scale: 0.0,
        shift: 0.0,
        brightness: 0.0,
        contrast: 0.0,
        grey: 0.0,
        low_res: 0.0,
        erase: 0.0,
        side_light: 0.0,
    };

    /// The views a teacher is shown beside the student
    /// ([`crate::views`]): what a door's camera does to a face — light from
    /// one side, grey (infrared) pictures, soft low-resolution faces,
    /// occlusion, imprecise alignment. No mirroring: the teacher's target is
    /// already the mean of a view and its mirror.
    pub const DOOR_VIEWS: Self = Self {
        flip: false,
        scale: 0.1,
        shift: 6.0,
        brightness: 40.0,
        contrast: 0.4,
        grey: 0.35,
        low_res: 0.35,
        erase: 0.25,
        side_light: 0.5,
    };

    /// Only the mirror of `self`: a teacher's view is shown as it was
    /// embedded (or mirrored, which its target already covers).
    pub fn flip_only(&self) -> Self {
        Self {
            flip: self.flip,
            ..Self::NONE
        }
    }
}

/// Normalises 8-bit RGB HWC bytes to the network's CHW input, `(x − 127.5) / 128`.
pub fn normalise_chw(rgb: &[u8], out: &mut [f32]) {
    let plane = SIDE * SIDE;
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) - 127.5) / 128.0;
        }
    }
}

/// One augmented face as normalised CHW floats; `rng` decides everything,
/// so a seed fixes the result.
pub fn augment(rgb: &[u8], a: &Augment, rng: &mut impl Rng, out: &mut [f32]) {
    let flip = a.flip && rng.random_bool(0.5);
    let zoom = 1.0
        + if a.scale > 0.0 {
            rng.random_range(-a.scale..=a.scale)
        } else {
            0.0
        };
    let (dx, dy) = if a.shift > 0.0 {
        (
            rng.random_range(-a.shift..=a.shift),
            rng.random_range(-a.shift..=a.shift),
        )
    } else {
        (0.0, 0.0)
    };
    let bright = if a.brightness > 0.0 {
        rng.random_range(-a.brightness..=a.brightness)
    } else {
        0.0
    };
    let contrast = 1.0
        + if a.contrast > 0.0 {
            rng.random_range(-a.contrast..=a.contrast)
        } else {
            0.0
        };
    let grey = a.grey > 0.0 && rng.random_bool(f64::from(a.grey));
    // Drawn after the older settings, and only when enabled, so a recipe
    // without them augments exactly as before (resumed runs stay reproducible).
    let softened;
    let rgb = if a.low_res > 0.0 && rng.random_bool(f64::from(a.low_res)) {
        softened = soften(rgb, rng.random_range(LOW_RES_SIDES));
        &softened[..]
    } else {
        rgb
    };
    let erase = (a.erase > 0.0 && rng.random_bool(f64::from(a.erase))).then(|| {
        let area = rng.random_range(0.02f32..=0.15) * (SIDE * SIDE) as f32;
        let aspect = rng.random_range(0.5f32..=2.0);
        let w = ((area * aspect).sqrt() as usize).clamp(1, SIDE);
        let h = ((area / aspect).sqrt() as usize).clamp(1, SIDE);
        let (x, y) = (
            rng.random_range(0..=SIDE - w),
            rng.random_range(0..=SIDE - h),
        );
        let fill = rng.random_range(-1.0f32..=1.0);
        (x..x + w, y..y + h, fill)
    });
    // Gain along a unit direction: `lit` at the side the light comes from,
    // `dark` at the opposite one.
    let light = (a.side_light > 0.0 && rng.random_bool(f64::from(a.side_light))).then(|| {
        let angle = rng.random_range(0.0f32..std::f32::consts::TAU);
        let lit = rng.random_range(1.0f32..=1.4);
        let dark = rng.random_range(0.15f32..=0.8);
        (angle.cos(), angle.sin(), lit, dark)
    });
    let plane = SIDE * SIDE;
    let centre = (SIDE as f32 - 1.0) / 2.0;
    let max = SIDE as f32 - 1.0;
    for v in 0..SIDE {
        for u in 0..SIDE {
            let uu = if flip { SIDE - 1 - u } else { u };
            // Inverse map of the output pixel into the source (bilinear, edges clamped).
            let sx = ((uu as f32 - centre) / zoom + centre + dx).clamp(0.0, max);
            let sy = ((v as f32 - centre) / zoom + centre + dy).clamp(0.0, max);
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(SIDE - 1), (y0 + 1).min(SIDE - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let mut px = [0.0f32; 3];
            for (c, p) in px.iter_mut().enumerate() {
                let at = |x: usize, y: usize| f32::from(rgb[(y * SIDE + x) * 3 + c]);
                *p = (at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx) * (1.0 - fy)
                    + (at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx) * fy;
            }
            if grey {
                let l = 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];
                px = [l; 3];
            }
            if let Some((cx, cy, lit, dark)) = light {
                // Position along the light's direction, in units of the face's diagonal:
                // 0 and 1 are reached at the corners of a diagonal light, 0.15 and
                // 0.85 at the edges of a light from straight left or above.
                let along = ((u as f32 - centre) * cx + (v as f32 - centre) * cy) / SIDE as f32
                    * std::f32::consts::SQRT_2;
                let t = (0.5 + along * 0.5).clamp(0.0, 1.0);
                let gain = lit + (dark - lit) * t;
                px.iter_mut().for_each(|p| *p *= gain);
            }
            for (c, p) in px.iter().enumerate() {
                let x = ((p - 128.0) * contrast + 128.0 + bright).clamp(0.0, 255.0);
                out[c * plane + v * SIDE + u] = (x - 127.5) / 128.0;
            }
        }
    }
    if let Some((xs, ys, fill)) = erase {
        for c in 0..3 {
            for v in ys.clone() {
                out[c * plane + v * SIDE + xs.start..c * plane + v * SIDE + xs.end].fill(fill);
            }
        }
    }
}

/// One augmented face as 8-bit RGB bytes (HWC, like a decoded face): what
/// [`augment`] hands the network, before normalisation. Views for a teacher
/// are rendered with it, so the student can later be shown the very picture
/// the teacher embedded.
pub fn render(rgb: &[u8], a: &Augment, rng: &mut impl Rng) -> Vec<u8> {
    let plane = SIDE * SIDE;
    let mut chw = vec![0.0f32; 3 * plane];
    augment(rgb, a, rng, &mut chw);
    let mut out = vec![0u8; FACE_BYTES];
    for (i, px) in out.chunks_exact_mut(3).enumerate() {
        for (c, p) in px.iter_mut().enumerate() {
            *p = (chw[c * plane + i] * 128.0 + 127.5)
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A face shrunk to `side` × `side` by averaging boxes of pixels, then scaled
/// back to 112 × 112 bilinearly: the detail of a `side`-pixel photo.
fn soften(rgb: &[u8], side: usize) -> Vec<u8> {
    let side = side.clamp(1, SIDE);
    let bounds = |i: usize| {
        (
            i * SIDE / side,
            ((i + 1) * SIDE / side).max(i * SIDE / side + 1),
        )
    };
    let mut small = vec![0.0f32; side * side * 3];
    for y in 0..side {
        let (y0, y1) = bounds(y);
        for x in 0..side {
            let (x0, x1) = bounds(x);
            let n = ((y1 - y0) * (x1 - x0)) as f32;
            for c in 0..3 {
                let mut sum = 0.0;
                for sy in y0..y1 {
                    for sx in x0..x1 {
                        sum += f32::from(rgb[(sy * SIDE + sx) * 3 + c]);
                    }
                }
                small[(y * side + x) * 3 + c] = sum / n;
            }
        }
    }
    // Pixel centres line up: output centre u maps to (u + ½)·side/112 − ½.
    let scale = side as f32 / SIDE as f32;
    let max = (side - 1) as f32;
    let mut out = vec![0u8; FACE_BYTES];
    for v in 0..SIDE {
        let sy = ((v as f32 + 0.5) * scale - 0.5).clamp(0.0, max);
        let (y0, fy) = (sy.floor() as usize, sy - sy.floor());
        let y1 = (y0 + 1).min(side - 1);
        for u in 0..SIDE {
            let sx = ((u as f32 + 0.5) * scale - 0.5).clamp(0.0, max);
            let (x0, fx) = (sx.floor() as usize, sx - sx.floor());
            let x1 = (x0 + 1).min(side - 1);
            for c in 0..3 {
                let at = |x: usize, y: usize| small[(y * side + x) * 3 + c];
                let p = (at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx) * (1.0 - fy)
                    + (at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx) * fy;
                out[(v * SIDE + u) * 3 + c] = p.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// The random stream of one sample in one epoch: the same whatever the
/// thread that draws it.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((epoch as u64) << 32) ^ index as u64);
    rng
}

/// A batch for the network.
#[derive(Debug)]
pub struct Batch {
    /// Faces, `[n, 3, 112, 112]`.
    pub faces: Tensor<4>,
    /// Class of each face ([`UNLABELLED`] for none).
    pub labels: Vec<usize>,
    /// Row of each face's teacher target: the face's index in the set, or
    /// `set.len() + slot` when it shows the teacher's view `slot`.
    pub targets: Vec<usize>,
}

/// The faces `indices` of `set` as a batch, augmented in parallel when
/// `augment_with` is given; with `views`, a share of them show one of the
/// teacher's views instead (mirrored at most).
pub fn batch(
    set: &DecodedFaces,
    indices: &[usize],
    augment_with: Option<(&Augment, u64, usize)>,
    views: Option<&ViewSet>,
    device: &Device,
) -> Batch {
    let size = 3 * SIDE * SIDE;
    let mut data = vec![0.0f32; indices.len() * size];
    let mut targets = indices.to_vec();
    data.par_chunks_mut(size)
        .zip(indices.par_iter())
        .zip(targets.par_iter_mut())
        .for_each(|((out, &i), target)| match augment_with {
            Some((a, seed, epoch)) => {
                let mut rng = sample_rng(seed, epoch, i);
                // A separate stream decides the view, so runs without views
                // augment exactly as before.
                let slot = views.and_then(|v| {
                    v.pick(i, &mut sample_rng(seed ^ VIEW_STREAM, epoch, i))
                        .map(|s| (v, s))
                });
                match slot {
                    Some((v, s)) => {
                        augment(v.view(s), &a.flip_only(), &mut rng, out);
                        *target = set.len() + s;
                    }
                    None => augment(set.face(i), a, &mut rng, out),
                }
            }
            None => normalise_chw(set.face(i), out),
        });
    let labels = indices.iter().map(|&i| set.labels[i]).collect();
    Batch {
        faces: Tensor::from_data(
            TensorData::new(data, [indices.len(), 3, SIDE, SIDE]),
            device,
        ),
        labels,
        targets,
    }
}

/// Salt of the random stream that picks teacher views.
const VIEW_STREAM: u64 = 0x5649_4557_5321;

/// Faces from a list of files (evaluation), normalised, as one tensor.
pub fn faces_tensor(faces: &[&[u8]], device: &Device) -> Tensor<4> {
    let size = 3 * SIDE * SIDE;
    let mut data = vec![0.0f32; faces.len() * size];
    data.par_chunks_mut(size)
        .zip(faces.par_iter())
        .for_each(|(out, f)| normalise_chw(f, out));
    Tensor::from_data(TensorData::new(data, [faces.len(), 3, SIDE, SIDE]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face() -> Vec<u8> {
        (0..FACE_BYTES).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_rendered_face_without_augmentation_is_the_face() {
        let f = face();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(render(&f, &Augment::NONE, &mut rng), f);
    }

    #[test]
    fn side_light_darkens_one_side_of_a_flat_face() {
        let flat = vec![128u8; FACE_BYTES];
        let a = Augment {
            side_light: 1.0,
            ..Augment::NONE
        };
        for seed in 0..20 {
            let lit = render(&flat, &a, &mut ChaCha8Rng::seed_from_u64(seed));
            let v: Vec<f32> = lit.iter().map(|&x| f32::from(x)).collect();
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            // Gains of 1.0–1.4 and 0.15–0.8, at least 70 % of the way across
            // the face whatever the direction: 14 % of the level apart at least.
            assert!(hi - lo > 0.14 * 128.0, "seed {seed}: {lo}..{hi}");
            assert!(
                hi <= 1.4 * 128.0 + 1.0 && lo >= 0.15 * 128.0 - 1.0,
                "seed {seed}: {lo}..{hi}"
            );
        }
    }

    #[test]
    fn no_augmentation_is_plain_normalisation() {
        let f = face();
        let (mut a, mut b) = (vec![0.0; 3 * SIDE * SIDE], vec![0.0; 3 * SIDE * SIDE]);
        augment(&f, &Augment::NONE, &mut sample_rng(1, 0, 0), &mut a);
        normalise_chw(&f, &mut b);
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn augmentation_is_deterministic_under_a_seed_and_varies_with_it() {
        let f = face();
        let run = |seed, epoch, i| {
            let mut out = vec![0.0; 3 * SIDE * SIDE];
            augment(
                &f,
                &Augment::default(),
                &mut sample_rng(seed, epoch, i),
                &mut out,
            );
            out
        };
        assert_eq!(run(7, 1, 3), run(7, 1, 3));
        assert_ne!(run(7, 1, 3), run(7, 2, 3));
        assert_ne!(run(7, 1, 3), run(8, 1, 3));
    }

    #[test]
    fn softening_keeps_flat_faces_and_removes_fine_detail() {
        let flat = vec![90u8; FACE_BYTES];
        assert_eq!(soften(&flat, 40), flat);
        // Full size is the identity: boxes of one pixel, centres on pixels.
        let f = face();
        assert_eq!(soften(&f, SIDE), f);
        // A one-pixel checkerboard cannot survive 40 px: its contrast collapses.
        let board: Vec<u8> = (0..FACE_BYTES)
            .map(|i| {
                if ((i / 3) % SIDE + (i / 3) / SIDE) % 2 == 0 {
                    0
                } else {
                    255
                }
            })
            .collect();
        let soft = soften(&board, 40);
        let spread = |v: &[u8]| {
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
            (v.iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / v.len() as f64)
                .sqrt()
        };
        assert!(spread(&board) > 127.0);
        assert!(spread(&soft) < 20.0, "{}", spread(&soft));
    }

    #[test]
    fn erasing_hides_one_flat_rectangle_of_bounded_size() {
        let f = face();
        let only_erase = Augment {
            erase: 1.0,
            ..Augment::NONE
        };
        let mut plain = vec![0.0; 3 * SIDE * SIDE];
        normalise_chw(&f, &mut plain);
        for i in 0..20 {
            let mut out = vec![0.0; 3 * SIDE * SIDE];
            augment(&f, &only_erase, &mut sample_rng(5, 0, i), &mut out);
            let changed: Vec<usize> = (0..out.len()).filter(|&k| out[k] != plain[k]).collect();
            let (first, last) = (changed[0], changed[changed.len() - 1]);
            // All changed values are one fill value, and they lie in one box per channel.
            assert!(changed.iter().all(|&k| out[k] == out[first]));
            let per_channel = changed.len() / 3;
            let area = (SIDE * SIDE) as f32;
            assert!(per_channel as f32 >= 0.01 * area, "{per_channel}");
            assert!(per_channel as f32 <= 0.16 * area, "{per_channel}");
            let (x0, y0) = (
                (first % (SIDE * SIDE)) % SIDE,
                (first % (SIDE * SIDE)) / SIDE,
            );
            let (x1, y1) = ((last % (SIDE * SIDE)) % SIDE, (last % (SIDE * SIDE)) / SIDE);
            assert!(per_channel <= (x1 - x0 + 1) * (y1 - y0 + 1), "not one box");
        }
    }

    #[test]
    fn softening_changes_only_sharpness() {
        let f = face();
        let only_soft = Augment {
            low_res: 1.0,
            ..Augment::NONE
        };
        let (mut plain, mut soft) = (vec![0.0; 3 * SIDE * SIDE], vec![0.0; 3 * SIDE * SIDE]);
        normalise_chw(&f, &mut plain);
        augment(&f, &only_soft, &mut sample_rng(2, 0, 0), &mut soft);
        assert_ne!(plain, soft);
        let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!(
            (mean(&plain) - mean(&soft)).abs() < 0.02,
            "brightness moved"
        );
    }

    #[test]
    fn the_split_is_identity_disjoint_and_covers_everyone() {
        let folders = FaceFolders {
            identities: (0..200)
                .map(|i| Identity {
                    name: format!("p{i:03}"),
                    files: vec![PathBuf::from(format!("p{i:03}/1.jpg"))],
                })
                .collect(),
        };
        let (train, val) = folders.clone().split(0.2, 3);
        assert_eq!(train.identities.len() + val.identities.len(), 200);
        assert!(
            (20..=60).contains(&val.identities.len()),
            "{}",
            val.identities.len()
        );
        for v in &val.identities {
            assert!(!train.identities.iter().any(|t| t.name == v.name));
        }
        assert_eq!(folders.clone().split(0.2, 3), (train, val));
    }
}
