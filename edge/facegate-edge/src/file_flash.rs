//! NOR-flash semantics over a file: erase sets 0xFF, programming only clears
//! bits, every write is on disk (`fdatasync`) before it returns. The store
//! on top is the firmware's — sequential-storage with the same power-cut
//! tests — so a power cut on a Linux board leaves each change entirely
//! there or entirely absent, as on a microcontroller.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Bytes of one erasable page.
pub const PAGE: usize = 4096;

/// Creates `path` whole or not at all: `fill` writes the content into
/// `path.tmp` (mode `mode`), which is synced and renamed over `path`, and
/// the folder is synced. A power cut at any point leaves either no file or
/// the complete one (a stale `.tmp` is replaced by the next attempt).
pub fn create_atomically(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    if let Err(e) = fill(&mut f).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// Why the file flash failed.
#[derive(Debug, thiserror::Error)]
pub enum FileFlashError {
    /// Access outside the image.
    #[error("access outside the flash image")]
    OutOfBounds,
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The image file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists with another size: not this runtime's image.
    #[error(
        "{path} is {found} bytes, a flash image here is {expected}: not touching it (move it away to start empty)"
    )]
    WrongSize {
        /// The image file.
        path: PathBuf,
        /// Bytes expected.
        expected: u64,
        /// Bytes found.
        found: u64,
    },
}

impl NorFlashError for FileFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// A flash image of `pages` pages in a file.
#[derive(Debug)]
pub struct FileFlash {
    file: File,
    path: PathBuf,
    len: u64,
}

impl FileFlash {
    /// Opens `path`, creating an erased image when it does not exist. An
    /// existing file of another size is refused, never overwritten.
    pub fn open(path: &Path, pages: usize) -> Result<Self, FileFlashError> {
        let len = (pages * PAGE) as u64;
        let io = |source| FileFlashError::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.exists() {
            // First boot: the erased image appears whole or not at all (a
            // cut while writing it used to leave a short file that every
            // later start refused).
            create_atomically(path, 0o600, |f| {
                f.write_all_at(&vec![0xFF; pages * PAGE], 0)
            })
            .map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        if found != len {
            return Err(FileFlashError::WrongSize {
                path: path.to_path_buf(),
                expected: len,
                found,
            });
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    fn range(&self, offset: u32, n: usize) -> Result<u64, FileFlashError> {
        let end = u64::from(offset) + n as u64;
        if end > self.len {
            return Err(FileFlashError::OutOfBounds);
        }
        Ok(u64::from(offset))
    }

    fn io(&self, source: std::io::Error) -> FileFlashError {
        FileFlashError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl ErrorType for FileFlash {
    type Error = FileFlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FileFlashError> {
        let at = self.range(offset, bytes.len())?;
        self.file.read_exact_at(bytes, at).map_err(|e| self.io(e))
    }
    fn capacity(&self) -> usize {
        usize::try_from(self.len).unwrap_or(usize::MAX)
    }
}

impl NorFlash for FileFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), FileFlashError> {
        let n = to.checked_sub(from).ok_or(FileFlashError::OutOfBounds)? as usize;
        let at = self.range(from, n)?;
        self.file
            .write_all_at(&vec![0xFF; n], at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FileFlashError> {
        let at = self.range(offset, bytes.len())?;
        // NOR programming only clears bits.
        let mut cell = vec![0u8; bytes.len()];
        self.file
            .read_exact_at(&mut cell, at)
            .map_err(|e| self.io(e))?;
        for (c, b) in cell.iter_mut().zip(bytes) {
            *c &= *b;
        }
        self.file
            .write_all_at(&cell, at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io(e))
    }
}

impl MultiwriteNorFlash for FileFlash {}
