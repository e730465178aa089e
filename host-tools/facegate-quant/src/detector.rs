//! MTCNN's P-, R- and O-Net as int8 detector blobs for the board's cascade
//! ([`facegate_core::detect`]): imported from the host detector's ONNX
//! weights, turned row-major ([`FloatNet::transpose_spatial`]), calibrated
//! on crops of photos resampled exactly as the board resamples them, and
//! quantised with a scale per output channel ([`quantize_detector`]).

use std::path::{Path, PathBuf};

use facegate_core::detect::{
    DetectConfig, DetectError, Detector, Frame, ONET_SIDE, RNET_SIDE, Window, resample,
};
use facegate_eval::onnx::InputNorm;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::graph::{FloatNet, GraphError, Head, LoadOptions};
use crate::quantize::{
    ArenaPlan, Calibration, QuantError, calibrate_inputs, channel_ranges, normalise_rgb,
    quantize_detector,
};

/// P-Net's tile side on the board: 64 × 64 pixels in, 27 × 27 cells out
/// (a 12-pixel window every 2 pixels), 56 KB of arena.
pub const PNET_TILE: usize = 64;

/// P-Net quantised again for smaller tiles, with the 64-pixel tile's
/// ranges (the same weights and scales, so every cell scores the same in
/// any tile): the board covers each small pyramid level with the tile that
/// needs the fewest pixels ([`facegate_core::detect::Detector::with_pnet`]).
pub const PNET_SMALL_TILES: [(&str, usize); 3] = [("pnet48", 48), ("pnet32", 32), ("pnet16", 16)];

/// The three nets: name, input side and the channels of each head in
/// order (box offsets, landmarks for O-Net, face logits), as the cascade reads them.
pub const NETS: [(&str, usize, &[usize]); 3] = [
    ("pnet", PNET_TILE, &[4, 2]),
    ("rnet", RNET_SIDE, &[4, 2]),
    ("onet", ONET_SIDE, &[4, 10, 2]),
];

/// Errors of building the detector blobs.
#[derive(Debug, thiserror::Error)]
pub enum DetectorBuildError {
    /// A net could not be read.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A net's heads are not laid out as the cascade reads them.
    #[error("{}: heads {heads:?}; the cascade needs box offsets, [landmarks,] then face logits (softmax) last", path.display())]
    Heads {
        /// The ONNX file.
        path: PathBuf,
        /// What it has.
        heads: Vec<Head>,
    },
    /// Quantisation failed.
    #[error("{net}: {source}")]
    Quant {
        /// Which net.
        net: &'static str,
        /// Why.
        source: QuantError,
    },
    /// No photos to calibrate on.
    #[error("calibration needs at least one photo")]
    NoPhotos,
}

/// A photo in memory: RGB bytes, width, height.
#[derive(Clone, Debug)]
pub struct Photo {
    /// Packed RGB, row-major.
    pub rgb: Vec<u8>,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
}

/// Reads `dir/<net>.onnx` at input side `side`, row-major, and checks its
/// heads against the cascade's layout.
pub fn load_net(
    dir: &Path,
    net: &str,
    side: usize,
    widths: &[usize],
) -> Result<FloatNet, DetectorBuildError> {
    let path = dir.join(format!("{net}.onnx"));
    let opts = LoadOptions {
        input: Some((side, side)),
    };
    let (mut n, heads) = FloatNet::load_heads(&path, &opts)?;
    let got: Vec<usize> = heads.iter().map(|h| h.channels.len()).collect();
    let softmax_last = heads
        .iter()
        .map(|h| h.softmax)
        .eq(heads.iter().enumerate().map(|(i, _)| i + 1 == heads.len()));
    if got != widths || !softmax_last {
        return Err(DetectorBuildError::Heads { path, heads });
    }
    n.transpose_spatial();
    Ok(n)
}

/// `per_photo` crops of `side × side` from each photo: the centred square
/// of its short side and random squares from 12 pixels to the short side
/// (faces, parts of faces and background: what the cascade feeds the
/// nets), resampled as the board does.
pub fn calibration_crops(
    photos: &[Photo],
    side: usize,
    per_photo: usize,
    seed: u64,
) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for p in photos {
        let Some(frame) = Frame::rgb(&p.rgb, p.width, p.height) else {
            continue;
        };
        let short = p.width.min(p.height);
        for k in 0..per_photo {
            let s = if k == 0 {
                short
            } else {
                rng.random_range(12.min(short)..=short)
            };
            let x0 = rng.random_range(0..=p.width - s);
            let y0 = rng.random_range(0..=p.height - s);
            let window = Window {
                x0: i64::try_from(x0).unwrap_or(0),
                y0: i64::try_from(y0).unwrap_or(0),
                w: s,
                h: s,
            };
            let mut crop = vec![0u8; side * side * 3];
            resample(&frame, window, (side, side), (0, 0, side, side), &mut crop);
            out.push(crop);
        }
    }
    out
}

/// The blobs: P-, R- and O-Net in [`NETS`] order, then P-Net for each of
/// [`PNET_SMALL_TILES`].
#[derive(Debug)]
pub struct DetectorBlobs {
    /// `(name, blob)`.
    pub nets: Vec<(&'static str, Vec<u8>)>,
}

/// The board's detector from blobs in [`DetectorBlobs`] order: P-, R- and
/// O-Net, then any smaller P-Net tiles.
pub fn board_detector<B: AsRef<[u8]>>(
    blobs: &[B],
    config: DetectConfig,
) -> Result<Detector<'_>, DetectError> {
    let blob = |i: usize| blobs.get(i).map_or(&[][..], AsRef::as_ref);
    let mut d = Detector::new(blob(0), blob(1), blob(2), config)?;
    for b in blobs.iter().skip(3) {
        d = d.with_pnet(b.as_ref())?;
    }
    Ok(d)
}

/// Builds the blobs ([`DetectorBlobs`]) from the ONNX weights in `dir`,
/// calibrated on `per_photo` crops of each photo.
pub fn build(
    dir: &Path,
    photos: &[Photo],
    per_photo: usize,
) -> Result<DetectorBlobs, DetectorBuildError> {
    if photos.is_empty() {
        return Err(DetectorBuildError::NoPhotos);
    }
    let mut nets = Vec::new();
    let mut small_tiles = Vec::new();
    for (i, (name, side, widths)) in NETS.into_iter().enumerate() {
        let net = load_net(dir, name, side, widths)?;
        let inputs: Vec<Vec<f32>> = calibration_crops(photos, side, per_photo, i as u64)
            .iter()
            .map(|c| normalise_rgb(c, InputNorm::ArcFace))
            .collect();
        let quant = |source| DetectorBuildError::Quant { net: name, source };
        let ranges = calibrate_inputs(&net, &inputs, InputNorm::ArcFace, Calibration::MinMax)
            .map_err(quant)?;
        let out_ranges = channel_ranges(&net, &inputs, net.output);
        // One net's blob with these ranges (P-Net's smaller tiles share them).
        let blob = |net: &FloatNet, label: &'static str| {
            quantize_detector(
                net,
                &ranges,
                &out_ranges,
                InputNorm::ArcFace,
                ArenaPlan::Whole,
            )
            .map(|q| (label, q.blob))
            .map_err(|source| DetectorBuildError::Quant { net: label, source })
        };
        nets.push(blob(&net, name)?);
        if i == 0 {
            for (small, side) in PNET_SMALL_TILES {
                small_tiles.push(blob(&load_net(dir, name, side, widths)?, small)?);
            }
        }
    }
    nets.append(&mut small_tiles);
    Ok(DetectorBlobs { nets })
}
