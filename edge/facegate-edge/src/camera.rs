//! The door's eyes on a Linux board: camera frames in, one door decision
//! per person in view out.
//!
//! Frames come from an MJPEG stream (a FIFO fed by the camera, e.g.
//! `ffmpeg -f v4l2 -input_format mjpeg -i /dev/video0 -c copy -f mjpeg
//! FIFO`, or a recording replayed at its frame rate) or from a folder of
//! photos. A reader thread keeps only the newest frame: when detection
//! falls behind, frames are dropped and counted, never queued. Faces are
//! found, aligned and measured by the host's own code (`facegate-detect`:
//! MTCNN, the core's 5-point alignment, the quality gates), and
//! [`Presence`] turns a stream of faces into decisions: the best frame of
//! a short look goes to the door, once per person in view; a refused
//! person who stays is judged again only after a pause (each judgement
//! counts toward the lockout).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use facegate_detect::{Choice, FaceFinder, PhotoError, Quality, QualityGates};
use facegate_eval::faces::{ImageBounds, ImageReadError, decode_image};
use image::RgbImage;

/// Bounds of one camera frame: 8 MiB of JPEG, 4096 px a side, 64 MiB
/// decoded (a 5-megapixel frame needs 15).
pub const FRAME_BOUNDS: ImageBounds = ImageBounds {
    max_file_bytes: 8 << 20,
    max_side: 4096,
    max_alloc: 64 << 20,
};

/// Splits a byte stream of concatenated JPEG images (what cameras and
/// `ffmpeg -f mjpeg` write) into images: from a start-of-image marker
/// (`FF D8`) to the next end-of-image marker (`FF D9`). Bytes between
/// images are skipped; an image longer than `max_bytes` is skipped whole
/// and counted.
#[derive(Debug)]
pub struct MjpegSplitter<R> {
    reader: BufReader<R>,
    max_bytes: usize,
    /// Images skipped for their size.
    pub oversized: u64,
}

impl<R: Read> MjpegSplitter<R> {
    /// Reads images from `reader`, none longer than `max_bytes`.
    pub fn new(reader: R, max_bytes: usize) -> Self {
        Self {
            reader: BufReader::with_capacity(64 << 10, reader),
            max_bytes,
            oversized: 0,
        }
    }

    /// The next whole image, or `None` at the end of the stream (a
    /// truncated last image is dropped).
    pub fn next_image(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            // Find FF D8.
            let mut prev = 0u8;
            loop {
                let Some(b) = self.byte()? else {
                    return Ok(None);
                };
                if prev == 0xFF && b == 0xD8 {
                    break;
                }
                prev = b;
            }
            let mut image = vec![0xFF, 0xD8];
            let mut too_long = false;
            let mut prev = 0u8;
            loop {
                let Some(b) = self.byte()? else {
                    return Ok(None);
                };
                if !too_long {
                    image.push(b);
                    if image.len() > self.max_bytes {
                        too_long = true;
                        image = Vec::new();
                    }
                }
                if prev == 0xFF && b == 0xD9 {
                    break;
                }
                prev = b;
            }
            if too_long {
                self.oversized += 1;
                continue;
            }
            return Ok(Some(image));
        }
    }

    fn byte(&mut self) -> std::io::Result<Option<u8>> {
        let buf = self.reader.fill_buf()?;
        let Some(&b) = buf.first() else {
            return Ok(None);
        };
        self.reader.consume(1);
        Ok(Some(b))
    }
}

/// What the frame reader thread shares with the door loop: the newest
/// frame only.
#[derive(Debug, Default)]
struct Slot {
    frame: Mutex<Option<(Vec<u8>, Instant)>>,
    /// Frames overwritten before the door loop took them.
    dropped: AtomicU64,
    /// Frames read.
    read: AtomicU64,
    /// The stream ended (or failed).
    ended: AtomicBool,
    /// Why it failed, if it did.
    error: Mutex<Option<String>>,
}

/// An MJPEG stream read by its own thread, newest frame wins.
#[derive(Debug)]
pub struct MjpegStream {
    slot: Arc<Slot>,
    reader: Option<JoinHandle<()>>,
}

impl MjpegStream {
    /// Opens `path` (a FIFO or a recording). With `fps`, frames are
    /// released at that rate, as a camera would deliver them (a
    /// recording); without, as fast as they arrive (a live FIFO).
    /// The path is opened by the reader thread: opening a FIFO waits for
    /// its writer, and the door must not wait for a camera.
    pub fn open(path: &Path, fps: Option<f64>) -> Self {
        let path = path.to_path_buf();
        Self::spawn(move || std::fs::File::open(&path), fps)
    }

    /// Frames from any byte stream.
    pub fn from_reader<R: Read + Send + 'static>(reader: R, fps: Option<f64>) -> Self {
        Self::spawn(move || Ok(reader), fps)
    }

    fn spawn<R: Read, O: FnOnce() -> std::io::Result<R> + Send + 'static>(
        open: O,
        fps: Option<f64>,
    ) -> Self {
        let slot = Arc::new(Slot::default());
        let shared = Arc::clone(&slot);
        let period = fps
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(|f| Duration::from_secs_f64(1.0 / f));
        let max = usize::try_from(FRAME_BOUNDS.max_file_bytes).unwrap_or(usize::MAX);
        let reader = std::thread::spawn(move || {
            let reader = match open() {
                Ok(r) => r,
                Err(e) => {
                    *shared.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    shared.ended.store(true, Ordering::Release);
                    return;
                }
            };
            let mut split = MjpegSplitter::new(reader, max);
            let started = Instant::now();
            let mut k = 0u32;
            loop {
                match split.next_image() {
                    Ok(Some(jpeg)) => {
                        if let Some(p) = period {
                            let due = started + p * k;
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        }
                        k = k.saturating_add(1);
                        shared.read.fetch_add(1, Ordering::Relaxed);
                        let mut f = shared.frame.lock().unwrap_or_else(|p| p.into_inner());
                        if f.replace((jpeg, Instant::now())).is_some() {
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        *shared.error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                        break;
                    }
                }
            }
            shared.dropped.fetch_add(split.oversized, Ordering::Relaxed);
            shared.ended.store(true, Ordering::Release);
        });
        Self {
            slot,
            reader: Some(reader),
        }
    }

    /// The newest frame not yet taken (its JPEG bytes and when it arrived).
    pub fn take(&self) -> Option<(Vec<u8>, Instant)> {
        self.slot
            .frame
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether the stream is over and every frame was taken.
    pub fn finished(&self) -> bool {
        self.slot.ended.load(Ordering::Acquire)
            && self
                .slot
                .frame
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
    }

    /// Frames read from the stream.
    pub fn read(&self) -> u64 {
        self.slot.read.load(Ordering::Relaxed)
    }

    /// Frames dropped because the door loop was busy (or too large).
    pub fn dropped(&self) -> u64 {
        self.slot.dropped.load(Ordering::Relaxed)
    }

    /// Why the stream stopped early, if it did.
    pub fn error(&self) -> Option<String> {
        self.slot
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for MjpegStream {
    fn drop(&mut self) {
        // A live FIFO may block the reader forever; it is detached then.
        if self.slot.ended.load(Ordering::Acquire) {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
    }
}

/// A folder watched for new images (JPEG, PNG): whole photos for the
/// camera, aligned crops for [`crate::faces::FaceFolder`].
#[derive(Debug)]
pub struct PhotoFolder {
    dir: PathBuf,
    seen: BTreeSet<PathBuf>,
}

impl PhotoFolder {
    /// Watches `dir`; photos already there count as seen.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let mut f = Self {
            dir: dir.to_path_buf(),
            seen: BTreeSet::new(),
        };
        f.seen = f.listing()?;
        Ok(f)
    }

    fn listing(&self) -> std::io::Result<BTreeSet<PathBuf>> {
        Ok(std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")
                })
            })
            .collect())
    }

    /// Photos added since the last call, in name order.
    pub fn poll(&mut self) -> std::io::Result<Vec<PathBuf>> {
        let now = self.listing()?;
        let new = now.difference(&self.seen).cloned().collect();
        self.seen = now;
        Ok(new)
    }
}

/// An aligned face found in a frame, good enough to judge.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The 112×112 RGB crop.
    pub aligned: Vec<u8>,
    /// Its measurements.
    pub quality: Quality,
    /// When its frame arrived.
    pub arrived: Instant,
}

impl Candidate {
    /// How good a view this is: a larger, more frontal, sharper face wins.
    fn merit(&self) -> f32 {
        let q = &self.quality;
        q.eye_distance * (1.0 - q.yaw.abs()).max(0.0) * q.sharpness.max(1.0).sqrt()
    }
}

/// Why a frame gave no candidate.
#[derive(Debug, thiserror::Error)]
pub enum LookError {
    /// The frame is not a readable image within [`FRAME_BOUNDS`].
    #[error("not a readable frame: {0}")]
    Decode(#[from] ImageReadError),
    /// The detector failed.
    #[error("{0}")]
    Detector(PhotoError),
}

/// Detection, alignment and the quality gates over whole frames.
#[derive(Debug)]
pub struct Eyes {
    finder: FaceFinder,
    gates: QualityGates,
}

impl Eyes {
    /// The detector with `gates` (faces failing them are not judged).
    pub fn new(finder: FaceFinder, gates: QualityGates) -> Self {
        Self { finder, gates }
    }

    /// The largest face in a decoded frame that passes the gates, if any.
    pub fn look(&self, frame: &RgbImage, arrived: Instant) -> Result<Option<Candidate>, LookError> {
        match self.finder.find(frame, Choice::Largest, Path::new("frame")) {
            Ok(found) => Ok(self.gates.check(&found.quality).is_ok().then(|| Candidate {
                aligned: found.aligned.to_vec(),
                quality: found.quality,
                arrived,
            })),
            Err(PhotoError::NoFace { .. } | PhotoError::Align { .. }) => Ok(None),
            Err(e) => Err(LookError::Detector(e)),
        }
    }

    /// [`Self::look`] at JPEG/PNG bytes, decoded within [`FRAME_BOUNDS`].
    pub fn look_at(&self, bytes: &[u8], arrived: Instant) -> Result<Option<Candidate>, LookError> {
        let img = decode_image(bytes, FRAME_BOUNDS)?.to_rgb8();
        self.look(&img, arrived)
    }
}

/// The last [`Self::KEPT`] durations of something the door loop does per
/// frame: a door runs for months, so its statistics must not grow.
#[derive(Debug, Default)]
pub struct RecentDurations(std::collections::VecDeque<Duration>);

impl RecentDurations {
    /// How many are kept.
    pub const KEPT: usize = 1024;

    /// Adds one, forgetting the oldest beyond [`Self::KEPT`].
    pub fn push(&mut self, d: Duration) {
        if self.0.len() == Self::KEPT {
            self.0.pop_front();
        }
        self.0.push_back(d);
    }

    /// Their median, in milliseconds (0 with none).
    pub fn median_ms(&self) -> u128 {
        let mut v: Vec<Duration> = self.0.iter().copied().collect();
        v.sort();
        v.get(v.len() / 2).map_or(0, Duration::as_millis)
    }
}

/// How [`Presence`] paces decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresencePolicy {
    /// How long a face is watched before its best frame is judged.
    pub look: Duration,
    /// No face for this long: the person has gone.
    pub gone_after: Duration,
    /// A refused person still in view is judged again after this pause.
    pub retry_after: Duration,
}

impl Default for PresencePolicy {
    fn default() -> Self {
        Self {
            look: Duration::from_millis(600),
            gone_after: Duration::from_millis(1500),
            retry_after: Duration::from_secs(4),
        }
    }
}

#[derive(Debug)]
enum Watch {
    /// Nobody in view.
    Empty,
    /// A face in view since `since`; the best frame so far.
    Looking {
        since: Instant,
        best: Candidate,
        last_seen: Instant,
    },
    /// Judged at `at`; `unlocked` says how.
    Judged {
        at: Instant,
        unlocked: bool,
        last_seen: Instant,
    },
}

/// Turns a stream of faces into door decisions: one per person in view.
#[derive(Debug)]
pub struct Presence {
    policy: PresencePolicy,
    watch: Watch,
}

impl Presence {
    /// Nobody in view yet.
    pub fn new(policy: PresencePolicy) -> Self {
        Self {
            policy,
            watch: Watch::Empty,
        }
    }

    /// Takes what a frame at `now` showed; returns the face to judge now, if any.
    pub fn observe(&mut self, now: Instant, face: Option<Candidate>) -> Option<Candidate> {
        let p = self.policy;
        let looking = |f| Watch::Looking {
            since: now,
            best: f,
            last_seen: now,
        };
        let (next, judge) = match (std::mem::replace(&mut self.watch, Watch::Empty), face) {
            (Watch::Empty, seen) => (seen.map_or(Watch::Empty, looking), None),
            (
                Watch::Looking {
                    since,
                    best,
                    last_seen,
                },
                seen,
            ) => {
                let last_seen = if seen.is_some() { now } else { last_seen };
                let best = match seen {
                    Some(f) if f.merit() > best.merit() => f,
                    _ => best,
                };
                // Judge after a short look, or when the face has left
                // early (someone passing still gets one decision).
                if now.duration_since(since) >= p.look
                    || now.duration_since(last_seen) >= p.gone_after
                {
                    let judged = Watch::Judged {
                        at: now,
                        unlocked: false,
                        last_seen: now,
                    };
                    (judged, Some(best))
                } else {
                    (
                        Watch::Looking {
                            since,
                            best,
                            last_seen,
                        },
                        None,
                    )
                }
            }
            (
                Watch::Judged {
                    at,
                    unlocked,
                    last_seen,
                },
                seen,
            ) => {
                let last_seen = if seen.is_some() { now } else { last_seen };
                let next = match seen {
                    _ if now.duration_since(last_seen) >= p.gone_after => Watch::Empty,
                    // A refused person still in view: look again after the pause.
                    Some(f) if !unlocked && now.duration_since(at) >= p.retry_after => looking(f),
                    _ => Watch::Judged {
                        at,
                        unlocked,
                        last_seen,
                    },
                };
                (next, None)
            }
        };
        self.watch = next;
        judge
    }

    /// Records how the face [`Self::observe`] returned was judged: an
    /// admitted person is not judged again while in view.
    pub fn judged(&mut self, unlocked: bool) {
        if let Watch::Judged { unlocked: u, .. } = &mut self.watch {
            *u = unlocked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(eye_distance: f32, arrived: Instant) -> Candidate {
        Candidate {
            aligned: vec![0; 8],
            quality: Quality {
                eye_distance,
                sharpness: 100.0,
                yaw: 0.0,
                pitch: 0.0,
                score: 0.99,
            },
            arrived,
        }
    }

    /// Frames every 100 ms from `t0`: `Some(eye distance)` a face, `None` none.
    fn run(
        presence: &mut Presence,
        t0: Instant,
        frames: &[Option<f32>],
        unlock: bool,
    ) -> Vec<(usize, f32)> {
        let mut judged = Vec::new();
        for (k, f) in frames.iter().enumerate() {
            let now = t0 + Duration::from_millis(100 * k as u64);
            if let Some(c) = presence.observe(now, f.map(|e| face(e, now))) {
                judged.push((k, c.quality.eye_distance));
                presence.judged(unlock);
            }
        }
        judged
    }

    #[test]
    fn an_admitted_person_standing_there_is_one_decision_from_the_best_frame() {
        let mut p = Presence::new(PresencePolicy::default());
        let mut frames = vec![Some(40.0), Some(55.0), Some(50.0)];
        frames.extend(std::iter::repeat_n(Some(45.0), 97));
        let judged = run(&mut p, Instant::now(), &frames, true);
        // Judged once, 600 ms in, from the largest face seen by then.
        assert_eq!(judged, vec![(6, 55.0)]);
    }

    #[test]
    fn a_refused_person_who_stays_is_judged_again_only_after_the_pause() {
        let mut p = Presence::new(PresencePolicy::default());
        let frames = vec![Some(40.0); 100]; // 10 s in view
        let judged = run(&mut p, Instant::now(), &frames, false);
        let at: Vec<usize> = judged.iter().map(|j| j.0).collect();
        // 0.6 s, then every 4 s + 0.6 s of looking.
        assert_eq!(at, vec![6, 52, 98]);
    }

    #[test]
    fn someone_passing_briefly_gets_one_decision_and_two_people_two() {
        let mut p = Presence::new(PresencePolicy::default());
        let mut frames = vec![Some(30.0), Some(31.0)];
        frames.extend(std::iter::repeat_n(None, 20));
        frames.extend(std::iter::repeat_n(Some(60.0), 10));
        frames.extend(std::iter::repeat_n(None, 5));
        let judged = run(&mut p, Instant::now(), &frames, true);
        // The passer-by is judged when the look is over (their best frame),
        // the next person after their own look, once the first has gone.
        assert_eq!(judged, vec![(6, 31.0), (28, 60.0)]);
    }

    #[test]
    fn recent_durations_stay_bounded_and_give_the_median_of_the_newest() {
        let mut r = RecentDurations::default();
        assert_eq!(r.median_ms(), 0);
        for ms in 0..5_000u64 {
            r.push(Duration::from_millis(ms));
        }
        assert_eq!(r.0.len(), RecentDurations::KEPT);
        // The newest 1024 are 3976..=4999: their median is 3976 + 512.
        assert_eq!(r.median_ms(), 4488);
    }

    fn jpeg(w: u32, h: u32, shade: u8) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([shade, 100, 200]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn mjpeg_streams_split_into_whole_images_and_skip_garbage_and_giants() {
        let (a, b, c) = (jpeg(16, 16, 10), jpeg(256, 256, 20), jpeg(8, 8, 30));
        assert!(a.len() < b.len() && c.len() < b.len());
        let mut stream = b"noise\xFF\x00".to_vec();
        stream.extend(&a);
        stream.extend(b"\r\n--boundary\r\n");
        stream.extend(&b);
        stream.extend(&c);
        stream.extend(&a[..a.len() / 2]); // truncated last image
        let mut s = MjpegSplitter::new(stream.as_slice(), b.len() - 1);
        assert_eq!(s.next_image().unwrap(), Some(a.clone()));
        // `b` is over the size bound: skipped whole, counted.
        assert_eq!(s.next_image().unwrap(), Some(c));
        assert_eq!(s.next_image().unwrap(), None);
        assert_eq!(s.oversized, 1);
    }

    #[test]
    fn a_slow_door_loop_gets_the_newest_frame_and_the_rest_are_dropped() {
        let mut stream = Vec::new();
        for k in 0..50u8 {
            stream.extend(jpeg(8, 8, k * 5));
        }
        let cam = MjpegStream::from_reader(std::io::Cursor::new(stream), None);
        while !cam.slot.ended.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Nothing taken while the reader ran: one frame held, 49 dropped.
        let (newest, _) = cam.take().unwrap();
        assert_eq!(newest, jpeg(8, 8, 49 * 5));
        assert_eq!((cam.read(), cam.dropped()), (50, 49));
        assert!(cam.finished());
        assert!(cam.error().is_none());
    }
}
