//! The flash store under power cuts: a mock NOR flash loses power at every
//! position of every operation (after each programmed 4-byte word, and in
//! the middle of each erase); after each cut the store reopens, every
//! committed person is intact, and the interrupted change is entirely there
//! or entirely absent.

use std::collections::BTreeMap;

use embedded_storage_async::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use facegate_core::flash_store::{
    CounterError, DeviceKey, FlashStore, InsecureTestKey, MonotonicCounter, Tamper,
};
use facegate_core::protocol::device::{DoorStore, StoredPerson};
use facegate_core::protocol::{PersonEntry, person_digest};
use facegate_core::{Embedding, ModelHash, PersonId, Template};

const PAGE: usize = 4096;
const PAGES: usize = 6;
const MODEL: ModelHash = ModelHash([0x42; 32]);

#[derive(Debug)]
struct Cut;

impl NorFlashError for Cut {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

/// NOR flash in RAM that loses power after `ops_left` units of work
/// (a programmed word or an erase).
#[derive(Clone)]
struct CutFlash {
    data: Vec<u8>,
    ops_left: Option<u32>,
    cut: bool,
    /// Words programmed and pages erased so far (cut or not).
    done: u32,
    /// Pages erased so far: the map erases a page only to reclaim it.
    erases: u32,
}

impl CutFlash {
    fn new() -> Self {
        Self {
            data: vec![0xFF; PAGE * PAGES],
            ops_left: None,
            cut: false,
            done: 0,
            erases: 0,
        }
    }

    /// Counts an operation; `true` if power fails during it.
    fn power_fails(&mut self) -> bool {
        self.done += 1;
        match self.ops_left.as_mut() {
            Some(0) => {
                self.cut = true;
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
}

impl ErrorType for CutFlash {
    type Error = Cut;
}

impl ReadNorFlash for CutFlash {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Cut> {
        if self.cut {
            return Err(Cut);
        }
        let o = offset as usize;
        bytes.copy_from_slice(&self.data[o..o + bytes.len()]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.data.len()
    }
}

impl NorFlash for CutFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = PAGE;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Cut> {
        if self.cut {
            return Err(Cut);
        }
        let (from, to) = (from as usize, to as usize);
        self.erases += 1;
        if self.power_fails() {
            // Half the range erased when the power went.
            let mid = from + (to - from) / 2;
            self.data[from..mid].fill(0xFF);
            return Err(Cut);
        }
        self.data[from..to].fill(0xFF);
        Ok(())
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Cut> {
        if self.cut {
            return Err(Cut);
        }
        let o = offset as usize;
        for (w, word) in bytes.chunks(4).enumerate() {
            if self.power_fails() {
                return Err(Cut);
            }
            // NOR: programming only clears bits.
            for (d, b) in self.data[o + 4 * w..].iter_mut().zip(word) {
                *d &= *b;
            }
        }
        Ok(())
    }
}

impl MultiwriteNorFlash for CutFlash {}

type Store = FlashStore<CutFlash, 16>;

fn open(flash: CutFlash) -> Store {
    Store::open(flash, 0..(PAGE * PAGES) as u32, MODEL, &InsecureTestKey)
        .expect("store reopens after any cut")
}

fn person(id: u32, seed: u32, n: usize) -> StoredPerson {
    let mut p = StoredPerson::new(PersonId(id), "someone").unwrap();
    for k in 0..n {
        let v: [f32; 128] =
            core::array::from_fn(|i| ((i as u32 * 13 + seed * 7 + k as u32) % 23) as f32 - 11.0);
        p.push_template(Template::quantize(&Embedding::normalize(v).unwrap()))
            .unwrap();
    }
    p
}

/// Everything the store holds: people's templates, threshold, nonce, site key.
type Snapshot = (BTreeMap<u32, Vec<Template>>, f32, u32, Option<[u8; 32]>);

fn snapshot(s: &mut Store) -> Snapshot {
    let mut people: BTreeMap<u32, Vec<Template>> = BTreeMap::new();
    s.for_each_template(&mut |id, t| people.entry(id.0).or_default().push(*t));
    (people, s.threshold(), s.nonce(), s.site_key())
}

fn base() -> CutFlash {
    let mut s = open(CutFlash::new());
    assert!(s.enroll(&person(1, 1, 3)).unwrap());
    assert!(s.enroll(&person(2, 2, 2)).unwrap());
    s.set_threshold(0.61).unwrap();
    s.set_site_key(Some([5; 32])).unwrap();
    s.set_nonce(9).unwrap();
    s.into_flash()
}

#[test]
fn round_trip_and_model_binding() {
    let flash = base();
    let mut s = open(flash.clone());
    let (people, threshold, nonce, key) = snapshot(&mut s);
    assert_eq!(people.len(), 2);
    assert_eq!(people[&1], person(1, 1, 3).templates.to_vec());
    assert_eq!((threshold, nonce, key), (0.61, 9, Some([5; 32])));
    // After a reopen the list reports what was enrolled, digest included.
    let p1 = person(1, 1, 3);
    assert_eq!(
        s.entry(0),
        Some(PersonEntry {
            id: 1,
            templates: 3,
            digest: person_digest(&p1.name, &p1.templates)
        })
    );
    // Another model: its templates are refused, not matched.
    let mut other = Store::open(
        flash.clone(),
        0..(PAGE * PAGES) as u32,
        ModelHash([7; 32]),
        &InsecureTestKey,
    )
    .unwrap();
    assert_eq!((other.len(), other.refused()), (0, 2));
    assert!(snapshot(&mut other).0.is_empty());
    // Another device key: the sealed templates cannot be read.
    struct OtherKey;
    impl DeviceKey for OtherKey {
        fn device_key(&self) -> [u8; 32] {
            [1; 32]
        }
    }
    let thief = Store::open(flash.clone(), 0..(PAGE * PAGES) as u32, MODEL, &OtherKey).unwrap();
    assert_eq!((thief.len(), thief.refused()), (0, 2));
    // At rest, no template value is visible in the flash image.
    let t = person(1, 1, 3).templates[0];
    let needle: Vec<u8> = t.values()[..16]
        .iter()
        .map(|v| v.to_le_bytes()[0])
        .collect();
    assert!(
        !flash.data.windows(16).any(|w| w == needle.as_slice()),
        "plaintext template found in flash"
    );
}

#[test]
fn every_cut_point_keeps_committed_state_and_is_all_or_nothing() {
    type Op = fn(&mut Store) -> bool;
    let ops: [(&str, Op); 6] = [
        ("enroll new", |s| s.enroll(&person(3, 3, 4)).is_ok()),
        ("re-enroll", |s| s.enroll(&person(1, 9, 2)).is_ok()),
        ("remove", |s| s.remove(PersonId(2)).is_ok()),
        ("threshold", |s| s.set_threshold(0.7).is_ok()),
        ("nonce", |s| s.set_nonce(10).is_ok()),
        ("factory reset", |s| s.factory_reset().is_ok()),
    ];
    let before = snapshot(&mut open(base()));
    let mut cuts = 0;
    for (name, op) in ops {
        let after = {
            let mut s = open(base());
            assert!(op(&mut s), "{name} without a cut");
            snapshot(&mut s)
        };
        for cut in 0.. {
            let mut flash = base();
            flash.ops_left = Some(cut);
            let mut s = open(flash);
            let ok = op(&mut s);
            let mut flash = s.into_flash();
            let was_cut = flash.cut;
            flash.ops_left = None;
            flash.cut = false;
            let mut s = open(flash);
            assert_eq!(
                s.tamper(),
                None,
                "{name} cut {cut}: a power cut is not tampering"
            );
            let got = snapshot(&mut s);
            if !was_cut {
                assert!(ok, "{name}: no cut but failed");
                assert_eq!(got, after, "{name}");
                break;
            }
            cuts += 1;
            if name == "factory reset" {
                // Person by person: any prefix of the reset is a valid state; nothing else changes.
                assert!(
                    got.0.iter().all(|(id, t)| before.0.get(id) == Some(t)),
                    "{name} cut {cut}"
                );
                assert_eq!((got.2, got.3), (before.2, before.3));
            } else {
                assert!(
                    got == before || got == after,
                    "{name} cut {cut}: neither before nor after\n{got:?}"
                );
            }
            // The store still works after the cut.
            assert!(
                s.enroll(&person(7, 7, 1)).unwrap(),
                "{name} cut {cut}: store unusable"
            );
        }
    }
    eprintln!("power cut at {cuts} write/erase positions; every one recovered");
    // Every word of every write and every erase of the six operations: 658 positions.
    assert!(cuts >= 600, "only {cuts} cut points exercised");
}

#[test]
fn audit_log_is_bounded_and_keeps_the_newest_events() {
    use facegate_core::audit::FlashAuditLog;
    use facegate_core::door::{AuditEvent, AuditLog, Outcome};
    let mut log = FlashAuditLog::open(CutFlash::new(), 0..(2 * PAGE) as u32).unwrap();
    let event = |i: u64| AuditEvent {
        time_ms: i,
        outcome: match i % 4 {
            0 => Outcome::Unlocked {
                id: PersonId(7),
                score: 0.9,
            },
            1 => Outcome::Rejected { best: Some(0.1) },
            2 => Outcome::LockedOut { wait_ms: 1000 },
            _ => Outcome::Fault,
        },
    };
    for i in 0..1000 {
        log.record(event(i));
    }
    assert_eq!(log.lost(), 0);
    // Reopen (a reboot): the newest events are there, in order, the oldest gone.
    let mut log = FlashAuditLog::open(log.into_flash(), 0..(2 * PAGE) as u32).unwrap();
    let mut got = Vec::new();
    log.read(&mut |e| got.push(e)).unwrap();
    assert!(
        got.len() > 50 && got.len() < 1000,
        "{} events kept",
        got.len()
    );
    assert_eq!(got.last(), Some(&event(999)));
    let first = got[0].time_ms;
    assert_eq!(got, (first..1000).map(event).collect::<Vec<_>>());
}

/// A signed enroll through the protocol into the flash store, with the power
/// cut at every write and erase: an applied command has always spent its
/// nonce (so it can never be replayed), and an unspent nonce means nothing
/// changed (so the host's resend is a first delivery, not a replay).
#[test]
fn a_signed_command_cut_anywhere_is_never_replayable() {
    use ed25519_dalek::{Signer, SigningKey};
    use facegate_core::protocol::device::{BoardInfo, handle};
    use facegate_core::protocol::frame::{decode, encode};
    use facegate_core::protocol::{Command, ErrorCode, Request, Response, signing_message};

    let site = SigningKey::from_bytes(&[3; 32]);
    let board = BoardInfo {
        firmware: "test",
        model_hash: MODEL,
        device_id: *b"fg-cut-test-0001",
        claim_key: None,
    };
    let provisioned = || {
        let mut s = open(CutFlash::new());
        assert!(s.enroll(&person(1, 1, 3)).unwrap());
        s.set_site_key(Some(site.verifying_key().to_bytes()))
            .unwrap();
        s.set_nonce(9).unwrap();
        s.into_flash()
    };
    let newcomer = person(3, 3, 2);
    let mut templates = Vec::new();
    for t in &newcomer.templates {
        templates.extend_from_slice(&t.scale().to_le_bytes());
        templates.extend(t.values().iter().map(|v| v.to_le_bytes()[0]));
    }
    let mut command = [0u8; 1024];
    let command = postcard::to_slice(
        &Command::Enroll {
            id: 3,
            name: "someone",
            templates: &templates,
        },
        &mut command,
    )
    .unwrap()
    .to_vec();
    let mut msg = vec![0u8; 64 + command.len()];
    let msg = signing_message(&board.device_id, 9, &command, &mut msg).unwrap();
    let signature = site.sign(msg).to_bytes();
    let mut frame = vec![0u8; 2048];
    let n = encode(
        &Request::Signed {
            nonce: 9,
            command: &command,
            signature: &signature,
        },
        &mut frame,
    )
    .unwrap();
    frame.truncate(n);
    let send = |s: &mut Store| {
        let mut f = frame.clone();
        let mut out = vec![0u8; 2048];
        let m = handle(&board, s, &mut f, &mut out).unwrap();
        decode::<Response<'_>>(&mut out[..m]).map(|r| format!("{r:?}"))
    };

    let before = snapshot(&mut open(provisioned()));
    let mut cuts = 0;
    for cut in 0.. {
        let mut flash = provisioned();
        flash.ops_left = Some(cut);
        let mut s = open(flash);
        let answer = send(&mut s);
        let mut flash = s.into_flash();
        let was_cut = flash.cut;
        (flash.ops_left, flash.cut) = (None, false);
        let mut s = open(flash);
        let (people, _, nonce, _) = snapshot(&mut s);
        let applied = people.contains_key(&3);
        if !was_cut {
            assert_eq!(answer, Ok(format!("{:?}", Response::Ok { nonce: 10 })));
            assert!(applied && nonce == 10);
            break;
        }
        cuts += 1;
        assert!(nonce == 9 || nonce == 10, "cut {cut}: nonce {nonce}");
        if applied {
            assert_eq!(nonce, 10, "cut {cut}: applied with the nonce unspent");
        }
        if nonce == 9 {
            assert_eq!(
                snapshot(&mut s),
                before,
                "cut {cut}: changed without spending the nonce"
            );
        }
        // The recorded frame again after the reboot.
        let again = send(&mut s).unwrap();
        if nonce == 10 {
            assert_eq!(
                again,
                format!("{:?}", Response::Error(ErrorCode::BadNonce)),
                "cut {cut}"
            );
        } else {
            assert_eq!(
                again,
                format!("{:?}", Response::Ok { nonce: 10 }),
                "cut {cut}"
            );
        }
    }
    eprintln!("signed enroll cut at {cuts} positions; never replayable");
    assert!(cuts > 50, "only {cuts} cut points");
}

/// Issue 25 #2: the store itself refuses an id that would wrap its person
/// key (`2³¹ + id`) onto the settings record, even if a caller skipped the
/// protocol's checks; the settings survive.
#[test]
fn an_id_above_31_bits_cannot_overwrite_the_settings() {
    let mut s = open(base());
    let mut p = person(3, 3, 1);
    p.id = PersonId(0x8000_0001);
    assert!(s.enroll(&p).is_err());
    assert!(
        s.remove(PersonId(0x8000_0001))
            .is_ok_and(|removed| !removed)
    );
    let mut s = open(s.into_flash());
    assert_eq!(s.threshold(), 0.61);
    assert_eq!(snapshot(&mut s).0.len(), 2);
    assert!(StoredPerson::new(PersonId(0x8000_0000), "x").is_err());
}

/// Issue 25 #11/#5: a stored threshold or unlock time outside its range
/// (damage, or a store written by an older build) fails closed on reopening:
/// the factory threshold that opens for no one, the factory pulse.
#[test]
fn out_of_range_settings_fail_closed_on_reopening() {
    for bad in [-3e-45f32, -1.0, 0.0, f32::NAN, 1.5] {
        let mut s = open(base());
        s.set_threshold(bad).unwrap();
        let s = open(s.into_flash());
        assert_eq!(
            s.threshold(),
            facegate_core::matcher::FACTORY_THRESHOLD,
            "stored {bad}"
        );
    }
    let mut s = open(base());
    s.set_unlock_ms(u32::MAX).unwrap();
    assert_eq!(open(s.into_flash()).unlock_ms(), 3_000);
}

/// Issue 25 #7: the lockout count is stored and survives reopening (and a
/// factory reset, which is not a pardon).
#[test]
fn the_lockout_count_survives_a_restart() {
    let mut s = open(base());
    assert_eq!(s.lockout_rejects(), 0);
    s.set_lockout_rejects(7).unwrap();
    let mut s = open(s.into_flash());
    assert_eq!(s.lockout_rejects(), 7);
    s.factory_reset().unwrap();
    assert_eq!(open(s.into_flash()).lockout_rejects(), 7);
}

/// Issue 25 #4: power cuts inside garbage collection. A long run of
/// enrolls, re-enrolls, removals and settings fills the six pages until the
/// map reclaims pages many times; the power is cut at every programmed word
/// and every erase of the whole run (over 10,000 points). After each cut the
/// store opens, holds exactly the state before or after the interrupted
/// change, its nonce never goes back, and it still takes writes.
#[test]
fn cuts_inside_garbage_collection_lose_nothing() {
    const ROUNDS: u32 = 36;
    type Op = Box<dyn Fn(&mut Store) -> bool>;
    let mut ops: Vec<Op> = Vec::new();
    for round in 0..ROUNDS {
        let id = round % 5 + 1;
        ops.push(Box::new(move |s| {
            s.enroll(&person(id, round + 10, 1 + (round as usize % 4)))
                .is_ok()
        }));
        ops.push(Box::new(move |s| s.set_nonce(100 + round).is_ok()));
        ops.push(Box::new(move |s| {
            s.set_threshold(0.5 + 0.005 * round as f32).is_ok()
        }));
        if round % 3 == 2 {
            ops.push(Box::new(move |s| {
                s.remove(PersonId((round + 2) % 5 + 1)).is_ok()
            }));
        }
        ops.push(Box::new(move |s| s.set_lockout_rejects(round).is_ok()));
    }
    // The uncut run: the flash and the state before every step.
    let mut flashes = vec![base()];
    let mut states = vec![snapshot(&mut open(base()))];
    let mut costs = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let mut s = open(flashes[i].clone());
        let start = {
            let f = s.into_flash();
            let d = f.done;
            s = open(f);
            d
        };
        assert!(op(&mut s), "step {i} without a cut");
        states.push(snapshot(&mut s));
        let f = s.into_flash();
        costs.push(f.done - start);
        flashes.push(f);
    }
    let erases = flashes.last().unwrap().erases;
    eprintln!(
        "uncut run: {} steps, {} words and erases, {erases} pages reclaimed",
        ops.len(),
        costs.iter().sum::<u32>()
    );
    assert!(
        erases >= 6,
        "the run reclaimed only {erases} pages: no real GC"
    );

    let mut cuts = 0u32;
    for (i, op) in ops.iter().enumerate() {
        for cut in 0..costs[i] {
            let mut flash = flashes[i].clone();
            flash.ops_left = Some(cut);
            let mut s = open(flash);
            let _ = op(&mut s);
            let mut flash = s.into_flash();
            assert!(flash.cut, "step {i} cut {cut} did not cut");
            flash.ops_left = None;
            flash.cut = false;
            let Ok(mut s) = Store::open(flash, 0..(PAGE * PAGES) as u32, MODEL, &InsecureTestKey)
            else {
                panic!("step {i} cut {cut}: the store no longer opens");
            };
            assert_eq!(
                s.tamper(),
                None,
                "step {i} cut {cut}: a power cut is not tampering"
            );
            let got = snapshot(&mut s);
            let brief = |x: &Snapshot| {
                let people: Vec<(u32, usize)> = x.0.iter().map(|(id, t)| (*id, t.len())).collect();
                format!("people {people:?} threshold {} nonce {}", x.1, x.2)
            };
            assert!(
                got == states[i] || got == states[i + 1],
                "step {i} cut {cut}: neither before nor after\n got    {}\n before {}\n after  {}",
                brief(&got),
                brief(&states[i]),
                brief(&states[i + 1])
            );
            assert!(
                got.2 >= states[i].2,
                "step {i} cut {cut}: the nonce went back"
            );
            assert!(
                s.set_lockout_rejects(1_000 + cut).is_ok(),
                "step {i} cut {cut}: store unusable"
            );
            cuts += 1;
        }
    }
    eprintln!(
        "{} steps, {erases} pages reclaimed, power cut at {cuts} points: all recovered",
        ops.len()
    );
    assert!(cuts >= 10_000, "only {cuts} cut points");
}

// Issue 25 #5: the state record (settings, site key, nonce, lockout count,
// sealing sequence) is authenticated under the device key; forged, damaged,
// erased or rolled-back state fails closed. The attacker here owns the
// flash: they write sequential-storage items with valid CRCs themselves.

const KEY_STATE: u32 = 6;

use facegate_core::flash_store::block_on;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};

/// The flash as an attacker with a programmer sees it: the raw map.
type RawMap = MapStorage<u32, CutFlash, Cache<Uncached, Uncached, Uncached, u32>>;

fn raw_map(flash: CutFlash) -> RawMap {
    let config = MapConfig::try_new(0..(PAGE * PAGES) as u32).unwrap();
    MapStorage::new(flash, config, Cache::new_uncached())
}

fn fetch_raw(flash: CutFlash, key: u32) -> (Vec<u8>, CutFlash) {
    let mut map = raw_map(flash);
    let mut buf = [0u8; 4096];
    let v = block_on(map.fetch_item::<&[u8]>(&mut buf, &key))
        .unwrap()
        .expect("item")
        .to_vec();
    (v, map.destroy().0)
}

fn store_raw(flash: CutFlash, key: u32, value: &[u8]) -> CutFlash {
    let mut map = raw_map(flash);
    let mut buf = [0u8; 4096];
    block_on(map.store_item(&mut buf, &key, &value)).unwrap();
    map.destroy().0
}

fn remove_raw(flash: CutFlash, key: u32) -> CutFlash {
    let mut map = raw_map(flash);
    let mut buf = [0u8; 4096];
    block_on(map.remove_item(&mut buf, &key)).unwrap();
    map.destroy().0
}

/// A tampered store opens for no one, takes no change, and over the link
/// answers `Info` (saying so) and refuses everything else.
fn assert_fails_closed(mut s: Store, why: Tamper) {
    use facegate_core::protocol::device::{BoardInfo, handle};
    use facegate_core::protocol::frame::{decode, encode};
    use facegate_core::protocol::{ErrorCode, Request, Response};

    assert_eq!(s.tamper(), Some(why));
    assert!(s.tampered());
    assert_eq!(s.threshold(), facegate_core::matcher::FACTORY_THRESHOLD);
    assert!(s.set_threshold(0.5).is_err());
    assert!(s.set_site_key(Some([9; 32])).is_err());
    assert!(s.set_nonce(s.nonce() + 1).is_err());
    assert!(s.enroll(&person(7, 7, 1)).is_err());
    assert!(s.remove(PersonId(1)).is_err());
    let board = BoardInfo {
        firmware: "test",
        model_hash: MODEL,
        device_id: [1; 16],
        claim_key: None,
    };
    let mut ask = |req: &Request<'_>| {
        let mut frame = [0u8; 512];
        let n = encode(req, &mut frame).unwrap();
        let mut out = vec![0u8; 512];
        let m = handle(&board, &mut s, &mut frame[..n], &mut out).unwrap();
        out.truncate(m);
        let out: &'static mut [u8] = Box::leak(out.into_boxed_slice());
        decode::<Response<'static>>(out).unwrap()
    };
    match ask(&Request::Info) {
        Response::Info {
            tampered,
            threshold,
            ..
        } => {
            assert!(tampered);
            assert_eq!(threshold, facegate_core::matcher::FACTORY_THRESHOLD);
        }
        other => panic!("{other:?}"),
    }
    let claim = Request::Claim {
        site_key: [9; 32],
        token: &[],
    };
    assert_eq!(ask(&claim), Response::Error(ErrorCode::Tampered));
    let signed = Request::Signed {
        nonce: 0,
        command: &[1, 2],
        signature: &[0; 64],
    };
    assert_eq!(ask(&signed), Response::Error(ErrorCode::Tampered));
}

#[test]
fn a_forged_state_record_fails_closed() {
    // A threshold of 0.01 (everyone passes) and the attacker's site key,
    // under the old tag: the tag no longer verifies.
    let (mut state, flash) = fetch_raw(base(), KEY_STATE);
    assert_eq!(&state[..4], b"FGS1");
    state[20..24].copy_from_slice(&0.01f32.to_bits().to_le_bytes());
    state[29..61].copy_from_slice(&[9; 32]);
    assert_fails_closed(
        open(store_raw(flash, KEY_STATE, &state)),
        Tamper::ForgedState,
    );
    // A state sealed by another board's key is a forgery here too.
    struct OtherKey;
    impl DeviceKey for OtherKey {
        fn device_key(&self) -> [u8; 32] {
            [1; 32]
        }
    }
    let mut other =
        Store::open(CutFlash::new(), 0..(PAGE * PAGES) as u32, MODEL, &OtherKey).unwrap();
    other.set_threshold(0.01).unwrap();
    let (theirs, _) = fetch_raw(other.into_flash(), KEY_STATE);
    assert_fails_closed(
        open(store_raw(base(), KEY_STATE, &theirs)),
        Tamper::ForgedState,
    );
}

#[test]
fn unauthenticated_records_of_older_builds_fail_closed() {
    // Before the state record, key 2 held the site key in the clear.
    assert_fails_closed(open(store_raw(base(), 2, &[9; 32])), Tamper::LegacyRecords);
    // And key 1 the settings: a threshold of 0.01.
    let mut settings = 0.01f32.to_le_bytes().to_vec();
    settings.extend(3000u32.to_le_bytes());
    assert_fails_closed(open(store_raw(base(), 1, &settings)), Tamper::LegacyRecords);
}

#[test]
fn erasing_the_state_of_a_board_with_people_fails_closed() {
    // Without the state the board would read as new: unclaimed, nonce 0.
    assert_fails_closed(open(remove_raw(base(), KEY_STATE)), Tamper::MissingState);
}

#[test]
fn a_rolled_back_state_is_caught_by_the_people_sealed_after_it() {
    let (old_state, flash) = fetch_raw(base(), KEY_STATE);
    let mut s = open(flash);
    assert!(s.enroll(&person(3, 3, 1)).unwrap());
    s.set_nonce(10).unwrap();
    // The older, authentic state back in place of the newer ones (an
    // older nonce: a recorded command would replay).
    let flash = store_raw(remove_raw(s.into_flash(), KEY_STATE), KEY_STATE, &old_state);
    assert_fails_closed(open(flash), Tamper::StaleState);
}

#[test]
fn an_older_authentic_state_written_again_does_not_win() {
    let (old_state, flash) = fetch_raw(base(), KEY_STATE);
    let mut s = open(flash);
    s.set_nonce(10).unwrap();
    let s = open(store_raw(s.into_flash(), KEY_STATE, &old_state));
    assert_eq!((s.tamper(), s.nonce()), (None, 10));
}

#[test]
fn an_item_shorter_than_its_key_fails_closed_instead_of_panicking() {
    // Found by fuzzing (`fuzz/seeds/flash_store-short-map-item`): an item
    // whose stored length is below the 4-byte key made sequential-storage
    // 8.0.2 slice out of bounds while the store opened: a panic at boot.
    // The crate's own key-less map writes such items (0–3 bytes, valid
    // CRCs), on a used board and on a blank one.
    type KeylessMap = MapStorage<(), CutFlash, Cache<Uncached, Uncached, Uncached, ()>>;
    for (len, flash) in (0..4).flat_map(|len| [(len, base()), (len, CutFlash::new())]) {
        let config = MapConfig::try_new(0..(PAGE * PAGES) as u32).unwrap();
        let mut map = KeylessMap::new(flash, config, Cache::new_uncached());
        let mut buf = [0u8; 64];
        block_on(map.store_item(&mut buf, &(), &&[0x06, 0, 0][..len])).unwrap();
        let s = open(map.destroy().0);
        assert_eq!(s.tamper(), Some(Tamper::Malformed), "{len}-byte item");
        assert_fails_closed(s, Tamper::Malformed);
    }
}

/// A counter outside the flash, shared between "reboots".
#[derive(Clone, Default)]
struct SharedCounter(std::rc::Rc<std::cell::Cell<u32>>);

impl MonotonicCounter for SharedCounter {
    fn value(&mut self) -> Result<u32, CounterError> {
        Ok(self.0.get())
    }
    fn advance_to(&mut self, value: u32) -> Result<(), CounterError> {
        self.0.set(self.0.get().max(value));
        Ok(())
    }
}

fn open_counted(
    flash: CutFlash,
    counter: &SharedCounter,
) -> FlashStore<CutFlash, 16, SharedCounter> {
    FlashStore::open_with_counter(
        flash,
        0..(PAGE * PAGES) as u32,
        MODEL,
        &InsecureTestKey,
        counter.clone(),
    )
    .unwrap()
}

#[test]
fn a_monotonic_counter_catches_an_older_flash_image() {
    let counter = SharedCounter::default();
    let mut s = open_counted(CutFlash::new(), &counter);
    s.set_site_key(Some([5; 32])).unwrap();
    s.set_nonce(3).unwrap();
    let image = s.into_flash();
    let seen = counter.0.get();
    let mut s = open_counted(image.clone(), &counter);
    assert_eq!(s.tamper(), None);
    s.set_nonce(4).unwrap();
    assert!(counter.0.get() > seen);
    // The whole older image back: without the counter nothing tells.
    assert_eq!(open(image.clone()).tamper(), None);
    let s = open_counted(image.clone(), &counter);
    assert_eq!(
        (s.tamper(), s.threshold()),
        (
            Some(Tamper::RolledBack),
            facegate_core::matcher::FACTORY_THRESHOLD
        )
    );
    // An erased flash under a counter past zero is not a new board either.
    assert_eq!(
        open_counted(CutFlash::new(), &counter).tamper(),
        Some(Tamper::MissingState)
    );
    // A cut after a state write, before the counter moved: it catches up.
    let behind = SharedCounter::default();
    behind.0.set(seen - 1);
    assert_eq!(open_counted(image, &behind).tamper(), None);
    assert_eq!(behind.0.get(), seen);
}
