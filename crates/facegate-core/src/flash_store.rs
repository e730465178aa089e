//! The board's persistent state in NOR flash, through sequential-storage's
//! power-fail-safe key-value map: people (each a one-record template
//! database bound to the model hash, encrypted at rest with
//! ChaCha20-Poly1305 under the device key), settings, site key and
//! provisioning nonce. Every change is one map write: after a power cut it
//! is either entirely there or entirely absent.
//!
//! Person records are sealed with nonce `seq ‖ id ‖ 0` where `seq` is a
//! counter persisted *before* each sealing, so a nonce is never reused even
//! across power cuts; the associated data binds the record to its id and
//! the model hash.
//!
//! sequential-storage is async; flash drivers here complete synchronously,
//! so a minimal `block_on` drives it.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use embedded_storage_async::nor_flash::MultiwriteNorFlash;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};

use crate::db::{DbReader, DbWriter, HEADER_LEN, MAX_TEMPLATES, record_size};
use crate::matcher::PersonId;
use crate::protocol::device::{DoorStore, StoreError, StoredPerson};
use crate::protocol::{PersonEntry, person_digest};
use crate::template::Template;
use crate::{EMBEDDING_DIM, ModelHash};

const KEY_SETTINGS: u32 = 1;
const KEY_SITE: u32 = 2;
const KEY_NONCE: u32 = 3;
const KEY_SEAL_SEQ: u32 = 4;
const KEY_LOCKOUT: u32 = 5;
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

/// Polls a future that completes without waiting (synchronous flash).
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            threshold: crate::matcher::FACTORY_THRESHOLD,
            unlock_ms: 3_000,
        }
    }
}

/// People, settings and claim state in flash, for up to `N` people.
pub struct FlashStore<F: MultiwriteNorFlash, const N: usize> {
    map: MapStorage<u32, F, Cache<Uncached, Uncached, Uncached, u32>>,
    model: ModelHash,
    people: heapless::Vec<PersonEntry, N>,
    /// People stored for another model: refused, reported, never matched.
    refused: u16,
    settings: Settings,
    site_key: Option<[u8; 32]>,
    nonce: u32,
    seal_seq: u32,
    lockout_rejects: u32,
    cipher: ChaCha20Poly1305,
    buf: [u8; BUF],
}

impl<F: MultiwriteNorFlash, const N: usize> core::fmt::Debug for FlashStore<F, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashStore")
            .field("people", &self.people.len())
            .field("refused", &self.refused)
            .field("settings", &self.settings)
            .field("claimed", &self.site_key.is_some())
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl<F: MultiwriteNorFlash, const N: usize> FlashStore<F, N> {
    /// Opens the store in `range` of `flash` with the device key, reading everything back.
    pub fn open(
        flash: F,
        range: core::ops::Range<u32>,
        model: ModelHash,
        key: &dyn DeviceKey,
    ) -> Result<Self, OpenError> {
        let config = MapConfig::try_new(range).map_err(|_| OpenError::BadRange)?;
        let mut s = Self {
            map: MapStorage::new(flash, config, Cache::new_uncached()),
            model,
            people: heapless::Vec::new(),
            refused: 0,
            settings: Settings::default(),
            site_key: None,
            nonce: 0,
            seal_seq: 0,
            lockout_rejects: 0,
            cipher: ChaCha20Poly1305::new(&Key::from(key.device_key())),
            buf: [0; BUF],
        };
        s.load()?;
        Ok(s)
    }

    fn load(&mut self) -> Result<(), OpenError> {
        let mut item = [0u8; BUF];
        // A power cut during garbage collection (a page half erased) leaves
        // the map in a state that `fetch_all_items` reports as corrupted
        // without repairing it; a plain fetch runs sequential-storage's
        // repair first. Its value is read again below with everything else.
        let _ = block_on(self.map.fetch_item::<&[u8]>(&mut item, &KEY_NONCE));
        let mut it =
            block_on(self.map.fetch_all_items(&mut self.buf)).map_err(|_| OpenError::Flash)?;
        // Later items of a key supersede earlier ones.
        while let Some((key, value)) =
            block_on(it.next::<&[u8]>(&mut item)).map_err(|_| OpenError::Flash)?
        {
            match key {
                KEY_SETTINGS => {
                    if let (Some(t), Some(u)) = (value.get(..4), value.get(4..8)) {
                        let threshold = f32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                        let unlock_ms = u32::from_le_bytes([u[0], u[1], u[2], u[3]]);
                        // A stored number out of its range is damage: fail
                        // closed (factory threshold), never open.
                        let factory = Settings::default();
                        self.settings = Settings {
                            threshold: if crate::matcher::threshold_is_valid(threshold) {
                                threshold
                            } else {
                                factory.threshold
                            },
                            unlock_ms: if (1..=MAX_UNLOCK_MS).contains(&unlock_ms) {
                                unlock_ms
                            } else {
                                factory.unlock_ms
                            },
                        };
                    }
                }
                KEY_SITE => self.site_key = value.try_into().ok(),
                KEY_NONCE => {
                    if let Ok(n) = <[u8; 4]>::try_from(value) {
                        self.nonce = u32::from_le_bytes(n);
                    }
                }
                KEY_SEAL_SEQ => {
                    if let Ok(n) = <[u8; 4]>::try_from(value) {
                        self.seal_seq = u32::from_le_bytes(n);
                    }
                }
                KEY_LOCKOUT => {
                    if let Ok(n) = <[u8; 4]>::try_from(value) {
                        self.lockout_rejects = u32::from_le_bytes(n);
                    }
                }
                k if k >= PERSON_BASE => {
                    let id = k - PERSON_BASE;
                    self.people.retain(|p| p.id != id);
                    let mut plain = [0u8; PERSON_BYTES];
                    let count = unseal(&self.cipher, &self.model, id, value, &mut plain)
                        .and_then(|n| plain.get(..n))
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
                    match count {
                        Some(entry) => {
                            let _ = self.people.push(entry);
                        }
                        None => self.refused = self.refused.saturating_add(1),
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// People stored for another model (or damaged): refused, not matched.
    pub const fn refused(&self) -> u16 {
        self.refused
    }

    /// The settings in force.
    pub const fn settings(&self) -> Settings {
        self.settings
    }

    /// Gives the flash back (e.g. to simulate a reboot in tests).
    pub fn into_flash(self) -> F {
        self.map.destroy().0
    }

    fn store(&mut self, key: u32, value: &[u8]) -> Result<(), StoreError> {
        block_on(self.map.store_item(&mut self.buf, &key, &value)).map_err(|_| StoreError)
    }

    fn load_person(&mut self, id: u32, f: &mut dyn FnMut(PersonId, &Template)) {
        let mut item = [0u8; BUF];
        let Ok(key) = person_key(PersonId(id)) else {
            return;
        };
        let Ok(Some(value)) = block_on(self.map.fetch_item::<&[u8]>(&mut item, &key)) else {
            return;
        };
        let mut plain = [0u8; PERSON_BYTES];
        let Some(db) =
            unseal(&self.cipher, &self.model, id, value, &mut plain).and_then(|n| plain.get(..n))
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

impl<F: MultiwriteNorFlash, const N: usize> DoorStore for FlashStore<F, N> {
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
        self.settings.threshold
    }
    fn unlock_ms(&self) -> u32 {
        self.settings.unlock_ms
    }
    fn enroll(&mut self, person: &StoredPerson) -> Result<bool, StoreError> {
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
        let seq = self.seal_seq.checked_add(1).ok_or(StoreError)?;
        self.store(KEY_SEAL_SEQ, &seq.to_le_bytes())?;
        self.seal_seq = seq;
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
        if !self.people.iter().any(|p| p.id == id.0) {
            return Ok(false);
        }
        let key = person_key(id)?;
        block_on(self.map.remove_item(&mut self.buf, &key)).map_err(|_| StoreError)?;
        self.people.retain(|p| p.id != id.0);
        Ok(true)
    }
    fn set_threshold(&mut self, threshold: f32) -> Result<(), StoreError> {
        let s = Settings {
            threshold,
            ..self.settings
        };
        self.write_settings(s)
    }
    fn set_unlock_ms(&mut self, ms: u32) -> Result<(), StoreError> {
        let s = Settings {
            unlock_ms: ms,
            ..self.settings
        };
        self.write_settings(s)
    }
    fn factory_reset(&mut self) -> Result<(), StoreError> {
        // Person by person, then settings: a cut in between leaves a valid, partly reset state.
        while let Some(&PersonEntry { id, .. }) = self.people.last() {
            self.remove(PersonId(id))?;
        }
        self.write_settings(Settings::default())
    }
    fn site_key(&self) -> Option<[u8; 32]> {
        self.site_key
    }
    fn set_site_key(&mut self, key: Option<[u8; 32]>) -> Result<(), StoreError> {
        match key {
            Some(k) => self.store(KEY_SITE, &k)?,
            None => self.store(KEY_SITE, &[])?,
        }
        self.site_key = key;
        Ok(())
    }
    fn nonce(&self) -> u32 {
        self.nonce
    }
    fn set_nonce(&mut self, nonce: u32) -> Result<(), StoreError> {
        self.store(KEY_NONCE, &nonce.to_le_bytes())?;
        self.nonce = nonce;
        Ok(())
    }
    fn lockout_rejects(&self) -> u32 {
        self.lockout_rejects
    }
    fn set_lockout_rejects(&mut self, rejects: u32) -> Result<(), StoreError> {
        if rejects == self.lockout_rejects {
            return Ok(());
        }
        self.store(KEY_LOCKOUT, &rejects.to_le_bytes())?;
        self.lockout_rejects = rejects;
        Ok(())
    }
}

impl<F: MultiwriteNorFlash, const N: usize> FlashStore<F, N> {
    fn write_settings(&mut self, s: Settings) -> Result<(), StoreError> {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&s.threshold.to_le_bytes());
        b[4..].copy_from_slice(&s.unlock_ms.to_le_bytes());
        self.store(KEY_SETTINGS, &b)?;
        self.settings = s;
        Ok(())
    }
}

/// Opens a sealed person into `plain`; returns its length, or `None` if
/// damaged, forged, or sealed under another key or model.
fn unseal(
    cipher: &ChaCha20Poly1305,
    model: &ModelHash,
    id: u32,
    sealed: &[u8],
    plain: &mut [u8],
) -> Option<usize> {
    let (head, body) = sealed.split_at_checked(SEALED_HEADER)?;
    let seq = u32::from_le_bytes(head.get(..4)?.try_into().ok()?);
    let tag = Tag::try_from(head.get(4..SEALED_HEADER)?).ok()?;
    let out = plain.get_mut(..body.len())?;
    out.copy_from_slice(body);
    cipher
        .decrypt_inout_detached(&seal_nonce(seq, id), &seal_aad(model, id), out.into(), &tag)
        .ok()?;
    Some(body.len())
}
