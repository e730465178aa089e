//! `COBS(postcard ‖ CRC-32) ‖ 0` framing.

use serde::{Deserialize, Serialize};

use super::MAX_MESSAGE;

pub(crate) const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Why a frame could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// Not valid COBS.
    Cobs,
    /// Shorter than a CRC, or longer than [`MAX_MESSAGE`].
    Length,
    /// CRC mismatch: damaged in transit.
    Crc,
    /// The payload is not a message of the expected type.
    Message,
    /// The output buffer is too small.
    BufferTooSmall,
}

/// Encodes `msg` into `out` as one frame (with the trailing 0); returns its length.
pub fn encode<T: Serialize>(msg: &T, out: &mut [u8]) -> Result<usize, FrameError> {
    let mut raw = [0u8; MAX_MESSAGE + 4];
    let n = postcard::to_slice(msg, &mut raw[..MAX_MESSAGE])
        .map_err(|_| FrameError::BufferTooSmall)?
        .len();
    let crc = CRC.checksum(&raw[..n]);
    raw[n..n + 4].copy_from_slice(&crc.to_le_bytes());
    let len = cobs::try_encode(&raw[..n + 4], out).map_err(|_| FrameError::BufferTooSmall)?;
    let end = out.get_mut(len).ok_or(FrameError::BufferTooSmall)?;
    *end = 0;
    Ok(len + 1)
}

/// Decodes one frame (with or without its trailing 0) in place and parses
/// the message, which may borrow from `frame`.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a mut [u8]) -> Result<T, FrameError> {
    let body_len = match frame.last() {
        Some(0) => frame.len() - 1,
        _ => frame.len(),
    };
    if body_len > cobs::max_encoding_length(MAX_MESSAGE + 4) {
        return Err(FrameError::Length);
    }
    let body: &'a mut [u8] = &mut frame[..body_len];
    let n = cobs::decode_in_place(body).map_err(|_| FrameError::Cobs)?;
    let body: &'a [u8] = body;
    let decoded = body.get(..n).ok_or(FrameError::Cobs)?;
    let (msg, crc) = decoded.split_last_chunk::<4>().ok_or(FrameError::Length)?;
    if CRC.checksum(msg) != u32::from_le_bytes(*crc) {
        return Err(FrameError::Crc);
    }
    postcard::from_bytes(msg).map_err(|_| FrameError::Message)
}

/// What [`FrameReader::push`] completed.
#[derive(Debug)]
pub enum Frame<'a> {
    /// One frame's COBS body, without its terminating 0.
    Complete(&'a mut [u8]),
    /// A frame longer than any valid one; its bytes were dropped.
    TooLong,
}

/// Splits a byte stream at 0 delimiters, bounded: an endless stream
/// without a 0 costs no more than one buffer, and a lone 0 resynchronises.
#[derive(Debug)]
pub struct FrameReader {
    buf: [u8; super::MAX_FRAME],
    len: usize,
    overflow: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self {
            buf: [0; super::MAX_FRAME],
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
            None
        } else {
            Some(Frame::Complete(&mut self.buf[..len]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Request, Response};

    #[test]
    fn round_trip_and_damage() {
        let mut buf = [0u8; 256];
        let req = Request::Signed {
            nonce: 7,
            command: &[1, 2, 0, 3],
            signature: &[9; 64],
        };
        let n = encode(&req, &mut buf).unwrap();
        assert_eq!(buf[n - 1], 0);
        assert!(!buf[..n - 1].contains(&0), "COBS removes zeros");
        let mut copy = buf;
        assert_eq!(decode::<Request<'_>>(&mut copy[..n]).unwrap(), req);
        // Any flipped byte is caught (COBS, CRC or message), never panics.
        for i in 0..n - 1 {
            let mut c = buf;
            c[i] ^= 0x20;
            assert!(decode::<Request<'_>>(&mut c[..n]).is_err(), "flip at {i}");
        }
        let mut short = buf;
        assert!(decode::<Request<'_>>(&mut short[..3]).is_err());
        assert_eq!(
            encode(&Response::Ok { nonce: 1 }, &mut [0u8; 3]),
            Err(FrameError::BufferTooSmall)
        );
    }

    #[test]
    fn reader_splits_resynchronises_and_bounds_frames() {
        let mut r = FrameReader::default();
        let mut frames = Vec::new();
        for &b in &[0u8, 1, 2, 0, 0, 3, 0] {
            if let Some(Frame::Complete(f)) = r.push(b) {
                frames.push(f.to_vec());
            }
        }
        assert_eq!(frames, [vec![1, 2], vec![3]]);
        // Longer than any frame: dropped, reported once, then back in step.
        for _ in 0..crate::protocol::MAX_FRAME + 10 {
            assert!(r.push(7).is_none());
        }
        assert!(matches!(r.push(0), Some(Frame::TooLong)));
        r.push(5);
        assert!(matches!(r.push(0), Some(Frame::Complete(f)) if f == [5]));
    }
}
