//! Several stores on one chip: each [`Partition`] is a window of a shared
//! flash, so the door's store and audit log can live on the same SPI NOR.

use core::cell::RefCell;
use core::ops::Range;

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Why a partition access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PartitionError<E> {
    /// The underlying flash failed.
    Flash(E),
    /// Outside the partition.
    OutOfBounds,
    /// The flash is in use by another partition's unfinished operation.
    Busy,
}

impl<E: NorFlashError> NorFlashError for PartitionError<E> {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Flash(e) => e.kind(),
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::Busy => NorFlashErrorKind::Other,
        }
    }
}

/// `range` of the flash in `cell`, addressed from 0.
#[derive(Debug)]
pub struct Partition<'a, F> {
    flash: &'a RefCell<F>,
    range: Range<u32>,
}

impl<'a, F: NorFlash> Partition<'a, F> {
    /// A window onto `range` (erase-aligned) of `flash`.
    pub fn new(flash: &'a RefCell<F>, range: Range<u32>) -> Option<Self> {
        let erase = F::ERASE_SIZE as u32;
        let fits = range.start % erase == 0
            && range.end % erase == 0
            && range.start < range.end
            && range.end as usize <= flash.try_borrow().ok()?.capacity();
        fits.then_some(Self { flash, range })
    }

    fn at(&self, offset: u32, len: usize) -> Result<u32, PartitionError<F::Error>> {
        let start = self
            .range
            .start
            .checked_add(offset)
            .ok_or(PartitionError::OutOfBounds)?;
        let end = u64::from(start) + len as u64;
        if end > u64::from(self.range.end) {
            return Err(PartitionError::OutOfBounds);
        }
        Ok(start)
    }
}

impl<F: NorFlash> ErrorType for Partition<'_, F> {
    type Error = PartitionError<F::Error>;
}

// The borrow is held across the flash operation on purpose: a second
// partition touching the chip meanwhile gets `Busy` (try_borrow), never a panic.
#[allow(clippy::await_holding_refcell_ref)]
impl<F: NorFlash> ReadNorFlash for Partition<'_, F> {
    const READ_SIZE: usize = F::READ_SIZE;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let at = self.at(offset, bytes.len())?;
        let mut f = self
            .flash
            .try_borrow_mut()
            .map_err(|_| PartitionError::Busy)?;
        f.read(at, bytes).await.map_err(PartitionError::Flash)
    }
    fn capacity(&self) -> usize {
        (self.range.end - self.range.start) as usize
    }
}

#[allow(clippy::await_holding_refcell_ref)]
impl<F: NorFlash> NorFlash for Partition<'_, F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let n = to.checked_sub(from).ok_or(PartitionError::OutOfBounds)? as usize;
        let at = self.at(from, n)?;
        let mut f = self
            .flash
            .try_borrow_mut()
            .map_err(|_| PartitionError::Busy)?;
        f.erase(at, at + (to - from))
            .await
            .map_err(PartitionError::Flash)
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let at = self.at(offset, bytes.len())?;
        let mut f = self
            .flash
            .try_borrow_mut()
            .map_err(|_| PartitionError::Busy)?;
        f.write(at, bytes).await.map_err(PartitionError::Flash)
    }
}

impl<F: MultiwriteNorFlash> MultiwriteNorFlash for Partition<'_, F> {}
