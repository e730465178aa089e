//! `facegate bench photo`: photo → decision on the host, one thread — read
//! and decode the photo, detect the face (MTCNN), align it, embed it with
//! the int8 engine and match it against enrolled templates — against
//! dlib's face_recognition pipeline on the same photos (`--dlib`, the C++
//! peer `bench/dlib_photo.cpp`, built by `bench/setup-dlib.sh`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_core::align::FACE_SIDE;
use facegate_core::matcher::{Decision, Matcher, MatcherConfig};
use facegate_core::{EMBEDDING_DIM, Embedding, PersonId, Template};
use facegate_eval::embedder::Embedder;
use facegate_eval::faces::{Face, FaceSet, ImageBounds, read_image};
use facegate_quant::engine::EngineEmbedder;

use super::photos::{FaceChoice, PhotoArgs};

/// `facegate bench photo …`
#[derive(Debug, Args)]
pub struct PhotoBenchArgs {
    /// Identity-per-folder raw photos (not crops).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "../shared/data/lfw/raw_subset"
    )]
    photos: PathBuf,
    /// The engine blob.
    #[arg(long, default_value = "models/nano.fgm")]
    model: PathBuf,
    /// Photos to decide on (the first N files).
    #[arg(long, default_value_t = 50)]
    images: usize,
    /// People enrolled: the first photo of each of the first N identities.
    #[arg(long, default_value_t = 10)]
    enrolled: usize,
    /// Folder with the MTCNN weights (`bash scripts/setup.sh` fetches them).
    #[arg(long, env = "FACEGATE_MTCNN", hide_env_values = true)]
    detector: Option<PathBuf>,
    /// Find the face as the boards do: the int8 MTCNN blobs of this folder
    /// on the engine, the door's cascade, alignment straight from the
    /// frame (instead of the float MTCNN in tract and its quality gates).
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "models/detector")]
    board_detector: Option<PathBuf>,
    /// Also time dlib's face_recognition pipeline on the same photos (the
    /// peer; set it up with `bench/setup-dlib.sh`).
    #[arg(long)]
    dlib: bool,
    /// The peer program.
    #[arg(long, default_value = "target/bench/dlib_photo")]
    dlib_tool: PathBuf,
    /// dlib's model files.
    #[arg(long, default_value = "models/third_party/dlib")]
    dlib_models: PathBuf,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark.
pub fn run(a: PhotoBenchArgs) -> Result<ExitCode> {
    if a.images == 0 || a.enrolled == 0 {
        bail!("--images and --enrolled must be at least 1");
    }
    if a.dlib && !a.dlib_tool.is_file() {
        bail!(
            "no dlib peer at {}: build it with bench/setup-dlib.sh",
            a.dlib_tool.display()
        );
    }
    let set = FaceSet::scan(&a.photos)?;
    let files = super::bench::first_files(&set, a.images);
    let loader = PhotoArgs {
        aligned: false,
        detector: a.detector.clone(),
        face: FaceChoice::Central,
        min_face: 40.0,
    }
    .loader()?;
    let engine = EngineEmbedder::load(&a.model).map_err(anyhow::Error::msg)?;
    let blobs = a
        .board_detector
        .as_deref()
        .map(super::detector::read_blobs)
        .transpose()?;
    let board = blobs
        .as_deref()
        .map(|b| {
            facegate_quant::detector::board_detector(b, facegate_core::detect::DetectConfig::DOOR)
        })
        .transpose()?;
    let on_board = std::sync::Mutex::new(board.as_ref().map(|d| {
        (
            vec![0i8; d.arena_len()],
            Box::new(facegate_core::detect::Scratch::new()),
        )
    }));
    // The aligned face as the boards find it: decode, detect, align the best.
    let board_face = |path: &PathBuf| -> Result<Option<Face>> {
        use facegate_core::detect::{Detector, Face as Found, Frame};
        let mut held = on_board
            .lock()
            .map_err(|_| anyhow::anyhow!("detector state poisoned"))?;
        let (Some(d), Some((arena, scratch))) = (&board, &mut *held) else {
            return Ok(None);
        };
        let img = read_image(path, ImageBounds::PHOTO)
            .with_context(|| format!("{}", path.display()))?
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let Some(frame) = Frame::rgb(img.as_raw(), w, h) else {
            return Ok(None);
        };
        let mut faces: heapless::Vec<Found, 4> = heapless::Vec::new();
        d.detect(&frame, arena, scratch, &mut faces)?;
        let Some(best) = faces.first() else {
            return Ok(None);
        };
        let mut rgb = vec![0u8; FACE_SIDE * FACE_SIDE * 3];
        let crop: &mut [u8; FACE_SIDE * FACE_SIDE * 3] = (&mut rgb[..])
            .try_into()
            .map_err(|_| anyhow::anyhow!("crop size"))?;
        Ok(Detector::align(&frame, best, crop)
            .ok()
            .map(|_| Face { rgb }))
    };
    // The face's template, and the seconds spent finding and aligning it.
    let template = |path: &PathBuf| -> Result<(Option<Template>, f64)> {
        let t = Instant::now();
        let face = if board.is_some() {
            board_face(path)?
        } else {
            loader.load(path).ok().map(|f| f.face)
        };
        let Some(face) = face else {
            return Ok((None, t.elapsed().as_secs_f64()));
        };
        let found = t.elapsed().as_secs_f64();
        let raw = engine.embed(&face).map_err(anyhow::Error::msg)?;
        let t = Template::quantize(&Embedding::<EMBEDDING_DIM>::from_slice(&raw)?);
        Ok((Some(t), found))
    };
    // One enrolled photo per person, as a door with a small household.
    let mut gallery = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in &set.files {
        if gallery.len() == a.enrolled {
            break;
        }
        if seen.insert(f.identity) {
            let id = PersonId(u32::try_from(gallery.len())?);
            if let (Some(t), _) = template(&set.root.join(&f.path))? {
                gallery.push((id, t));
            }
        }
    }
    // Any threshold: the decision's cost does not depend on it.
    let matcher = Matcher::new(MatcherConfig {
        threshold: 0.9,
        margin: None,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // One thread, as the peer.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (times, detect, found, accepted) = pool.install(|| -> Result<_> {
        let (mut times, mut detect) = (Vec::new(), Vec::new());
        let (mut found, mut accepted) = (0usize, 0usize);
        for path in &files {
            let t = Instant::now();
            let (probe, finding) = template(path)?;
            let decision =
                probe.map(|p| matcher.identify(&p, gallery.iter().map(|(id, t)| (*id, t))));
            times.push(t.elapsed().as_secs_f64() * 1e3);
            detect.push(finding * 1e3);
            found += usize::from(decision.is_some());
            accepted += usize::from(matches!(decision, Some(Decision::Accept(_))));
        }
        Ok((times, detect, found, accepted))
    })?;
    let ours = median(times);
    let detect = median(detect);
    println!(
        "photo → decision, one thread, median of {} photos from {} ({} people enrolled):",
        files.len(),
        a.photos.display(),
        gallery.len()
    );
    println!(
        "  facegate ({}, align, {} int8 engine, match)  {ours:8.2} ms   faces found in {found}/{}, {accepted} accepted",
        if board.is_some() {
            "int8 MTCNN on the engine, door cascade"
        } else {
            "float MTCNN in tract"
        },
        a.model.display(),
        files.len()
    );
    println!("    of which reading, detecting and aligning the face  {detect:8.2} ms");
    if a.dlib {
        let peer = dlib_peer(&a, &files)?;
        println!(
            "  dlib face_recognition pipeline (C++: HOG ×2, 5 landmarks, ResNet)  {:8.2} ms   faces found in {}/{}",
            peer.0,
            peer.1,
            files.len()
        );
        println!("  dlib / facegate = {:.1}× the time", peer.0 / ours);
    }
    Ok(ExitCode::SUCCESS)
}

/// The peer's median milliseconds per photo and faces found.
fn dlib_peer(a: &PhotoBenchArgs, files: &[PathBuf]) -> Result<(f64, usize)> {
    let mut child = Command::new(&a.dlib_tool)
        .arg(&a.dlib_models)
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", a.dlib_tool.display()))?;
    {
        let mut stdin = child.stdin.take().context("peer stdin")?;
        for f in files {
            writeln!(stdin, "{}", f.display())?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the dlib peer failed ({})", out.status);
    }
    let (mut times, mut found) = (Vec::new(), 0usize);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        match cols.as_slice() {
            [_, ms, faces, _] => {
                times.push(ms.parse::<f64>().context("peer time")?);
                found += usize::from(faces.parse::<usize>().unwrap_or(0) > 0);
            }
            [path, "error", why] => bail!("the dlib peer could not read {path}: {why}"),
            _ => bail!("unexpected peer line: {line}"),
        }
    }
    if times.len() != files.len() {
        bail!(
            "the dlib peer answered {} of {} photos",
            times.len(),
            files.len()
        );
    }
    Ok((median(times), found))
}
