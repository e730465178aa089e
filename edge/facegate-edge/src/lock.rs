//! The lock relay: a GPIO line through the Linux gpio character device
//! (feature `gpio`), or no hardware at all; every change is logged.

use embedded_hal::digital::{ErrorKind, ErrorType, OutputPin};

/// The relay: an optional GPIO line, each change logged.
#[derive(Default)]
pub struct Relay {
    #[cfg(feature = "gpio")]
    pin: Option<linux_embedded_hal::CdevPin>,
}

impl core::fmt::Debug for Relay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        #[cfg(feature = "gpio")]
        let gpio = self.pin.is_some();
        #[cfg(not(feature = "gpio"))]
        let gpio = false;
        f.debug_struct("Relay").field("gpio", &gpio).finish()
    }
}

impl Relay {
    /// No relay attached (development, tests): only the log shows the lock.
    pub fn logged_only() -> Self {
        Self::default()
    }

    /// Line `line` of `chip` (e.g. `/dev/gpiochip0`, 17) as an output, low.
    #[cfg(feature = "gpio")]
    pub fn gpio(chip: &str, line: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
        let mut c = Chip::new(chip).with_context(|| format!("cannot open {chip}"))?;
        let handle = c
            .get_line(line)
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, 0, "facegate-lock"))
            .with_context(|| format!("cannot claim line {line} of {chip}"))?;
        let pin = linux_embedded_hal::CdevPin::new(handle).context("gpio line")?;
        Ok(Self { pin: Some(pin) })
    }

    fn drive(&mut self, high: bool) -> Result<(), ErrorKind> {
        #[cfg(feature = "gpio")]
        if let Some(pin) = self.pin.as_mut() {
            let r = if high { pin.set_high() } else { pin.set_low() };
            r.map_err(|_| ErrorKind::Other)?;
        }
        println!(
            "edge: lock relay {}",
            if high { "HIGH (open)" } else { "LOW (locked)" }
        );
        Ok(())
    }
}

impl ErrorType for Relay {
    type Error = ErrorKind;
}

impl OutputPin for Relay {
    fn set_low(&mut self) -> Result<(), ErrorKind> {
        self.drive(false)
    }
    fn set_high(&mut self) -> Result<(), ErrorKind> {
        self.drive(true)
    }
}
