//! NOR flash for the emulated board: an image in RAM, written through to a
//! file on the host by semihosting, so the door's state survives a restart
//! of the emulator (QEMU's working directory holds the file).
//!
//! It behaves like NOR: erase sets 0xFF, programming only clears bits, and
//! every write reaches the file before it returns, as it reaches real flash.

use core::ffi::CStr;

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use semihosting::fs::{File, OpenOptions};
use semihosting::io::{Read, Seek, SeekFrom, Write};

/// Bytes of one erasable page.
pub const PAGE: usize = 4096;

/// Why the flash failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum FlashError {
    /// Access outside the image.
    OutOfBounds,
    /// The host file could not be read or written.
    File,
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::File => NorFlashErrorKind::Other,
        }
    }
}

/// A flash image persisted in a host file.
#[derive(Debug)]
pub struct FileFlash {
    image: &'static mut [u8],
    file: File,
}

impl FileFlash {
    /// Opens `path`, loading its contents into `image`; creates it erased
    /// (all 0xFF) when it does not exist or has another size.
    pub fn open(path: &CStr, image: &'static mut [u8]) -> Result<Self, FlashError> {
        if let Ok(mut file) = OpenOptions::new().read(true).write(true).open(path) {
            let same_size = file.metadata().is_ok_and(|m| m.len() == image.len() as u64);
            if same_size && read_exact(&mut file, image).is_ok() {
                return Ok(Self { image, file });
            }
            defmt::warn!(
                "flash: {} is damaged or of another size; starting erased",
                path.to_str().unwrap_or("?")
            );
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|_| FlashError::File)?;
        image.fill(0xFF);
        file.write_all(image).map_err(|_| FlashError::File)?;
        Ok(Self { image, file })
    }

    fn persist(&mut self, from: usize, to: usize) -> Result<(), FlashError> {
        let bytes = self.image.get(from..to).ok_or(FlashError::OutOfBounds)?;
        self.file
            .seek(SeekFrom::Start(from as u64))
            .map_err(|_| FlashError::File)?;
        self.file.write_all(bytes).map_err(|_| FlashError::File)
    }
}

fn read_exact(file: &mut File, mut buf: &mut [u8]) -> Result<(), FlashError> {
    while !buf.is_empty() {
        match file.read(buf) {
            Ok(0) | Err(_) => return Err(FlashError::File),
            Ok(n) => buf = &mut buf[n..],
        }
    }
    Ok(())
}

impl ErrorType for FileFlash {
    type Error = FlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        let o = offset as usize;
        let src = self
            .image
            .get(o..o + bytes.len())
            .ok_or(FlashError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.image.len()
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        let (from, to) = (from as usize, to as usize);
        self.image
            .get_mut(from..to)
            .ok_or(FlashError::OutOfBounds)?
            .fill(0xFF);
        self.persist(from, to)
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        let o = offset as usize;
        let dst = self
            .image
            .get_mut(o..o + bytes.len())
            .ok_or(FlashError::OutOfBounds)?;
        for (d, b) in dst.iter_mut().zip(bytes) {
            *d &= *b; // NOR programming only clears bits
        }
        self.persist(o, o + bytes.len())
    }
}

impl MultiwriteNorFlash for FileFlash {}
