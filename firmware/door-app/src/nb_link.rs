//! A HAL serial port with a non-blocking byte read (embedded-hal-nb) and a
//! blocking write (embedded-io) as the link [`crate::server::serve`] wants:
//! embedded-io `Read` + `ReadReady` + `Write`.

use embedded_hal_nb::serial::Read as NbRead;

/// The adapter: one byte of look-ahead answers `read_ready`.
#[derive(Debug)]
pub struct NbLink<U> {
    uart: U,
    peeked: Option<u8>,
}

impl<U> NbLink<U> {
    /// Wraps `uart`.
    pub const fn new(uart: U) -> Self {
        Self { uart, peeked: None }
    }
}

/// The port's error, as embedded-io sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub struct LinkError;

impl embedded_io::Error for LinkError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<U> embedded_io::ErrorType for NbLink<U> {
    type Error = LinkError;
}

impl<U: NbRead<u8>> NbLink<U> {
    fn poll(&mut self) -> Result<Option<u8>, LinkError> {
        if let Some(b) = self.peeked.take() {
            return Ok(Some(b));
        }
        match self.uart.read() {
            Ok(b) => Ok(Some(b)),
            Err(nb::Error::WouldBlock) => Ok(None),
            // A framing or overrun error loses bytes: the frame's CRC catches it.
            Err(nb::Error::Other(_)) => Ok(None),
        }
    }
}

impl<U: NbRead<u8>> embedded_io::ReadReady for NbLink<U> {
    fn read_ready(&mut self) -> Result<bool, LinkError> {
        if self.peeked.is_none() {
            self.peeked = self.poll()?;
        }
        Ok(self.peeked.is_some())
    }
}

impl<U: NbRead<u8>> embedded_io::Read for NbLink<U> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        let mut n = 0;
        while n < buf.len() {
            match self.poll()? {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None if n == 0 => continue,
                None => break,
            }
        }
        Ok(n)
    }
}

impl<U: embedded_io::Write> embedded_io::Write for NbLink<U> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        self.uart.write(buf).map_err(|_| LinkError)
    }
    fn flush(&mut self) -> Result<(), LinkError> {
        self.uart.flush().map_err(|_| LinkError)
    }
}
