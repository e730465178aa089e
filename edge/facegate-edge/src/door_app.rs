//! The door app of a Linux board: the firmware's store, audit log, door and
//! protocol with tract as the embedder, a file as the flash, a GPIO line as
//! the relay, and a TCP socket or serial device as the provisioning link.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use facegate_core::audit::FlashAuditLog;
use facegate_core::door::Door;
use facegate_core::face_service::FaceService;
use facegate_core::flash_store::{DeviceKey, FlashStore};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::device::{BoardInfo, DoorStore};
use facegate_core::protocol::{DEVICE_ID_LEN, FACE_BYTES};
use facegate_eval::faces::Face;

use crate::SystemClock;
use crate::embedder::TractEmbedder;
use crate::faces::FaceFolder;
use crate::file_flash::{FileFlash, PAGE, create_atomically};
use crate::link::LinkServer;
use crate::lock::Relay;

/// People an edge board holds.
pub const PEOPLE: usize = 64;
/// Flash pages of the store (a person takes about 1.2 KiB sealed).
pub const STORE_PAGES: usize = 64;
/// Flash pages of the audit log (about 150 events per page).
pub const AUDIT_PAGES: usize = 16;

/// The template-sealing key of this board: 32 random bytes in a 0600 file.
struct FileKey([u8; 32]);

impl DeviceKey for FileKey {
    fn device_key(&self) -> [u8; 32] {
        self.0
    }
}

fn device_key(state: &Path) -> Result<FileKey> {
    let path = state.join("device.key");
    if let Ok(bytes) = std::fs::read(&path) {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is damaged (not 32 bytes): the templates sealed with it cannot be read; restore it or start a new state folder", path.display()))?;
        return Ok(FileKey(key));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    create_atomically(&path, 0o600, |f| f.write_all(&key))
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(FileKey(key))
}

/// Where a board's hardware serial number is, on the boards that have one
/// (Raspberry Pi and most device-tree ARM boards).
const HARDWARE_SERIALS: [&str; 2] = [
    "/sys/firmware/devicetree/base/serial-number",
    "/proc/device-tree/serial-number",
];

/// The board's id, bound into every signature it accepts: `--device-id`;
/// else the hardware serial number; else a random id made once for this
/// state folder (`device.id`). Never `/etc/machine-id`: every board
/// flashed from one card image shares it, and a command signed for one
/// would be accepted by all of them (issue 25 #9).
pub fn device_id(given: Option<&str>, state: &Path) -> Result<[u8; DEVICE_ID_LEN]> {
    let text = match given {
        Some(t) => t.to_string(),
        None => match hardware_serial() {
            Some(serial) => serial,
            None => state_device_id(state)?,
        },
    };
    if text.len() > DEVICE_ID_LEN {
        bail!("a device id is at most {DEVICE_ID_LEN} bytes");
    }
    let mut id = [0u8; DEVICE_ID_LEN];
    id[..text.len()].copy_from_slice(text.as_bytes());
    Ok(id)
}

fn hardware_serial() -> Option<String> {
    HARDWARE_SERIALS.iter().find_map(|p| {
        let raw = std::fs::read(p).ok()?;
        let text: String = String::from_utf8_lossy(&raw)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        // The last 16 characters: serials pad on the left with zeros.
        let start = text.len().saturating_sub(DEVICE_ID_LEN);
        (!text.is_empty()).then(|| text[start..].to_string())
    })
}

fn state_device_id(state: &Path) -> Result<String> {
    let path = state.join("device.id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim().to_string();
        if text.is_empty() || text.len() > DEVICE_ID_LEN {
            bail!(
                "{} is damaged (1 to {DEVICE_ID_LEN} characters expected): restore it, or pass --device-id",
                path.display()
            );
        }
        return Ok(text);
    }
    let mut raw = [0u8; DEVICE_ID_LEN / 2];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let text: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    create_atomically(&path, 0o644, |f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot create {}", path.display()))?;
    eprintln!(
        "edge: no hardware serial number; this board's id is {text} (kept in {}). A card cloned from this one shares it: give clones their own --device-id",
        path.display()
    );
    Ok(text)
}

/// Faces the start-up twin check embeds with both models: smooth synthetic
/// images, so a board needs no face data.
fn reference_faces() -> Vec<Face> {
    (0..2u32)
        .map(|k| Face {
            rgb: (0..FACE_BYTES)
                .map(|i| {
                    let (p, c) = (i / 3, i % 3);
                    let (y, x) = (p / 112, p % 112);
                    let v = (x * (2 + k as usize) + y * (3 + c) + 40 * c) % 256;
                    u8::try_from(v).unwrap_or(0)
                })
                .collect(),
        })
        .collect()
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Float (or QDQ) ONNX model.
    pub model: PathBuf,
    /// The int8 blob the site's templates are made with.
    pub blob: PathBuf,
    /// Folder for the store, audit log and device key.
    pub state: PathBuf,
    /// `tcp:ADDR:PORT` or a serial device `PATH[@BAUD]`.
    pub port: String,
    /// Folder of camera frames.
    pub faces: Option<PathBuf>,
    /// Device id text (≤ 16 bytes); `None`: the hardware serial number, else
    /// a random id kept in the state folder.
    pub device_id: Option<String>,
    /// GPIO chip and line of the lock relay.
    pub gpio: Option<(String, u32)>,
}

/// Runs the door until `stop` is set (a signal handler, a test) or the link fails.
pub fn serve(a: &ServeConfig, stop: &AtomicBool) -> Result<()> {
    std::fs::create_dir_all(&a.state)
        .with_context(|| format!("cannot create {}", a.state.display()))?;
    let embedder = TractEmbedder::load(&a.model, &a.blob, &reference_faces())?;
    let hash = embedder.model_hash();
    let key = device_key(&a.state)?;
    let flash = FileFlash::open(&a.state.join("store.bin"), STORE_PAGES)?;
    let mut store =
        FlashStore::<_, PEOPLE>::open(flash, 0..u32::try_from(STORE_PAGES * PAGE)?, hash, &key)
            .map_err(|e| {
                anyhow::anyhow!("the store in {} does not open: {e:?}", a.state.display())
            })?;
    if store.refused() > 0 {
        eprintln!(
            "edge: {} stored people were refused (another model or damaged); re-provision them",
            store.refused()
        );
    }
    let audit_flash = FileFlash::open(&a.state.join("audit.bin"), AUDIT_PAGES)?;
    let audit = FlashAuditLog::open(audit_flash, 0..u32::try_from(AUDIT_PAGES * PAGE)?)
        .map_err(|e| anyhow::anyhow!("audit log: {e:?}"))?;
    let relay = match &a.gpio {
        #[cfg(feature = "gpio")]
        Some((chip, line)) => Relay::gpio(chip, *line)?,
        #[cfg(not(feature = "gpio"))]
        Some(_) => bail!("this build has no GPIO support (build with --features gpio)"),
        None => Relay::logged_only(),
    };
    let door = Door::new(relay, LockoutPolicy::default(), None);
    let mut face = Box::new([0u8; FACE_BYTES]);
    let mut service = FaceService::new(
        door,
        embedder,
        audit,
        SystemClock(Instant::now()),
        &mut face,
    );
    let board = BoardInfo {
        firmware: env!("CARGO_PKG_VERSION"),
        model_hash: hash,
        device_id: device_id(a.device_id.as_deref(), &a.state)?,
    };
    let mut link = LinkServer::open(&a.port)?;
    let mut folder = a.faces.as_deref().map(FaceFolder::new).transpose()?;
    println!(
        "edge: store opened: {} people, claimed {}, nonce {}",
        store.len(),
        store.site_key().is_some(),
        store.nonce()
    );
    println!(
        "edge: ready, provisioning on {}{}",
        a.port,
        link.local_addr()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default()
    );
    while !stop.load(Ordering::Relaxed) {
        link.poll(&board, &mut store, &mut service, Duration::from_millis(50))?;
        service.poll();
        if let Some(folder) = folder.as_mut() {
            for (path, face) in folder.poll()? {
                match face {
                    Ok(f) => {
                        let d = service.present(&mut store, &f.rgb);
                        println!("edge: {} → {:?}", path.display(), d);
                    }
                    Err(e) => eprintln!("edge: {}: {e}", path.display()),
                }
            }
        }
    }
    Ok(())
}
