//! The door behind the provisioning link and the camera: faces and whole
//! frames staged over the link go through the same [`Door`] as camera
//! frames (detector, alignment, engine, matcher, lock pulse, audit,
//! lockout), and the audit log is paged back to the host. This is how the
//! QEMU board, whose only "camera" is its UART, is driven; a board with a
//! camera calls [`FaceService::look`] with it.

use embedded_hal::digital::OutputPin;
use embedded_storage_async::nor_flash::NorFlash;
use sha2::{Digest, Sha256};

use crate::audit::FlashAuditLog;
use crate::camera::Camera;
use crate::detect::{Detector, Face, Frame, Scratch};
use crate::door::{AuditEvent, AuditLog, Clock, Door, Embedder};
use crate::protocol::device::{Diagnostics, DoorStore};
use crate::protocol::{
    AUDIT_PAGE, AuditEntry, ErrorCode, FACE_BYTES, FACE_CHUNK, FRAME_CHUNK, FrameSpec,
};

/// Faces a frame's detection keeps (the door judges the best one).
const FACES_PER_FRAME: usize = 4;

/// After a decision from the camera, frames are not judged for this long:
/// one person standing at the door is one decision and one audit entry,
/// not one a frame (their rejects would lock them out within seconds).
pub const LOOK_PAUSE_MS: u64 = 3_000;

/// The door's eye: the face detector, its working memory and the buffer
/// frames land in (the board decides where each lives: together about
/// 58 KB plus the frame, e.g. 150 KB for QVGA RGB565).
pub struct Eye<'f> {
    detector: Detector<'f>,
    scratch: &'f mut Scratch,
    frame: &'f mut [u8],
    /// Contiguous bytes staged over the link.
    received: usize,
    /// No camera frame is judged before this time (see [`LOOK_PAUSE_MS`]).
    pause_until_ms: u64,
}

impl core::fmt::Debug for Eye<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Eye")
            .field("capacity", &self.frame.len())
            .field("received", &self.received)
            .field("pause_until_ms", &self.pause_until_ms)
            .finish_non_exhaustive()
    }
}

impl<'f> Eye<'f> {
    /// An eye around `detector`; frames up to `frame.len()` bytes.
    pub fn new(detector: Detector<'f>, scratch: &'f mut Scratch, frame: &'f mut [u8]) -> Self {
        Self {
            detector,
            scratch,
            frame,
            received: 0,
            pause_until_ms: 0,
        }
    }

    /// Largest frame in bytes.
    pub fn capacity(&self) -> usize {
        self.frame.len()
    }
}

/// Stages `bytes` at `offset` of `buf` (faces and frames alike): offset 0
/// starts anew, anything else must continue what `received` says is
/// staged; a chunk longer than `max_chunk` is `Invalid`, one past the
/// buffer's end `past_end`. Returns the contiguous bytes staged so far.
fn stage_chunk(
    buf: &mut [u8],
    received: &mut usize,
    offset: u32,
    bytes: &[u8],
    max_chunk: usize,
    past_end: ErrorCode,
) -> Result<u32, ErrorCode> {
    let offset = usize::try_from(offset).map_err(|_| ErrorCode::Invalid)?;
    if offset != 0 && offset != *received {
        return Err(ErrorCode::FaceIncomplete);
    }
    if bytes.len() > max_chunk {
        return Err(ErrorCode::Invalid);
    }
    let end = offset + bytes.len();
    buf.get_mut(offset..end)
        .ok_or(past_end)?
        .copy_from_slice(bytes);
    *received = end;
    u32::try_from(end).map_err(|_| ErrorCode::Invalid)
}

/// Whether exactly `len` bytes are staged in `buf` and their SHA-256 is
/// `sha256`; changes nothing.
fn check_staged_bytes(
    buf: &[u8],
    received: usize,
    len: usize,
    sha256: &[u8; 32],
) -> Result<(), ErrorCode> {
    let staged = buf
        .get(..len)
        .filter(|_| received == len)
        .ok_or(ErrorCode::FaceIncomplete)?;
    let digest: [u8; 32] = Sha256::digest(staged).into();
    if &digest == sha256 {
        Ok(())
    } else {
        Err(ErrorCode::FaceMismatch)
    }
}

/// Why [`FaceService::look`] judged nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LookError<E> {
    /// The service has no [`Eye`].
    NoEye,
    /// The camera failed.
    Camera(E),
    /// The camera's frame does not fit the buffer or is not a frame.
    BadFrame,
    /// The detector could not run (its arena is larger than the
    /// embedder's: a build error).
    Detector,
}

/// An audit log that can be read back a page at a time.
pub trait AuditHistory {
    /// Fills `out` with events from index `start`, oldest first; returns
    /// whether more follow.
    fn page(
        &mut self,
        start: u16,
        out: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode>;
}

impl<F: NorFlash> AuditHistory for FlashAuditLog<F> {
    fn page(
        &mut self,
        start: u16,
        out: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode> {
        let mut index = 0u32;
        let mut more = false;
        self.read(&mut |event| {
            if index >= u32::from(start) && out.push(event.into()).is_err() {
                more = true;
            }
            index += 1;
        })
        .map_err(|_| ErrorCode::Storage)?;
        Ok(more)
    }
}

/// The face pipeline of a board, answering the link's diagnostics.
pub struct FaceService<'f, L: OutputPin, E: Embedder, A: AuditLog + AuditHistory, C: Clock> {
    door: Door<L>,
    embedder: E,
    audit: A,
    clock: C,
    face: &'f mut [u8; FACE_BYTES],
    received: usize,
    eye: Option<Eye<'f>>,
}

impl<L: OutputPin, E: Embedder, A: AuditLog + AuditHistory, C: Clock> core::fmt::Debug
    for FaceService<'_, L, E, A, C>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FaceService")
            .field("received", &self.received)
            .field("eye", &self.eye.as_ref().map(Eye::capacity))
            .field("open", &self.door.is_open())
            .finish_non_exhaustive()
    }
}

impl<'f, L: OutputPin, E: Embedder, A: AuditLog + AuditHistory, C: Clock>
    FaceService<'f, L, E, A, C>
{
    /// The service around `door`; `face` is the staging buffer (37 KiB, so
    /// the board decides where it lives).
    pub fn new(
        door: Door<L>,
        embedder: E,
        audit: A,
        clock: C,
        face: &'f mut [u8; FACE_BYTES],
    ) -> Self {
        Self {
            door,
            embedder,
            audit,
            clock,
            face,
            received: 0,
            eye: None,
        }
    }

    /// Gives the door an eye: whole frames (over the link with
    /// `VerifyFrame`, or from a camera with [`FaceService::look`]) are
    /// searched for faces, and the best one is aligned and judged.
    #[must_use]
    pub fn with_eye(mut self, eye: Eye<'f>) -> Self {
        self.eye = Some(eye);
        self
    }

    /// One look through `camera`: captures a frame and judges the best
    /// face in it. `Ok(None)` when no face was found, or while the door
    /// pauses after a decision ([`LOOK_PAUSE_MS`]; no frame is captured
    /// then). Call whenever the board is idle.
    pub fn look<Cam: Camera, S: DoorStore>(
        &mut self,
        camera: &mut Cam,
        store: &mut S,
    ) -> Result<Option<AuditEntry>, LookError<Cam::Error>> {
        let now = self.clock.now_ms();
        let eye = self.eye.as_mut().ok_or(LookError::NoEye)?;
        if now < eye.pause_until_ms {
            return Ok(None);
        }
        // A captured frame replaces whatever the link had staged.
        eye.received = 0;
        let spec = camera.capture(eye.frame).map_err(LookError::Camera)?;
        match self.judge_frame(store, spec) {
            Ok(entry) => {
                if let Some(eye) = self.eye.as_mut() {
                    eye.pause_until_ms = self.clock.now_ms().saturating_add(LOOK_PAUSE_MS);
                }
                Ok(Some(entry))
            }
            Err(ErrorCode::NoFace) => Ok(None),
            Err(ErrorCode::Unsupported) => Err(LookError::Detector),
            Err(_) => Err(LookError::BadFrame),
        }
    }

    /// Finds the faces in the eye's frame of `spec`, aligns the best one
    /// into the face buffer and presents it to the door.
    fn judge_frame<S: DoorStore>(
        &mut self,
        store: &mut S,
        spec: FrameSpec,
    ) -> Result<AuditEntry, ErrorCode> {
        let eye = self.eye.as_mut().ok_or(ErrorCode::Unsupported)?;
        let pixels = eye.frame.get(..spec.bytes()).ok_or(ErrorCode::Invalid)?;
        let frame = Frame::new(
            pixels,
            usize::from(spec.width),
            usize::from(spec.height),
            spec.format.into(),
        )
        .ok_or(ErrorCode::Invalid)?;
        let arena = self.embedder.lend_arena().ok_or(ErrorCode::Unsupported)?;
        let mut faces: heapless::Vec<Face, FACES_PER_FRAME> = heapless::Vec::new();
        eye.detector
            .detect(&frame, arena, eye.scratch, &mut faces)
            .map_err(|_| ErrorCode::Unsupported)?;
        let best = faces.first().ok_or(ErrorCode::NoFace)?;
        // Landmarks too degenerate to align are no face the door can judge.
        Detector::align(&frame, best, self.face).map_err(|_| ErrorCode::NoFace)?;
        Ok(self.present_staged(store))
    }

    /// Presents the face buffer to the door: decision, pulse, audit, lockout.
    fn present_staged<S: DoorStore>(&mut self, store: &mut S) -> AuditEntry {
        // Field by field: the staged face is read while the door and embedder work.
        let time_ms = self.clock.now_ms();
        let outcome = self.door.present_face(
            &self.face[..],
            &mut self.embedder,
            store,
            &self.clock,
            &mut self.audit,
        );
        AuditEvent { time_ms, outcome }.into()
    }

    /// Closes the lock when its pulse has elapsed; call whenever idle.
    pub fn poll(&mut self) {
        self.door.poll(&self.clock);
    }

    /// Presents a camera frame (an aligned 112×112 RGB crop) to the door:
    /// decision, lock pulse, audit event, lockout.
    pub fn present<S: DoorStore>(&mut self, store: &mut S, face: &[u8]) -> AuditEntry {
        let time_ms = self.clock.now_ms();
        let outcome = self.door.present_face(
            face,
            &mut self.embedder,
            store,
            &self.clock,
            &mut self.audit,
        );
        AuditEvent { time_ms, outcome }.into()
    }

    /// The door.
    pub const fn door(&self) -> &Door<L> {
        &self.door
    }

    /// The audit log.
    pub fn audit_mut(&mut self) -> &mut A {
        &mut self.audit
    }
}

impl<S: DoorStore, L: OutputPin, E: Embedder, A: AuditLog + AuditHistory, C: Clock> Diagnostics<S>
    for FaceService<'_, L, E, A, C>
{
    fn face_chunk(&mut self, offset: u32, bytes: &[u8]) -> Result<u32, ErrorCode> {
        let face = &mut self.face[..];
        stage_chunk(
            face,
            &mut self.received,
            offset,
            bytes,
            FACE_CHUNK,
            ErrorCode::Invalid,
        )
    }

    fn check_staged(&self, face_sha256: &[u8; 32]) -> Result<(), ErrorCode> {
        check_staged_bytes(&self.face[..], self.received, FACE_BYTES, face_sha256)
    }

    fn verify_face(&mut self, store: &mut S) -> Result<AuditEntry, ErrorCode> {
        if self.received != FACE_BYTES {
            return Err(ErrorCode::FaceIncomplete);
        }
        // A face is presented once, like a camera frame.
        self.received = 0;
        Ok(self.present_staged(store))
    }

    fn audit(
        &mut self,
        start: u16,
        out: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode> {
        self.audit.page(start, out)
    }

    fn frame_chunk(&mut self, offset: u32, bytes: &[u8]) -> Result<u32, ErrorCode> {
        let eye = self.eye.as_mut().ok_or(ErrorCode::Unsupported)?;
        // Past the buffer: the board cannot take a frame that large.
        let past_end = ErrorCode::FaceIncomplete;
        stage_chunk(
            eye.frame,
            &mut eye.received,
            offset,
            bytes,
            FRAME_CHUNK,
            past_end,
        )
    }

    fn check_staged_frame(
        &self,
        spec: &FrameSpec,
        frame_sha256: &[u8; 32],
    ) -> Result<(), ErrorCode> {
        let eye = self.eye.as_ref().ok_or(ErrorCode::Unsupported)?;
        if spec.width == 0 || spec.height == 0 {
            return Err(ErrorCode::Invalid);
        }
        check_staged_bytes(eye.frame, eye.received, spec.bytes(), frame_sha256)
    }

    fn verify_frame(&mut self, store: &mut S, spec: &FrameSpec) -> Result<AuditEntry, ErrorCode> {
        let eye = self.eye.as_mut().ok_or(ErrorCode::Unsupported)?;
        if eye.received != spec.bytes() {
            return Err(ErrorCode::FaceIncomplete);
        }
        // A frame is presented once, like a camera frame.
        eye.received = 0;
        let spec = *spec;
        self.judge_frame(store, spec)
    }
}
