//! A bounded audit log in flash (sequential-storage's queue): when the
//! region is full the oldest events make room for new ones.

use embedded_storage_async::nor_flash::NorFlash;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::queue::{QueueConfig, QueueStorage};

use crate::door::{AuditEvent, AuditLog, Outcome};
use crate::flash_store::{OpenError, block_on};
use crate::matcher::PersonId;

/// Bytes of one encoded event.
pub const EVENT_LEN: usize = 24;

/// Encodes an event: `time u64 ‖ kind u8 ‖ has_score u8 ‖ pad ‖ id u32 ‖ score f32 ‖ wait_ms u32`.
pub fn encode(e: &AuditEvent) -> [u8; EVENT_LEN] {
    let mut b = [0u8; EVENT_LEN];
    b[..8].copy_from_slice(&e.time_ms.to_le_bytes());
    let (kind, id, score, wait) = match e.outcome {
        Outcome::Unlocked { id, score } => (1, id.0, Some(score), 0),
        Outcome::Rejected { best } => (2, 0, best, 0),
        Outcome::LockedOut { wait_ms } => (3, 0, None, u32::try_from(wait_ms).unwrap_or(u32::MAX)),
        Outcome::Fault => (4, 0, None, 0),
    };
    b[8] = kind;
    b[9] = u8::from(score.is_some());
    b[12..16].copy_from_slice(&id.to_le_bytes());
    b[16..20].copy_from_slice(&score.unwrap_or(0.0).to_le_bytes());
    b[20..24].copy_from_slice(&wait.to_le_bytes());
    b
}

/// Decodes an event; `None` for bytes that are not one.
pub fn decode(b: &[u8]) -> Option<AuditEvent> {
    let b: &[u8; EVENT_LEN] = b.try_into().ok()?;
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let time_ms = u64::from_le_bytes(b[..8].try_into().ok()?);
    let score = (b[9] == 1).then(|| f32::from_bits(u32_at(16)));
    let outcome = match b[8] {
        1 => Outcome::Unlocked {
            id: PersonId(u32_at(12)),
            score: score?,
        },
        2 => Outcome::Rejected { best: score },
        3 => Outcome::LockedOut {
            wait_ms: u64::from(u32_at(20)),
        },
        4 => Outcome::Fault,
        _ => return None,
    };
    Some(AuditEvent { time_ms, outcome })
}

/// The audit log in its own flash range.
pub struct FlashAuditLog<F: NorFlash> {
    queue: QueueStorage<F, Cache<Uncached, Uncached, Uncached, ()>>,
    lost: u32,
}

impl<F: NorFlash> core::fmt::Debug for FlashAuditLog<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashAuditLog")
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl<F: NorFlash> FlashAuditLog<F> {
    /// Opens the log in `range` of `flash`.
    pub fn open(flash: F, range: core::ops::Range<u32>) -> Result<Self, OpenError> {
        let config = QueueConfig::try_new(range).map_err(|_| OpenError::BadRange)?;
        Ok(Self {
            queue: QueueStorage::new(flash, config, Cache::new_uncached()),
            lost: 0,
        })
    }

    /// Events that could not be written (flash errors) since opening.
    pub const fn lost(&self) -> u32 {
        self.lost
    }

    /// Calls `f` with every stored event, oldest first.
    pub fn read(&mut self, f: &mut dyn FnMut(AuditEvent)) -> Result<(), OpenError> {
        let mut buf = [0u8; EVENT_LEN + 8];
        let mut it = block_on(self.queue.iter()).map_err(|_| OpenError::Flash)?;
        while let Some(entry) = block_on(it.next(&mut buf)).map_err(|_| OpenError::Flash)? {
            if let Some(e) = decode(&entry) {
                f(e);
            }
        }
        Ok(())
    }

    /// Gives the flash back.
    pub fn into_flash(self) -> F {
        self.queue.destroy().0
    }
}

impl<F: NorFlash> AuditLog for FlashAuditLog<F> {
    fn record(&mut self, event: AuditEvent) {
        // Overwriting the oldest events is the point of a bounded log.
        if block_on(self.queue.push(&encode(&event), true)).is_err() {
            self.lost = self.lost.saturating_add(1);
        }
    }
}
