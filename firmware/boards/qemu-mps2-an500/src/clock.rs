//! Milliseconds since boot from SysTick's interrupt.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use facegate_core::door::Clock;

/// The MPS2's system clock (QEMU `hw/arm/mps2.c`: 25 MHz).
const SYSCLK_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// A clock ticking every millisecond.
#[derive(Debug)]
pub struct SysTickClock(());

impl SysTickClock {
    /// Starts SysTick at 1 kHz.
    pub fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(SYSCLK_HZ / 1_000 - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Self(())
    }
}

impl Clock for SysTickClock {
    fn now_ms(&self) -> u64 {
        u64::from(MILLIS.load(Ordering::Relaxed))
    }
}
