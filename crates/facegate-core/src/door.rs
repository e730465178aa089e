//! The door: face → embedding → 1:N match → decision → lock pulse → audit
//! event, with lockout. Generic over embedded-hal's `OutputPin` for the lock
//! relay and small traits for the rest, so the same code runs on every
//! board and in host tests with fakes.

use embedded_hal::digital::OutputPin;

use crate::engine::{EngineError, Model};
use crate::lockout::{Lockout, LockoutPolicy};
use crate::matcher::{Decision, Matcher, MatcherConfig, PersonId, TopTwo};
use crate::protocol::device::DoorStore;
use crate::template::Template;
use crate::{EMBEDDING_DIM, Embedding};

/// Milliseconds since boot.
pub trait Clock {
    /// Now.
    fn now_ms(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Turns an aligned face crop into a raw embedding.
pub trait Embedder {
    /// Embeds `face` (112×112 RGB) into `out`.
    fn embed(&mut self, face: &[u8], out: &mut [f32]) -> Result<(), EngineError>;
    /// Working memory the face detector may borrow between embeddings (the
    /// engine's arena: detection and embedding never run at once), or
    /// `None` when this embedder has none to lend.
    fn lend_arena(&mut self) -> Option<&mut [i8]> {
        None
    }
}

/// facegate's int8 engine with its arena.
#[derive(Debug)]
pub struct EngineEmbedder<'m, 'a> {
    /// The parsed model blob.
    pub model: Model<'m>,
    /// Its arena.
    pub arena: &'a mut [i8],
}

impl Embedder for EngineEmbedder<'_, '_> {
    fn embed(&mut self, face: &[u8], out: &mut [f32]) -> Result<(), EngineError> {
        self.model.embed(face, self.arena, out)
    }
    fn lend_arena(&mut self) -> Option<&mut [i8]> {
        Some(self.arena)
    }
}

/// What was decided, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// Accepted: the lock was pulsed.
    Unlocked {
        /// Who.
        id: PersonId,
        /// Score.
        score: f32,
    },
    /// Rejected (unknown face, below threshold, ambiguous).
    Rejected {
        /// Best score, if anyone is enrolled.
        best: Option<f32>,
    },
    /// Not tried: locked out after repeated rejects.
    LockedOut {
        /// Milliseconds until the next attempt.
        wait_ms: u64,
    },
    /// The embedder or lock failed.
    Fault,
}

/// One audit event.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AuditEvent {
    /// When.
    pub time_ms: u64,
    /// What.
    pub outcome: Outcome,
}

/// Where audit events go (a bounded log in flash on boards).
pub trait AuditLog {
    /// Appends an event; a full log drops its oldest events.
    fn record(&mut self, event: AuditEvent);
}

/// The door controller.
#[derive(Debug)]
pub struct Door<L: OutputPin> {
    lock: L,
    open_until: Option<u64>,
    lockout: Lockout,
    /// Whether the lockout count was read back from the store yet.
    lockout_restored: bool,
    policy: LockoutPolicy,
    margin: Option<f32>,
    /// Whether the last outcome was `LockedOut` (and logged): the attempts
    /// that follow inside the same wait are refused without a log entry, so
    /// someone at the camera cannot flood the log until it forgets.
    locked_out_logged: bool,
}

impl<L: OutputPin> Door<L> {
    /// A closed door.
    pub fn new(mut lock: L, policy: LockoutPolicy, margin: Option<f32>) -> Self {
        // A relay that cannot be driven low is reported on the first attempt.
        let _ = lock.set_low();
        Self {
            lock,
            open_until: None,
            lockout: Lockout::default(),
            lockout_restored: false,
            policy,
            margin,
            locked_out_logged: false,
        }
    }

    /// Whether the lock is currently released.
    pub const fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// Closes the lock once its pulse has elapsed; call regularly.
    pub fn poll(&mut self, clock: &dyn Clock) {
        if self.open_until.is_some_and(|t| clock.now_ms() >= t) && self.lock.set_low().is_ok() {
            self.open_until = None;
        }
    }

    /// Handles one face: decides, pulses the lock, records the event.
    pub fn present_face<S: DoorStore, E: Embedder, A: AuditLog>(
        &mut self,
        face: &[u8],
        embedder: &mut E,
        store: &mut S,
        clock: &dyn Clock,
        audit: &mut A,
    ) -> Outcome {
        let now = clock.now_ms();
        let outcome = self.decide(face, embedder, store, now);
        let locked_out = matches!(outcome, Outcome::LockedOut { .. });
        // One entry per wait: a presenter adds at most two events per
        // lockout period (the judged reject and the first refusal).
        if !(locked_out && self.locked_out_logged) {
            audit.record(AuditEvent {
                time_ms: now,
                outcome,
            });
        }
        self.locked_out_logged = locked_out;
        outcome
    }

    fn decide<S: DoorStore, E: Embedder>(
        &mut self,
        face: &[u8],
        embedder: &mut E,
        store: &mut S,
        now: u64,
    ) -> Outcome {
        if !self.lockout_restored {
            // The count survives restarts: a power cycle is not a free retry.
            self.lockout = Lockout::restore(&self.policy, store.lockout_rejects(), now);
            self.lockout_restored = true;
        }
        if let Err(wait_ms) = self.lockout.check(now) {
            return Outcome::LockedOut { wait_ms };
        }
        // The attempt is stored as a reject before it is judged, so a power
        // cut timed to the decision cannot take it back; an accept clears it.
        if store
            .set_lockout_rejects(self.lockout.rejects().saturating_add(1))
            .is_err()
        {
            return Outcome::Fault;
        }
        let mut raw = [0.0f32; EMBEDDING_DIM];
        if embedder.embed(face, &mut raw).is_err() {
            return Outcome::Fault;
        }
        let Ok(probe) = Embedding::normalize(raw) else {
            return Outcome::Fault;
        };
        let probe = Template::quantize(&probe);
        let mut top = TopTwo::default();
        store.for_each_template(&mut |id, t| top.observe(id, probe.cosine(t)));
        let Ok(matcher) = Matcher::new(MatcherConfig {
            threshold: store.threshold(),
            margin: self.margin,
        }) else {
            return Outcome::Fault;
        };
        match matcher.decide(top) {
            Decision::Accept(c) => {
                self.lockout.accepted();
                // Should clearing fail, the next restart merely waits longer.
                let _ = store.set_lockout_rejects(0);
                if self.lock.set_high().is_err() {
                    return Outcome::Fault;
                }
                self.open_until = Some(now.saturating_add(u64::from(store.unlock_ms())));
                Outcome::Unlocked {
                    id: c.id,
                    score: c.score,
                }
            }
            Decision::Reject { best, .. } => {
                self.lockout.rejected(&self.policy, now);
                Outcome::Rejected {
                    best: best.map(|c| c.score),
                }
            }
        }
    }
}
