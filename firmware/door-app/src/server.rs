//! The provisioning link of a board: bytes in, frames out, one response per
//! request, and the door's idle work (closing the lock after its pulse)
//! whenever no byte is waiting. Generic over embedded-io, so any UART,
//! USB-CDC or socket driver serves it.

use embedded_io::{Read, ReadReady, Write};
use facegate_core::protocol::MAX_FRAME;
use facegate_core::protocol::device::{BoardInfo, Diagnostics, DoorStore, answer_byte};
use facegate_core::protocol::frame::FrameReader;

/// Serves requests on `link` forever; `idle` runs whenever no byte is
/// waiting, with the store and the face pipeline (a board with a camera
/// looks through it there). Returns only when the link fails.
pub fn serve<L, S, D>(
    link: &mut L,
    board: &BoardInfo<'_>,
    store: &mut S,
    diagnostics: &mut D,
    mut idle: impl FnMut(&mut S, &mut D),
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
            idle(store, diagnostics);
            continue;
        }
        let n = link.read(&mut bytes)?;
        for &b in bytes.get(..n).unwrap_or(&[]) {
            if let Some(len) = answer_byte(&mut reader, b, board, store, diagnostics, &mut out) {
                link.write_all(out.get(..len).unwrap_or(&[]))?;
            }
        }
    }
}
