//! The provisioning protocol between the host CLI and a door board.
//!
//! Frames on the wire: `COBS(postcard(message) ‖ crc32_le) ‖ 0x00`. A frame
//! that does not decode, fails its CRC or does not parse is answered with an
//! error and changes nothing. State-changing commands travel inside
//! [`Request::Signed`]: an Ed25519 signature by the site key over
//! `b"FGP1" ‖ device_id ‖ nonce_le ‖ command_bytes`, where `nonce` must be the
//! board's current nonce; the board advances its nonce on every accepted
//! command, so a recorded command can never be played again.

pub mod device;
pub mod frame;

use serde::{Deserialize, Serialize};

/// Bytes of a device id.
pub const DEVICE_ID_LEN: usize = 16;
/// Largest decoded message (an enroll of 8 templates fits with room to spare).
pub const MAX_MESSAGE: usize = 1536;
/// Domain separation of signed commands.
pub const SIGNING_CONTEXT: &[u8; 4] = b"FGP1";

/// Host → board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Firmware version, model hash, capacity, device id, nonce, claim state.
    Info,
    /// Enrolled people from index `start`.
    List {
        /// First index.
        start: u16,
    },
    /// Set the site public key on an unclaimed board.
    Claim {
        /// Ed25519 public key of the site.
        site_key: [u8; 32],
    },
    /// A state-changing command signed by the site key.
    Signed {
        /// The board's current nonce.
        nonce: u32,
        /// The postcard encoding of a [`Command`].
        #[serde(borrow)]
        command: &'a [u8],
        /// Ed25519 signature (64 bytes) over the signing message.
        signature: &'a [u8],
    },
}

/// What a signed request asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command<'a> {
    /// Add or replace a person.
    Enroll {
        /// Person id.
        id: u32,
        /// Display name (≤ 32 bytes).
        name: &'a str,
        /// Templates: each `scale f32 LE ‖ 128 × i8`.
        templates: &'a [u8],
    },
    /// Remove a person.
    Remove {
        /// Person id.
        id: u32,
    },
    /// Set the match threshold (cosine).
    SetThreshold {
        /// Accept when score ≥ this.
        threshold: f32,
    },
    /// Set how long the lock stays open.
    SetUnlockTime {
        /// Milliseconds.
        ms: u32,
    },
    /// Erase people, settings and audit log, keep the site key.
    FactoryReset,
    /// Forget the site key: the board becomes claimable again.
    Unclaim,
}

/// Board → host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response<'a> {
    /// Answer to [`Request::Info`].
    Info {
        /// Firmware version.
        firmware: &'a str,
        /// Hash of the model templates must come from.
        model_hash: [u8; 32],
        /// People the board can hold.
        capacity: u16,
        /// People enrolled.
        enrolled: u16,
        /// Device id (part of every signed message).
        device_id: [u8; DEVICE_ID_LEN],
        /// Nonce the next signed command must carry.
        nonce: u32,
        /// Whether a site key is set.
        claimed: bool,
    },
    /// Answer to [`Request::List`]: up to 8 people.
    List {
        /// `(id, template count)` pairs.
        people: heapless::Vec<(u32, u8), 8>,
        /// More people follow.
        more: bool,
    },
    /// The request was carried out; `nonce` is the next one.
    Ok {
        /// Next nonce.
        nonce: u32,
    },
    /// The request was refused and changed nothing.
    Error(ErrorCode),
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorCode {
    /// The frame did not decode (COBS, length, CRC or message).
    Garbled,
    /// A signed command on a board without a site key.
    Unclaimed,
    /// Claim of a board that already has a site key.
    AlreadyClaimed,
    /// The signature does not verify with the site key.
    BadSignature,
    /// The nonce is not the current one (replayed or stale).
    BadNonce,
    /// The command's contents are invalid (name, templates, threshold …).
    Invalid,
    /// No room for another person.
    Full,
    /// No such person.
    UnknownPerson,
    /// The board's storage failed.
    Storage,
}

/// The bytes a site key signs for `command` at `nonce` on `device_id`.
pub fn signing_message<'b>(
    device_id: &[u8; DEVICE_ID_LEN],
    nonce: u32,
    command: &[u8],
    out: &'b mut [u8],
) -> Option<&'b [u8]> {
    let n = SIGNING_CONTEXT.len() + DEVICE_ID_LEN + 4 + command.len();
    let dst = out.get_mut(..n)?;
    let (ctx, rest) = dst.split_at_mut(SIGNING_CONTEXT.len());
    ctx.copy_from_slice(SIGNING_CONTEXT);
    let (id, rest) = rest.split_at_mut(DEVICE_ID_LEN);
    id.copy_from_slice(device_id);
    let (nn, cmd) = rest.split_at_mut(4);
    nn.copy_from_slice(&nonce.to_le_bytes());
    cmd.copy_from_slice(command);
    Some(&out[..n])
}
