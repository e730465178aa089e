//! The door's eye: the int8 MTCNN blobs compiled into the image (from
//! `models/detector`, copied by `cargo xtask` with the engine fixture) and
//! the detector a door runs them with.

use facegate_core::detect::{DetectConfig, DetectError, Detector};

/// P-Net (proposals over the pyramid), empty when not compiled in.
pub static PNET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/det_pnet.fgm"));
/// R-Net (refines proposals on 24×24 crops).
pub static RNET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/det_rnet.fgm"));
/// O-Net (faces and landmarks on 48×48 crops).
pub static ONET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/det_onet.fgm"));
/// P-Net quantised for 48-, 32- and 16-pixel tiles (the small pyramid levels).
pub static PNET_SMALL: [&[u8]; 3] = [
    include_bytes!(concat!(env!("OUT_DIR"), "/det_pnet48.fgm")),
    include_bytes!(concat!(env!("OUT_DIR"), "/det_pnet32.fgm")),
    include_bytes!(concat!(env!("OUT_DIR"), "/det_pnet16.fgm")),
];

/// The compiled-in detector with the door's cascade ([`DetectConfig::DOOR`]:
/// the host's thresholds, O-Net on the two best boxes; the host's door
/// checks run the same, so decisions equal the host's on the same frames).
pub fn detector() -> Result<Detector<'static>, DetectError> {
    let mut d = Detector::new(PNET, RNET, ONET, DetectConfig::DOOR)?;
    for blob in PNET_SMALL.into_iter().filter(|b| !b.is_empty()) {
        d = d.with_pnet(blob)?;
    }
    Ok(d)
}
