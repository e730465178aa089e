//! The door's eyes on the board: finds the faces in a raw photo compiled
//! into flash with the int8 MTCNN (`facegate_core::detect`), aligns the
//! best one straight from the frame and embeds it, and compares every face, landmark and the
//! embedding with what the host's run of the same code found, bit for bit;
//! then answers the door's question on raw photos of enrolled people and a
//! stranger ([`run_door_photos`]) and compares each decision with the host's.

use facegate_core::align::FACE_SIDE;
use facegate_core::detect::{DetectStats, Detector, Face, Frame, Scratch};
use facegate_core::engine::Model;

use crate::eye::{ONET, PNET, PNET_SMALL, RNET};
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
        /// Timer ticks of one run of P-Net (a 64-, 48-, 32- and 16-pixel
        /// tile), R-Net and O-Net.
        net_ticks: [u32; 6],
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
        crate::eye::detector(),
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
    let mut net_ticks = [0u32; 6];
    let [p48, p32, p16] = PNET_SMALL;
    for (t, blob) in net_ticks.iter_mut().zip([PNET, p48, p32, p16, RNET, ONET]) {
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

/// Threshold, two enrolled templates, then raw probe photos with the
/// host's decision on each (see facegate-quant's `engine_fixture`).
static DOOR_PHOTOS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/door_photos.bin"));

/// Outcome of the door's decisions on raw photos.
#[derive(Debug, defmt::Format, PartialEq, Eq)]
pub enum DoorPhotos {
    /// No probe photos were compiled in.
    NotCompiledIn,
    /// Every decision (person and best score, to the bit) equals the host's.
    Equal {
        /// Photos judged.
        probes: u32,
        /// Of them accepted.
        accepted: u32,
        /// Timer ticks of the slowest photo → decision.
        max_ticks: u32,
    },
    /// A decision differed, or something failed.
    Failed,
}

/// A cursor over the fixture's bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f32(&mut self) -> Option<f32> {
        self.u32().map(f32::from_bits)
    }
}

/// Photo → decision on each probe: detect, take the best face, align it
/// from the frame, embed, quantise and identify it among the enrolled at
/// the deployment threshold, as the door does; compares the accepted
/// person and the best score with the host's.
pub fn run_door_photos(
    arena: &mut [i8],
    scratch: &mut Scratch,
    elapsed: &mut dyn FnMut(&mut dyn FnMut()) -> u32,
) -> DoorPhotos {
    use facegate_core::matcher::{Matcher, MatcherConfig, PersonId};
    use facegate_core::{Embedding, Template};
    if DOOR_PHOTOS.is_empty() {
        return DoorPhotos::NotCompiledIn;
    }
    let (Ok(detector), Ok(model)) = (
        crate::eye::detector(),
        Model::parse(crate::engine_check::MODEL),
    ) else {
        return DoorPhotos::Failed;
    };
    let mut r = Reader(DOOR_PHOTOS);
    let Some(threshold) = r.f32() else {
        return DoorPhotos::Failed;
    };
    let mut enrolled: heapless::Vec<(PersonId, Template<128>), 2> = heapless::Vec::new();
    for id in 1..=2u32 {
        let Some(t) = r.f32().and_then(|scale| {
            let v = r.take(128)?;
            let values: [i8; 128] = core::array::from_fn(|i| i8::from_le_bytes([v[i]]));
            Template::from_parts(values, scale).ok()
        }) else {
            return DoorPhotos::Failed;
        };
        let _ = enrolled.push((PersonId(id), t));
    }
    let (Some(n), Ok(matcher)) = (
        r.u32(),
        Matcher::new(MatcherConfig {
            threshold,
            margin: None,
        }),
    ) else {
        return DoorPhotos::Failed;
    };
    let (mut accepted, mut max_ticks) = (0u32, 0u32);
    for k in 0..n {
        let (Some(w), Some(h)) = (r.u16(), r.u16()) else {
            return DoorPhotos::Failed;
        };
        let (w, h) = (usize::from(w), usize::from(h));
        let (Some(rgb), Some(want_id), Some(want_score)) = (r.take(w * h * 3), r.u32(), r.f32())
        else {
            return DoorPhotos::Failed;
        };
        let Some(frame) = Frame::rgb(rgb, w, h) else {
            return DoorPhotos::Failed;
        };
        let mut decision = None;
        let mut stats = DetectStats::default();
        let ticks = elapsed(&mut || {
            let mut faces: heapless::Vec<Face, MAX_FACES> = heapless::Vec::new();
            let mut crop = [0u8; FACE_SIDE * FACE_SIDE * 3];
            let mut emb = [0.0f32; 128];
            let found = detector.detect(&frame, arena, scratch, &mut faces);
            let Some(best) = found.ok().and_then(|s| {
                stats = s;
                faces.first()
            }) else {
                return;
            };
            if Detector::align(&frame, best, &mut crop).is_err()
                || model.embed(&crop, arena, &mut emb).is_err()
            {
                return;
            }
            let Ok(e) = Embedding::<128>::normalize(emb) else {
                return;
            };
            let probe = Template::quantize(&e);
            decision = Some(matcher.identify(&probe, enrolled.iter().map(|(id, t)| (*id, t))));
        });
        max_ticks = max_ticks.max(ticks);
        let Some(d) = decision else {
            defmt::error!("door photo {}: no face or the path failed", k);
            return DoorPhotos::Failed;
        };
        let got_id = d.accepted().map_or(0, |id| id.0);
        let got_score = d.best_score().unwrap_or(f32::NAN);
        if got_id != want_id || got_score.to_bits() != want_score.to_bits() {
            defmt::error!(
                "door photo {}: person {} score {}, the host said person {} score {}",
                k,
                got_id,
                got_score,
                want_id,
                want_score
            );
            return DoorPhotos::Failed;
        }
        defmt::info!(
            "door photo {}: {} (best score {}), {} ticks, {}",
            k,
            if got_id == 0 { "rejected" } else { "accepted" },
            got_score,
            ticks,
            stats
        );
        accepted += u32::from(got_id != 0);
    }
    DoorPhotos::Equal {
        probes: n,
        accepted,
        max_ticks,
    }
}
