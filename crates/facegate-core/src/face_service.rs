//! The door behind the provisioning link: faces staged over the link go
//! through the same [`Door`] as camera frames (engine, matcher, lock pulse,
//! audit, lockout), and the audit log is paged back to the host. This is
//! how the QEMU board, whose only "camera" is its UART, is driven.

use embedded_hal::digital::OutputPin;
use embedded_storage_async::nor_flash::NorFlash;
use sha2::{Digest, Sha256};

use crate::audit::FlashAuditLog;
use crate::door::{AuditEvent, AuditLog, Clock, Door, Embedder};
use crate::protocol::device::{Diagnostics, DoorStore};
use crate::protocol::{AUDIT_PAGE, AuditEntry, ErrorCode, FACE_BYTES, FACE_CHUNK};

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
}

impl<L: OutputPin, E: Embedder, A: AuditLog + AuditHistory, C: Clock> core::fmt::Debug
    for FaceService<'_, L, E, A, C>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FaceService")
            .field("received", &self.received)
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
        }
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
        let offset = usize::try_from(offset).map_err(|_| ErrorCode::Invalid)?;
        // Offset 0 starts a new face; anything else must continue the staged one.
        if offset != 0 && offset != self.received {
            return Err(ErrorCode::FaceIncomplete);
        }
        if bytes.len() > FACE_CHUNK {
            return Err(ErrorCode::Invalid);
        }
        let dst = self
            .face
            .get_mut(offset..offset + bytes.len())
            .ok_or(ErrorCode::Invalid)?;
        dst.copy_from_slice(bytes);
        self.received = offset + bytes.len();
        u32::try_from(self.received).map_err(|_| ErrorCode::Invalid)
    }

    fn check_staged(&self, face_sha256: &[u8; 32]) -> Result<(), ErrorCode> {
        if self.received != FACE_BYTES {
            return Err(ErrorCode::FaceIncomplete);
        }
        let digest: [u8; 32] = Sha256::digest(&self.face[..]).into();
        if &digest == face_sha256 {
            Ok(())
        } else {
            Err(ErrorCode::FaceMismatch)
        }
    }

    fn verify_face(&mut self, store: &mut S) -> Result<AuditEntry, ErrorCode> {
        if self.received != FACE_BYTES {
            return Err(ErrorCode::FaceIncomplete);
        }
        // A face is presented once, like a camera frame.
        self.received = 0;
        // Field by field: the staged face is read while the door and embedder work.
        let time_ms = self.clock.now_ms();
        let outcome = self.door.present_face(
            &self.face[..],
            &mut self.embedder,
            store,
            &self.clock,
            &mut self.audit,
        );
        Ok(AuditEvent { time_ms, outcome }.into())
    }

    fn audit(
        &mut self,
        start: u16,
        out: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode> {
        self.audit.page(start, out)
    }
}
