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
    let report = door_app::demo::run();
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
