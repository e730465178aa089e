//! A door's camera, as the face pipeline sees it: one frame at a time into
//! a buffer the board owns (no allocation, no queue: a door judges the
//! newest frame, never a backlog).

use crate::protocol::FrameSpec;

/// A source of camera frames (a DCMI sensor, a frame staged over a link, a
/// recording in flash).
pub trait Camera {
    /// Why a capture failed.
    type Error: core::fmt::Debug;

    /// Captures one frame into the start of `buf`; returns its size and
    /// layout. A frame that would not fit in `buf` is an error, never a
    /// partial write past it.
    fn capture(&mut self, buf: &mut [u8]) -> Result<FrameSpec, Self::Error>;
}
