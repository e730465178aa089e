//! Decompression bombs and oversized files are refused before anything
//! large is allocated (issue 25 #8): a PNG of a few dozen bytes that
//! declares 13,000 × 13,000 pixels used to make the edge door allocate
//! about a gigabyte.

use std::path::Path;

use facegate_eval::faces::{Face, FaceError, ImageBounds, ImageReadError, read_image};

/// A PNG whose header declares `side × side` RGB pixels, with one tiny
/// (truncated) data chunk: the decoder must refuse it from the header alone.
fn png_declaring(side: u32) -> Vec<u8> {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut c = Vec::new();
        c.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut d = crc.digest();
        d.update(kind);
        d.update(data);
        c.extend_from_slice(&d.finalize().to_be_bytes());
        c
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // zlib stream of a few zero bytes: far too short, never reached.
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_png_declaring_13000_squared_pixels_is_refused_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = png_declaring(13_000);
    assert!(bomb.len() < 100, "{} bytes", bomb.len());
    let p = write(dir.path(), "bomb.png", &bomb);
    for bounds in [ImageBounds::FACE, ImageBounds::PHOTO] {
        match read_image(&p, bounds) {
            Err(ImageReadError::Decode(image::ImageError::Limits(_))) => {}
            other => panic!("{bounds:?}: expected a limits error, got {other:?}"),
        }
    }
    match Face::load(&p) {
        Err(e @ FaceError::Decode { .. }) => {
            let text = e.to_string();
            assert!(text.contains("bomb.png"), "{text}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn files_over_the_size_bound_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let big = write(dir.path(), "big.jpg", &vec![0u8; (9 << 20) as usize]);
    assert!(matches!(
        read_image(&big, ImageBounds::FACE),
        Err(ImageReadError::TooLarge { max }) if max == 8 << 20
    ));
}

#[test]
fn ordinary_faces_and_photos_still_read() {
    let Some(data) = std::env::var_os("FACEGATE_DATA")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
            d.is_dir().then_some(d)
        })
    else {
        eprintln!("skipped: no shared data (set FACEGATE_DATA)");
        return;
    };
    let face = data.join("lfw/aligned_112/Colin_Powell/Colin_Powell_0001.jpg");
    assert_eq!(Face::load(&face).unwrap().rgb.len(), 112 * 112 * 3);
    let photo = data.join("lfw/raw_subset/Al_Gore/Al_Gore_0001.jpg");
    assert_eq!(read_image(&photo, ImageBounds::PHOTO).unwrap().width(), 250);
}
