//! The whole door on the device: provisioning frames (signed on the host
//! with the public test site key) are handled by the protocol into the
//! encrypted flash store, then faces go through the int8 engine, the 1:N
//! matcher and the lock relay; a replayed command is refused; a reboot
//! (reopening the store) keeps everybody.

use core::convert::Infallible;

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use facegate_core::door::{AuditEvent, AuditLog, Clock, Door, EngineEmbedder, Outcome};
use facegate_core::engine::Model;
use facegate_core::flash_store::{FlashStore, InsecureTestKey};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::device::{BoardInfo, DoorStore, handle};
use facegate_core::protocol::{ErrorCode, Response, frame};

static MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model.fgm"));
static FACES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/faces.rgb"));
static FRAMES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/frames.cobs"));

/// Device id of the QEMU board (the host signs for it).
pub const DEVICE_ID: [u8; 16] = *b"qemu-mps2-an500\0";
/// Bytes of the emulated flash region the store uses.
pub const FLASH_LEN: usize = 16 * 4096;

/// NOR flash in a RAM buffer (the QEMU board has no flash controller).
pub struct RamFlash<'a>(pub &'a mut [u8]);

/// Out-of-range access.
#[derive(Debug)]
pub struct OutOfBounds;

impl NorFlashError for OutOfBounds {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::OutOfBounds
    }
}

impl ErrorType for RamFlash<'_> {
    type Error = OutOfBounds;
}

impl ReadNorFlash for RamFlash<'_> {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), OutOfBounds> {
        let o = offset as usize;
        let src = self.0.get(o..o + bytes.len()).ok_or(OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl NorFlash for RamFlash<'_> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), OutOfBounds> {
        self.0
            .get_mut(from as usize..to as usize)
            .ok_or(OutOfBounds)?
            .fill(0xFF);
        Ok(())
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let o = offset as usize;
        let dst = self.0.get_mut(o..o + bytes.len()).ok_or(OutOfBounds)?;
        for (d, b) in dst.iter_mut().zip(bytes) {
            *d &= *b; // NOR programming only clears bits
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for RamFlash<'_> {}

/// The lock relay: logs every change (the QEMU board has no relay).
pub struct LoggedRelay;

impl embedded_hal::digital::ErrorType for LoggedRelay {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for LoggedRelay {
    fn set_low(&mut self) -> Result<(), Infallible> {
        defmt::info!("door: lock relay LOW (locked)");
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        defmt::info!("door: lock relay HIGH (open)");
        Ok(())
    }
}

struct NoClock;

impl Clock for NoClock {
    fn now_ms(&self) -> u64 {
        0
    }
}

struct LogAudit;

impl AuditLog for LogAudit {
    fn record(&mut self, e: AuditEvent) {
        defmt::info!("audit: {}", e);
    }
}

/// Runs the check; `flash` is the store's region, `arena` the engine's.
pub fn run(flash: &mut [u8], arena: &mut [i8]) -> bool {
    if !crate::engine_check::COMPILED_IN || FRAMES.is_empty() {
        defmt::warn!("door: no provisioning frames compiled in");
        return false;
    }
    let Ok(model) = Model::parse(MODEL) else {
        return false;
    };
    let board = BoardInfo {
        firmware: env!("CARGO_PKG_VERSION"),
        model_hash: model.hash(),
        device_id: DEVICE_ID,
        claim_key: None,
    };
    flash.fill(0xFF);
    let Ok(mut store) = FlashStore::<_, 16>::open(
        RamFlash(flash),
        0..FLASH_LEN as u32,
        model.hash(),
        &InsecureTestKey,
    ) else {
        defmt::error!("door: store did not open");
        return false;
    };
    let mut ok = true;
    let mut out = [0u8; 256];
    let mut frame_buf = [0u8; 1600];
    let mut first_enroll: Option<(usize, usize)> = None;
    let mut start = 0;
    for (i, end) in FRAMES
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 0)
        .map(|(i, _)| (i, i + 1))
    {
        let (s, e) = (start, end);
        start = end;
        let Some(buf) = frame_buf.get_mut(..e - s) else {
            return false;
        };
        buf.copy_from_slice(&FRAMES[s..e]);
        let Ok(n) = handle(&board, &mut store, buf, &mut out) else {
            return false;
        };
        let resp = frame::decode::<Response<'_>>(&mut out[..n]);
        defmt::info!(
            "provision: frame at {} -> {}",
            i,
            defmt::Debug2Format(&resp)
        );
        ok &= matches!(resp, Ok(Response::Ok { .. }));
        if first_enroll.is_none() && s > 0 {
            first_enroll = Some((s, e));
        }
    }
    // Replay the first signed command: refused, nothing changes.
    if let Some((s, e)) = first_enroll {
        let Some(buf) = frame_buf.get_mut(..e - s) else {
            return false;
        };
        buf.copy_from_slice(&FRAMES[s..e]);
        let Ok(n) = handle(&board, &mut store, buf, &mut out) else {
            return false;
        };
        let resp = frame::decode::<Response<'_>>(&mut out[..n]);
        let refused = matches!(resp, Ok(Response::Error(ErrorCode::BadNonce)));
        defmt::info!("provision: replayed enroll refused: {}", refused);
        ok &= refused;
    }
    ok &= store.len() == 2;

    let mut door = Door::new(LoggedRelay, LockoutPolicy::default(), None);
    let mut embedder = EngineEmbedder { model, arena };
    let face = |k: usize| {
        FACES
            .get(k * 112 * 112 * 3..(k + 1) * 112 * 112 * 3)
            .unwrap_or(&[])
    };
    let enrolled = door.present_face(face(0), &mut embedder, &mut store, &NoClock, &mut LogAudit);
    let stranger = door.present_face(face(2), &mut embedder, &mut store, &NoClock, &mut LogAudit);
    let opened = matches!(enrolled, Outcome::Unlocked { id, .. } if id.0 == 1);
    let refused = matches!(stranger, Outcome::Rejected { .. });
    defmt::info!(
        "door: enrolled face opens: {}, unknown face refused: {}",
        opened,
        refused
    );
    ok &= opened && refused;

    // Reboot: reopen the store from the same flash.
    let flash = store.into_flash();
    match FlashStore::<_, 16>::open(flash, 0..FLASH_LEN as u32, model.hash(), &InsecureTestKey) {
        Ok(s) => {
            defmt::info!(
                "door: after restart {} people, threshold {}",
                s.len(),
                s.threshold()
            );
            ok &= s.len() == 2;
        }
        Err(_) => ok = false,
    }
    ok
}
