//! Face detection on the board: MTCNN (Zhang et al. 2016) on the int8
//! engine, without allocation.
//!
//! The three nets are detector blobs (`facegate detector build` quantises
//! the host's P-, R- and O-Net). P-Net slides over an image pyramid one
//! fixed tile at a time (the tile is the blob's input; each level is
//! resampled from the frame tile by tile, never held whole); the same
//! P-Net quantised for smaller tiles ([`Detector::with_pnet`]) covers the
//! small levels without computing the empty rest of a large tile, with
//! the same outputs (every cell's window lies inside its tile). R-Net and
//! O-Net judge 24×24 and 48×48 crops, and O-Net places the five
//! landmarks the core's alignment needs. Box arithmetic follows the host's
//! cascade (`facegate-detect`), which follows the reference implementation.
//!
//! Capacities are part of the API: candidates live in a [`Scratch`] of
//! fixed size, and when a stage finds more than fit, the best are kept and
//! [`DetectStats::dropped`] says how many were not.

pub mod boxes;
pub mod resample;

use heapless::Vec;

use crate::engine::{BlobError, EngineError, Model, Output};
use boxes::{Candidate, nms, push_bounded, refine, refine_exclusive, square, trunc};
pub use resample::{Frame, MAX_FRAME_SIDE, PixelFormat, Window, resample, rgb565};

/// Candidates a stage keeps (per pyramid level, after P-Net, after R-Net).
pub const MAX_CANDIDATES: usize = 256;
/// Most pyramid levels searched: a 1280-pixel frame from 12-pixel faces
/// at the usual ratio 0.709 needs 14; the bound keeps a ratio near 1 (a
/// misconfiguration) from searching without end.
pub const MAX_LEVELS: u16 = 32;
/// Largest net input side (O-Net's 48 and a P-Net tile of up to 96).
pub const MAX_INPUT_SIDE: usize = 96;
/// R-Net's input side.
pub const RNET_SIDE: usize = 24;
/// O-Net's input side.
pub const ONET_SIDE: usize = 48;
/// P-Net tile sizes a detector may hold.
pub const MAX_PNETS: usize = 4;

/// Thresholds of the cascade (the host's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DetectConfig {
    /// Smallest face side searched for, in pixels.
    pub min_face: f32,
    /// Score each stage needs (P-, R-, O-Net).
    pub thresholds: [f32; 3],
    /// Ratio between pyramid levels.
    pub scale_factor: f32,
    /// R-Net judges at most this many proposals, the best P-Net scores
    /// first ([`u16::MAX`]: all, as MTCNN does).
    pub max_proposals: u16,
    /// O-Net judges at most this many boxes, the best R-Net scores first
    /// ([`u16::MAX`]: all, as MTCNN does).
    pub max_refined: u16,
}

impl DetectConfig {
    /// MTCNN's cascade as the host runs it: every face in the frame.
    pub const MTCNN: Self = Self {
        min_face: 40.0,
        thresholds: [0.6, 0.7, 0.7],
        scale_factor: 0.709,
        max_proposals: u16::MAX,
        max_refined: u16::MAX,
    };

    /// A door's cascade: it judges one face, the best, so O-Net (the
    /// costliest net) sees only the two boxes R-Net likes best (room for
    /// one false alarm) and R-Net the 8 best proposals; this bounds a
    /// frame's work whatever is in it. The host's door checks run the same.
    /// `facegate detector eval --door` measures what it costs in faces: in
    /// every one of the 569 one-face LFW photos the best face is still that
    /// face; in photos of several people it can be another one.
    pub const DOOR: Self = Self {
        max_proposals: 8,
        max_refined: 2,
        ..Self::MTCNN
    };
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self::MTCNN
    }
}

/// One face found in a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Face {
    /// `[x1, y1, x2, y2]` in frame pixels.
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner (frame
    /// pixels; "left" is the viewer's left).
    pub landmarks: [[f32; 2]; 5],
}

/// Which of the three nets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Net {
    /// Proposal net.
    P,
    /// Refine net.
    R,
    /// Output net.
    O,
}

/// Errors of loading or running the detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DetectError {
    /// A blob did not parse.
    Blob(Net, BlobError),
    /// A blob parsed but is not that net (input or output shape).
    WrongNet(Net),
    /// A run failed (an arena smaller than [`Detector::arena_len`]).
    Engine(Net, EngineError),
}

impl core::fmt::Display for DetectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Blob(n, e) => write!(f, "detector {n:?}-Net blob: {e}"),
            Self::WrongNet(n) => write!(
                f,
                "detector {n:?}-Net blob has the wrong input or output shape (build it with `facegate detector build`)"
            ),
            Self::Engine(n, e) => write!(f, "detector {n:?}-Net: {e}"),
        }
    }
}

impl core::error::Error for DetectError {}

/// What one detection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DetectStats {
    /// Pyramid levels searched.
    pub levels: u16,
    /// P-Net tiles run.
    pub tiles: u16,
    /// Boxes proposed by P-Net (after suppression and
    /// [`DetectConfig::max_proposals`]): R-Net's runs.
    pub proposals: u16,
    /// Boxes kept by R-Net (after [`DetectConfig::max_refined`]): O-Net's runs.
    pub refined: u16,
    /// Candidates or faces left out because a list was full.
    pub dropped: u16,
}

/// Working memory of a detection (about 58 KB; a `static` on a board).
#[derive(Debug)]
pub struct Scratch {
    level: Vec<Candidate, MAX_CANDIDATES>,
    all: Vec<Candidate, MAX_CANDIDATES>,
    landmarks: Vec<[[f32; 2]; 5], MAX_CANDIDATES>,
    input: [u8; MAX_INPUT_SIDE * MAX_INPUT_SIDE * 3],
}

impl Scratch {
    /// Empty working memory.
    pub const fn new() -> Self {
        Self {
            level: Vec::new(),
            all: Vec::new(),
            landmarks: Vec::new(),
            input: [0; MAX_INPUT_SIDE * MAX_INPUT_SIDE * 3],
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// P-Net quantised for one tile size.
#[derive(Clone, Copy, Debug)]
struct TileNet<'m> {
    model: Model<'m>,
    /// Tile side and output cells per tile side.
    tile: usize,
    cells: usize,
}

impl<'m> TileNet<'m> {
    /// Checks that `p` is P-Net on square even tiles with 6 channels out
    /// (4 box offsets, 2 logits).
    fn of(p: Model<'m>) -> Result<Self, DetectError> {
        let (tile, tw) = p.input_size();
        // P-Net's cells are 12-pixel windows at a stride of 2.
        let cells = (tile.saturating_sub(12)) / 2 + 1;
        let ok = tile == tw
            && tile >= 12
            && tile % 2 == 0
            && tile <= MAX_INPUT_SIDE
            && p.output_shape() == (cells, cells, 6);
        if ok {
            Ok(Self {
                model: p,
                tile,
                cells,
            })
        } else {
            Err(DetectError::WrongNet(Net::P))
        }
    }

    /// Input pixels of the tiles that cover `cx × cy` cells.
    const fn cost(&self, cx: usize, cy: usize) -> usize {
        cx.div_ceil(self.cells) * cy.div_ceil(self.cells) * self.tile * self.tile
    }
}

/// The three nets, checked, and the cascade's thresholds.
#[derive(Clone, Debug)]
pub struct Detector<'m> {
    /// P-Net for each tile size, largest first.
    pnets: Vec<TileNet<'m>, MAX_PNETS>,
    rnet: Model<'m>,
    onet: Model<'m>,
    /// Thresholds.
    pub config: DetectConfig,
}

/// Face probability from the two logits at `at` (softmax of two classes).
fn face_probability(out: &Output<'_, '_>, y: usize, x: usize, at: usize) -> f32 {
    let d = out.at(y, x, at) - out.at(y, x, at + 1);
    1.0 / (1.0 + libm::expf(d))
}

impl<'m> Detector<'m> {
    /// Parses the three blobs and checks that they are the nets the
    /// cascade needs: P-Net on square tiles with 6 channels out (4 box
    /// offsets, 2 logits), R-Net on 24×24 with 6 values out, O-Net on 48×48
    /// with 16 (4 offsets, 10 landmark coordinates, 2 logits).
    pub fn new(
        pnet: &'m [u8],
        rnet: &'m [u8],
        onet: &'m [u8],
        config: DetectConfig,
    ) -> Result<Self, DetectError> {
        let parse = |b, n| Model::parse(b).map_err(|e| DetectError::Blob(n, e));
        let (p, r, o) = (
            parse(pnet, Net::P)?,
            parse(rnet, Net::R)?,
            parse(onet, Net::O)?,
        );
        let mut pnets = Vec::new();
        let _ = pnets.push(TileNet::of(p)?);
        if r.input_size() != (RNET_SIDE, RNET_SIDE) || r.output_shape() != (1, 1, 6) {
            return Err(DetectError::WrongNet(Net::R));
        }
        if o.input_size() != (ONET_SIDE, ONET_SIDE) || o.output_shape() != (1, 1, 16) {
            return Err(DetectError::WrongNet(Net::O));
        }
        Ok(Self {
            pnets,
            rnet: r,
            onet: o,
            config,
        })
    }

    /// Adds P-Net quantised for another tile size (`facegate detector
    /// build` writes `pnet16/32/48.fgm` beside `pnet.fgm`): each pyramid
    /// level is then covered by the tile size that needs the fewest input
    /// pixels. The faces found are the same; only the work shrinks.
    /// Refused: not P-Net, a tile size already held, or more than
    /// [`MAX_PNETS`].
    pub fn with_pnet(mut self, blob: &'m [u8]) -> Result<Self, DetectError> {
        let p = Model::parse(blob).map_err(|e| DetectError::Blob(Net::P, e))?;
        let t = TileNet::of(p)?;
        if self.pnets.iter().any(|q| q.tile == t.tile) {
            return Err(DetectError::WrongNet(Net::P));
        }
        self.pnets
            .push(t)
            .map_err(|_| DetectError::WrongNet(Net::P))?;
        // Largest first: ties in cost go to the fewer, larger tiles.
        self.pnets
            .sort_unstable_by_key(|p| core::cmp::Reverse(p.tile));
        Ok(self)
    }

    /// Arena bytes a detection needs (the nets run one after another).
    pub fn arena_len(&self) -> usize {
        self.pnets
            .iter()
            .map(|p| p.model.arena_len())
            .fold(self.rnet.arena_len().max(self.onet.arena_len()), usize::max)
    }

    /// The largest P-Net tile side.
    pub fn tile(&self) -> usize {
        self.pnets.first().map_or(0, |p| p.tile)
    }

    /// The P-Net tile sides held, largest first.
    pub fn tiles(&self) -> impl Iterator<Item = usize> + '_ {
        self.pnets.iter().map(|p| p.tile)
    }

    /// Aligns a found face to the embedder's 112×112 crop, straight from
    /// the frame in its own pixel format.
    pub fn align(
        frame: &Frame<'_>,
        face: &Face,
        out: &mut [u8; crate::align::FACE_SIDE * crate::align::FACE_SIDE * 3],
    ) -> Result<crate::align::Similarity, crate::align::AlignError> {
        crate::align::align_pixels(
            frame.width(),
            frame.height(),
            |x, y| frame.pixel(x, y),
            &face.landmarks,
            out,
        )
    }

    /// Finds the faces in `frame`, best first, into `faces` (those past its
    /// capacity are counted as dropped).
    pub fn detect<const N: usize>(
        &self,
        frame: &Frame<'_>,
        arena: &mut [i8],
        scratch: &mut Scratch,
        faces: &mut Vec<Face, N>,
    ) -> Result<DetectStats, DetectError> {
        faces.clear();
        let mut stats = DetectStats::default();
        self.propose(frame, arena, scratch, &mut stats)?;
        self.refine_stage(frame, arena, scratch, &mut stats)?;
        self.output_stage(frame, arena, scratch, faces, &mut stats)?;
        Ok(stats)
    }

    /// Stage 1: P-Net over the pyramid; leaves squared proposals in
    /// `scratch.all`.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn propose(
        &self,
        frame: &Frame<'_>,
        arena: &mut [i8],
        s: &mut Scratch,
        stats: &mut DetectStats,
    ) -> Result<(), DetectError> {
        let (w, h) = (frame.width() as f32, frame.height() as f32);
        let whole = Window {
            x0: 0,
            y0: 0,
            w: frame.width(),
            h: frame.height(),
        };
        let m = 12.0 / self.config.min_face.max(12.0);
        let mut min_layer = w.min(h) * m;
        let mut scale = m;
        s.all.clear();
        while min_layer >= 12.0 && stats.levels < MAX_LEVELS {
            let (ws, hs) = (
                libm::ceilf(w * scale) as usize,
                libm::ceilf(h * scale) as usize,
            );
            // Cells whose whole 12-pixel window lies in the level.
            let (cx_n, cy_n) = (
                (ws.saturating_sub(12)) / 2 + 1,
                (hs.saturating_sub(12)) / 2 + 1,
            );
            s.level.clear();
            // The tile size that covers this level with the fewest pixels.
            let Some(pnet) = self.pnets.iter().min_by_key(|p| p.cost(cx_n, cy_n)) else {
                break;
            };
            let (side, cells) = (pnet.tile, pnet.cells);
            let tile_len = side * side * 3;
            for cy0 in (0..cy_n).step_by(cells) {
                for cx0 in (0..cx_n).step_by(cells) {
                    let tile = (2 * cx0, 2 * cy0, side, side);
                    resample(frame, whole, (ws, hs), tile, &mut s.input[..tile_len]);
                    let out = pnet
                        .model
                        .run(&s.input[..tile_len], arena)
                        .map_err(|e| DetectError::Engine(Net::P, e))?;
                    stats.tiles = stats.tiles.saturating_add(1);
                    for cy in 0..cells.min(cy_n - cy0) {
                        for cx in 0..cells.min(cx_n - cx0) {
                            let score = face_probability(&out, cy, cx, 4);
                            if score < self.config.thresholds[0] {
                                continue;
                            }
                            let (fx, fy) = ((cx0 + cx) as f32, (cy0 + cy) as f32);
                            let c = Candidate {
                                b: trunc([
                                    (2.0 * fx + 1.0) / scale,
                                    (2.0 * fy + 1.0) / scale,
                                    (2.0 * fx + 12.0) / scale,
                                    (2.0 * fy + 12.0) / scale,
                                ]),
                                score,
                                reg: core::array::from_fn(|k| out.at(cy, cx, k)),
                                tag: 0,
                            };
                            if push_bounded(&mut s.level, c) {
                                stats.dropped = stats.dropped.saturating_add(1);
                            }
                        }
                    }
                }
            }
            nms(&mut s.level, 0.5, false);
            for &c in &s.level {
                if push_bounded(&mut s.all, c) {
                    stats.dropped = stats.dropped.saturating_add(1);
                }
            }
            stats.levels = stats.levels.saturating_add(1);
            scale *= self.config.scale_factor;
            min_layer *= self.config.scale_factor;
        }
        nms(&mut s.all, 0.7, false);
        // Best first (suppression sorts by score): only those R-Net judges
        // are refined.
        s.all.truncate(usize::from(self.config.max_proposals));
        for c in &mut s.all {
            c.b = trunc(square(refine_exclusive(c.b, c.reg)));
        }
        stats.proposals = s.all.len() as u16;
        Ok(())
    }

    /// Resamples box `b` (1-based inclusive; black outside the frame) to a
    /// `side × side` net input, or `None` for an empty or absurd box.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap
    )]
    fn crop<'s>(
        frame: &Frame<'_>,
        b: &[f32; 4],
        side: usize,
        input: &'s mut [u8],
    ) -> Option<&'s [u8]> {
        let [x1, y1, x2, y2] = b.map(|v| libm::truncf(v) as i64);
        let (w, h) = (x2 - x1 + 1, y2 - y1 + 1);
        // Boxes come from the frame, so a sane one is at most about its size.
        // (Sides are at most MAX_FRAME_SIDE.)
        let limit = 2 * i64::try_from(frame.width().max(frame.height())).unwrap_or(0);
        if w <= 0 || h <= 0 || w > limit || h > limit {
            return None;
        }
        let window = Window {
            x0: x1 - 1,
            y0: y1 - 1,
            w: w as usize,
            h: h as usize,
        };
        let out = &mut input[..side * side * 3];
        resample(frame, window, (side, side), (0, 0, side, side), out);
        Some(out)
    }

    /// Runs `model` on box `b` resampled to its input; `None` for a box
    /// the reference skips (empty or absurd).
    fn run_on_box<'r>(
        model: &Model<'m>,
        net: Net,
        frame: &Frame<'_>,
        b: &[f32; 4],
        input: &mut [u8],
        arena: &'r mut [i8],
    ) -> Result<Option<Output<'m, 'r>>, DetectError> {
        let (side, _) = model.input_size();
        let Some(x) = Self::crop(frame, b, side, input) else {
            return Ok(None);
        };
        model
            .run(x, arena)
            .map(Some)
            .map_err(|e| DetectError::Engine(net, e))
    }

    /// Stage 2: R-Net on 24×24 crops of the proposals; leaves refined,
    /// squared boxes in `scratch.level`.
    fn refine_stage(
        &self,
        frame: &Frame<'_>,
        arena: &mut [i8],
        s: &mut Scratch,
        stats: &mut DetectStats,
    ) -> Result<(), DetectError> {
        s.level.clear();
        for i in 0..s.all.len() {
            let b = s.all[i].b;
            let judged = Self::run_on_box(&self.rnet, Net::R, frame, &b, &mut s.input, arena)?;
            let Some(out) = judged else { continue };
            let score = face_probability(&out, 0, 0, 4);
            if score > self.config.thresholds[1] {
                let c = Candidate {
                    b,
                    score,
                    reg: core::array::from_fn(|k| out.at(0, 0, k)),
                    tag: 0,
                };
                // At most as many as the proposals: always fits.
                let _ = s.level.push(c);
            }
        }
        nms(&mut s.level, 0.7, false);
        s.level.truncate(usize::from(self.config.max_refined));
        for c in &mut s.level {
            c.b = trunc(square(refine(c.b, c.reg)));
        }
        stats.refined = u16::try_from(s.level.len()).unwrap_or(u16::MAX);
        Ok(())
    }

    /// Stage 3: O-Net on 48×48 crops with landmarks; the faces, best first.
    fn output_stage<const N: usize>(
        &self,
        frame: &Frame<'_>,
        arena: &mut [i8],
        s: &mut Scratch,
        faces: &mut Vec<Face, N>,
        stats: &mut DetectStats,
    ) -> Result<(), DetectError> {
        // Found faces go to `all`, their landmarks to `landmarks`, tied by
        // the candidate's tag (suppression reorders the boxes).
        s.all.clear();
        s.landmarks.clear();
        for i in 0..s.level.len() {
            let b = s.level[i].b;
            let judged = Self::run_on_box(&self.onet, Net::O, frame, &b, &mut s.input, arena)?;
            let Some(out) = judged else { continue };
            let score = face_probability(&out, 0, 0, 14);
            if score <= self.config.thresholds[2] {
                continue;
            }
            let (w, h) = (b[2] - b[0] + 1.0, b[3] - b[1] + 1.0);
            let landmarks = core::array::from_fn(|k| {
                [
                    w * out.at(0, 0, 4 + k) + b[0] - 1.0,
                    h * out.at(0, 0, 9 + k) + b[1] - 1.0,
                ]
            });
            let c = Candidate {
                b: refine(b, core::array::from_fn(|k| out.at(0, 0, k))),
                score,
                reg: [0.0; 4],
                tag: u16::try_from(s.landmarks.len()).unwrap_or(u16::MAX),
            };
            // At most as many as R-Net kept: always fits.
            if s.landmarks.push(landmarks).is_ok() {
                let _ = s.all.push(c);
            }
        }
        nms(&mut s.all, 0.7, true);
        for c in &s.all {
            let face = Face {
                bbox: c.b,
                score: c.score,
                landmarks: s
                    .landmarks
                    .get(usize::from(c.tag))
                    .copied()
                    .unwrap_or([[0.0; 2]; 5]),
            };
            if faces.push(face).is_err() {
                stats.dropped = stats.dropped.saturating_add(1);
            }
        }
        Ok(())
    }
}
