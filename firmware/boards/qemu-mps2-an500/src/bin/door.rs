//! The door image for QEMU `mps2-an500`: the int8 engine with the shipped
//! model, the encrypted store and the audit log in flash persisted to host
//! files (`door-store.bin`, `door-audit.bin` in QEMU's working directory),
//! the lock relay on FPGAIO LED0, and the provisioning protocol on UART0.
//! Camera frames arrive over UART0 too (`FrameChunk`/`VerifyFrame`: the
//! board finds, aligns and judges the face itself with the int8 MTCNN), as
//! do aligned faces (`FaceChunk`/`VerifyFace`): the link is this board's
//! camera. Runs until QEMU is stopped.
//!
//! `cargo xtask door --port 4444` boots it with UART0 on a TCP port.
#![no_std]
#![no_main]

use core::convert::Infallible;

use cortex_m_rt::entry;
use door_app::clock::SysTickClock;
use door_app::door_check::{DEVICE_ID, FLASH_LEN};
use door_app::engine_check::MODEL;
use door_app::server;
use facegate_core::audit::FlashAuditLog;
use facegate_core::detect::Scratch;
use facegate_core::door::{Door, EngineEmbedder};
use facegate_core::engine::Model;
use facegate_core::face_service::{Eye, FaceService};
use facegate_core::flash_store::{FlashStore, InsecureTestKey};
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::FACE_BYTES;
use facegate_core::protocol::device::{BoardInfo, DoorStore};
use qemu_mps2_an500::file_flash::{FileFlash, PAGE};
use qemu_mps2_an500::fpgaio::LockLed;
use qemu_mps2_an500::uart::Uart0;

/// Flash for the audit log: 4 pages, about 600 events before the oldest go.
const AUDIT_LEN: usize = 4 * PAGE;
/// The engine's arena (the shipped nano model and the detector need less),
/// lent to the detector between embeddings.
const ARENA: usize = 160 * 1024;
/// The frame buffer: a QVGA frame in RGB888 (RGB565 and grey need less).
const FRAME: usize = 320 * 240 * 3;

#[entry]
fn main() -> ! {
    defmt::info!(
        "facegate door {} on QEMU mps2-an500 (Cortex-M7), provisioning on UART0",
        env!("CARGO_PKG_VERSION")
    );
    match run() {
        Ok(never) => match never {},
        Err(why) => {
            defmt::error!("door: {}", why);
            semihosting::process::exit(1)
        }
    }
}

fn run() -> Result<Infallible, &'static str> {
    let cp = cortex_m::Peripherals::take().ok_or("core peripherals already taken")?;
    let clock = SysTickClock::start(cp.SYST, qemu_mps2_an500::SYSCLK_HZ);
    let model = Model::parse(MODEL).map_err(
        |_| "no model blob compiled in: build with `cargo xtask` (FACEGATE_ENGINE_FIXTURE)",
    )?;
    let hash = model.hash();

    let image =
        cortex_m::singleton!(: [u8; FLASH_LEN] = [0xFF; FLASH_LEN]).ok_or("store image taken")?;
    let flash = FileFlash::open(c"door-store.bin", image)
        .map_err(|_| "door-store.bin: semihosting file error")?;
    let mut store = FlashStore::<_, 16>::open(flash, 0..FLASH_LEN as u32, hash, &InsecureTestKey)
        .map_err(|_| "the store in door-store.bin does not open")?;
    defmt::info!(
        "door: store opened: {} people, claimed {}, nonce {}, threshold {}",
        store.len(),
        store.site_key().is_some(),
        store.nonce(),
        store.threshold()
    );
    if store.refused() > 0 {
        defmt::warn!(
            "door: {} stored people were refused (another model or damaged); re-provision them",
            store.refused()
        );
    }
    if let Some(why) = store.tamper() {
        defmt::error!(
            "door: stored state failed its checks ({}): opening for no one, taking no command; erase the flash and claim the board again",
            why
        );
    }

    let image =
        cortex_m::singleton!(: [u8; AUDIT_LEN] = [0xFF; AUDIT_LEN]).ok_or("audit image taken")?;
    let flash = FileFlash::open(c"door-audit.bin", image)
        .map_err(|_| "door-audit.bin: semihosting file error")?;
    let audit = FlashAuditLog::open(flash, 0..AUDIT_LEN as u32).map_err(|_| "audit log range")?;

    let arena = cortex_m::singleton!(: [i8; ARENA] = [0; ARENA]).ok_or("arena taken")?;
    let face =
        cortex_m::singleton!(: [u8; FACE_BYTES] = [0; FACE_BYTES]).ok_or("face buffer taken")?;
    let door = Door::new(LockLed::take(), LockoutPolicy::default(), None);
    let mut service = FaceService::new(door, EngineEmbedder { model, arena }, audit, clock, face);
    match door_app::eye::detector() {
        Ok(detector) if detector.arena_len() <= ARENA => {
            let scratch =
                cortex_m::singleton!(: Scratch = Scratch::new()).ok_or("detector scratch taken")?;
            let frame =
                cortex_m::singleton!(: [u8; FRAME] = [0; FRAME]).ok_or("frame buffer taken")?;
            defmt::info!(
                "door: detector on board (arena {} B of {} B, frames up to {} B)",
                detector.arena_len(),
                ARENA,
                FRAME
            );
            service = service.with_eye(Eye::new(detector, scratch, frame));
        }
        Ok(_) => return Err("the detector needs a larger arena than the door's"),
        Err(_) => defmt::warn!("door: no detector compiled in; frames are refused"),
    }
    let board = BoardInfo {
        firmware: env!("CARGO_PKG_VERSION"),
        model_hash: hash,
        device_id: DEVICE_ID,
        claim_key: door_app::CLAIM_KEY,
    };
    let mut uart = Uart0::take();
    defmt::info!("door: ready on UART0");
    // This UART cannot fail, so serving never returns: the error type is uninhabited.
    #[allow(unreachable_code)]
    server::serve(&mut uart, &board, &mut store, &mut service, |_, s| s.poll())
        .map_err(|never| match never {})
}
