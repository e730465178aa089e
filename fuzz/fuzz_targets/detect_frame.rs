//! The board's face detector on any camera frame: the shipped detector
//! blobs (`models/detector`) run on frames of any size up to 255 × 255 in
//! each pixel format, built from the input's bytes (a short input is
//! repeated to fill the frame). Detection must return faces or a typed
//! error, never panic, and keep every face inside its bounded list.
#![no_main]

use facegate_core::detect::{DetectConfig, Detector, Face, Frame, PixelFormat, Scratch};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static PNET: &[u8] = include_bytes!("../../models/detector/pnet.fgm");
static RNET: &[u8] = include_bytes!("../../models/detector/rnet.fgm");
static ONET: &[u8] = include_bytes!("../../models/detector/onet.fgm");
static PNET_SMALL: [&[u8]; 3] = [
    include_bytes!("../../models/detector/pnet48.fgm"),
    include_bytes!("../../models/detector/pnet32.fgm"),
    include_bytes!("../../models/detector/pnet16.fgm"),
];

fuzz_target!(|data: &[u8]| {
    let [w, h, f, min_face, pixels @ ..] = data else {
        return;
    };
    let (w, h) = (usize::from(*w).max(1), usize::from(*h).max(1));
    let format = match f % 3 {
        0 => PixelFormat::Rgb888,
        1 => PixelFormat::Rgb565,
        _ => PixelFormat::Grey8,
    };
    let len = w * h * format.bytes();
    let bytes: Vec<u8> = if pixels.is_empty() {
        vec![0; len]
    } else {
        pixels.iter().copied().cycle().take(len).collect()
    };
    let Some(frame) = Frame::new(&bytes, w, h, format) else {
        return;
    };
    // The blobs are parsed (and their 517 KB CRC-checked) once, not per input.
    static DETECTOR: OnceLock<Option<Detector<'static>>> = OnceLock::new();
    let Some(mut detector) = DETECTOR
        .get_or_init(|| {
            let mut d = Detector::new(PNET, RNET, ONET, DetectConfig::default()).ok()?;
            for blob in PNET_SMALL {
                d = d.with_pnet(blob).ok()?;
            }
            Some(d)
        })
        .clone()
    else {
        return;
    };
    // 12 to 267 pixels: from every pyramid level to none.
    detector.config.min_face = 12.0 + f32::from(*min_face);
    let mut arena = vec![0i8; detector.arena_len()];
    let mut scratch = Box::new(Scratch::new());
    let mut faces: heapless::Vec<Face, 4> = heapless::Vec::new();
    if detector
        .detect(&frame, &mut arena, &mut scratch, &mut faces)
        .is_ok()
    {
        for face in &faces {
            let mut crop = [0u8; 112 * 112 * 3];
            let _ = Detector::align(&frame, face, &mut crop);
        }
    }
});
