//! `facegate detector …`: the board's face detector (MTCNN on the int8
//! engine): build its blobs, and measure it against the host's detector.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use facegate_core::detect::boxes::overlap;
use facegate_core::detect::{DetectConfig, Face, Frame, Scratch};
use facegate_detect::{Mtcnn, MtcnnConfig};
use facegate_eval::faces::{ImageBounds, read_image};
use facegate_quant::detector::{NETS, PNET_SMALL_TILES, Photo, board_detector, build};
use indicatif::{ProgressBar, ProgressStyle};

/// `facegate detector …`
#[derive(Debug, Subcommand)]
pub enum DetectorCommand {
    /// Quantise the host's MTCNN (P-, R-, O-Net) into int8 blobs for the board's detector.
    Build(BuildArgs),
    /// The board's detector against the host's on photos: recall, precision, landmarks, time.
    Eval(EvalArgs),
}

/// `facegate detector build …`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Folder with the host detector's pnet.onnx, rnet.onnx and onet.onnx.
    #[arg(long, default_value = facegate_detect::DEFAULT_WEIGHTS)]
    weights: PathBuf,
    /// Photos to calibrate on (a folder of images, or of folders of images; never the evaluation photos).
    #[arg(long, default_value = "../shared/data/celeba/raw_subset")]
    calib: PathBuf,
    /// Calibration crops per photo and net (random squares, faces and background).
    #[arg(long, default_value_t = 8)]
    per_photo: usize,
    /// Output folder for pnet.fgm, rnet.fgm and onet.fgm (and pnet48/32/16.fgm, P-Net for smaller tiles).
    #[arg(long, short, default_value = "models/detector")]
    out: PathBuf,
}

/// `facegate detector eval …`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Folder with the board detector's pnet.fgm, rnet.fgm and onet.fgm (and the smaller P-Net tiles there).
    #[arg(long, default_value = "models/detector")]
    blobs: PathBuf,
    /// Folder with the host detector's ONNX weights (the reference).
    #[arg(long, default_value = facegate_detect::DEFAULT_WEIGHTS)]
    weights: PathBuf,
    /// Photos (a folder of images, or of folders of images).
    #[arg(long, default_value = "../shared/data/lfw/raw_subset")]
    photos: PathBuf,
    /// At most this many photos (sorted by path).
    #[arg(long)]
    limit: Option<usize>,
    /// Run the board's detector as a door does (`DetectConfig::DOOR`: O-Net
    /// on the two best R-Net boxes, R-Net on the 8 best proposals) rather
    /// than MTCNN's full cascade; the figure that matters then is the
    /// door's face (the best one).
    #[arg(long)]
    door: bool,
    /// With --door: R-Net judges at most this many proposals.
    #[arg(long, requires = "door", default_value_t = DetectConfig::DOOR.max_proposals)]
    max_proposals: u16,
    /// With --door: O-Net judges at most this many boxes.
    #[arg(long, requires = "door", default_value_t = DetectConfig::DOOR.max_refined)]
    max_refined: u16,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `facegate detector …`.
pub fn run(c: DetectorCommand) -> Result<ExitCode> {
    match c {
        DetectorCommand::Build(a) => run_build(&a),
        DetectorCommand::Eval(a) => run_eval(&a),
    }
}

/// Image files under `dir` (one level of sub-folders), sorted.
fn photo_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            for f in std::fs::read_dir(&p)? {
                files.push(f?.path());
            }
        } else {
            files.push(p);
        }
    }
    files.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
    });
    files.sort();
    if files.is_empty() {
        bail!("{}: no photos (.jpg, .jpeg, .png)", dir.display());
    }
    Ok(files)
}

fn load_photo(path: &Path) -> Result<Photo> {
    let img = read_image(path, ImageBounds::PHOTO)
        .with_context(|| format!("{}", path.display()))?
        .to_rgb8();
    Ok(Photo {
        width: img.width() as usize,
        height: img.height() as usize,
        rgb: img.into_raw(),
    })
}

fn run_build(a: &BuildArgs) -> Result<ExitCode> {
    let photos: Vec<Photo> = photo_files(&a.calib)?
        .iter()
        .map(|p| load_photo(p))
        .collect::<Result<_>>()?;
    eprintln!(
        "calibrating on {} crops per net from {} photos in {}",
        photos.len() * a.per_photo,
        photos.len(),
        a.calib.display()
    );
    let blobs = build(&a.weights, &photos, a.per_photo)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    for (name, blob) in &blobs.nets {
        let path = a.out.join(format!("{name}.fgm"));
        std::fs::write(&path, blob).with_context(|| format!("{}", path.display()))?;
        let m = facegate_core::engine::Model::parse(blob)?;
        let (h, w) = m.input_size();
        println!(
            "{}: {} B, input {h}×{w}, output {:?}, arena {} B, {} MACs a run",
            path.display(),
            blob.len(),
            m.output_shape(),
            m.arena_len(),
            m.macs()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a folder's blobs: P-, R- and O-Net, then the smaller P-Net tiles
/// that are there.
pub fn read_blobs(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let read = |name: &str| {
        let p = dir.join(format!("{name}.fgm"));
        std::fs::read(&p).with_context(|| {
            format!(
                "{}: `facegate detector build --out {}` writes it",
                p.display(),
                dir.display()
            )
        })
    };
    let mut blobs = vec![read(NETS[0].0)?, read(NETS[1].0)?, read(NETS[2].0)?];
    for (name, _) in PNET_SMALL_TILES {
        if dir.join(format!("{name}.fgm")).is_file() {
            blobs.push(read(name)?);
        }
    }
    Ok(blobs)
}

/// Mean landmark distance between two faces over the reference's eye distance.
fn landmark_error(reference: &[[f32; 2]; 5], other: &[[f32; 2]; 5]) -> f32 {
    let d = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let eyes = d(reference[0], reference[1]).max(1.0);
    reference
        .iter()
        .zip(other)
        .map(|(&a, &b)| d(a, b))
        .sum::<f32>()
        / 5.0
        / eyes
}

/// The figures of one evaluation.
#[derive(Debug, Default, serde::Serialize)]
pub struct DetectorReport {
    /// Photos read.
    pub photos: usize,
    /// Faces the host found.
    pub host_faces: usize,
    /// Faces the board found.
    pub board_faces: usize,
    /// Host faces the board found too (IoU ≥ 0.5).
    pub matched: usize,
    /// Board faces that match a host face.
    pub board_matched: usize,
    /// Mean landmark error of matched faces, in eye distances.
    pub landmark_error: f32,
    /// Largest landmark error of a matched face.
    pub landmark_error_max: f32,
    /// Photos in which the host found a face.
    pub photos_with_faces: usize,
    /// Of those, photos whose best face on the board (the one a door
    /// judges) is the host's best face (IoU ≥ 0.5).
    pub best_face_matched: usize,
    /// Photos in which the host found exactly one face (as at a door).
    pub single_face_photos: usize,
    /// Of those, photos whose best face on the board is that face.
    pub single_face_matched: usize,
    /// Mean milliseconds per photo: host (float, tract), board (int8 engine).
    pub host_ms: f64,
    /// See `host_ms`.
    pub board_ms: f64,
}

impl DetectorReport {
    /// Share of the host's faces the board found.
    pub fn recall(&self) -> f64 {
        self.matched as f64 / self.host_faces.max(1) as f64
    }
    /// Share of the photos with a face in which the board's best face is
    /// the host's best.
    pub fn best_face_recall(&self) -> f64 {
        self.best_face_matched as f64 / self.photos_with_faces.max(1) as f64
    }
    /// Share of the photos with one face in which the board's best face is it.
    pub fn single_face_recall(&self) -> f64 {
        self.single_face_matched as f64 / self.single_face_photos.max(1) as f64
    }
    /// Share of the board's faces that the host found too.
    pub fn precision(&self) -> f64 {
        self.board_matched as f64 / self.board_faces.max(1) as f64
    }
}

/// Runs both detectors on every photo and compares them; the board's runs
/// with `config`.
pub fn evaluate(
    blobs: &[Vec<u8>],
    host: &Mtcnn,
    files: &[PathBuf],
    config: DetectConfig,
) -> Result<DetectorReport> {
    let board = board_detector(blobs, config)?;
    let mut arena = vec![0i8; board.arena_len()];
    let mut scratch = Box::new(Scratch::new());
    let mut faces: heapless::Vec<Face, 16> = heapless::Vec::new();
    let mut r = DetectorReport::default();
    let (mut host_t, mut board_t) = (0.0f64, 0.0f64);
    let mut errors = Vec::new();
    let bar = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} photos {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for path in files {
        bar.inc(1);
        let img = read_image(path, ImageBounds::PHOTO)
            .with_context(|| format!("{}", path.display()))?
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let Some(frame) = Frame::rgb(img.as_raw(), w, h) else {
            continue; // longer than the board takes
        };
        let t = Instant::now();
        let want = host.detect(&img)?;
        host_t += t.elapsed().as_secs_f64();
        let t = Instant::now();
        board.detect(&frame, &mut arena, &mut scratch, &mut faces)?;
        board_t += t.elapsed().as_secs_f64();
        r.photos += 1;
        r.host_faces += want.len();
        r.board_faces += faces.len();
        for d in &want {
            let best = faces
                .iter()
                .map(|f| (overlap(&d.bbox, &f.bbox, false), f))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .filter(|(iou, _)| *iou >= 0.5);
            if let Some((_, f)) = best {
                r.matched += 1;
                errors.push(landmark_error(&d.landmarks, &f.landmarks));
            }
        }
        r.board_matched += faces
            .iter()
            .filter(|f| want.iter().any(|d| overlap(&d.bbox, &f.bbox, false) >= 0.5))
            .count();
        if let Some(best) = want.iter().max_by(|a, b| a.score.total_cmp(&b.score)) {
            let hit = faces
                .first()
                .is_some_and(|f| overlap(&best.bbox, &f.bbox, false) >= 0.5);
            r.photos_with_faces += 1;
            r.best_face_matched += usize::from(hit);
            if want.len() == 1 {
                r.single_face_photos += 1;
                r.single_face_matched += usize::from(hit);
            }
        }
    }
    bar.finish_and_clear();
    r.landmark_error = errors.iter().sum::<f32>() / errors.len().max(1) as f32;
    r.landmark_error_max = errors.iter().copied().fold(0.0, f32::max);
    r.host_ms = 1e3 * host_t / r.photos.max(1) as f64;
    r.board_ms = 1e3 * board_t / r.photos.max(1) as f64;
    Ok(r)
}

fn run_eval(a: &EvalArgs) -> Result<ExitCode> {
    let blobs = read_blobs(&a.blobs)?;
    let host = Mtcnn::load(&a.weights, MtcnnConfig::default())?;
    let mut files = photo_files(&a.photos)?;
    if let Some(n) = a.limit {
        files.truncate(n);
    }
    // The host's thresholds; a door's caps when asked.
    let config = if a.door {
        DetectConfig {
            max_proposals: a.max_proposals,
            max_refined: a.max_refined,
            ..host.config()
        }
    } else {
        host.config()
    };
    let r = evaluate(&blobs, &host, &files, config)?;
    println!("photos:            {}", r.photos);
    println!(
        "faces:             host {}, board {}",
        r.host_faces, r.board_faces
    );
    println!(
        "recall:            {:.2} % of the host's faces (IoU ≥ 0.5)",
        100.0 * r.recall()
    );
    println!(
        "precision:         {:.2} % of the board's faces are the host's",
        100.0 * r.precision()
    );
    println!(
        "best face:         {:.2} % of {} photos with a face: the board's best is the host's{}",
        100.0 * r.best_face_recall(),
        r.photos_with_faces,
        if a.door { " (door cascade)" } else { "" }
    );
    println!(
        "one-face photos:   {:.2} % of {}: the board's best face is that face",
        100.0 * r.single_face_recall(),
        r.single_face_photos
    );
    println!(
        "landmarks:         {:.3} eye distances on average, {:.3} at worst",
        r.landmark_error, r.landmark_error_max
    );
    println!(
        "time per photo:    host {:.1} ms (float, tract), board {:.1} ms (int8 engine), 1 thread",
        r.host_ms, r.board_ms
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("{}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
