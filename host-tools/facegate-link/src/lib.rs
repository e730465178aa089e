//! The host side of facegate's provisioning protocol.
//!
//! [`Link`] moves frames to and from a board over a serial port (real
//! boards) or TCP (`tcp:HOST:PORT`: the QEMU board's UART, a Linux edge
//! board). [`Board`] speaks the requests of
//! [`facegate_core::protocol`]: info, list, claim, commands signed by the
//! site key (with the board's current nonce), face diagnostics and the
//! audit log. Every board refusal is a typed [`LinkError::Refused`].
#![deny(missing_docs)]

mod link;

pub use link::Link;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use facegate_core::Template;
use facegate_core::protocol::frame::{self, FrameError};
use facegate_core::protocol::{
    AuditEntry, Command, DEVICE_ID_LEN, ErrorCode, FACE_BYTES, FACE_CHUNK, FRAME_CHUNK, FrameSpec,
    MAX_FRAME, PersonEntry, Request, Response, claim_message, signing_message,
};
use sha2::{Digest, Sha256};

/// Why talking to a board failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The port could not be opened.
    #[error("cannot open {port}: {reason}")]
    Open {
        /// What was asked for.
        port: String,
        /// Why not.
        reason: String,
    },
    /// Reading or writing the link failed (unplugged, connection closed).
    #[error("link failed: {0}")]
    Io(#[from] std::io::Error),
    /// No complete answer within the timeout.
    #[error("the board did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The board's answer did not decode.
    #[error("garbled answer from the board: {0:?}")]
    Frame(FrameError),
    /// The board refused the request; it changed nothing.
    #[error("the board refused: {0:?}{hint}", hint = refusal_hint(*.0))]
    Refused(ErrorCode),
    /// The board answered something else than the request calls for.
    #[error("unexpected answer from the board: {0}")]
    Unexpected(String),
    /// The request does not fit in a frame.
    #[error("request too large for one frame")]
    TooLarge,
}

/// What a refusal means for the person at the command line, where the
/// code alone does not say what to do.
fn refusal_hint(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Tampered => {
            ": its stored state failed its checks (forged, damaged or rolled-back flash), so it \
             opens for no one and takes no command; erase its flash, then claim and provision it again"
        }
        ErrorCode::NoFace => ": it found no face in the frame (nothing was decided or logged)",
        ErrorCode::Unsupported => ": this board's firmware does not offer it",
        _ => "",
    }
}

/// What `Info` reports.
#[derive(Clone, Debug, PartialEq)]
pub struct BoardInfo {
    /// Firmware version.
    pub firmware: String,
    /// Hash of the model the board's engine runs.
    pub model_hash: [u8; 32],
    /// People the board can hold.
    pub capacity: u16,
    /// People enrolled.
    pub enrolled: u16,
    /// Device id.
    pub device_id: [u8; DEVICE_ID_LEN],
    /// Nonce the next signed command must carry.
    pub nonce: u32,
    /// Whether a site key is set.
    pub claimed: bool,
    /// The site's public key, when claimed.
    pub site_key: Option<[u8; 32]>,
    /// Whether a claim needs an installer's token ([`claim_token`]).
    pub claim_needs_token: bool,
    /// Match threshold in force.
    pub threshold: f32,
    /// Lock pulse, milliseconds.
    pub unlock_ms: u32,
    /// The board's stored state failed its checks: it opens for no one.
    pub tampered: bool,
}

/// An answer, owned (the wire form borrows from the frame buffer).
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Answer to `Info`.
    Info(BoardInfo),
    /// A page of `(id, templates)`; the next nonce.
    List {
        /// People on this page.
        people: Vec<PersonEntry>,
        /// More pages follow.
        more: bool,
        /// Next nonce.
        nonce: u32,
    },
    /// Done; the next nonce.
    Ok {
        /// Next nonce.
        nonce: u32,
    },
    /// Refused.
    Error(ErrorCode),
    /// Face bytes staged.
    Staged {
        /// Bytes so far.
        received: u32,
    },
    /// The door's decision on a face; the next nonce.
    Decision {
        /// The decision, with its score.
        entry: AuditEntry,
        /// Next nonce.
        nonce: u32,
    },
    /// A page of audit events; the next nonce.
    Audit {
        /// Events, oldest first.
        events: Vec<AuditEntry>,
        /// More pages follow.
        more: bool,
        /// Next nonce.
        nonce: u32,
    },
}

impl Reply {
    /// The next nonce, for replies to signed commands.
    fn nonce(&self) -> Option<u32> {
        match self {
            Self::Ok { nonce }
            | Self::Decision { nonce, .. }
            | Self::List { nonce, .. }
            | Self::Audit { nonce, .. } => Some(*nonce),
            _ => None,
        }
    }
}

impl From<Response<'_>> for Reply {
    fn from(r: Response<'_>) -> Self {
        match r {
            Response::Info {
                firmware,
                model_hash,
                capacity,
                enrolled,
                device_id,
                nonce,
                claimed,
                site_key,
                claim_needs_token,
                threshold,
                unlock_ms,
                tampered,
            } => Self::Info(BoardInfo {
                firmware: firmware.to_string(),
                model_hash,
                capacity,
                enrolled,
                device_id,
                nonce,
                claimed,
                site_key: claimed.then_some(site_key),
                claim_needs_token,
                threshold,
                unlock_ms,
                tampered,
            }),
            Response::List {
                people,
                more,
                nonce,
            } => Self::List {
                people: people.to_vec(),
                more,
                nonce,
            },
            Response::Ok { nonce } => Self::Ok { nonce },
            Response::Error(code) => Self::Error(code),
            Response::Staged { received } => Self::Staged { received },
            Response::Decision { entry, nonce } => Self::Decision { entry, nonce },
            Response::Audit {
                events,
                more,
                nonce,
            } => Self::Audit {
                events: events.to_vec(),
                more,
                nonce,
            },
        }
    }
}

/// Encodes templates as `Enroll` carries them: `scale f32 LE ‖ 128 × i8` each.
pub fn encode_templates(templates: &[Template]) -> Vec<u8> {
    let mut out = Vec::with_capacity(templates.len() * (4 + facegate_core::EMBEDDING_DIM));
    for t in templates {
        out.extend_from_slice(&t.scale().to_le_bytes());
        out.extend(t.values().iter().map(|v| v.to_le_bytes()[0]));
    }
    out
}

/// The installer's permission for `site` to claim the board `device_id`:
/// `installer`'s signature over [`claim_message`].
pub fn claim_token(
    installer: &SigningKey,
    device_id: &[u8; DEVICE_ID_LEN],
    site: &VerifyingKey,
) -> [u8; 64] {
    installer
        .sign(&claim_message(device_id, &site.to_bytes()))
        .to_bytes()
}

/// The frame of `command` signed by `key` for `device_id` at `nonce`.
pub fn signed_frame(
    key: &SigningKey,
    device_id: &[u8; DEVICE_ID_LEN],
    nonce: u32,
    command: &Command<'_>,
) -> Result<Vec<u8>, LinkError> {
    let command = postcard::to_allocvec(command).map_err(|_| LinkError::TooLarge)?;
    let mut buf = vec![0u8; SIGNING_OVERHEAD + command.len()];
    let msg = signing_message(device_id, nonce, &command, &mut buf).ok_or(LinkError::TooLarge)?;
    let signature = key.sign(msg).to_bytes();
    encode(&Request::Signed {
        nonce,
        command: &command,
        signature: &signature,
    })
}

const SIGNING_OVERHEAD: usize = 4 + DEVICE_ID_LEN + 4;

/// One request as a frame.
pub fn encode(request: &Request<'_>) -> Result<Vec<u8>, LinkError> {
    let mut out = vec![0u8; MAX_FRAME];
    let n = frame::encode(request, &mut out).map_err(|_| LinkError::TooLarge)?;
    out.truncate(n);
    Ok(out)
}

/// A board on a link.
#[derive(Debug)]
pub struct Board {
    link: Link,
    /// Device id and the nonce the next signed command must carry, as the
    /// board last reported them (`Info`, or `Ok` after a command); `None`
    /// after anything that may have changed them unseen.
    signing: Option<([u8; DEVICE_ID_LEN], u32)>,
}

impl Board {
    /// Opens `port` (`tcp:HOST:PORT`, or a serial device such as
    /// `/dev/ttyACM0`, optionally `@BAUD`).
    pub fn connect(port: &str) -> Result<Self, LinkError> {
        Ok(Self {
            link: Link::open(port)?,
            signing: None,
        })
    }

    /// Sends one raw frame (tests, diagnostics); returns the board's answer.
    pub fn send_frame(&mut self, frame: &[u8]) -> Result<Reply, LinkError> {
        // A raw frame may be a signed command: the cached nonce is no longer known.
        self.signing = None;
        self.exchange(frame)
    }

    fn exchange(&mut self, frame: &[u8]) -> Result<Reply, LinkError> {
        let mut answer = self.link.exchange(frame)?;
        frame::decode::<Response<'_>>(&mut answer)
            .map(Reply::from)
            .map_err(LinkError::Frame)
    }

    fn ask(&mut self, request: &Request<'_>) -> Result<Reply, LinkError> {
        match self.exchange(&encode(request)?)? {
            Reply::Error(code) => Err(LinkError::Refused(code)),
            reply => Ok(reply),
        }
    }

    /// Firmware, model, capacity, device id, nonce and claim state.
    pub fn info(&mut self) -> Result<BoardInfo, LinkError> {
        match self.ask(&Request::Info)? {
            Reply::Info(info) => {
                self.signing = Some((info.device_id, info.nonce));
                Ok(info)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Every enrolled person (signed: only the site key may read them).
    pub fn list(&mut self, key: &SigningKey) -> Result<Vec<PersonEntry>, LinkError> {
        self.pages(
            key,
            |start| Command::ReadPeople { start },
            |reply| match reply {
                Reply::List { people, more, .. } => Ok((people, more)),
                other => Err(unexpected(&other)),
            },
        )
    }

    /// Sends `command(start)`, signed, page after page until the board says no more.
    fn pages<T>(
        &mut self,
        key: &SigningKey,
        command: impl Fn(u16) -> Command<'static>,
        page: impl Fn(Reply) -> Result<(Vec<T>, bool), LinkError>,
    ) -> Result<Vec<T>, LinkError> {
        let mut all = Vec::new();
        loop {
            let start = u16::try_from(all.len()).map_err(|_| LinkError::TooLarge)?;
            let (items, more) = page(self.signed_exchange(key, &command(start))?)?;
            let empty = items.is_empty();
            all.extend(items);
            if !more || empty {
                return Ok(all);
            }
        }
    }

    /// Sets the site key of an unclaimed board; `token` is the installer's
    /// [`claim_token`] on a board that needs one (else empty).
    pub fn claim(&mut self, site: &VerifyingKey, token: &[u8]) -> Result<(), LinkError> {
        match self.ask(&Request::Claim {
            site_key: site.to_bytes(),
            token,
        })? {
            Reply::Ok { .. } => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Signs `command` with the board's current nonce and sends it; returns
    /// the next nonce. The nonce comes from the last `Info` or `Ok`; only
    /// when it is unknown does this ask for `Info` first.
    pub fn signed(&mut self, key: &SigningKey, command: &Command<'_>) -> Result<u32, LinkError> {
        match self.signed_exchange(key, command)? {
            Reply::Ok { nonce } => Ok(nonce),
            other => Err(unexpected(&other)),
        }
    }

    /// Signs `command` at the board's current nonce, sends it and returns
    /// the reply, keeping the next nonce it carries.
    fn signed_exchange(
        &mut self,
        key: &SigningKey,
        command: &Command<'_>,
    ) -> Result<Reply, LinkError> {
        let (device_id, nonce) = match self.signing.take() {
            Some(known) => known,
            None => {
                let info = self.info()?;
                (info.device_id, info.nonce)
            }
        };
        let frame = signed_frame(key, &device_id, nonce, command)?;
        match self.exchange(&frame)? {
            Reply::Error(code) => Err(LinkError::Refused(code)),
            reply => {
                self.signing = reply.nonce().map(|next| (device_id, next));
                Ok(reply)
            }
        }
    }

    /// Presents an aligned 112×112 RGB face to the door: the board decides,
    /// pulses its lock on accept and logs the event. Only the site key may
    /// ask (the request is signed and bound to the face's SHA-256).
    pub fn verify_face(&mut self, key: &SigningKey, face: &[u8]) -> Result<AuditEntry, LinkError> {
        if face.len() != FACE_BYTES {
            return Err(LinkError::Unexpected(format!(
                "a face is {FACE_BYTES} bytes (112×112 RGB), not {}",
                face.len()
            )));
        }
        self.stage(face, FACE_CHUNK, |offset, bytes| Request::FaceChunk {
            offset,
            bytes,
        })?;
        let face_sha256: [u8; 32] = Sha256::digest(face).into();
        self.decision(key, &Command::VerifyFace { face_sha256 })
    }

    /// Sends `data` in chunks of `chunk` bytes, each as `request(offset, bytes)`.
    fn stage<'d>(
        &mut self,
        data: &'d [u8],
        chunk: usize,
        request: impl Fn(u32, &'d [u8]) -> Request<'d>,
    ) -> Result<(), LinkError> {
        for (k, bytes) in data.chunks(chunk).enumerate() {
            let offset = u32::try_from(k * chunk).map_err(|_| LinkError::TooLarge)?;
            match self.ask(&request(offset, bytes))? {
                Reply::Staged { .. } => {}
                other => return Err(unexpected(&other)),
            }
        }
        Ok(())
    }

    /// A signed verification's decision.
    fn decision(
        &mut self,
        key: &SigningKey,
        command: &Command<'_>,
    ) -> Result<AuditEntry, LinkError> {
        match self.signed_exchange(key, command)? {
            Reply::Decision { entry, .. } => Ok(entry),
            other => Err(unexpected(&other)),
        }
    }

    /// Presents a whole camera frame to the door: the board finds the
    /// faces, aligns the best one and decides as for a frame of its own
    /// camera. Signed and bound to the frame's SHA-256 like
    /// [`Board::verify_face`]; a frame without a face is refused with
    /// [`ErrorCode::NoFace`], a frame larger than the board's buffer with
    /// [`ErrorCode::FaceIncomplete`] while staging.
    pub fn verify_frame(
        &mut self,
        key: &SigningKey,
        spec: FrameSpec,
        pixels: &[u8],
    ) -> Result<AuditEntry, LinkError> {
        if pixels.len() != spec.bytes() {
            return Err(LinkError::Unexpected(format!(
                "a {}×{} {:?} frame is {} bytes, not {}",
                spec.width,
                spec.height,
                spec.format,
                spec.bytes(),
                pixels.len()
            )));
        }
        self.stage(pixels, FRAME_CHUNK, |offset, bytes| Request::FrameChunk {
            offset,
            bytes,
        })?;
        let frame_sha256: [u8; 32] = Sha256::digest(pixels).into();
        self.decision(key, &Command::VerifyFrame { spec, frame_sha256 })
    }

    /// The whole audit log, oldest first, with scores (signed: only the
    /// site key may read who came in when).
    pub fn audit(&mut self, key: &SigningKey) -> Result<Vec<AuditEntry>, LinkError> {
        self.pages(
            key,
            |start| Command::ReadAudit { start },
            |reply| match reply {
                Reply::Audit { events, more, .. } => Ok((events, more)),
                other => Err(unexpected(&other)),
            },
        )
    }
}

fn unexpected(reply: &Reply) -> LinkError {
    LinkError::Unexpected(format!("{reply:?}"))
}
