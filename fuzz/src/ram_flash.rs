//! NOR flash in RAM for the store targets and their seeds.

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Erase page.
pub const PAGE: usize = 4096;
/// Pages of the fuzzed store image.
pub const PAGES: usize = 4;

/// An access outside the image.
#[derive(Debug)]
pub struct OutOfBounds;

impl NorFlashError for OutOfBounds {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::OutOfBounds
    }
}

/// The image.
pub struct RamFlash(pub Vec<u8>);

impl ErrorType for RamFlash {
    type Error = OutOfBounds;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), OutOfBounds> {
        let o = offset as usize;
        let src = self.0.get(o..o + bytes.len()).ok_or(OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), OutOfBounds> {
        self.0
            .get_mut(from as usize..to as usize)
            .ok_or(OutOfBounds)?
            .fill(0xFF);
        Ok(())
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let o = offset as usize;
        let dst = self.0.get_mut(o..o + bytes.len()).ok_or(OutOfBounds)?;
        for (d, b) in dst.iter_mut().zip(bytes) {
            *d &= *b;
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for RamFlash {}
