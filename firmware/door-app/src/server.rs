//! The provisioning link of a board: bytes in, frames out, one response per
//! request, and the door's idle work (closing the lock after its pulse)
//! whenever no byte is waiting. Generic over embedded-io, so any UART,
//! USB-CDC or socket driver serves it.

use embedded_io::{Read, ReadReady, Write};
use facegate_core::protocol::device::{BoardInfo, Diagnostics, DoorStore, handle_with};
use facegate_core::protocol::{ErrorCode, MAX_FRAME, Response, frame};

/// What [`FrameReader::push`] completed.
#[derive(Debug)]
pub enum Frame<'a> {
    /// One frame's COBS body, without its terminating 0.
    Complete(&'a mut [u8]),
    /// A frame longer than any valid one; its bytes were dropped.
    TooLong,
}

/// Splits the byte stream at 0 delimiters, bounded: an endless stream
/// without a 0 costs no more than one buffer.
#[derive(Debug)]
pub struct FrameReader {
    buf: [u8; MAX_FRAME],
    len: usize,
    overflow: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self {
            buf: [0; MAX_FRAME],
            len: 0,
            overflow: false,
        }
    }
}

impl FrameReader {
    /// Takes one byte; returns a frame when `byte` ends one.
    pub fn push(&mut self, byte: u8) -> Option<Frame<'_>> {
        if byte != 0 {
            match self.buf.get_mut(self.len) {
                Some(slot) => {
                    *slot = byte;
                    self.len += 1;
                }
                None => self.overflow = true,
            }
            return None;
        }
        let (len, overflow) = (self.len, self.overflow);
        (self.len, self.overflow) = (0, false);
        if overflow {
            Some(Frame::TooLong)
        } else if len == 0 {
            None // a lone delimiter resynchronises; nothing to answer
        } else {
            Some(Frame::Complete(&mut self.buf[..len]))
        }
    }
}

/// Serves requests on `link` forever; `idle` runs whenever no byte is waiting.
/// Returns only when the link fails.
pub fn serve<L, S, D>(
    link: &mut L,
    board: &BoardInfo<'_>,
    store: &mut S,
    diagnostics: &mut D,
    mut idle: impl FnMut(&mut D),
) -> Result<core::convert::Infallible, L::Error>
where
    L: Read + ReadReady + Write,
    S: DoorStore,
    D: Diagnostics<S>,
{
    let mut reader = FrameReader::default();
    let mut out = [0u8; MAX_FRAME];
    let mut bytes = [0u8; 64];
    loop {
        if !link.read_ready()? {
            idle(diagnostics);
            continue;
        }
        let n = link.read(&mut bytes)?;
        for &b in bytes.get(..n).unwrap_or(&[]) {
            let reply = match reader.push(b) {
                None => continue,
                Some(Frame::Complete(f)) => handle_with(board, store, diagnostics, f, &mut out),
                Some(Frame::TooLong) => {
                    frame::encode(&Response::Error(ErrorCode::Garbled), &mut out)
                }
            };
            // `out` holds any response; an encoding failure would be a bug, answered as garbled.
            let len = match reply {
                Ok(len) => len,
                Err(_) => {
                    frame::encode(&Response::Error(ErrorCode::Garbled), &mut out).unwrap_or(0)
                }
            };
            link.write_all(out.get(..len).unwrap_or(&[]))?;
        }
    }
}
