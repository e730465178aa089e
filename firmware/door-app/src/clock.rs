//! Milliseconds since boot from SysTick's interrupt, on any Cortex-M board.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use facegate_core::door::Clock;

static MILLIS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// SysTick interrupts taken so far: milliseconds once [`SysTickClock`] has
/// started it, reload periods where a board uses SysTick as a stopwatch.
pub fn systick_interrupts() -> u32 {
    MILLIS.load(Ordering::Relaxed)
}

/// A clock ticking every millisecond.
#[derive(Debug)]
pub struct SysTickClock(());

impl SysTickClock {
    /// Starts SysTick at 1 kHz from the core clock of `core_hz`.
    pub fn start(mut syst: SYST, core_hz: u32) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(core_hz / 1_000 - 1);
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
