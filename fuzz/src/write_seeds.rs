//! Writes each target's seed corpus from real structures: protocol frames
//! the host sends, a template database, a used flash store image, the
//! shipped model blobs and real face photos.
//!
//!   write_seeds OUT_DIR REPO_ROOT DATA_DIR

use std::path::{Path, PathBuf};

use facegate_core::db::{DbWriter, PersonRecord};
use facegate_core::flash_store::{FlashStore, InsecureTestKey};
use facegate_core::protocol::device::{DoorStore, StoredPerson};
use facegate_core::protocol::frame::encode;
use facegate_core::protocol::{Command, Request};
use facegate_core::{EMBEDDING_DIM, Embedding, ModelHash, PersonId, Template};

#[path = "ram_flash.rs"]
mod ram_flash;
use ram_flash::{PAGE, PAGES, RamFlash};

fn template(seed: u32) -> Template {
    let v: [f32; EMBEDDING_DIM] =
        core::array::from_fn(|i| ((i as u32 * 31 + seed * 7) % 17) as f32 - 8.0);
    Template::quantize(&Embedding::normalize(v).expect("non-zero"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus folder");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [out, root, data] = &args[..] else {
        eprintln!("usage: write_seeds OUT_DIR REPO_ROOT DATA_DIR");
        std::process::exit(2);
    };

    // Protocol: what the host sends (signatures by a key the fuzzed board
    // does not hold, so the target's no-change check holds).
    let dir = out.join("protocol_frame");
    let mut templates = Vec::new();
    for k in 0..2 {
        let t = template(k);
        templates.extend_from_slice(&t.scale().to_le_bytes());
        templates.extend(t.values().iter().map(|v| v.to_le_bytes()[0]));
    }
    let mut cmd = [0u8; 1024];
    let enroll = postcard::to_slice(
        &Command::Enroll {
            id: 7,
            name: "Ada",
            templates: &templates,
        },
        &mut cmd,
    )
    .expect("command")
    .to_vec();
    let read_audit = postcard::to_slice(&Command::ReadAudit { start: 0 }, &mut [0u8; 16])
        .expect("command")
        .to_vec();
    let requests = [
        Request::Info,
        Request::Claim {
            site_key: [9; 32],
            token: &[],
        },
        Request::Claim {
            site_key: [9; 32],
            token: &[3; 64],
        },
        Request::Signed {
            nonce: 0,
            command: &enroll,
            signature: &[5; 64],
        },
        Request::FaceChunk {
            offset: 0,
            bytes: &[1; 64],
        },
        Request::Signed {
            nonce: 0,
            command: &read_audit,
            signature: &[5; 64],
        },
    ];
    for (k, r) in requests.iter().enumerate() {
        let mut frame = [0u8; 2048];
        let n = encode(r, &mut frame).expect("frame");
        write(&dir, &format!("request{k}"), &frame[..n]);
    }

    // A template database of two people.
    let mut buf = vec![0u8; 8192];
    let mut w = DbWriter::<EMBEDDING_DIM>::new(&mut buf, ModelHash([1; 32]), 4).expect("writer");
    for id in [1u32, 2] {
        let mut p = PersonRecord::<EMBEDDING_DIM, 4>::new(PersonId(id), "someone").expect("person");
        p.push_template(template(id)).expect("template");
        w.push(&p).expect("record");
    }
    let n = w.finish();
    write(&out.join("template_db"), "two_people.fgdb", &buf[..n]);

    // A used flash store: people, settings, nonce, lockout.
    let range = 0..(PAGE * PAGES) as u32;
    let mut s = FlashStore::<_, 8>::open(
        RamFlash(vec![0xFF; PAGE * PAGES]),
        range,
        ModelHash([0x42; 32]),
        &InsecureTestKey,
    )
    .expect("fresh store");
    for id in 1..=3 {
        let mut p = StoredPerson::new(PersonId(id), "p").expect("person");
        p.push_template(template(id)).expect("template");
        s.enroll(&p).expect("enroll");
    }
    s.set_threshold(0.9).expect("threshold");
    s.set_nonce(5).expect("nonce");
    s.set_lockout_rejects(2).expect("lockout");
    write(&out.join("flash_store"), "used.bin", &s.into_flash().0);
    // Inputs that once crashed the target stay in its corpus: each run
    // replays them first.
    if let Ok(bytes) = std::fs::read(root.join("fuzz/seeds/flash_store-short-map-item")) {
        write(&out.join("flash_store"), "short-map-item.bin", &bytes);
    }

    // A whole small blob (`facegate quantize` of tests/fixtures/
    // tiny_mfn_random.onnx, 24,736 bytes: every op kind of the shipped
    // networks), and the shipped blobs cut to the size libFuzzer mutates
    // here (header, tables, first weights).
    if let Ok(bytes) = std::fs::read(root.join("fuzz/seeds/tiny_mfn_random.fgm")) {
        write(&out.join("model_blob"), "tiny_mfn_random.fgm", &bytes);
    }
    // A blob whose requantisation shift is i32::MIN (it overflowed a
    // negation in the fast requantisation's set-up).
    if let Ok(bytes) = std::fs::read(root.join("fuzz/seeds/model_blob-shift-min")) {
        write(&out.join("model_blob"), "shift-min.bin", &bytes);
    }
    for blob in ["models/nano.fgm", "models/mfn.fgm"] {
        if let Ok(bytes) = std::fs::read(root.join(blob)) {
            let name = Path::new(blob).file_name().expect("name").to_string_lossy();
            write(
                &out.join("model_blob"),
                &name,
                &bytes[..bytes.len().min(16_000)],
            );
        }
    }

    // A whole detector blob (version 3: max pooling, per-channel output
    // scales), and a real photo as a frame for the detector target (width
    // and height 120, RGB888, minimum face 40, then the pixels of an LFW
    // photo shrunk to 120 × 120: a face the cascade finds).
    if let Ok(bytes) = std::fs::read(root.join("models/detector/pnet.fgm")) {
        write(&out.join("model_blob"), "pnet.fgm", &bytes);
    }
    let photo = data.join("lfw/raw_subset/Al_Gore/Al_Gore_0001.jpg");
    if let Ok(img) = facegate_image::read_image(&photo, facegate_image::ImageBounds::PHOTO) {
        let mut frame = vec![120u8, 120, 0, 28];
        frame.extend(img.thumbnail_exact(120, 120).to_rgb8().into_raw());
        write(&out.join("detect_frame"), "photo.bin", &frame);
    }
    write(
        &out.join("detect_frame"),
        "grey-64.bin",
        &[64, 64, 2, 0, 128],
    );

    // Real faces and photos.
    for (k, p) in [
        "lfw/aligned_112/Colin_Powell/Colin_Powell_0001.jpg",
        "lfw/raw_subset/Al_Gore/Al_Gore_0001.jpg",
        "orl/s1/1.pgm",
    ]
    .iter()
    .enumerate()
    {
        if let Ok(bytes) = std::fs::read(data.join(p)) {
            write(&out.join("image_decode"), &format!("face{k}"), &bytes);
        }
    }
    println!("seeds written to {}", out.display());
}
