//! Writes the data the firmware's engine check compiles in: a quantised
//! model blob, a few faces and the host engine's embeddings of them.
//!
//! `cargo run -p facegate-quant --example engine_fixture -- OUT_DIR [DATA_DIR]`
//!
//! The model is the shipped `models/nano.fgm` (the trained reference model,
//! byte for byte what users flash) when present; otherwise
//! `tests/fixtures/tiny_mfn_random.onnx` (MobileFaceNet blocks, few channels,
//! untrained), calibrated on 32 LFW faces (or synthetic images without LFW).
//! The faces checked are 3 LFW faces (synthetic images without LFW).
//!
//! And the board's detector (`models/detector`) with a raw LFW photo
//! (`photo.bin`: width, height as u16 LE, then RGB), and what the host's
//! run of the same core code found in it (`photo_expected.bin`: the number
//! of faces as u32, then per face the box, score and ten landmark
//! coordinates as f32, then the embedding of the best face aligned from
//! the photo): the board must find the same faces to the bit and embed the
//! same face. Empty files without the photos or the detector.
//!
//! And the door's question on raw photos (`door_photos.bin`): two people
//! enrolled from one raw photo each, three raw probe photos (another photo
//! of an enrolled person the host accepts, one of the other enrolled
//! person, a stranger) and the decision the host's run of the core path
//! (detect, align, embed, match at `models/nano.deployment.toml`'s
//! threshold) made on each. Layout: threshold f32; 2 templates (scale f32,
//! 128 × i8); probe count u32; per probe width u16, height u16, RGB, the
//! accepted person's id u32 (0: rejected) and the best score f32.
//!
//! Also a MobileFaceNet-size blob and its embedding of the first face: the
//! board runs it to show that a 203 M-MAC network fits its RAM and to
//! measure what it costs. That is the shipped `models/mfn.fgm` when present,
//! otherwise `tests/fixtures/mfn_random.fgm` (the untrained `mfn` of
//! `bench/make_mfn_onnx.py`, quantized with `facegate quantize --calib
//! ../shared/data/celeba/wild_112 --images 50`; the same network and plan).

use std::path::PathBuf;

use ed25519_dalek::{Signer, SigningKey};
use facegate_core::engine::Model;
use facegate_core::protocol::{Command, Request, frame, signing_message};
use facegate_core::{Embedding, Template};

/// Device id of the QEMU board (its firmware uses the same).
const QEMU_DEVICE_ID: [u8; 16] = *b"qemu-mps2-an500\0";
/// Site key of the emulated door: a public test secret, never for real doors.
const TEST_SITE_SECRET: [u8; 32] = *b"facegate TEST site key, public!!";
use facegate_eval::faces::{Face, FaceSet};
use facegate_eval::onnx::InputNorm;
use facegate_quant::graph::FloatNet;
use facegate_quant::quantize::{calibrate, quantize};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(
        args.next()
            .ok_or("usage: engine_fixture OUT_DIR [DATA_DIR]")?,
    );
    let data = args.next().map(PathBuf::from);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let net = FloatNet::load(&root.join("tests/fixtures/tiny_mfn_random.onnx"))?;

    let lfw = data
        .map(|d| d.join("lfw/aligned_112"))
        .filter(|d| d.is_dir());
    let (calib, probes, source) = match &lfw {
        Some(dir) => {
            let set = FaceSet::scan(dir)?;
            let mut seen = std::collections::HashSet::new();
            let firsts: Vec<_> = set
                .files
                .iter()
                .filter(|f| seen.insert(f.identity))
                .collect();
            let load = |f: &&facegate_eval::faces::FaceFile| Face::load(&set.root.join(&f.path));
            let calib = firsts
                .iter()
                .take(32)
                .map(load)
                .collect::<Result<Vec<_>, _>>()?;
            let probes = firsts
                .iter()
                .skip(200)
                .take(3)
                .map(load)
                .collect::<Result<Vec<_>, _>>()?;
            (calib, probes, "LFW")
        }
        None => {
            let synth = |k: usize| Face {
                rgb: (0..112 * 112 * 3)
                    .map(|i| ((i * 7 + k * 31) % 251) as u8)
                    .collect(),
            };
            (
                (0..8).map(synth).collect(),
                (100..103).map(synth).collect(),
                "synthetic images",
            )
        }
    };
    let shipped = root.join("models/nano.fgm");
    let (blob, model_source) = if shipped.is_file() {
        (std::fs::read(&shipped)?, "models/nano.fgm")
    } else {
        let ranges = calibrate(&net, &calib, InputNorm::ArcFace)?;
        (
            quantize(&net, &ranges, InputNorm::ArcFace)?.blob,
            "tiny_mfn_random.onnx",
        )
    };
    let model = Model::parse(&blob)?;
    let mut arena = vec![0i8; model.arena_len()];
    let mut expected = Vec::new();
    let mut faces = Vec::new();
    let mut templates = Vec::new();
    for p in &probes {
        let mut emb = vec![0.0f32; model.embedding_dim()];
        model.embed(&p.rgb, &mut arena, &mut emb)?;
        expected.extend(emb.iter().flat_map(|x| x.to_le_bytes()));
        faces.extend_from_slice(&p.rgb);
        templates.push(Template::quantize(&Embedding::<128>::from_slice(&emb)?));
    }
    // Provisioning frames for the door check: claim with the test site key,
    // enroll faces 0 and 1 as persons 1 and 2, and a threshold halfway
    // between the best impostor score of face 2 and a perfect match.
    let impostor = templates[2]
        .cosine(&templates[0])
        .max(templates[2].cosine(&templates[1]));
    let threshold = f32::midpoint(impostor, 1.0);
    let site = SigningKey::from_bytes(&TEST_SITE_SECRET);
    let mut frames = Vec::new();
    let mut push = |req: &Request<'_>| -> Result<(), Box<dyn std::error::Error>> {
        let mut buf = vec![0u8; 4096];
        let n = frame::encode(req, &mut buf).map_err(|e| format!("{e:?}"))?;
        frames.extend_from_slice(&buf[..n]);
        Ok(())
    };
    push(&Request::Claim {
        site_key: site.verifying_key().to_bytes(),
        token: &[],
    })?;
    let mut commands = Vec::new();
    for (id, t) in [(1u32, &templates[0]), (2, &templates[1])] {
        let mut bytes = t.scale().to_le_bytes().to_vec();
        bytes.extend(t.values().iter().map(|v| v.to_le_bytes()[0]));
        let name = if id == 1 { "Face Zero" } else { "Face One" };
        commands.push(
            postcard::to_slice(
                &Command::Enroll {
                    id,
                    name,
                    templates: &bytes,
                },
                &mut [0u8; 1024],
            )?
            .to_vec(),
        );
    }
    commands
        .push(postcard::to_slice(&Command::SetThreshold { threshold }, &mut [0u8; 64])?.to_vec());
    for (nonce, c) in commands.iter().enumerate() {
        let nonce = u32::try_from(nonce)?;
        let mut msg = [0u8; 2048];
        let m = signing_message(&QEMU_DEVICE_ID, nonce, c, &mut msg).ok_or("signing message")?;
        let sig = site.sign(m).to_bytes();
        push(&Request::Signed {
            nonce,
            command: c,
            signature: &sig,
        })?;
    }
    let shipped_mfn = root.join("models/mfn.fgm");
    let (mfn_blob, mfn_source) = if shipped_mfn.is_file() {
        (std::fs::read(&shipped_mfn)?, "models/mfn.fgm")
    } else {
        (
            std::fs::read(root.join("tests/fixtures/mfn_random.fgm"))?,
            "tests/fixtures/mfn_random.fgm",
        )
    };
    let mfn = Model::parse(&mfn_blob)?;
    let mut mfn_emb = vec![0.0f32; mfn.embedding_dim()];
    mfn.embed(
        &probes[0].rgb,
        &mut vec![0i8; mfn.arena_len()],
        &mut mfn_emb,
    )?;
    let mfn_expected: Vec<u8> = mfn_emb.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::create_dir_all(&out)?;
    let photo_source = detect_fixture(&root, lfw.as_deref(), &blob, &out)?;
    let door_source = door_photos_fixture(&root, lfw.as_deref(), &blob, &out)?;
    std::fs::write(out.join("mfn.fgm"), &mfn_blob)?;
    std::fs::write(out.join("mfn_expected.f32"), &mfn_expected)?;
    std::fs::write(out.join("model.fgm"), &blob)?;
    std::fs::write(out.join("frames.cobs"), &frames)?;
    std::fs::write(out.join("faces.rgb"), &faces)?;
    std::fs::write(out.join("expected.f32"), &expected)?;
    println!(
        "engine fixture: {model_source}, {} B blob, {} B arena, {} faces from {source}; {mfn_source}, {} B blob, {} B arena; detector on {photo_source}; door on {door_source} → {}",
        blob.len(),
        model.arena_len(),
        probes.len(),
        mfn_blob.len(),
        mfn.arena_len(),
        out.display()
    );
    Ok(())
}

/// The board detector's blobs (`models/detector`: P-, R-, O-Net, then the
/// smaller P-Net tiles); empty where missing.
fn detector_blobs(root: &std::path::Path) -> Vec<Vec<u8>> {
    detector_names()
        .map(|n| std::fs::read(root.join(format!("models/detector/{n}.fgm"))).unwrap_or_default())
        .collect()
}

/// The detector blobs' names, in `board_detector` order.
fn detector_names() -> impl Iterator<Item = &'static str> {
    use facegate_quant::detector::PNET_SMALL_TILES;
    ["pnet", "rnet", "onet"]
        .into_iter()
        .chain(PNET_SMALL_TILES.map(|(n, _)| n))
}

/// `lfw/raw_subset` beside `lfw/aligned_112`, when it exists.
fn raw_subset(lfw_aligned: Option<&std::path::Path>) -> Option<PathBuf> {
    lfw_aligned
        .and_then(|d| d.parent())
        .map(|lfw| lfw.join("raw_subset"))
        .filter(|p| p.is_dir())
}

/// The faces the core detector finds in `frame`, best first.
fn detect_faces(
    blobs: &[Vec<u8>],
    frame: &facegate_core::detect::Frame<'_>,
) -> Result<heapless::Vec<facegate_core::detect::Face, 8>, Box<dyn std::error::Error>> {
    use facegate_core::detect::{DetectConfig, Scratch};
    // The door's cascade, as the board's door runs it (`door_app::eye`).
    let detector = facegate_quant::detector::board_detector(blobs, DetectConfig::DOOR)?;
    let mut arena = vec![0i8; detector.arena_len()];
    let mut faces = heapless::Vec::new();
    detector.detect(frame, &mut arena, &mut Box::new(Scratch::new()), &mut faces)?;
    Ok(faces)
}

/// A decoded photo (RGB, width, height) and its best face's template.
type PhotoTemplate = (Vec<u8>, usize, usize, Template<128>);

/// The core path on a raw photo: the best face's int8 template, or `None`
/// when no face is found.
fn photo_template(
    path: &std::path::Path,
    blobs: &[Vec<u8>],
    embedder: &[u8],
) -> Result<Option<PhotoTemplate>, Box<dyn std::error::Error>> {
    use facegate_core::align::FACE_SIDE;
    use facegate_core::detect::{Detector, Frame};
    let img =
        facegate_eval::faces::read_image(path, facegate_eval::faces::ImageBounds::PHOTO)?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let frame = Frame::rgb(img.as_raw(), w, h).ok_or("photo size")?;
    let faces = detect_faces(blobs, &frame)?;
    let Some(best) = faces.first() else {
        return Ok(None);
    };
    let mut crop = Box::new([0u8; FACE_SIDE * FACE_SIDE * 3]);
    Detector::align(&frame, best, &mut crop).map_err(|e| format!("align: {e:?}"))?;
    let model = Model::parse(embedder)?;
    let mut emb = vec![0.0f32; model.embedding_dim()];
    model.embed(&crop[..], &mut vec![0i8; model.arena_len()], &mut emb)?;
    let t = Template::quantize(&Embedding::<128>::from_slice(&emb)?);
    Ok(Some((img.into_raw(), w, h, t)))
}

/// Writes `door_photos.bin` (see the module doc); returns what it holds.
fn door_photos_fixture(
    root: &std::path::Path,
    lfw_aligned: Option<&std::path::Path>,
    embedder: &[u8],
    out: &std::path::Path,
) -> Result<String, Box<dyn std::error::Error>> {
    use facegate_core::matcher::{Decision, Matcher, MatcherConfig, PersonId};
    let blobs = detector_blobs(root);
    let raw = raw_subset(lfw_aligned);
    let threshold = std::fs::read_to_string(root.join("models/nano.deployment.toml"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("threshold = ")?.trim().parse::<f32>().ok())
        });
    let (Some(raw), Some(threshold), false) = (raw, threshold, blobs.iter().any(Vec::is_empty))
    else {
        std::fs::write(out.join("door_photos.bin"), [])?;
        return Ok("nothing (no raw LFW photos, detector or nano deployment)".into());
    };
    let matcher = Matcher::new(MatcherConfig {
        threshold,
        margin: None,
    })?;
    let mut people: Vec<PathBuf> = std::fs::read_dir(&raw)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    people.sort();
    let photos = |p: &std::path::Path| -> Result<Vec<PathBuf>, std::io::Error> {
        let mut v: Vec<_> = std::fs::read_dir(p)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        v.sort();
        Ok(v)
    };
    // Person 1: the first whose second photo the host accepts against
    // their first; person 2 the next; the stranger the one after.
    let mut enrolled: Vec<(u32, Template<128>)> = Vec::new();
    let mut probes: Vec<PathBuf> = Vec::new();
    let mut stranger = None;
    for person in &people {
        let ph = photos(person)?;
        if enrolled.len() == 2 {
            stranger = ph.first().cloned();
            break;
        }
        let (Some(Some(a)), Some(second)) = (
            ph.first()
                .map(|p| photo_template(p, &blobs, embedder))
                .transpose()?,
            ph.get(1),
        ) else {
            continue;
        };
        let Some(b) = photo_template(second, &blobs, embedder)? else {
            continue;
        };
        let accepted = a.3.cosine(&b.3) >= threshold;
        if enrolled.is_empty() && !accepted {
            continue;
        }
        enrolled.push((u32::try_from(enrolled.len())? + 1, a.3));
        probes.push(second.clone());
    }
    probes.push(stranger.ok_or("no stranger photo")?);
    let mut bin = threshold.to_le_bytes().to_vec();
    for (_, t) in &enrolled {
        bin.extend(t.scale().to_le_bytes());
        bin.extend(t.values().iter().map(|v| v.to_le_bytes()[0]));
    }
    bin.extend(u32::try_from(probes.len())?.to_le_bytes());
    let mut said = Vec::new();
    for p in &probes {
        let (rgb, w, h, t) = photo_template(p, &blobs, embedder)?.ok_or("no face in a probe")?;
        let d: Decision = matcher.identify(&t, enrolled.iter().map(|(id, t)| (PersonId(*id), t)));
        bin.extend(u16::try_from(w)?.to_le_bytes());
        bin.extend(u16::try_from(h)?.to_le_bytes());
        bin.extend_from_slice(&rgb);
        bin.extend(d.accepted().map_or(0, |id| id.0).to_le_bytes());
        bin.extend(d.best_score().unwrap_or(f32::NAN).to_le_bytes());
        said.push(match d.accepted() {
            Some(id) => format!("{} → person {}", p.display(), id.0),
            None => format!("{} → rejected", p.display()),
        });
    }
    std::fs::write(out.join("door_photos.bin"), &bin)?;
    Ok(said.join(", "))
}

/// Writes the detector check's files (see the module doc); returns what
/// they hold.
fn detect_fixture(
    root: &std::path::Path,
    lfw_aligned: Option<&std::path::Path>,
    embedder: &[u8],
    out: &std::path::Path,
) -> Result<String, Box<dyn std::error::Error>> {
    use facegate_core::align::{FACE_SIDE, align_face};
    use facegate_core::detect::Frame;
    let names: Vec<String> = detector_names().map(|n| format!("det_{n}.fgm")).collect();
    let blobs = detector_blobs(root);
    // The first photo of the raw LFW subset (one face, 250 × 250).
    let photo = raw_subset(lfw_aligned)
        .map(|raw| raw.join("Abdullah_Gul/Abdullah_Gul_0001.jpg"))
        .filter(|p| p.is_file());
    let (Some(photo), false) = (photo, blobs.iter().any(Vec::is_empty)) else {
        for f in names
            .iter()
            .map(String::as_str)
            .chain(["photo.bin", "photo_expected.bin"])
        {
            std::fs::write(out.join(f), [])?;
        }
        return Ok("nothing (no raw LFW photo or no models/detector)".into());
    };
    let img = facegate_eval::faces::read_image(&photo, facegate_eval::faces::ImageBounds::PHOTO)?
        .to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let frame = Frame::rgb(img.as_raw(), w, h).ok_or("photo size")?;
    let faces = detect_faces(&blobs, &frame)?;
    let best = faces.first().ok_or("no face in the fixture photo")?;
    let mut crop = Box::new([0u8; FACE_SIDE * FACE_SIDE * 3]);
    align_face(img.as_raw(), w, h, &best.landmarks, &mut crop)
        .map_err(|e| format!("aligning the fixture face: {e:?}"))?;
    let model = Model::parse(embedder)?;
    let mut emb = vec![0.0f32; model.embedding_dim()];
    model.embed(&crop[..], &mut vec![0i8; model.arena_len()], &mut emb)?;
    let mut expected = u32::try_from(faces.len())?.to_le_bytes().to_vec();
    for f in &faces {
        let values = f
            .bbox
            .into_iter()
            .chain([f.score])
            .chain(f.landmarks.into_iter().flatten());
        expected.extend(values.flat_map(f32::to_le_bytes));
    }
    expected.extend(emb.iter().flat_map(|v| v.to_le_bytes()));
    let mut photo_bin = u16::try_from(w)?.to_le_bytes().to_vec();
    photo_bin.extend(u16::try_from(h)?.to_le_bytes());
    photo_bin.extend_from_slice(img.as_raw());
    for (name, blob) in names.iter().zip(&blobs) {
        std::fs::write(out.join(name), blob)?;
    }
    std::fs::write(out.join("photo.bin"), &photo_bin)?;
    std::fs::write(out.join("photo_expected.bin"), &expected)?;
    Ok(format!("{} ({} face(s))", photo.display(), faces.len()))
}
