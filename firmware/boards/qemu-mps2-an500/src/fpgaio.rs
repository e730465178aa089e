//! The lock relay of the emulated door: FPGAIO LED0 (QEMU
//! `hw/misc/mps2-fpgaio.c`), an embedded-hal `OutputPin`. Every change is
//! logged with the register read back, so a test sees the relay move.

use core::convert::Infallible;

const LED0: usize = 0x4002_8000;

#[allow(unsafe_code)] // MMIO: FPGAIO's LED register on this board.
fn set_led0(on: bool) -> u32 {
    let p = LED0 as *mut u32;
    // SAFETY: an aligned, always-mapped device register on this board.
    unsafe {
        let v = core::ptr::read_volatile(p);
        core::ptr::write_volatile(p, (v & !1) | u32::from(on));
        core::ptr::read_volatile(p) & 1
    }
}

/// The lock relay on LED0: high = open.
#[derive(Debug)]
pub struct LockLed(());

impl LockLed {
    /// The relay, driven low (locked).
    pub fn take() -> Self {
        set_led0(false);
        Self(())
    }
}

impl embedded_hal::digital::ErrorType for LockLed {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for LockLed {
    fn set_low(&mut self) -> Result<(), Infallible> {
        let led = set_led0(false);
        defmt::info!("door: lock relay LOW (locked), FPGAIO LED0 = {}", led);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        let led = set_led0(true);
        defmt::info!("door: lock relay HIGH (open), FPGAIO LED0 = {}", led);
        Ok(())
    }
}
