//! The board's persistent state in NOR flash, through sequential-storage's
//! power-fail-safe key-value map: people (each a one-record template
//! database bound to the model hash, encrypted at rest with
//! ChaCha20-Poly1305 under the device key) and one state record (settings,
//! site key, provisioning nonce, lockout count, sealing sequence)
//! authenticated with HMAC-SHA-256 under a key derived from the device key.
//! Every change is one map write: after a power cut it is either entirely
//! there or entirely absent.
//!
//! Person records are sealed with nonce `seq ‖ id ‖ 0` where `seq` is a
//! counter persisted (in the state record) *before* each sealing, so a
//! nonce is never reused even across power cuts; the associated data binds
//! the record to its id and the model hash.
//!
//! Damage and tampering fail closed ([`Tamper`]): a state record that does
//! not verify, records an older build wrote without authentication, people
//! without a state, or a person sealed after the state in force (a state
//! rolled back by rewriting flash). A tampered store opens for no one and
//! takes no command; only erasing the flash and claiming the board again
//! recovers it. Rolling the *whole* flash back to an older image is only
//! caught with a [`MonotonicCounter`] kept outside the flash.
//!
//! sequential-storage is async; flash drivers here complete synchronously,
//! so a minimal `block_on` drives it.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use hmac::{Hmac, Mac};
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{Key as MapKey, MapConfig, MapStorage, SerializationError};
use sha2::Sha256;

use crate::db::{DbReader, DbWriter, HEADER_LEN, MAX_TEMPLATES, record_size};
use crate::matcher::PersonId;
use crate::protocol::device::{DoorStore, StoreError, StoredPerson};
use crate::protocol::{PersonEntry, person_digest};
use crate::template::Template;
use crate::{EMBEDDING_DIM, ModelHash};

/// A record's key: its first four bytes (little-endian) on flash.
///
/// Reading, it tells sequential-storage that the key took *no* bytes, so
/// the crate hands over each record's whole stored data, key included, and
/// [`record_body`] cuts the key off with a bounds check. Why: a damaged or
/// forged item whose stored length is shorter than its key panics inside
/// sequential-storage 8.0.2 (`MapItemIter::next` and `fetch_item` slice
/// `data[..len][key_len..]` unchecked), and a panic at boot is a bricked
/// door. This way such an item is a typed, refused record. Writing is
/// unchanged (key then value), so stores written before read the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordKey(u32);

/// Bytes of a [`RecordKey`] on flash.
const KEY_BYTES: usize = 4;

impl MapKey for RecordKey {
    fn serialize_into(&self, buffer: &mut [u8]) -> Result<usize, SerializationError> {
        let out = buffer
            .get_mut(..KEY_BYTES)
            .ok_or(SerializationError::BufferTooSmall)?;
        out.copy_from_slice(&self.0.to_le_bytes());
        Ok(KEY_BYTES)
    }
    fn deserialize_from(buffer: &[u8]) -> Result<(Self, usize), SerializationError> {
        let bytes = buffer
            .first_chunk::<KEY_BYTES>()
            .ok_or(SerializationError::BufferTooSmall)?;
        // Zero bytes consumed: see the type's documentation.
        Ok((Self(u32::from_le_bytes(*bytes)), 0))
    }
}

/// A record's value: its stored data after the key, or `None` when the
/// item is too short to hold a key at all (damaged or forged flash).
fn record_body(stored: &[u8]) -> Option<&[u8]> {
    stored.get(KEY_BYTES..)
}

/// Keys 1–5 held settings, site key, nonce, sealing sequence and lockout
/// count without authentication (builds before the state record).
const LEGACY_KEYS: core::ops::RangeInclusive<u32> = 1..=5;
/// The authenticated state record ([`State`]).
const KEY_STATE: u32 = 6;
/// Person `id` is stored under key `PERSON_BASE + id`; ids are at most
/// [`PersonId::MAX`], so the sum never wraps onto the settings keys.
const PERSON_BASE: u32 = PersonId::MAX + 1;
/// The longest lock pulse a board accepts (one minute).
pub const MAX_UNLOCK_MS: u32 = 60_000;

fn person_key(id: PersonId) -> Result<u32, StoreError> {
    if id.is_valid() {
        PERSON_BASE.checked_add(id.0).ok_or(StoreError)
    } else {
        Err(StoreError)
    }
}
/// Bytes of one person in plain text (a one-record template database).
pub const PERSON_BYTES: usize = 2 * HEADER_LEN + record_size(EMBEDDING_DIM, MAX_TEMPLATES);
/// Sealed person: `seq u32 ‖ tag [u8; 16] ‖ ciphertext`.
const SEALED_HEADER: usize = 4 + 16;
const BUF: usize = SEALED_HEADER + PERSON_BYTES + 64;

/// Where the 256-bit device key comes from (a secure element, OTP fuses,
/// a key derived from the MCU's unique id and a provisioning secret …).
pub trait DeviceKey {
    /// The key that seals templates at rest.
    fn device_key(&self) -> [u8; 32];
}

/// A fixed, public key for emulated boards and tests ONLY: anyone can read
/// templates sealed with it. Never use it on a real door.
#[derive(Clone, Copy, Debug)]
pub struct InsecureTestKey;

impl DeviceKey for InsecureTestKey {
    fn device_key(&self) -> [u8; 32] {
        *b"facegate INSECURE test key: QEMU"
    }
}

/// A counter that only goes up and lives outside the flash the store is in
/// (a secure element's monotonic counter, OTP bits, battery-backed
/// registers): restoring an older flash image cannot turn it back, so the
/// store sees the rollback ([`Tamper::RolledBack`]). Advanced once per state
/// change.
pub trait MonotonicCounter {
    /// The counter's value.
    fn value(&mut self) -> Result<u32, CounterError>;
    /// Raises the counter to `value` (never lowers it).
    fn advance_to(&mut self, value: u32) -> Result<(), CounterError>;
}

/// The counter could not be read or advanced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CounterError;

/// No counter: a board without one. Forged, damaged and partly rolled-back
/// state is still refused, but a whole older flash image is accepted.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCounter;

impl MonotonicCounter for NoCounter {
    fn value(&mut self) -> Result<u32, CounterError> {
        Ok(0)
    }
    fn advance_to(&mut self, _: u32) -> Result<(), CounterError> {
        Ok(())
    }
}

/// Why a store refuses to serve (it opens for no one, takes no command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Tamper {
    /// The state record does not verify under this board's device key:
    /// forged, damaged, or copied from another board.
    ForgedState,
    /// Unauthenticated records of builds before the state record: the flash
    /// was written by an older build or by someone else. Erase and reclaim.
    LegacyRecords,
    /// People sealed by this board (or a counter past zero) but no state
    /// record: the state was erased, which would make the board claimable.
    MissingState,
    /// A person was sealed after the state in force: the state record was
    /// rolled back (an older nonce, threshold or site key).
    StaleState,
    /// The monotonic counter is ahead of the state: an older flash image
    /// was restored.
    RolledBack,
    /// The monotonic counter could not be read or advanced.
    Counter,
    /// A record too short to hold its own key: the flash was written by
    /// something other than this store.
    Malformed,
}

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the state record: [`STATE_BODY`] then the HMAC-SHA-256 tag.
const STATE_BODY: usize = 64;
const STATE_BYTES: usize = STATE_BODY + 32;
const STATE_MAGIC: &[u8; 4] = b"FGS1";

/// Everything the board keeps besides its people, as one record.
#[derive(Clone, Copy, Debug, PartialEq)]
struct State {
    /// Goes up by one with every state change (what a [`MonotonicCounter`] tracks).
    generation: u32,
    /// The last sequence number a person was sealed with (persisted before use).
    seal_seq: u32,
    nonce: u32,
    lockout_rejects: u32,
    settings: Settings,
    site_key: Option<[u8; 32]>,
}

impl State {
    const FACTORY: Self = Self {
        generation: 0,
        seal_seq: 0,
        nonce: 0,
        lockout_rejects: 0,
        settings: Settings::FACTORY,
        site_key: None,
    };

    fn mac(key: &[u8; 32]) -> HmacSha256 {
        // HMAC takes keys of any length; the fallback is never taken.
        <HmacSha256 as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| HmacSha256::new(&[0; 64].into()))
    }

    fn encode(&self, mac_key: &[u8; 32]) -> [u8; STATE_BYTES] {
        let mut b = [0u8; STATE_BYTES];
        b[..4].copy_from_slice(STATE_MAGIC);
        let words = [
            self.generation,
            self.seal_seq,
            self.nonce,
            self.lockout_rejects,
            self.settings.threshold.to_bits(),
            self.settings.unlock_ms,
        ];
        for (i, w) in words.iter().enumerate() {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        if let Some(k) = self.site_key {
            b[28] = 1;
            b[29..61].copy_from_slice(&k);
        }
        let mut mac = Self::mac(mac_key);
        mac.update(&b[..STATE_BODY]);
        b[STATE_BODY..].copy_from_slice(&mac.finalize().into_bytes());
        b
    }

    /// The state in `bytes` if its tag verifies; numbers out of their range
    /// read as the factory ones (fail closed).
    fn decode(bytes: &[u8], mac_key: &[u8; 32]) -> Option<Self> {
        let (body, tag) = bytes.split_at_checked(STATE_BODY)?;
        let mut mac = Self::mac(mac_key);
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        if body.get(..4)? != STATE_MAGIC {
            return None;
        }
        let word = |i: usize| {
            body.get(4 + 4 * i..8 + 4 * i)
                .and_then(|w| <[u8; 4]>::try_from(w).ok())
                .map(u32::from_le_bytes)
        };
        let site_key = match body.get(28)? {
            0 => None,
            1 => Some(<[u8; 32]>::try_from(body.get(29..61)?).ok()?),
            _ => return None,
        };
        Some(Self {
            generation: word(0)?,
            seal_seq: word(1)?,
            nonce: word(2)?,
            lockout_rejects: word(3)?,
            settings: Settings {
                threshold: f32::from_bits(word(4)?),
                unlock_ms: word(5)?,
            }
            .or_factory(),
            site_key,
        })
    }
}

fn seal_nonce(seq: u32, id: u32) -> Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&seq.to_le_bytes());
    n[4..8].copy_from_slice(&id.to_le_bytes());
    Nonce::from(n)
}

fn seal_aad(model: &ModelHash, id: u32) -> [u8; 44] {
    let mut a = [0u8; 44];
    a[..8].copy_from_slice(b"FGPERSON");
    a[8..40].copy_from_slice(&model.0);
    a[40..].copy_from_slice(&id.to_le_bytes());
    a
}

/// Polls a future that completes without waiting: sequential-storage's
/// async calls on synchronous flash (here, in tests, in tools).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Why the store cannot be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpenError {
    /// The flash range does not suit the map (page alignment, size).
    BadRange,
    /// Reading the flash failed or found it corrupted.
    Flash,
}

/// Settings kept in flash.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Settings {
    /// Match threshold.
    pub threshold: f32,
    /// Lock pulse length.
    pub unlock_ms: u32,
}

impl Settings {
    /// A new board's: the factory threshold that opens for no one, 3 s pulses.
    pub const FACTORY: Self = Self {
        threshold: crate::matcher::FACTORY_THRESHOLD,
        unlock_ms: 3_000,
    };

    /// Each number out of its range replaced by the factory one: a stored
    /// value out of range is damage and fails closed, never open.
    fn or_factory(self) -> Self {
        Self {
            threshold: if crate::matcher::threshold_is_valid(self.threshold) {
                self.threshold
            } else {
                Self::FACTORY.threshold
            },
            unlock_ms: if (1..=MAX_UNLOCK_MS).contains(&self.unlock_ms) {
                self.unlock_ms
            } else {
                Self::FACTORY.unlock_ms
            },
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::FACTORY
    }
}

/// People, settings and claim state in flash, for up to `N` people, with
/// an optional [`MonotonicCounter`] outside the flash.
pub struct FlashStore<F: MultiwriteNorFlash, const N: usize, C: MonotonicCounter = NoCounter> {
    map: MapStorage<RecordKey, F, Cache<Uncached, Uncached, Uncached, RecordKey>>,
    model: ModelHash,
    people: heapless::Vec<PersonEntry, N>,
    /// People stored for another model: refused, reported, never matched.
    refused: u16,
    state: State,
    tamper: Option<Tamper>,
    counter: C,
    cipher: ChaCha20Poly1305,
    mac_key: [u8; 32],
    buf: [u8; BUF],
}

impl<F: MultiwriteNorFlash, const N: usize, C: MonotonicCounter> core::fmt::Debug
    for FlashStore<F, N, C>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashStore")
            .field("people", &self.people.len())
            .field("refused", &self.refused)
            .field("settings", &self.state.settings)
            .field("claimed", &self.state.site_key.is_some())
            .field("nonce", &self.state.nonce)
            .field("tamper", &self.tamper)
            .finish_non_exhaustive()
    }
}

impl<F: MultiwriteNorFlash, const N: usize> FlashStore<F, N> {
    /// Opens the store in `range` of `flash` with the device key, reading
    /// everything back; a board without a monotonic counter.
    pub fn open(
        flash: F,
        range: core::ops::Range<u32>,
        model: ModelHash,
        key: &dyn DeviceKey,
    ) -> Result<Self, OpenError> {
        Self::open_with_counter(flash, range, model, key, NoCounter)
    }
}

impl<F: MultiwriteNorFlash, const N: usize, C: MonotonicCounter> FlashStore<F, N, C> {
    /// Opens the store in `range` of `flash` with the device key and a
    /// monotonic counter, reading everything back. Tampering does not stop
    /// it opening: the store then serves no one ([`Self::tamper`]).
    pub fn open_with_counter(
        flash: F,
        range: core::ops::Range<u32>,
        model: ModelHash,
        key: &dyn DeviceKey,
        counter: C,
    ) -> Result<Self, OpenError> {
        let config = MapConfig::try_new(range).map_err(|_| OpenError::BadRange)?;
        let device_key = key.device_key();
        // A key of its own for the state, so the sealing key serves one purpose.
        let mut derive = State::mac(&device_key);
        derive.update(b"facegate state record key v1");
        let mut s = Self {
            map: MapStorage::new(flash, config, Cache::new_uncached()),
            model,
            people: heapless::Vec::new(),
            refused: 0,
            state: State::FACTORY,
            tamper: None,
            counter,
            cipher: ChaCha20Poly1305::new(&Key::from(device_key)),
            mac_key: derive.finalize().into_bytes().into(),
            buf: [0; BUF],
        };
        s.load()?;
        Ok(s)
    }

    /// Why the store refuses to serve, if it does.
    pub const fn tamper(&self) -> Option<Tamper> {
        self.tamper
    }

    fn load(&mut self) -> Result<(), OpenError> {
        let mut item = [0u8; BUF];
        // A power cut during garbage collection (a page half erased) leaves
        // the map in a state that `fetch_all_items` reports as corrupted
        // without repairing it; a plain fetch runs sequential-storage's
        // repair first. Its value is read again below with everything else.
        let _ = block_on(
            self.map
                .fetch_item::<&[u8]>(&mut item, &RecordKey(KEY_STATE)),
        );
        let mut it =
            block_on(self.map.fetch_all_items(&mut self.buf)).map_err(|_| OpenError::Flash)?;
        let (mut state, mut forged, mut legacy) = (None::<State>, false, false);
        let mut malformed = false;
        // The highest sequence any authentic person was sealed with.
        let mut sealed_up_to = 0u32;
        // Later items of a key supersede earlier ones.
        while let Some((RecordKey(key), stored)) =
            block_on(it.next::<&[u8]>(&mut item)).map_err(|_| OpenError::Flash)?
        {
            let Some(value) = record_body(stored) else {
                malformed = true;
                continue;
            };
            match key {
                KEY_STATE => match State::decode(value, &self.mac_key) {
                    // The newest generation wins, wherever it lies.
                    Some(s) if state.is_none_or(|old| s.generation >= old.generation) => {
                        state = Some(s);
                    }
                    Some(_) => {}
                    None => forged = true,
                },
                k if LEGACY_KEYS.contains(&k) => legacy = true,
                k if k >= PERSON_BASE => {
                    let id = k - PERSON_BASE;
                    self.people.retain(|p| p.id != id);
                    let mut plain = [0u8; PERSON_BYTES];
                    let opened = unseal(&self.cipher, &self.model, id, value, &mut plain);
                    if let Some((_, seq)) = opened {
                        sealed_up_to = sealed_up_to.max(seq);
                    }
                    let entry = opened
                        .and_then(|(n, _)| plain.get(..n))
                        .and_then(|db| {
                            DbReader::<EMBEDDING_DIM>::open_for_model(db, &self.model).ok()
                        })
                        .and_then(|r| r.record(0).ok())
                        .map(|rec| PersonEntry {
                            id,
                            templates: u8::try_from(rec.template_count()).unwrap_or(u8::MAX),
                            digest: person_digest(
                                rec.name(),
                                &rec.templates().collect::<heapless::Vec<_, MAX_TEMPLATES>>(),
                            ),
                        });
                    match entry {
                        Some(entry) => {
                            let _ = self.people.push(entry);
                        }
                        None => self.refused = self.refused.saturating_add(1),
                    }
                }
                _ => {}
            }
        }
        self.tamper = if malformed {
            Some(Tamper::Malformed)
        } else {
            self.judge(state, forged, legacy, sealed_up_to)
        };
        self.state = match (self.tamper, state) {
            (None, Some(s)) => s,
            // A tampered store keeps the nonce it read (replies stay
            // consistent) and nothing else that could open the door.
            (Some(_), Some(s)) => State {
                settings: Settings::FACTORY,
                ..s
            },
            (_, None) => State::FACTORY,
        };
        Ok(())
    }

    /// Whether what was read is this board's own, current state.
    fn judge(
        &mut self,
        state: Option<State>,
        forged: bool,
        legacy: bool,
        sealed_up_to: u32,
    ) -> Option<Tamper> {
        if forged {
            return Some(Tamper::ForgedState);
        }
        if legacy {
            return Some(Tamper::LegacyRecords);
        }
        let Ok(counted) = self.counter.value() else {
            return Some(Tamper::Counter);
        };
        let Some(state) = state else {
            let used = sealed_up_to > 0 || counted > 0;
            return used.then_some(Tamper::MissingState);
        };
        if state.generation < counted {
            return Some(Tamper::RolledBack);
        }
        if sealed_up_to > state.seal_seq {
            return Some(Tamper::StaleState);
        }
        // A cut after a state write and before the counter caught up.
        if state.generation > counted && self.counter.advance_to(state.generation).is_err() {
            return Some(Tamper::Counter);
        }
        None
    }

    /// People stored for another model (or damaged): refused, not matched.
    pub const fn refused(&self) -> u16 {
        self.refused
    }

    /// The settings in force.
    pub const fn settings(&self) -> Settings {
        self.state.settings
    }

    /// Gives the flash back (e.g. to simulate a reboot in tests).
    pub fn into_flash(self) -> F {
        self.map.destroy().0
    }

    fn store(&mut self, key: u32, value: &[u8]) -> Result<(), StoreError> {
        block_on(self.map.store_item(&mut self.buf, &RecordKey(key), &value))
            .map_err(|_| StoreError)
    }

    fn load_person(&mut self, id: u32, f: &mut dyn FnMut(PersonId, &Template)) {
        let mut item = [0u8; BUF];
        let Ok(key) = person_key(PersonId(id)) else {
            return;
        };
        let Ok(Some(stored)) = block_on(self.map.fetch_item::<&[u8]>(&mut item, &RecordKey(key)))
        else {
            return;
        };
        let Some(value) = record_body(stored) else {
            return;
        };
        let mut plain = [0u8; PERSON_BYTES];
        let Some(db) = unseal(&self.cipher, &self.model, id, value, &mut plain)
            .and_then(|(n, _)| plain.get(..n))
        else {
            return;
        };
        if let Ok(rec) =
            DbReader::<EMBEDDING_DIM>::open_for_model(db, &self.model).and_then(|r| r.record(0))
        {
            for t in rec.templates() {
                f(PersonId(id), &t);
            }
        }
    }
}

impl<F: MultiwriteNorFlash, const N: usize, C: MonotonicCounter> DoorStore for FlashStore<F, N, C> {
    fn capacity(&self) -> u16 {
        u16::try_from(N).unwrap_or(u16::MAX)
    }
    fn len(&self) -> u16 {
        u16::try_from(self.people.len()).unwrap_or(u16::MAX)
    }
    fn entry(&self, index: u16) -> Option<PersonEntry> {
        self.people.get(usize::from(index)).copied()
    }
    fn for_each_template(&mut self, f: &mut dyn FnMut(PersonId, &Template)) {
        // One person in RAM at a time: the gallery lives in flash.
        let ids: heapless::Vec<u32, N> = self.people.iter().map(|p| p.id).collect();
        for id in ids {
            self.load_person(id, f);
        }
    }
    fn threshold(&self) -> f32 {
        self.state.settings.threshold
    }
    fn unlock_ms(&self) -> u32 {
        self.state.settings.unlock_ms
    }
    fn tampered(&self) -> bool {
        self.tamper.is_some()
    }
    fn enroll(&mut self, person: &StoredPerson) -> Result<bool, StoreError> {
        if self.tamper.is_some() {
            return Err(StoreError);
        }
        let key = person_key(person.id)?;
        let known = self.people.iter().any(|p| p.id == person.id.0);
        if !known && self.people.is_full() {
            return Ok(false);
        }
        let mut bytes = [0u8; PERSON_BYTES];
        let slots = u8::try_from(MAX_TEMPLATES).unwrap_or(u8::MAX);
        let mut w = DbWriter::<EMBEDDING_DIM>::new(&mut bytes, self.model, slots)
            .map_err(|_| StoreError)?;
        w.push(person).map_err(|_| StoreError)?;
        let n = w.finish();
        // Persist the next sequence number before using it: a cut between the
        // two writes skips a number, it never reuses one.
        let seq = self.state.seal_seq.checked_add(1).ok_or(StoreError)?;
        self.commit(State {
            seal_seq: seq,
            ..self.state
        })?;
        let mut sealed = [0u8; SEALED_HEADER + PERSON_BYTES];
        let body = &mut sealed[SEALED_HEADER..SEALED_HEADER + n];
        body.copy_from_slice(&bytes[..n]);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &seal_nonce(seq, person.id.0),
                &seal_aad(&self.model, person.id.0),
                body.into(),
            )
            .map_err(|_| StoreError)?;
        sealed[..4].copy_from_slice(&seq.to_le_bytes());
        sealed[4..SEALED_HEADER].copy_from_slice(tag.as_slice());
        self.store(key, &sealed[..SEALED_HEADER + n])?;
        let entry = PersonEntry {
            id: person.id.0,
            templates: u8::try_from(person.templates.len()).unwrap_or(u8::MAX),
            digest: person_digest(&person.name, &person.templates),
        };
        match self.people.iter_mut().find(|p| p.id == person.id.0) {
            Some(e) => *e = entry,
            None => {
                let _ = self.people.push(entry);
            }
        }
        Ok(true)
    }
    fn remove(&mut self, id: PersonId) -> Result<bool, StoreError> {
        if self.tamper.is_some() {
            return Err(StoreError);
        }
        if !self.people.iter().any(|p| p.id == id.0) {
            return Ok(false);
        }
        let key = person_key(id)?;
        block_on(self.map.remove_item(&mut self.buf, &RecordKey(key))).map_err(|_| StoreError)?;
        self.people.retain(|p| p.id != id.0);
        Ok(true)
    }
    fn set_threshold(&mut self, threshold: f32) -> Result<(), StoreError> {
        let settings = Settings {
            threshold,
            ..self.state.settings
        };
        self.commit(State {
            settings,
            ..self.state
        })
    }
    fn set_unlock_ms(&mut self, ms: u32) -> Result<(), StoreError> {
        let settings = Settings {
            unlock_ms: ms,
            ..self.state.settings
        };
        self.commit(State {
            settings,
            ..self.state
        })
    }
    fn factory_reset(&mut self) -> Result<(), StoreError> {
        // Person by person, then settings: a cut in between leaves a valid, partly reset state.
        while let Some(&PersonEntry { id, .. }) = self.people.last() {
            self.remove(PersonId(id))?;
        }
        self.commit(State {
            settings: Settings::FACTORY,
            ..self.state
        })
    }
    fn site_key(&self) -> Option<[u8; 32]> {
        self.state.site_key
    }
    fn set_site_key(&mut self, site_key: Option<[u8; 32]>) -> Result<(), StoreError> {
        self.commit(State {
            site_key,
            ..self.state
        })
    }
    fn nonce(&self) -> u32 {
        self.state.nonce
    }
    fn set_nonce(&mut self, nonce: u32) -> Result<(), StoreError> {
        self.commit(State {
            nonce,
            ..self.state
        })
    }
    fn lockout_rejects(&self) -> u32 {
        self.state.lockout_rejects
    }
    fn set_lockout_rejects(&mut self, lockout_rejects: u32) -> Result<(), StoreError> {
        if lockout_rejects == self.state.lockout_rejects {
            return Ok(());
        }
        self.commit(State {
            lockout_rejects,
            ..self.state
        })
    }
}

impl<F: MultiwriteNorFlash, const N: usize, C: MonotonicCounter> FlashStore<F, N, C> {
    /// Writes `next` as the state, one generation on; a tampered store
    /// writes nothing.
    fn commit(&mut self, next: State) -> Result<(), StoreError> {
        if self.tamper.is_some() {
            return Err(StoreError);
        }
        let next = State {
            generation: self.state.generation.checked_add(1).ok_or(StoreError)?,
            ..next
        };
        self.store(KEY_STATE, &next.encode(&self.mac_key))?;
        self.state = next;
        // Written first, counted second: a cut in between leaves the state
        // ahead of the counter, which the next opening catches up.
        self.counter
            .advance_to(next.generation)
            .map_err(|_| StoreError)
    }
}

/// Opens a sealed person into `plain`; returns its length and the sequence
/// number it was sealed with, or `None` if damaged, forged, or sealed under
/// another key or model.
fn unseal(
    cipher: &ChaCha20Poly1305,
    model: &ModelHash,
    id: u32,
    sealed: &[u8],
    plain: &mut [u8],
) -> Option<(usize, u32)> {
    let (head, body) = sealed.split_at_checked(SEALED_HEADER)?;
    let seq = u32::from_le_bytes(head.get(..4)?.try_into().ok()?);
    let tag = Tag::try_from(head.get(4..SEALED_HEADER)?).ok()?;
    let out = plain.get_mut(..body.len())?;
    out.copy_from_slice(body);
    cipher
        .decrypt_inout_detached(&seal_nonce(seq, id), &seal_aad(model, id), out.into(), &tag)
        .ok()?;
    Some((body.len(), seq))
}
