//! The door's eyes on the board: finds the faces in a raw photo compiled
//! into flash with the int8 MTCNN (`facegate_core::detect`), aligns the
//! best one straight from the frame and embeds it, and compares every face, landmark and the
//! embedding with what the host's run of the same code found, bit for bit.

use facegate_core::align::FACE_SIDE;
use facegate_core::detect::{DetectConfig, DetectStats, Detector, Face, Frame, Scratch};
use facegate_core::engine::Model;

static PNET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/det_pnet.fgm"));
static RNET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/det_rnet.fgm"));
static ONET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/det_onet.fgm"));
/// Width and height (u16 LE), then RGB.
static PHOTO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/photo.bin"));
/// Face count (u32 LE), 15 f32 per face (box, score, landmarks), the
/// embedding of the best face.
static EXPECTED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/photo_expected.bin"));

/// Faces the check keeps.
const MAX_FACES: usize = 8;

/// Outcome of the detector check.
#[derive(Debug, defmt::Format, PartialEq, Eq)]
pub enum DetectCheck {
    /// No photo or detector was compiled in.
    NotCompiledIn,
    /// Faces, landmarks and embedding equal the host's.
    Equal {
        /// Faces found.
        faces: u32,
        /// What the detection did.
        stats: DetectStats,
        /// Timer ticks of the detection alone.
        detect_ticks: u32,
        /// Timer ticks from the photo to the embedding (detect, align, embed).
        total_ticks: u32,
        /// Timer ticks of one run of P-Net (a tile), R-Net and O-Net.
        net_ticks: [u32; 3],
    },
    /// Something differed or failed.
    Failed,
}

fn f32_at(b: &[u8], i: usize) -> Option<f32> {
    let v = b.get(i * 4..i * 4 + 4)?;
    Some(f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
}

/// Runs the check with `arena` (at least the detector's and the embedder's
/// arena), timing it with `elapsed`.
pub fn run(
    arena: &mut [i8],
    scratch: &mut Scratch,
    elapsed: &mut dyn FnMut(&mut dyn FnMut()) -> u32,
) -> DetectCheck {
    if PHOTO.len() < 4 || PNET.is_empty() {
        return DetectCheck::NotCompiledIn;
    }
    let (w, h) = (
        usize::from(u16::from_le_bytes([PHOTO[0], PHOTO[1]])),
        usize::from(u16::from_le_bytes([PHOTO[2], PHOTO[3]])),
    );
    let rgb = &PHOTO[4..];
    let (Some(frame), Ok(detector), Ok(model)) = (
        Frame::rgb(rgb, w, h),
        Detector::new(PNET, RNET, ONET, DetectConfig::default()),
        Model::parse(crate::engine_check::MODEL),
    ) else {
        defmt::error!("detect: photo, detector or embedder did not load");
        return DetectCheck::Failed;
    };
    defmt::info!(
        "detect: {}×{} photo, detector arena {} B, embedder arena {} B, arena given {} B",
        w,
        h,
        detector.arena_len(),
        model.arena_len(),
        arena.len()
    );
    let mut faces: heapless::Vec<Face, MAX_FACES> = heapless::Vec::new();
    let mut result = Ok(DetectStats::default());
    let detect_ticks = elapsed(&mut || {
        result = detector.detect(&frame, arena, scratch, &mut faces);
    });
    let Ok(stats) = result else {
        defmt::error!("detect: {}", result.err());
        return DetectCheck::Failed;
    };
    // Every face to the bit.
    let n = EXPECTED
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) as usize;
    if faces.len() != n {
        defmt::error!("detect: {} faces, the host found {}", faces.len(), n);
        return DetectCheck::Failed;
    }
    for (k, f) in faces.iter().enumerate() {
        let mut mine = [0.0f32; 15];
        mine[..4].copy_from_slice(&f.bbox);
        mine[4] = f.score;
        for (j, p) in f.landmarks.iter().enumerate() {
            mine[5 + 2 * j..7 + 2 * j].copy_from_slice(p);
        }
        for (j, v) in mine.iter().enumerate() {
            if f32_at(EXPECTED, 1 + 15 * k + j).map(f32::to_bits) != Some(v.to_bits()) {
                defmt::error!("detect: face {} value {} differs from the host's", k, j);
                return DetectCheck::Failed;
            }
        }
    }
    // Align and embed the best face, as the door does.
    let Some(best) = faces.first() else {
        defmt::error!("detect: no face in the photo");
        return DetectCheck::Failed;
    };
    let mut crop = [0u8; FACE_SIDE * FACE_SIDE * 3];
    let mut emb = [0.0f32; 128];
    let dim = model.embedding_dim().min(emb.len());
    let mut embedded = Ok(());
    let rest = elapsed(&mut || {
        embedded = Detector::align(&frame, best, &mut crop)
            .map_err(|_| ())
            .and_then(|_| model.embed(&crop, arena, &mut emb[..dim]).map_err(|_| ()));
    });
    if embedded.is_err() {
        defmt::error!("detect: aligning or embedding the best face failed");
        return DetectCheck::Failed;
    }
    let at = 1 + 15 * n;
    let same = emb[..dim]
        .iter()
        .enumerate()
        .all(|(j, v)| f32_at(EXPECTED, at + j).map(f32::to_bits) == Some(v.to_bits()));
    if !same {
        defmt::error!("detect: the embedding of the aligned face differs from the host's");
        return DetectCheck::Failed;
    }
    // One run of each net on a blank input: where the detection's time goes.
    let mut net_ticks = [0u32; 3];
    for (t, blob) in net_ticks.iter_mut().zip([PNET, RNET, ONET]) {
        let Ok(m) = Model::parse(blob) else {
            return DetectCheck::Failed;
        };
        let (ih, iw) = m.input_size();
        let input = &crop[..ih * iw * 3];
        let mut ran = false;
        *t = elapsed(&mut || ran = m.run(input, arena).is_ok());
        if !ran {
            return DetectCheck::Failed;
        }
    }
    DetectCheck::Equal {
        faces: n as u32,
        stats,
        detect_ticks,
        total_ticks: detect_ticks.saturating_add(rest),
        net_ticks,
    }
}
