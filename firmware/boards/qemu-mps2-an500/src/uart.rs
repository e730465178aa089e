//! CMSDK APB UART0 of the MPS2 (QEMU `hw/char/cmsdk-apb-uart.c`), polled,
//! behind embedded-io's `Read`, `ReadReady` and `Write`.

use core::convert::Infallible;

const BASE: usize = 0x4000_4000;
const DATA: usize = BASE;
const STATE: usize = BASE + 0x04;
const CTRL: usize = BASE + 0x08;
const BAUDDIV: usize = BASE + 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

#[allow(unsafe_code)] // MMIO: the addresses are the board's UART0 registers.
fn read_reg(addr: usize) -> u32 {
    // SAFETY: an aligned, always-mapped device register on this board.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

#[allow(unsafe_code)] // MMIO: the addresses are the board's UART0 registers.
fn write_reg(addr: usize, value: u32) {
    // SAFETY: an aligned, always-mapped device register on this board.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// UART0, owned once.
#[derive(Debug)]
pub struct Uart0(());

impl Uart0 {
    /// Enables transmit and receive. Call once; QEMU ignores the baud rate
    /// but stops the UART below divider 16.
    pub fn take() -> Self {
        write_reg(BAUDDIV, 16);
        write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN);
        Self(())
    }

    fn try_read_byte(&mut self) -> Option<u8> {
        (read_reg(STATE) & STATE_RX_FULL != 0).then(|| read_reg(DATA) as u8)
    }
}

impl embedded_io::ErrorType for Uart0 {
    type Error = Infallible;
}

impl embedded_io::ReadReady for Uart0 {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(read_reg(STATE) & STATE_RX_FULL != 0)
    }
}

impl embedded_io::Read for Uart0 {
    /// Blocks for the first byte, then takes what has already arrived.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            let byte = loop {
                match self.try_read_byte() {
                    Some(b) => break Some(b),
                    None if n == 0 => continue,
                    None => break None,
                }
            };
            let Some(b) = byte else { break };
            *slot = b;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while read_reg(STATE) & STATE_TX_FULL != 0 {}
            write_reg(DATA, u32::from(b));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        while read_reg(STATE) & STATE_TX_FULL != 0 {}
        Ok(())
    }
}
