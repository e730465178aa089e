//! STM32H743-class board: the same door app, logging over RTT through a
//! debug probe (`cargo run --release` from this folder uses probe-rs).
//!
//! Clocks stay at reset defaults (64 MHz HSI) for now; the camera, lock relay
//! and UART drivers arrive with the door app proper.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use defmt_rtt as _;
use panic_probe as _;

#[entry]
fn main() -> ! {
    defmt::info!(
        "facegate door firmware {} on STM32H743",
        env!("CARGO_PKG_VERSION")
    );
    let report = door_app::demo::run();
    if report.all_passed() {
        defmt::info!("PASS: door self-test, {} checks", report.passed);
    } else {
        defmt::error!("FAIL: door self-test {}", report);
    }
    loop {
        cortex_m::asm::wfi();
    }
}
