//! `facegate board`: ask a provisioned board what it holds, what it decided,
//! and what it decides about a face.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ed25519_dalek::SigningKey;
use facegate_core::protocol::{AuditEntry, DecisionKind, ErrorCode, FrameFormat, FrameSpec};
use facegate_link::{Board, BoardInfo};

use super::photos::PhotoArgs;

/// `facegate board …`
#[derive(Debug, Subcommand)]
pub enum BoardCommand {
    /// Firmware, model, claim state, people, threshold and nonce.
    Info(PortArgs),
    /// The people enrolled on the board (signed with the site key: only its
    /// holder may read who is enrolled).
    List(SignedPortArgs),
    /// The board's audit log: every decision with time, person and score
    /// (signed with the site key: only its holder may read it).
    Audit(SignedPortArgs),
    /// Present a face photo to the board's door, signed with the site key
    /// (nobody else may probe the door over the link): the board decides
    /// and pulses its lock exactly as for a camera frame, and tells the
    /// key's holder the score. With --frame the whole photo goes as a
    /// camera frame and the board finds the face itself. Exit status 0
    /// unlocked, 3 rejected, 4 locked out, 5 no face found (--frame).
    Verify(BoardVerifyArgs),
}

/// The board to talk to.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// `tcp:HOST:PORT` (QEMU board, edge board) or a serial device (`/dev/ttyACM0[@BAUD]`).
    #[arg(long)]
    pub port: String,
}

/// A board and the site key that may read it.
#[derive(Debug, Args)]
pub struct SignedPortArgs {
    #[command(flatten)]
    port: PortArgs,
    /// Site private key (`facegate keygen`).
    #[arg(long, default_value = "site.key")]
    key: PathBuf,
}

/// `facegate board verify …`
#[derive(Debug, Args)]
pub struct BoardVerifyArgs {
    #[command(flatten)]
    port: PortArgs,
    /// Site private key (`facegate keygen`): only its holder may ask.
    #[arg(long, default_value = "site.key")]
    key: PathBuf,
    #[command(flatten)]
    faces: PhotoArgs,
    /// Send the whole photo as a camera frame (scaled down to at most
    /// 320×240 pixels' worth, a QVGA camera's): the board detects, aligns
    /// and judges the face itself (boards with a detector).
    #[arg(long)]
    frame: bool,
    /// Pixel format of the frame sent with --frame (what the camera gives).
    #[arg(long, value_enum, default_value = "rgb565", requires = "frame")]
    frame_format: FrameFormatArg,
    /// Face photo (detected and aligned on the host unless --frame; see --aligned).
    photo: PathBuf,
}

/// `--frame-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FrameFormatArg {
    /// 16-bit 5-6-5 colour, as DCMI cameras give.
    Rgb565,
    /// 8-bit grey.
    Grey,
    /// 24-bit colour.
    Rgb,
}

/// Pixels a frame sent with `--frame` may have: a QVGA camera's.
pub const FRAME_PIXELS: u32 = 320 * 240;

/// `photo` as a camera frame: scaled to at most [`FRAME_PIXELS`] pixels
/// (keeping its shape) and packed in `format`.
pub fn camera_frame(photo: &Path, format: FrameFormatArg) -> Result<(FrameSpec, Vec<u8>)> {
    use facegate_eval::faces::{ImageBounds, read_image};
    let img = read_image(photo, ImageBounds::PHOTO)
        .with_context(|| format!("cannot read {}", photo.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let img = if w * h > FRAME_PIXELS {
        let k = (f64::from(FRAME_PIXELS) / f64::from(w * h)).sqrt();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (nw, nh) = (
            ((f64::from(w) * k).floor() as u32).max(1),
            ((f64::from(h) * k).floor() as u32).max(1),
        );
        image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let (w, h) = img.dimensions();
    let (format, pixels): (FrameFormat, Vec<u8>) = match format {
        FrameFormatArg::Rgb => (FrameFormat::Rgb888, img.into_raw()),
        FrameFormatArg::Rgb565 => (
            FrameFormat::Rgb565,
            img.pixels()
                .flat_map(|p| facegate_core::detect::rgb565(p.0))
                .collect(),
        ),
        FrameFormatArg::Grey => (
            FrameFormat::Grey8,
            image::DynamicImage::ImageRgb8(img).to_luma8().into_raw(),
        ),
    };
    let spec = FrameSpec {
        width: u16::try_from(w)?,
        height: u16::try_from(h)?,
        format,
    };
    Ok((spec, pixels))
}

/// Runs `facegate board …`.
pub fn run(c: BoardCommand) -> Result<ExitCode> {
    match c {
        BoardCommand::Info(a) => {
            let info = connect(&a.port)?.info()?;
            print!("{}", describe(&a.port, &info));
            Ok(ExitCode::SUCCESS)
        }
        BoardCommand::List(a) => {
            let key = load_site_key(&a.key)?;
            let people = connect(&a.port.port)?.list(&key)?;
            println!("{:>10}  {:>9}  digest", "id", "templates");
            for p in &people {
                println!("{:>10}  {:>9}  {:08x}", p.id, p.templates, p.digest);
            }
            println!("{} people", people.len());
            Ok(ExitCode::SUCCESS)
        }
        BoardCommand::Audit(a) => {
            let key = load_site_key(&a.key)?;
            let events = connect(&a.port.port)?.audit(&key)?;
            for e in &events {
                println!("{}", audit_line(e));
            }
            println!("{} events", events.len());
            Ok(ExitCode::SUCCESS)
        }
        BoardCommand::Verify(a) if a.frame => {
            frame_on_board(&a.port.port, &a.key, &a.photo, a.frame_format)
        }
        BoardCommand::Verify(a) => verify_on_board(&a.port.port, &a.key, &a.photo, &a.faces),
    }
}

/// Sends the face in `photo` to the board's door; exit 0 unlocked, 3
/// rejected, 4 locked out.
pub fn verify_on_board(
    port: &str,
    key: &Path,
    photo: &Path,
    faces: &PhotoArgs,
) -> Result<ExitCode> {
    let key = load_site_key(key)?;
    let face = faces
        .loader()?
        .load(photo)
        .map_err(anyhow::Error::msg)?
        .face;
    let decision = connect(port)?
        .verify_face(&key, &face.rgb)
        .with_context(|| format!("the board could not check {}", photo.display()))?;
    println!("{}", audit_line(&decision));
    decision_status(&decision)
}

/// Sends `photo` as a camera frame; the board finds the face. Exit 0
/// unlocked, 3 rejected, 4 locked out, 5 no face.
pub fn frame_on_board(
    port: &str,
    key: &Path,
    photo: &Path,
    format: FrameFormatArg,
) -> Result<ExitCode> {
    let key = load_site_key(key)?;
    let (spec, pixels) = camera_frame(photo, format)?;
    eprintln!(
        "sending {} as a {}×{} {:?} frame ({} bytes)",
        photo.display(),
        spec.width,
        spec.height,
        spec.format,
        pixels.len()
    );
    let decision = match connect(port)?.verify_frame(&key, spec, &pixels) {
        Err(facegate_link::LinkError::Refused(ErrorCode::NoFace)) => {
            println!("no face: the board found no face in the frame (nothing decided or logged)");
            return Ok(ExitCode::from(5));
        }
        r => r.with_context(|| format!("the board could not check {}", photo.display()))?,
    };
    println!("{}", audit_line(&decision));
    decision_status(&decision)
}

/// Exit status of a decision: 0 unlocked, 3 rejected, 4 locked out.
fn decision_status(decision: &AuditEntry) -> Result<ExitCode> {
    Ok(match decision.kind {
        DecisionKind::Unlocked => ExitCode::SUCCESS,
        DecisionKind::Rejected => ExitCode::from(3),
        DecisionKind::LockedOut => ExitCode::from(4),
        DecisionKind::Fault => bail!("the board's face pipeline failed"),
    })
}

pub(crate) fn connect(port: &str) -> Result<Board> {
    Board::connect(port).with_context(|| {
        format!("no board at {port} (is it powered and connected? for QEMU: `cargo xtask door`)")
    })
}

/// Reads a key file written by `facegate keygen` (hex seed).
pub(crate) fn load_site_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read site key {}", path.display()))?;
    let text = text.trim();
    let seed: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .filter(|v: &Vec<u8>| v.len() == 32)
        .with_context(|| {
            format!(
                "{} is not a facegate site key (64 hex digits from `facegate keygen`)",
                path.display()
            )
        })?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| anyhow::anyhow!("key length"))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A device id as `board info` prints it and `claim-token --device-id`
/// takes it: text when it is printable ASCII (zero padding dropped), else
/// `hex:` and its 32 hex digits.
pub fn device_id_text(id: &[u8]) -> String {
    let text = &id[..id.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)];
    if !text.is_empty() && text.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(text).into_owned()
    } else {
        format!("hex:{}", hex(id))
    }
}

/// `Info` as people read it.
pub fn describe(port: &str, i: &BoardInfo) -> String {
    let id = device_id_text(&i.device_id);
    let claimed = match (&i.site_key, i.claim_needs_token) {
        (Some(k), _) => format!("yes, site key {}…", &hex(k)[..16]),
        (None, false) => "no (the first `facegate provision` claims it)".to_string(),
        (None, true) => {
            "no (only with its installer's token: `facegate provision --installer-key` or --claim-token)"
                .to_string()
        }
    };
    let tampered = if i.tampered {
        "TAMPERED   its stored state failed its checks (forged, damaged or rolled-back flash): it opens for no one and takes no command; erase its flash, then claim and provision it again\n"
    } else {
        ""
    };
    let factory = if i.threshold >= facegate_core::matcher::FACTORY_THRESHOLD {
        " (factory: opens for no one until provisioned with the model's threshold)"
    } else {
        ""
    };
    format!(
        "{tampered}board      {port}\nfirmware   {}\ndevice id  {}\nmodel      {}\nclaimed    {claimed}\npeople     {} of {}\nthreshold  {:.4}{factory}\nunlock     {} ms\nnonce      {}\n",
        i.firmware,
        id,
        hex(&i.model_hash),
        i.enrolled,
        i.capacity,
        i.threshold,
        i.unlock_ms,
        i.nonce
    )
}

fn audit_line(e: &AuditEntry) -> String {
    let t = format!("{:>9.3} s", e.time_ms as f64 / 1000.0);
    // Scores come back only to the site key's holder (`board verify`,
    // `board audit`, both signed).
    let score = |label: &str| {
        e.score
            .map_or_else(String::new, |s| format!("  {label} {s:.4}"))
    };
    match e.kind {
        DecisionKind::Unlocked => format!(
            "{t}  UNLOCKED  person {}{}",
            e.person.unwrap_or_default(),
            score("score")
        ),
        DecisionKind::Rejected => format!("{t}  REJECTED{}", score("best score")),
        DecisionKind::LockedOut => {
            format!("{t}  LOCKED OUT  next attempt in {} ms", e.wait_ms)
        }
        DecisionKind::Fault => format!("{t}  FAULT  (embedder or lock failed)"),
    }
}
