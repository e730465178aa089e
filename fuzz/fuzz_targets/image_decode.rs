//! Photo and face-crop decoding with facegate's bounds: arbitrary bytes
//! never panic and never allocate past the bounds.
#![no_main]

use facegate_image::{ImageBounds, decode_image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_image(data, ImageBounds::FACE) {
        assert!(img.width() <= ImageBounds::FACE.max_side);
        assert!(img.height() <= ImageBounds::FACE.max_side);
    }
});
