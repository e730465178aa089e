//! QEMU `mps2-an500` (Cortex-M7) board support: the pieces the door app is
//! generic over, backed by what QEMU emulates.
//!
//! - [`uart::Uart0`]: the CMSDK UART0, the provisioning link (`-serial`).
//! - [`fpgaio::LockLed`]: the lock relay, mapped to FPGAIO LED0 and logged.
//! - [`file_flash::FileFlash`]: NOR flash in RAM, written through to a host
//!   file by semihosting, so state survives a restart of the emulator.
//!
//! It also ends every run cleanly: a panic or a hard fault exits QEMU with a
//! status the harness reports, instead of hanging.
#![no_std]
#![deny(missing_docs)]

/// The MPS2's system clock (QEMU `hw/arm/mps2.c`: 25 MHz), for SysTick.
pub const SYSCLK_HZ: u32 = 25_000_000;

pub mod file_flash;
pub mod fpgaio;
pub mod uart;

use cortex_m_rt::{ExceptionFrame, exception};
// cortex-m provides the single-core critical section defmt-semihosting locks with.
use cortex_m as _;
use defmt_semihosting as _;

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
