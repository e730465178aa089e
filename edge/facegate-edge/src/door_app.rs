//! The door app of a Linux board: the firmware's store, audit log, door and
//! protocol with tract as the embedder, a file as the flash, a GPIO line as
//! the relay, and a TCP socket or serial device as the provisioning link.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use facegate_core::audit::FlashAuditLog;
use facegate_core::door::{AuditLog, Door};
use facegate_core::face_service::AuditHistory;
use facegate_core::face_service::FaceService;
use facegate_core::flash_store::{DeviceKey, FlashStore};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::DecisionKind;
use facegate_core::protocol::device::{BoardInfo, DoorStore};
use facegate_core::protocol::{DEVICE_ID_LEN, FACE_BYTES};
use facegate_detect::{FaceFinder, MtcnnConfig, QualityGates};
use facegate_eval::faces::Face;

use crate::SystemClock;
use crate::camera::{
    Eyes, FRAME_BOUNDS, MjpegStream, PhotoFolder, Presence, PresencePolicy, RecentDurations,
};
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
pub(crate) fn reference_faces() -> Vec<Face> {
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
    /// Folder of aligned face crops, each a frame.
    pub faces: Option<PathBuf>,
    /// A camera: whole frames, faces found on the board.
    pub camera: Option<CameraConfig>,
    /// Device id text (≤ 16 bytes); `None`: the hardware serial number, else
    /// a random id kept in the state folder.
    pub device_id: Option<String>,
    /// GPIO chip and line of the lock relay.
    pub gpio: Option<(String, u32)>,
    /// The installer's public key file (`facegate keygen`'s `.pub`): a
    /// claim must carry its token. `None`: trust on first use.
    pub claim_key: Option<PathBuf>,
}

/// Reads an installer's public key (64 hex digits, `facegate keygen`'s `.pub`).
fn installer_key(path: &Path) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the installer key {}", path.display()))?;
    facegate_core::protocol::key_from_hex(text.trim()).with_context(|| {
        format!(
            "{} is not a public key (64 hex digits, as `facegate keygen` writes to KEY.pub)",
            path.display()
        )
    })
}

/// Where whole camera frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraSource {
    /// An MJPEG stream: a FIFO fed by the camera, or a recording replayed
    /// at `fps` frames a second.
    Mjpeg {
        /// The stream.
        path: PathBuf,
        /// Replay rate of a recording (`None`: as fast as it arrives).
        fps: Option<f64>,
    },
    /// New photos dropped into a folder.
    Photos(PathBuf),
}

impl std::str::FromStr for CameraSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("mjpeg:") {
            let (path, fps) = match rest.rsplit_once('@') {
                Some((p, f)) => {
                    let fps: f64 = f
                        .parse()
                        .map_err(|_| format!("{f:?} is not a frame rate (mjpeg:PATH@FPS)"))?;
                    if !(fps > 0.0 && fps <= 240.0) {
                        return Err(format!("frame rate {fps} is not in (0, 240]"));
                    }
                    (p, Some(fps))
                }
                None => (rest, None),
            };
            Ok(Self::Mjpeg {
                path: PathBuf::from(path),
                fps,
            })
        } else if let Some(dir) = s.strip_prefix("photos:") {
            Ok(Self::Photos(PathBuf::from(dir)))
        } else {
            Err(format!(
                "{s:?}: expected mjpeg:PATH[@FPS] (a FIFO fed by the camera, or a recording) or photos:DIR"
            ))
        }
    }
}

/// A camera and the detector that looks at its frames.
#[derive(Debug, Clone)]
pub struct CameraConfig {
    /// The frames.
    pub source: CameraSource,
    /// Folder with the MTCNN weights (`pnet.onnx`, `rnet.onnx`, `onet.onnx`).
    pub detector: PathBuf,
    /// Smallest face looked for, in pixels.
    pub min_face: f32,
}

enum Frames {
    Stream(MjpegStream),
    Photos(PhotoFolder),
}

/// The camera side of the door loop: frames, faces, presence, and the
/// numbers a user wants (frames/s, frame → decision latency).
struct Camera {
    frames: Frames,
    eyes: Eyes,
    presence: Presence,
    looked: u64,
    faces: u64,
    decisions: u64,
    look_time: RecentDurations,
    latency: RecentDurations,
    started: Instant,
    reported_end: bool,
}

impl Camera {
    fn open(c: &CameraConfig) -> Result<Self> {
        let finder = FaceFinder::load(
            &c.detector,
            MtcnnConfig {
                min_face: c.min_face,
                ..MtcnnConfig::default()
            },
        )
        .with_context(|| {
            format!(
                "cannot load the face detector from {}",
                c.detector.display()
            )
        })?;
        let frames = match &c.source {
            CameraSource::Mjpeg { path, fps } => Frames::Stream(MjpegStream::open(path, *fps)),
            CameraSource::Photos(dir) => Frames::Photos(
                PhotoFolder::new(dir).with_context(|| format!("cannot watch {}", dir.display()))?,
            ),
        };
        Ok(Self {
            frames,
            eyes: Eyes::new(finder, QualityGates::default()),
            presence: Presence::new(PresencePolicy::default()),
            looked: 0,
            faces: 0,
            decisions: 0,
            look_time: RecentDurations::default(),
            latency: RecentDurations::default(),
            started: Instant::now(),
            reported_end: false,
        })
    }

    /// Frames ready now: (name, bytes, arrival).
    fn ready(&mut self) -> Result<Vec<(String, Vec<u8>, Instant)>> {
        match &mut self.frames {
            Frames::Stream(s) => {
                let n = self.looked;
                Ok(s.take()
                    .map(|(bytes, at)| (format!("frame {n}"), bytes, at))
                    .into_iter()
                    .collect())
            }
            Frames::Photos(folder) => {
                let mut out = Vec::new();
                for p in folder.poll()? {
                    let at = Instant::now();
                    // The same bound as a streamed frame; decoded by `look_at`.
                    match std::fs::metadata(&p) {
                        Ok(m) if m.len() <= FRAME_BOUNDS.max_file_bytes => {
                            out.push((p.display().to_string(), std::fs::read(&p)?, at));
                        }
                        Ok(m) => eprintln!(
                            "edge: camera {}: {} bytes, over the {}-byte frame bound",
                            p.display(),
                            m.len(),
                            FRAME_BOUNDS.max_file_bytes
                        ),
                        Err(e) => eprintln!("edge: camera {}: {e}", p.display()),
                    }
                }
                Ok(out)
            }
        }
    }

    /// Looks at the frames ready now and presents a face to the door when
    /// [`Presence`] says so.
    fn step<S: DoorStore, A: AuditLog + AuditHistory>(
        &mut self,
        service: &mut FaceService<'_, Relay, TractEmbedder, A, SystemClock>,
        store: &mut S,
    ) -> Result<()> {
        let ready = self.ready()?;
        let mut seen = Vec::new();
        for (name, bytes, arrived) in ready {
            let t = Instant::now();
            let look = self.eyes.look_at(&bytes, arrived);
            self.look_time.push(t.elapsed());
            self.looked += 1;
            match look {
                Ok(face) => {
                    self.faces += u64::from(face.is_some());
                    seen.push((name, face));
                }
                Err(e) => eprintln!("edge: camera {name}: {e}"),
            }
        }
        if seen.is_empty() {
            // No frame: nobody seen now (lets a look end, a person leave).
            seen.push((String::new(), None));
        }
        for (name, face) in seen {
            if let Some(c) = self.presence.observe(Instant::now(), face) {
                let d = service.present(store, &c.aligned);
                self.presence.judged(d.kind == DecisionKind::Unlocked);
                let latency = c.arrived.elapsed();
                self.latency.push(latency);
                self.decisions += 1;
                println!(
                    "edge: camera {} → {:?}{} ({} ms after its frame)",
                    if name.is_empty() {
                        "(best frame)"
                    } else {
                        &name
                    },
                    d.kind,
                    d.person.map(|p| format!(" person {p}")).unwrap_or_default(),
                    latency.as_millis()
                );
            }
        }
        if let Frames::Stream(s) = &self.frames {
            if s.finished() && !self.reported_end {
                self.reported_end = true;
                if let Some(e) = s.error() {
                    eprintln!("edge: camera stream failed: {e}");
                }
                println!("{}", self.report(s.read(), s.dropped()));
            }
        }
        Ok(())
    }

    fn report(&self, read: u64, dropped: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        format!(
            "edge: camera: {read} frames read, {} looked at ({:.1}/s), {dropped} dropped, {} with a face, {} decisions; detect+align median {} ms, frame → decision median {} ms (of the last 1024)",
            self.looked,
            self.looked as f64 / secs,
            self.faces,
            self.decisions,
            self.look_time.median_ms(),
            self.latency.median_ms()
        )
    }
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
    if let Some(why) = store.tamper() {
        eprintln!(
            "edge: the stored state in {} failed its checks ({why:?}): the door opens for no one and takes no command; erase the state folder and claim the board again",
            a.state.display()
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
        claim_key: a.claim_key.as_deref().map(installer_key).transpose()?,
    };
    let mut link = LinkServer::open(&a.port)?;
    let mut folder = a.faces.as_deref().map(FaceFolder::new).transpose()?;
    let mut camera = a.camera.as_ref().map(Camera::open).transpose()?;
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
        if let Some(camera) = camera.as_mut() {
            camera.step(&mut service, &mut store)?;
        }
    }
    Ok(())
}
