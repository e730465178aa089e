//! The door flow with fakes: lock pulses, rejections, lockout, audit.

use std::cell::Cell;
use std::convert::Infallible;

use facegate_core::door::{AuditEvent, AuditLog, Clock, Door, Embedder, Outcome};
use facegate_core::engine::EngineError;
use facegate_core::lockout::LockoutPolicy;
use facegate_core::protocol::device::{DoorStore, RamStore, StoredPerson};
use facegate_core::{Embedding, PersonId, Template};

/// Records every level the lock relay was driven to.
#[derive(Default)]
struct FakeLock(Vec<bool>);

impl embedded_hal::digital::ErrorType for FakeLock {
    type Error = Infallible;
}

impl embedded_hal::digital::OutputPin for FakeLock {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.push(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.push(true);
        Ok(())
    }
}

struct FakeClock(Cell<u64>);

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// "Faces" are one byte: a person number; 255 makes the embedder fail.
struct FakeEmbedder;

fn direction(k: u8) -> [f32; 128] {
    core::array::from_fn(|i| {
        if i == usize::from(k) {
            1.0
        } else {
            0.01 * ((i * 7 + usize::from(k)) % 5) as f32
        }
    })
}

impl Embedder for FakeEmbedder {
    fn embed(&mut self, face: &[u8], out: &mut [f32]) -> Result<(), EngineError> {
        match face.first() {
            Some(255) | None => Err(EngineError::InputSize {
                expected: 1,
                found: 0,
            }),
            Some(&k) => {
                out.copy_from_slice(&direction(k));
                Ok(())
            }
        }
    }
}

#[derive(Default)]
struct Log(Vec<AuditEvent>);

impl AuditLog for Log {
    fn record(&mut self, e: AuditEvent) {
        self.0.push(e);
    }
}

fn store() -> RamStore<8> {
    let mut s = RamStore::<8>::default();
    for k in [1u8, 2] {
        let mut p = StoredPerson::new(PersonId(u32::from(k) * 100), "p").unwrap();
        p.push_template(Template::quantize(
            &Embedding::normalize(direction(k)).unwrap(),
        ))
        .unwrap();
        assert!(s.enroll(&p).unwrap());
    }
    s.threshold = 0.8;
    s.unlock_ms = 2_000;
    s
}

#[test]
fn enrolled_face_pulses_the_lock_for_the_unlock_time() {
    let mut s = store();
    let clock = FakeClock(Cell::new(10_000));
    let mut door = Door::new(FakeLock::default(), LockoutPolicy::default(), Some(0.1));
    let mut log = Log::default();
    let out = door.present_face(&[2], &mut FakeEmbedder, &mut s, &clock, &mut log);
    assert!(
        matches!(out, Outcome::Unlocked { id: PersonId(200), score } if score > 0.99),
        "{out:?}"
    );
    assert!(door.is_open());
    clock.0.set(11_999);
    door.poll(&clock);
    assert!(door.is_open());
    clock.0.set(12_000);
    door.poll(&clock);
    assert!(!door.is_open());
    assert_eq!(
        log.0,
        [AuditEvent {
            time_ms: 10_000,
            outcome: out
        }]
    );
}

#[test]
fn unknown_face_and_faults_never_open() {
    let mut s = store();
    let clock = FakeClock(Cell::new(0));
    let mut door = Door::new(FakeLock::default(), LockoutPolicy::default(), None);
    let mut log = Log::default();
    assert!(
        matches!(door.present_face(&[7], &mut FakeEmbedder, &mut s, &clock, &mut log), Outcome::Rejected { best: Some(b) } if b < 0.5)
    );
    assert_eq!(
        door.present_face(&[255], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Fault
    );
    assert!(!door.is_open());
    assert_eq!(log.0.len(), 2);
    let mut empty = RamStore::<8>::default();
    assert_eq!(
        door.present_face(&[1], &mut FakeEmbedder, &mut empty, &clock, &mut log),
        Outcome::Rejected { best: None }
    );
}

#[test]
fn five_rejects_then_back_off_and_an_accept_resets() {
    let mut s = store();
    let clock = FakeClock(Cell::new(0));
    let policy = LockoutPolicy {
        free_attempts: 5,
        base_ms: 1_000,
        max_ms: 60_000,
    };
    let mut door = Door::new(FakeLock::default(), policy, None);
    let mut log = Log::default();
    for _ in 0..5 {
        assert!(matches!(
            door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
            Outcome::Rejected { .. }
        ));
    }
    // The 5th reject armed no delay yet; the 6th does.
    assert!(matches!(
        door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Rejected { .. }
    ));
    // Even the right face must wait now.
    assert_eq!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::LockedOut { wait_ms: 1_000 }
    );
    clock.0.set(1_000);
    assert!(matches!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Unlocked { .. }
    ));
    // Counting starts over after an accept.
    assert!(matches!(
        door.present_face(&[9], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Rejected { .. }
    ));
    assert!(matches!(
        door.present_face(&[1], &mut FakeEmbedder, &mut s, &clock, &mut log),
        Outcome::Unlocked { .. }
    ));
    assert_eq!(log.0.len(), 10);
}
