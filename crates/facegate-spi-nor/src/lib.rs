//! SPI NOR flash for door boards, generic over embedded-hal 1.0's
//! [`SpiDevice`]: the common JEDEC command set of W25Q, MX25, IS25 and
//! GD25 parts (read `0x03`, page program `0x02`, 4 KiB sector erase `0x20`,
//! write enable `0x06`, status `0x05`, JEDEC id `0x9F`, 24-bit addresses).
//!
//! It implements embedded-storage's `NorFlash` and `MultiwriteNorFlash`
//! (NOR cells can be programmed again as long as bits only clear), which is
//! what facegate's power-cut-safe store needs. Why external flash: the
//! STM32H7's internal flash has ECC over 32-byte words, which cannot be
//! programmed twice, so the store lives on a SPI NOR chip as on most door
//! controllers.
//!
//! Every wait is bounded: a chip that never finishes answers
//! [`Error::Timeout`], it does not hang the door.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod partition;

use embedded_hal::spi::{Operation, SpiDevice};
use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Bytes one page-program command may write (within one page).
pub const PAGE: usize = 256;
/// Bytes one sector erase clears.
pub const SECTOR: usize = 4096;

const READ: u8 = 0x03;
const PROGRAM: u8 = 0x02;
const ERASE_SECTOR: u8 = 0x20;
const WRITE_ENABLE: u8 = 0x06;
const READ_STATUS: u8 = 0x05;
const JEDEC_ID: u8 = 0x9F;
const STATUS_BUSY: u8 = 0x01;
/// Status polls before giving up (a sector erase takes up to ~400 ms; at
/// SPI speeds one poll is a few µs, so this allows seconds).
const MAX_POLLS: u32 = 2_000_000;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error<E> {
    /// The SPI bus failed.
    Spi(E),
    /// Outside the chip.
    OutOfBounds,
    /// Not aligned to the write or erase granularity.
    NotAligned,
    /// The chip stayed busy past every bound.
    Timeout,
}

impl<E: core::fmt::Debug> NorFlashError for Error<E> {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::Spi(_) | Self::Timeout => NorFlashErrorKind::Other,
        }
    }
}

/// A SPI NOR chip of `capacity` bytes (24-bit addressing: up to 16 MiB).
#[derive(Debug)]
pub struct SpiNor<S> {
    spi: S,
    capacity: u32,
}

impl<S: SpiDevice> SpiNor<S> {
    /// The chip on `spi`, of `capacity` bytes (a multiple of [`SECTOR`], ≤ 16 MiB).
    pub fn new(spi: S, capacity: u32) -> Result<Self, Error<S::Error>> {
        if capacity == 0 || capacity > 1 << 24 || capacity as usize % SECTOR != 0 {
            return Err(Error::OutOfBounds);
        }
        Ok(Self { spi, capacity })
    }

    /// Manufacturer, memory type and capacity bytes (e.g. `EF 40 18` for a W25Q128).
    pub fn jedec_id(&mut self) -> Result<[u8; 3], Error<S::Error>> {
        let mut id = [0u8; 3];
        self.spi
            .transaction(&mut [Operation::Write(&[JEDEC_ID]), Operation::Read(&mut id)])
            .map_err(Error::Spi)?;
        Ok(id)
    }

    /// Gives the bus back.
    pub fn release(self) -> S {
        self.spi
    }

    fn command(addr_cmd: u8, addr: u32) -> [u8; 4] {
        let a = addr.to_be_bytes();
        [addr_cmd, a[1], a[2], a[3]]
    }

    fn check(&self, offset: u32, len: usize) -> Result<(), Error<S::Error>> {
        let end = u64::from(offset) + len as u64;
        if end > u64::from(self.capacity) {
            return Err(Error::OutOfBounds);
        }
        Ok(())
    }

    fn wait_idle(&mut self) -> Result<(), Error<S::Error>> {
        for _ in 0..MAX_POLLS {
            let mut status = [0u8];
            self.spi
                .transaction(&mut [
                    Operation::Write(&[READ_STATUS]),
                    Operation::Read(&mut status),
                ])
                .map_err(Error::Spi)?;
            if status[0] & STATUS_BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    fn write_enable(&mut self) -> Result<(), Error<S::Error>> {
        self.spi.write(&[WRITE_ENABLE]).map_err(Error::Spi)
    }

    fn read_blocking(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Error<S::Error>> {
        self.check(offset, bytes.len())?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.spi
            .transaction(&mut [
                Operation::Write(&Self::command(READ, offset)),
                Operation::Read(bytes),
            ])
            .map_err(Error::Spi)
    }

    fn program_blocking(
        &mut self,
        mut offset: u32,
        mut bytes: &[u8],
    ) -> Result<(), Error<S::Error>> {
        self.check(offset, bytes.len())?;
        // A program command wraps inside its 256-byte page: split at page ends.
        while !bytes.is_empty() {
            let room = PAGE - offset as usize % PAGE;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.write_enable()?;
            self.spi
                .transaction(&mut [
                    Operation::Write(&Self::command(PROGRAM, offset)),
                    Operation::Write(now),
                ])
                .map_err(Error::Spi)?;
            self.wait_idle()?;
            offset += now.len() as u32;
            bytes = rest;
        }
        Ok(())
    }

    fn erase_blocking(&mut self, from: u32, to: u32) -> Result<(), Error<S::Error>> {
        if from > to || from as usize % SECTOR != 0 || to as usize % SECTOR != 0 {
            return Err(Error::NotAligned);
        }
        self.check(from, (to - from) as usize)?;
        for sector in (from..to).step_by(SECTOR) {
            self.write_enable()?;
            self.spi
                .write(&Self::command(ERASE_SECTOR, sector))
                .map_err(Error::Spi)?;
            self.wait_idle()?;
        }
        Ok(())
    }
}

impl<S: SpiDevice> ErrorType for SpiNor<S> {
    type Error = Error<S::Error>;
}

impl<S: SpiDevice> ReadNorFlash for SpiNor<S> {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.read_blocking(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.capacity as usize
    }
}

impl<S: SpiDevice> NorFlash for SpiNor<S> {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = SECTOR;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.erase_blocking(from, to)
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.program_blocking(offset, bytes)
    }
}

// NOR cells may be programmed again; bits only ever clear until an erase.
impl<S: SpiDevice> MultiwriteNorFlash for SpiNor<S> {}
