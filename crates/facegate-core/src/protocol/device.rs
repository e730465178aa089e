//! The board's side: one request frame in, one response frame out.

use ed25519_dalek::{Signature, VerifyingKey};

use super::frame::{self, Frame, FrameError, FrameReader};
use super::{
    AUDIT_PAGE, AuditEntry, Command, DEVICE_ID_LEN, ErrorCode, FrameSpec, MAX_FRAME, MAX_MESSAGE,
    PersonEntry, Request, Response, person_digest, signing_message,
};
use crate::db::{MAX_TEMPLATES, PersonRecord};
use crate::matcher::PersonId;
use crate::template::Template;
use crate::{EMBEDDING_DIM, ModelHash};

/// A person as the board stores it.
pub type StoredPerson = PersonRecord<EMBEDDING_DIM, MAX_TEMPLATES>;

/// A storage failure (flash error, corruption).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoreError;

/// What the protocol needs from the board's persistent state. Each method
/// is one atomic change: it happens entirely or not at all.
pub trait DoorStore {
    /// People the store can hold.
    fn capacity(&self) -> u16;
    /// People enrolled.
    fn len(&self) -> u16;
    /// Whether nobody is enrolled.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The person at `index`.
    fn entry(&self, index: u16) -> Option<PersonEntry>;
    /// Calls `f` with every enrolled template (the 1:N gallery).
    fn for_each_template(&mut self, f: &mut dyn FnMut(PersonId, &Template));
    /// The match threshold.
    fn threshold(&self) -> f32;
    /// How long the lock stays open, in milliseconds.
    fn unlock_ms(&self) -> u32;
    /// Adds or replaces a person; `Ok(false)` when full.
    fn enroll(&mut self, person: &StoredPerson) -> Result<bool, StoreError>;
    /// Removes a person; `Ok(false)` when unknown.
    fn remove(&mut self, id: PersonId) -> Result<bool, StoreError>;
    /// Sets the threshold.
    fn set_threshold(&mut self, threshold: f32) -> Result<(), StoreError>;
    /// Sets the unlock time.
    fn set_unlock_ms(&mut self, ms: u32) -> Result<(), StoreError>;
    /// Erases people, settings and the audit log (not the claim).
    fn factory_reset(&mut self) -> Result<(), StoreError>;
    /// The site key, if claimed.
    fn site_key(&self) -> Option<[u8; 32]>;
    /// Sets or clears the site key.
    fn set_site_key(&mut self, key: Option<[u8; 32]>) -> Result<(), StoreError>;
    /// The current nonce.
    fn nonce(&self) -> u32;
    /// Stores the next nonce.
    fn set_nonce(&mut self, nonce: u32) -> Result<(), StoreError>;
    /// Consecutive rejected faces, as last stored (lockout survives restarts).
    fn lockout_rejects(&self) -> u32;
    /// Stores the count of consecutive rejected faces.
    fn set_lockout_rejects(&mut self, rejects: u32) -> Result<(), StoreError>;
    /// Whether the stored state failed its checks (forged, damaged or rolled
    /// back): such a store opens for no one and the link takes no command.
    fn tampered(&self) -> bool {
        false
    }
}

/// Identity of the board, reported by `Info` and bound into signatures.
#[derive(Clone, Copy, Debug)]
pub struct BoardInfo<'a> {
    /// Firmware version string.
    pub firmware: &'a str,
    /// Model the board's templates must come from.
    pub model_hash: ModelHash,
    /// Unique device id.
    pub device_id: [u8; DEVICE_ID_LEN],
    /// The installer's public key: a claim must carry its signature over
    /// [`claim_message`](super::claim_message). `None`: trust on first use
    /// (whoever reaches the unclaimed board first owns it).
    pub claim_key: Option<[u8; 32]>,
}

/// The requests beyond provisioning: the face pipeline and the audit log,
/// on boards that have them. None of them changes people, settings or keys.
pub trait Diagnostics<S: DoorStore> {
    /// Stages `bytes` at `offset` of the face for [`Diagnostics::verify_face`];
    /// returns the contiguous bytes staged so far.
    fn face_chunk(&mut self, offset: u32, bytes: &[u8]) -> Result<u32, ErrorCode>;
    /// Whether a whole face is staged and its SHA-256 is `face_sha256`;
    /// changes nothing.
    fn check_staged(&self, face_sha256: &[u8; 32]) -> Result<(), ErrorCode>;
    /// Presents the staged face to the door and reports the decision.
    fn verify_face(&mut self, store: &mut S) -> Result<AuditEntry, ErrorCode>;
    /// Fills `out` with audit events from index `start`; returns whether more follow.
    fn audit(
        &mut self,
        start: u16,
        out: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode>;
    /// Stages `bytes` at `offset` of a camera frame for
    /// [`Diagnostics::verify_frame`]; returns the contiguous bytes staged so
    /// far. A board without a detector answers `Unsupported`.
    fn frame_chunk(&mut self, _offset: u32, _bytes: &[u8]) -> Result<u32, ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
    /// Whether a whole frame of `spec` is staged and its SHA-256 is
    /// `frame_sha256`; changes nothing.
    fn check_staged_frame(
        &self,
        _spec: &FrameSpec,
        _frame_sha256: &[u8; 32],
    ) -> Result<(), ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
    /// Finds the face in the staged frame of `spec` (checked by
    /// [`Diagnostics::check_staged_frame`]) and presents it to the door.
    fn verify_frame(&mut self, _store: &mut S, _spec: &FrameSpec) -> Result<AuditEntry, ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
}

/// A board without a face pipeline or audit log: diagnostics are `Unsupported`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDiagnostics;

impl<S: DoorStore> Diagnostics<S> for NoDiagnostics {
    fn face_chunk(&mut self, _: u32, _: &[u8]) -> Result<u32, ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
    fn check_staged(&self, _: &[u8; 32]) -> Result<(), ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
    fn verify_face(&mut self, _: &mut S) -> Result<AuditEntry, ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
    fn audit(
        &mut self,
        _: u16,
        _: &mut heapless::Vec<AuditEntry, AUDIT_PAGE>,
    ) -> Result<bool, ErrorCode> {
        Err(ErrorCode::Unsupported)
    }
}

/// Handles one request frame (COBS body, trailing 0 optional) and writes the
/// response frame into `out`; returns the response's length. Diagnostics
/// are answered `Unsupported`; see [`handle_with`].
pub fn handle<S: DoorStore>(
    board: &BoardInfo<'_>,
    store: &mut S,
    frame: &mut [u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    handle_with(board, store, &mut NoDiagnostics, frame, out)
}

/// [`handle`] on a board whose face pipeline and audit log answer diagnostics.
pub fn handle_with<S: DoorStore, D: Diagnostics<S>>(
    board: &BoardInfo<'_>,
    store: &mut S,
    diagnostics: &mut D,
    frame: &mut [u8],
    out: &mut [u8],
) -> Result<usize, FrameError> {
    let response = match frame::decode::<Request<'_>>(frame) {
        Ok(req) => respond(board, store, diagnostics, req),
        Err(_) => Response::Error(ErrorCode::Garbled),
    };
    frame::encode(&response, out)
}

/// Feeds one byte from the link to `reader`. When the byte ends a frame,
/// the answer (to the request, or `Garbled` for an overlong frame) is written
/// into `out` and its length returned: what every board's link loop sends.
pub fn answer_byte<S: DoorStore, D: Diagnostics<S>>(
    reader: &mut FrameReader,
    byte: u8,
    board: &BoardInfo<'_>,
    store: &mut S,
    diagnostics: &mut D,
    out: &mut [u8; MAX_FRAME],
) -> Option<usize> {
    let reply = match reader.push(byte)? {
        Frame::Complete(f) => handle_with(board, store, diagnostics, f, out),
        Frame::TooLong => frame::encode(&Response::Error(ErrorCode::Garbled), out),
    };
    // Every response fits in MAX_FRAME; should one not, the host still hears back.
    reply
        .or_else(|_| frame::encode(&Response::Error(ErrorCode::Garbled), out))
        .ok()
}

fn respond<'b, S: DoorStore, D: Diagnostics<S>>(
    board: &BoardInfo<'b>,
    store: &mut S,
    diagnostics: &mut D,
    req: Request<'_>,
) -> Response<'b> {
    // A store whose state failed its checks serves nothing but `Info` (which
    // says so): no claim, no command, no face.
    if store.tampered() && !matches!(req, Request::Info) {
        return Response::Error(ErrorCode::Tampered);
    }
    match req {
        Request::FaceChunk { offset, bytes } => match diagnostics.face_chunk(offset, bytes) {
            Ok(received) => Response::Staged { received },
            Err(code) => Response::Error(code),
        },
        Request::FrameChunk { offset, bytes } => match diagnostics.frame_chunk(offset, bytes) {
            Ok(received) => Response::Staged { received },
            Err(code) => Response::Error(code),
        },
        Request::Info => Response::Info {
            firmware: board.firmware,
            model_hash: board.model_hash.0,
            capacity: store.capacity(),
            enrolled: store.len(),
            device_id: board.device_id,
            nonce: store.nonce(),
            claimed: store.site_key().is_some(),
            site_key: store.site_key().unwrap_or([0; 32]),
            claim_needs_token: board.claim_key.is_some(),
            threshold: store.threshold(),
            unlock_ms: store.unlock_ms(),
            tampered: store.tampered(),
        },
        Request::Claim { site_key, token } => {
            if store.site_key().is_some() {
                return Response::Error(ErrorCode::AlreadyClaimed);
            }
            if VerifyingKey::from_bytes(&site_key).is_err() {
                return Response::Error(ErrorCode::Invalid);
            }
            if let Some(installer) = board.claim_key {
                let message = super::claim_message(&board.device_id, &site_key);
                let signed = <&[u8; 64]>::try_from(token).ok().is_some_and(|sig| {
                    VerifyingKey::from_bytes(&installer)
                        .and_then(|k| k.verify_strict(&message, &Signature::from_bytes(sig)))
                        .is_ok()
                });
                if !signed {
                    return Response::Error(ErrorCode::BadSignature);
                }
            }
            match store.set_site_key(Some(site_key)) {
                Ok(()) => Response::Ok {
                    nonce: store.nonce(),
                },
                Err(StoreError) => Response::Error(ErrorCode::Storage),
            }
        }
        Request::Signed {
            nonce,
            command,
            signature,
        } => match verify(board, store, nonce, command, signature) {
            Err(code) => Response::Error(code),
            Ok(()) => match postcard::from_bytes::<Command<'_>>(command) {
                Err(_) => Response::Error(ErrorCode::Invalid),
                Ok(cmd) => match check(store, diagnostics, cmd) {
                    Err(code) => Response::Error(code),
                    Ok(checked) => {
                        // Spend the nonce before acting: a power cut in between
                        // loses the command (the host sees no answer and sends
                        // it again, freshly signed) but can never leave an
                        // applied command, a verification (which would pulse
                        // the lock again) or a read replayable.
                        let next = nonce.wrapping_add(1);
                        if store.set_nonce(next).is_err() {
                            return Response::Error(ErrorCode::Storage);
                        }
                        carry_out(store, diagnostics, checked, next)
                    }
                },
            },
        },
    }
}

/// A signed command that passed every check, ready once its nonce is spent.
// No heap to box into: one lives briefly on the stack per command.
#[allow(clippy::large_enum_variant)]
enum Checked {
    Act(Action),
    VerifyFace,
    VerifyFrame(FrameSpec),
    ReadPeople(u16),
    /// An audit page, read before the nonce is spent (a board without a
    /// log refuses and spends nothing).
    Audit(heapless::Vec<AuditEntry, AUDIT_PAGE>, bool),
}

/// Everything a signed command can be refused for, without changing anything.
fn check<S: DoorStore, D: Diagnostics<S>>(
    store: &S,
    diagnostics: &mut D,
    cmd: Command<'_>,
) -> Result<Checked, ErrorCode> {
    match cmd {
        Command::VerifyFace { face_sha256 } => diagnostics
            .check_staged(&face_sha256)
            .map(|()| Checked::VerifyFace),
        Command::VerifyFrame { spec, frame_sha256 } => diagnostics
            .check_staged_frame(&spec, &frame_sha256)
            .map(|()| Checked::VerifyFrame(spec)),
        Command::ReadPeople { start } => Ok(Checked::ReadPeople(start)),
        Command::ReadAudit { start } => {
            let mut events = heapless::Vec::new();
            let more = diagnostics.audit(start, &mut events)?;
            Ok(Checked::Audit(events, more))
        }
        cmd => prepare(store, cmd).map(Checked::Act),
    }
}

/// Carries out a checked command whose nonce is spent; `next` is the new nonce.
fn carry_out<'b, S: DoorStore, D: Diagnostics<S>>(
    store: &mut S,
    diagnostics: &mut D,
    checked: Checked,
    next: u32,
) -> Response<'b> {
    match checked {
        Checked::Act(action) => match apply(store, action) {
            Ok(()) => Response::Ok { nonce: next },
            Err(StoreError) => Response::Error(ErrorCode::Storage),
        },
        Checked::VerifyFace => match diagnostics.verify_face(store) {
            Ok(entry) => Response::Decision { entry, nonce: next },
            Err(code) => Response::Error(code),
        },
        Checked::VerifyFrame(spec) => match diagnostics.verify_frame(store, &spec) {
            Ok(entry) => Response::Decision { entry, nonce: next },
            Err(code) => Response::Error(code),
        },
        Checked::ReadPeople(start) => {
            let mut people = heapless::Vec::new();
            let mut i = start;
            while i < store.len() && !people.is_full() {
                if let Some(e) = store.entry(i) {
                    let _ = people.push(e);
                }
                i += 1;
            }
            Response::List {
                people,
                more: i < store.len(),
                nonce: next,
            }
        }
        Checked::Audit(events, more) => Response::Audit {
            events,
            more,
            nonce: next,
        },
    }
}

fn verify<S: DoorStore>(
    board: &BoardInfo<'_>,
    store: &S,
    nonce: u32,
    command: &[u8],
    signature: &[u8],
) -> Result<(), ErrorCode> {
    let key = store.site_key().ok_or(ErrorCode::Unclaimed)?;
    if nonce != store.nonce() {
        return Err(ErrorCode::BadNonce);
    }
    let sig: &[u8; 64] = signature.try_into().map_err(|_| ErrorCode::BadSignature)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| ErrorCode::BadSignature)?;
    let mut buf = [0u8; MAX_MESSAGE + 32];
    let msg =
        signing_message(&board.device_id, nonce, command, &mut buf).ok_or(ErrorCode::Invalid)?;
    key.verify_strict(msg, &Signature::from_bytes(sig))
        .map_err(|_| ErrorCode::BadSignature)
}

/// A validated command, ready to apply.
// No heap to box into: one `Action` lives briefly on the stack per command.
#[allow(clippy::large_enum_variant)]
enum Action {
    Enroll(StoredPerson),
    Remove(PersonId),
    SetThreshold(f32),
    SetUnlockTime(u32),
    FactoryReset,
    Unclaim,
}

/// Checks everything a command can be refused for, without changing anything.
fn prepare<S: DoorStore>(store: &S, cmd: Command<'_>) -> Result<Action, ErrorCode> {
    let known = |id: u32| (0..store.len()).any(|i| store.entry(i).is_some_and(|e| e.id == id));
    match cmd {
        Command::Enroll {
            id,
            name,
            templates,
        } => {
            let mut p = StoredPerson::new(PersonId(id), name).map_err(|_| ErrorCode::Invalid)?;
            let chunk = 4 + EMBEDDING_DIM;
            if templates.is_empty() || templates.len() % chunk != 0 {
                return Err(ErrorCode::Invalid);
            }
            for t in templates.chunks_exact(chunk) {
                let (scale, values) = t.split_first_chunk::<4>().ok_or(ErrorCode::Invalid)?;
                let mut v = [0i8; EMBEDDING_DIM];
                for (d, &b) in v.iter_mut().zip(values) {
                    *d = i8::from_le_bytes([b]);
                }
                let t = Template::from_parts(v, f32::from_le_bytes(*scale))
                    .map_err(|_| ErrorCode::Invalid)?;
                p.push_template(t).map_err(|_| ErrorCode::Invalid)?;
            }
            if store.len() >= store.capacity() && !known(id) {
                return Err(ErrorCode::Full);
            }
            Ok(Action::Enroll(p))
        }
        Command::Remove { id } if known(id) => Ok(Action::Remove(PersonId(id))),
        Command::Remove { .. } => Err(ErrorCode::UnknownPerson),
        Command::SetThreshold { threshold } if crate::matcher::threshold_is_valid(threshold) => {
            Ok(Action::SetThreshold(threshold))
        }
        Command::SetUnlockTime { ms } if (1..=crate::flash_store::MAX_UNLOCK_MS).contains(&ms) => {
            Ok(Action::SetUnlockTime(ms))
        }
        Command::SetThreshold { .. } | Command::SetUnlockTime { .. } => Err(ErrorCode::Invalid),
        Command::FactoryReset => Ok(Action::FactoryReset),
        Command::Unclaim => Ok(Action::Unclaim),
        // Handled with the face pipeline before `prepare`.
        // Checked in `check`, never passed here: not an action on the store.
        Command::VerifyFace { .. }
        | Command::VerifyFrame { .. }
        | Command::ReadPeople { .. }
        | Command::ReadAudit { .. } => Err(ErrorCode::Unsupported),
    }
}

/// Carries out a prepared command: one atomic store change.
fn apply<S: DoorStore>(store: &mut S, action: Action) -> Result<(), StoreError> {
    match action {
        // `prepare` checked room and existence; a `false` here is a store inconsistency.
        Action::Enroll(p) => store.enroll(&p)?.then_some(()).ok_or(StoreError),
        Action::Remove(id) => store.remove(id)?.then_some(()).ok_or(StoreError),
        Action::SetThreshold(t) => store.set_threshold(t),
        Action::SetUnlockTime(ms) => store.set_unlock_ms(ms),
        Action::FactoryReset => store.factory_reset(),
        Action::Unclaim => store.set_site_key(None),
    }
}

/// A RAM store for `N` people: host tests, and boards without flash.
#[derive(Debug, Clone, PartialEq)]
pub struct RamStore<const N: usize> {
    /// Enrolled people.
    pub people: heapless::Vec<StoredPerson, N>,
    /// Match threshold.
    pub threshold: f32,
    /// Unlock time.
    pub unlock_ms: u32,
    /// Site key.
    pub site_key: Option<[u8; 32]>,
    /// Current nonce.
    pub nonce: u32,
    /// Consecutive rejected faces.
    pub lockout_rejects: u32,
}

impl<const N: usize> Default for RamStore<N> {
    fn default() -> Self {
        Self {
            people: heapless::Vec::new(),
            threshold: crate::matcher::FACTORY_THRESHOLD,
            unlock_ms: 3000,
            site_key: None,
            nonce: 0,
            lockout_rejects: 0,
        }
    }
}

impl<const N: usize> DoorStore for RamStore<N> {
    fn capacity(&self) -> u16 {
        u16::try_from(N).unwrap_or(u16::MAX)
    }
    fn len(&self) -> u16 {
        u16::try_from(self.people.len()).unwrap_or(u16::MAX)
    }
    fn entry(&self, index: u16) -> Option<PersonEntry> {
        self.people.get(usize::from(index)).map(|p| PersonEntry {
            id: p.id.0,
            templates: u8::try_from(p.templates.len()).unwrap_or(u8::MAX),
            digest: person_digest(&p.name, &p.templates),
        })
    }
    fn for_each_template(&mut self, f: &mut dyn FnMut(PersonId, &Template)) {
        for p in &self.people {
            for t in &p.templates {
                f(p.id, t);
            }
        }
    }
    fn threshold(&self) -> f32 {
        self.threshold
    }
    fn unlock_ms(&self) -> u32 {
        self.unlock_ms
    }
    fn enroll(&mut self, person: &StoredPerson) -> Result<bool, StoreError> {
        if let Some(slot) = self.people.iter_mut().find(|p| p.id == person.id) {
            *slot = person.clone();
            return Ok(true);
        }
        Ok(self.people.push(person.clone()).is_ok())
    }
    fn remove(&mut self, id: PersonId) -> Result<bool, StoreError> {
        match self.people.iter().position(|p| p.id == id) {
            Some(i) => {
                self.people.remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn set_threshold(&mut self, threshold: f32) -> Result<(), StoreError> {
        self.threshold = threshold;
        Ok(())
    }
    fn set_unlock_ms(&mut self, ms: u32) -> Result<(), StoreError> {
        self.unlock_ms = ms;
        Ok(())
    }
    fn factory_reset(&mut self) -> Result<(), StoreError> {
        let (key, nonce, rejects) = (self.site_key, self.nonce, self.lockout_rejects);
        *self = Self {
            site_key: key,
            nonce,
            // A reset by the site key does not pardon a face-guessing run.
            lockout_rejects: rejects,
            ..Self::default()
        };
        Ok(())
    }
    fn site_key(&self) -> Option<[u8; 32]> {
        self.site_key
    }
    fn set_site_key(&mut self, key: Option<[u8; 32]>) -> Result<(), StoreError> {
        self.site_key = key;
        Ok(())
    }
    fn nonce(&self) -> u32 {
        self.nonce
    }
    fn set_nonce(&mut self, nonce: u32) -> Result<(), StoreError> {
        self.nonce = nonce;
        Ok(())
    }
    fn lockout_rejects(&self) -> u32 {
        self.lockout_rejects
    }
    fn set_lockout_rejects(&mut self, rejects: u32) -> Result<(), StoreError> {
        self.lockout_rejects = rejects;
        Ok(())
    }
}
