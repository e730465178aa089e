//! The provisioning protocol between the host CLI and a door board.
//!
//! Frames on the wire: `COBS(postcard(message) ‖ crc32_le) ‖ 0x00`. A frame
//! that does not decode, fails its CRC or does not parse is answered with an
//! error and changes nothing. State-changing commands travel inside
//! [`Request::Signed`]: an Ed25519 signature by the site key over
//! `b"FGP1" ‖ device_id ‖ nonce_le ‖ command_bytes`, where `nonce` must be the
//! board's current nonce; the board advances its nonce on every accepted
//! command, so a recorded command can never be played again.
//!
//! Only the site key may ask the door to judge a face over the link
//! ([`Command::VerifyFace`], bound to the staged face's SHA-256), or read
//! who is enrolled and who came in when ([`Command::ReadPeople`],
//! [`Command::ReadAudit`]): anyone else learns the board's identity, nonce
//! and settings ([`Request::Info`], needed to claim and to sign), nothing
//! about people.

pub mod device;
pub mod frame;

use serde::{Deserialize, Serialize};

use crate::Template;

/// Bytes of a device id.
pub const DEVICE_ID_LEN: usize = 16;
/// Largest decoded message (an enroll of 8 templates fits with room to spare).
pub const MAX_MESSAGE: usize = 1536;
/// Largest frame on the wire: the COBS encoding of a message and its CRC,
/// plus the terminating 0.
pub const MAX_FRAME: usize = cobs::max_encoding_length(MAX_MESSAGE + 4) + 1;
/// Domain separation of signed commands.
pub const SIGNING_CONTEXT: &[u8; 4] = b"FGP1";
/// Domain separation of claim tokens.
pub const CLAIM_CONTEXT: &[u8; 4] = b"FGC1";
/// Bytes of [`claim_message`].
pub const CLAIM_MESSAGE_LEN: usize = 4 + DEVICE_ID_LEN + 32;

/// What an installer key signs to let `site_key` claim the board
/// `device_id`: `b"FGC1" ‖ device_id ‖ site_key`.
pub fn claim_message(
    device_id: &[u8; DEVICE_ID_LEN],
    site_key: &[u8; 32],
) -> [u8; CLAIM_MESSAGE_LEN] {
    let mut m = [0u8; CLAIM_MESSAGE_LEN];
    m[..4].copy_from_slice(CLAIM_CONTEXT);
    m[4..4 + DEVICE_ID_LEN].copy_from_slice(device_id);
    m[4 + DEVICE_ID_LEN..].copy_from_slice(site_key);
    m
}

/// A 32-byte key from 64 hex digits, at compile time too (firmware takes
/// its installer key from the build environment); `None` for anything else.
pub const fn key_from_hex(hex: &str) -> Option<[u8; 32]> {
    const fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        let (Some(hi), Some(lo)) = (digit(b[2 * i]), digit(b[2 * i + 1])) else {
            return None;
        };
        key[i] = hi << 4 | lo;
        i += 1;
    }
    Some(key)
}
/// Bytes of one aligned face crop (112×112 RGB), as `VerifyFace` expects it.
pub const FACE_BYTES: usize = 112 * 112 * 3;
/// Largest slice of a face one `FaceChunk` carries.
pub const FACE_CHUNK: usize = 1024;
/// Largest slice of a camera frame one `FrameChunk` carries.
pub const FRAME_CHUNK: usize = 1024;
/// Audit events per `Audit` response.
pub const AUDIT_PAGE: usize = 8;

/// Host → board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Firmware version, model hash, capacity, device id, nonce, claim state.
    Info,
    /// Set the site public key on an unclaimed board.
    Claim {
        /// Ed25519 public key of the site.
        site_key: [u8; 32],
        /// On a board built with an installer key: that key's signature
        /// over [`claim_message`] (64 bytes), so that only the installer's
        /// customer can claim it. Empty on a trust-on-first-use board.
        token: &'a [u8],
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
    /// Part of a face crop for the signed [`Command::VerifyFace`]. On boards
    /// whose face source is the link itself (QEMU), this is the camera.
    /// Staging alone decides nothing.
    FaceChunk {
        /// Byte offset of `bytes` in the face.
        offset: u32,
        /// At most [`FACE_CHUNK`] bytes.
        bytes: &'a [u8],
    },
    /// Part of a whole camera frame for the signed [`Command::VerifyFrame`]
    /// (the board finds, aligns and judges the face itself). On boards
    /// whose camera is the link (QEMU), this is how frames arrive. Staging
    /// alone decides nothing.
    FrameChunk {
        /// Byte offset of `bytes` in the frame.
        offset: u32,
        /// At most [`FRAME_CHUNK`] bytes.
        bytes: &'a [u8],
    },
}

/// How a staged frame's pixels are laid out (row-major, no padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameFormat {
    /// 3 bytes a pixel: R, G, B.
    Rgb888,
    /// 2 bytes a pixel, little-endian 5-6-5 (what DCMI cameras give).
    Rgb565,
    /// 1 byte a pixel: luma.
    Grey8,
}

impl From<FrameFormat> for crate::detect::PixelFormat {
    fn from(f: FrameFormat) -> Self {
        match f {
            FrameFormat::Rgb888 => Self::Rgb888,
            FrameFormat::Rgb565 => Self::Rgb565,
            FrameFormat::Grey8 => Self::Grey8,
        }
    }
}

/// Size and layout of a staged frame, as [`Command::VerifyFrame`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameSpec {
    /// Pixels across.
    pub width: u16,
    /// Pixels down.
    pub height: u16,
    /// Pixel layout.
    pub format: FrameFormat,
}

impl FrameSpec {
    /// Bytes of a frame of this size and layout.
    pub fn bytes(&self) -> usize {
        usize::from(self.width)
            * usize::from(self.height)
            * crate::detect::PixelFormat::from(self.format).bytes()
    }
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
    /// Present the staged face to the door, exactly as a camera frame would
    /// be (decision, lock pulse, audit event, lockout). Signed, so nobody
    /// without the site key can probe the door over the link; bound to the
    /// face by its digest, so nobody can swap the staged face under a
    /// signature meant for another.
    VerifyFace {
        /// SHA-256 of the staged [`FACE_BYTES`].
        face_sha256: [u8; 32],
    },
    /// Enrolled people from index `start`: who may enter is the site's
    /// business only.
    ReadPeople {
        /// First index.
        start: u16,
    },
    /// Audit events from index `start`, oldest first, with their scores:
    /// who came in when is the site's business only.
    ReadAudit {
        /// First index.
        start: u16,
    },
    /// Present the staged camera frame to the door: the board detects the
    /// faces, aligns the best one and judges it exactly as a frame from its
    /// own camera (decision, lock pulse, audit event, lockout); a frame
    /// without a face is refused ([`ErrorCode::NoFace`]) and logs nothing.
    /// Signed and bound to the frame like [`Command::VerifyFace`].
    VerifyFrame {
        /// Size and layout of the staged frame.
        spec: FrameSpec,
        /// SHA-256 of the staged bytes.
        frame_sha256: [u8; 32],
    },
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
        /// The site's public key (zeros when unclaimed): public, and lets the
        /// host see before signing anything whether its key owns the board.
        site_key: [u8; 32],
        /// Whether a claim must carry an installer's token (the board was
        /// built with an installer key).
        claim_needs_token: bool,
        /// The match threshold in force.
        threshold: f32,
        /// How long the lock stays open, in milliseconds.
        unlock_ms: u32,
        /// The stored state failed its checks: the board opens for no one
        /// and refuses every other request ([`ErrorCode::Tampered`]).
        tampered: bool,
    },
    /// Answer to [`Command::ReadPeople`]: up to 8 people; `nonce` is the next one.
    List {
        /// People, in the board's order.
        people: heapless::Vec<PersonEntry, 8>,
        /// More people follow.
        more: bool,
        /// Next nonce.
        nonce: u32,
    },
    /// The request was carried out; `nonce` is the next one.
    Ok {
        /// Next nonce.
        nonce: u32,
    },
    /// The request was refused and changed nothing.
    Error(ErrorCode),
    /// Answer to [`Request::FaceChunk`]: contiguous bytes staged so far.
    Staged {
        /// Bytes of the face received.
        received: u32,
    },
    /// Answer to [`Command::VerifyFace`]: what the door decided, with its
    /// score (the caller holds the site key); `nonce` is the next one.
    Decision {
        /// The door's decision.
        entry: AuditEntry,
        /// Next nonce.
        nonce: u32,
    },
    /// Answer to [`Command::ReadAudit`]: up to [`AUDIT_PAGE`] events;
    /// `nonce` is the next one.
    Audit {
        /// Events, oldest first.
        events: heapless::Vec<AuditEntry, AUDIT_PAGE>,
        /// More events follow.
        more: bool,
        /// Next nonce.
        nonce: u32,
    },
}

/// An enrolled person as `List` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PersonEntry {
    /// Person id.
    pub id: u32,
    /// Templates stored.
    pub templates: u8,
    /// [`person_digest`] of the stored name and templates: lets the host see
    /// that a board already holds exactly what it would send.
    pub digest: u32,
}

/// CRC-32 of a person's name and templates (each `scale f32 LE ‖ values`),
/// the same on host and board.
pub fn person_digest<'t>(name: &str, templates: impl IntoIterator<Item = &'t Template>) -> u32 {
    let mut d = frame::CRC.digest();
    d.update(name.as_bytes());
    d.update(&[0]);
    for t in templates {
        d.update(&t.scale().to_le_bytes());
        for v in t.values() {
            d.update(&v.to_le_bytes());
        }
    }
    d.finalize()
}

/// What the door decided about one face.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecisionKind {
    /// Accepted: the lock was pulsed.
    Unlocked,
    /// Rejected: unknown face, below threshold or ambiguous.
    Rejected,
    /// Not tried: the door is locked out after repeated rejects.
    LockedOut,
    /// The embedder or the lock failed.
    Fault,
}

/// One audit event on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AuditEntry {
    /// Milliseconds since boot when it happened.
    pub time_ms: u64,
    /// What was decided.
    pub kind: DecisionKind,
    /// Who was let in (`Unlocked` only).
    pub person: Option<u32>,
    /// The best score, when anyone was compared.
    pub score: Option<f32>,
    /// Milliseconds left of a lockout (`LockedOut` only).
    pub wait_ms: u32,
}

impl From<crate::door::AuditEvent> for AuditEntry {
    fn from(e: crate::door::AuditEvent) -> Self {
        use crate::door::Outcome;
        let (kind, person, score, wait_ms) = match e.outcome {
            Outcome::Unlocked { id, score } => (DecisionKind::Unlocked, Some(id.0), Some(score), 0),
            Outcome::Rejected { best } => (DecisionKind::Rejected, None, best, 0),
            Outcome::LockedOut { wait_ms } => (
                DecisionKind::LockedOut,
                None,
                None,
                u32::try_from(wait_ms).unwrap_or(u32::MAX),
            ),
            Outcome::Fault => (DecisionKind::Fault, None, None, 0),
        };
        Self {
            time_ms: e.time_ms,
            kind,
            person,
            score,
            wait_ms,
        }
    }
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
    /// This board does not offer the request (no face pipeline, no audit log).
    Unsupported,
    /// `VerifyFace` (`VerifyFrame`) before a whole face (frame of the size
    /// named) was staged, or a chunk out of order or past the board's buffer.
    FaceIncomplete,
    /// `VerifyFace` (`VerifyFrame`) names another face (frame) than the one staged.
    FaceMismatch,
    /// The board's stored state failed its checks (forged, damaged or
    /// rolled back): it opens for no one and takes no command until its
    /// flash is erased and it is claimed again.
    Tampered,
    /// `VerifyFrame`: the door found no face in the frame (nothing decided,
    /// nothing logged).
    NoFace,
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
