//! QEMU `mps2-an500` board: runs the door app's self-test, logs over
//! semihosting (defmt frames, decoded on the host by `defmt-print`) and ends
//! QEMU with exit status 0 (pass) or 1 (fail) for the test harness.
#![no_std]
#![no_main]

use cortex_m_rt::{ExceptionFrame, entry, exception};
// cortex-m provides the single-core critical section defmt-semihosting locks with.
use cortex_m as _;
use defmt_semihosting as _;

#[entry]
fn main() -> ! {
    defmt::info!(
        "facegate door firmware {} on QEMU mps2-an500 (Cortex-M7)",
        env!("CARGO_PKG_VERSION")
    );
    let mut report = door_app::demo::run();
    // The engine's arena: 256 KiB of the board's 4 MiB RAM (the check's model needs ~74 KiB).
    match cortex_m::singleton!(: [i8; 256 * 1024] = [0; 256 * 1024]) {
        Some(arena) => match door_app::engine_check::run(arena) {
            door_app::engine_check::EngineCheck::Equal { faces } => {
                defmt::info!(
                    "engine: {} embeddings equal the host engine's bit for bit",
                    faces
                );
                report.passed += 1;
            }
            door_app::engine_check::EngineCheck::NotCompiledIn => {
                defmt::warn!(
                    "engine: check not compiled in (build with FACEGATE_ENGINE_FIXTURE; `cargo xtask` does)"
                );
            }
            door_app::engine_check::EngineCheck::Failed => report.failed += 1,
        },
        None => report.failed += 1,
    }
    if report.all_passed() {
        defmt::info!("PASS: door self-test, {} checks", report.passed);
        semihosting::process::exit(0)
    } else {
        defmt::error!("FAIL: door self-test {}", report);
        semihosting::process::exit(1)
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    semihosting::process::exit(101)
}

// Without this a fault would spin forever; end the run with a failure instead.
#[allow(unsafe_code)] // cortex-m-rt requires HardFault handlers to be `unsafe fn`.
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!("hard fault at pc={:#010x}", frame.pc());
    semihosting::process::exit(102)
}
