//! The driver against a simulated W25Q-class chip that enforces the
//! protocol (write enable before program/erase, nothing while busy, page
//! wrap-around, bits only clear): random operations must leave the chip
//! exactly as a plain NOR model says, and facegate's flash store must work
//! on top of it across a "reboot".

use std::convert::Infallible;
use std::future::Future;

use embedded_hal::spi::{ErrorType, Operation, SpiDevice};
use embedded_storage_async::nor_flash::{NorFlash, ReadNorFlash};
use facegate_spi_nor::{Error, PAGE, SECTOR, SpiNor};
use proptest::prelude::*;

const SIZE: usize = 16 * SECTOR;

/// A W25Q-class chip in RAM.
struct SimChip {
    mem: Vec<u8>,
    write_enabled: bool,
    busy_polls: u32,
    stuck: bool,
    violations: Vec<String>,
}

impl SimChip {
    fn new() -> Self {
        Self {
            mem: vec![0xFF; SIZE],
            write_enabled: false,
            busy_polls: 0,
            stuck: false,
            violations: Vec::new(),
        }
    }
}

impl ErrorType for SimChip {
    type Error = Infallible;
}

impl SpiDevice for SimChip {
    fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), Infallible> {
        // Everything written, in order, then where reads go.
        let mut out: Vec<u8> = Vec::new();
        let mut reads: Vec<&mut [u8]> = Vec::new();
        for op in ops.iter_mut() {
            match op {
                Operation::Write(w) => out.extend_from_slice(w),
                Operation::Read(r) => reads.push(r),
                _ => self.violations.push("unexpected operation".into()),
            }
        }
        let Some((&cmd, rest)) = out.split_first() else {
            self.violations.push("empty transaction".into());
            return Ok(());
        };
        let addr = |r: &[u8]| {
            (usize::from(r[0]) << 16 | usize::from(r[1]) << 8 | usize::from(r[2])) % SIZE
        };
        if cmd != 0x05 && self.busy_polls > 0 {
            self.violations
                .push(format!("command {cmd:#04x} while busy"));
        }
        match cmd {
            0x9F => reads[0].copy_from_slice(&[0xEF, 0x40, 0x18]),
            0x06 => self.write_enabled = true,
            0x05 => {
                let busy = self.stuck || self.busy_polls > 0;
                self.busy_polls = self.busy_polls.saturating_sub(1);
                reads[0][0] = u8::from(busy) | (u8::from(self.write_enabled) << 1);
            }
            0x03 => {
                let a = addr(rest);
                for (i, b) in reads[0].iter_mut().enumerate() {
                    *b = self.mem[(a + i) % SIZE];
                }
            }
            0x02 => {
                if !std::mem::take(&mut self.write_enabled) {
                    self.violations.push("program without write enable".into());
                    return Ok(());
                }
                let a = addr(rest);
                let (base, start) = (a - a % PAGE, a % PAGE);
                // Past the page end a real chip wraps to the page start.
                for (i, b) in rest[3..].iter().enumerate() {
                    self.mem[base + (start + i) % PAGE] &= b;
                }
                if start + rest.len() - 3 > PAGE {
                    self.violations
                        .push(format!("program across a page end at {a}"));
                }
                self.busy_polls = 3;
            }
            0x20 => {
                if !std::mem::take(&mut self.write_enabled) {
                    self.violations.push("erase without write enable".into());
                    return Ok(());
                }
                let a = addr(rest) / SECTOR * SECTOR;
                self.mem[a..a + SECTOR].fill(0xFF);
                self.busy_polls = 5;
            }
            other => self
                .violations
                .push(format!("unknown command {other:#04x}")),
        }
        Ok(())
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    loop {
        if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write { at: usize, bytes: Vec<u8> },
    Erase { sector: usize, count: usize },
    Read { at: usize, len: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..SIZE - 700, prop::collection::vec(any::<u8>(), 1..700))
            .prop_map(|(at, bytes)| Op::Write { at, bytes }),
        (0..15usize, 1..2usize).prop_map(|(sector, count)| Op::Erase { sector, count }),
        (0..SIZE - 900, 1..900usize).prop_map(|(at, len)| Op::Read { at, len }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_operations_match_a_plain_nor_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut flash = SpiNor::new(SimChip::new(), SIZE as u32).unwrap();
        let mut model = vec![0xFFu8; SIZE];
        for op in &ops {
            match op {
                Op::Write { at, bytes } => {
                    block_on(flash.write(*at as u32, bytes)).unwrap();
                    for (m, b) in model[*at..].iter_mut().zip(bytes) {
                        *m &= b;
                    }
                }
                Op::Erase { sector, count } => {
                    let (from, to) = (sector * SECTOR, (sector + count) * SECTOR);
                    block_on(flash.erase(from as u32, to as u32)).unwrap();
                    model[from..to].fill(0xFF);
                }
                Op::Read { at, len } => {
                    let mut got = vec![0u8; *len];
                    block_on(flash.read(*at as u32, &mut got)).unwrap();
                    prop_assert_eq!(&got[..], &model[*at..at + len]);
                }
            }
        }
        let chip = flash.release();
        prop_assert!(chip.violations.is_empty(), "{:?}", chip.violations);
        prop_assert!(chip.mem == model);
    }
}

#[test]
fn identity_bounds_and_a_stuck_chip() {
    let mut flash = SpiNor::new(SimChip::new(), SIZE as u32).unwrap();
    assert_eq!(flash.jedec_id().unwrap(), [0xEF, 0x40, 0x18]);
    assert_eq!(flash.capacity(), SIZE);
    assert_eq!(
        block_on(flash.write(SIZE as u32 - 2, &[0; 4])),
        Err(Error::OutOfBounds)
    );
    assert_eq!(block_on(flash.erase(100, 4096)), Err(Error::NotAligned));
    assert_eq!(
        block_on(flash.erase(0, SIZE as u32 + 4096)),
        Err(Error::OutOfBounds)
    );
    assert!(SpiNor::new(SimChip::new(), 1000).is_err());
    // A chip that never finishes: a typed error, not a hang.
    let mut chip = flash.release();
    chip.stuck = true;
    let mut flash = SpiNor::new(chip, SIZE as u32).unwrap();
    assert_eq!(block_on(flash.erase(0, 4096)), Err(Error::Timeout));
}

#[test]
fn the_door_store_and_audit_log_share_it_across_a_reboot() {
    use std::cell::RefCell;

    use facegate_core::audit::FlashAuditLog;
    use facegate_core::door::{AuditEvent, AuditLog, Outcome};
    use facegate_core::flash_store::{FlashStore, InsecureTestKey};
    use facegate_core::protocol::device::{DoorStore, StoredPerson};
    use facegate_core::{Embedding, ModelHash, PersonId, Template};
    use facegate_spi_nor::partition::Partition;

    let model = ModelHash([1; 32]);
    // The store in the first 12 sectors, the audit log in the last 4: one chip.
    let store_range = 0..12 * SECTOR as u32;
    let audit_range = 12 * SECTOR as u32..SIZE as u32;
    let log_range = 0..4 * SECTOR as u32;
    let chip = RefCell::new(SpiNor::new(SimChip::new(), SIZE as u32).unwrap());
    assert!(Partition::new(&chip, 100..4096).is_none(), "unaligned");
    let mut audit = FlashAuditLog::open(
        Partition::new(&chip, audit_range.clone()).unwrap(),
        log_range.clone(),
    )
    .unwrap();
    let mut store = FlashStore::<_, 8>::open(
        Partition::new(&chip, store_range.clone()).unwrap(),
        store_range.clone(),
        model,
        &InsecureTestKey,
    )
    .unwrap();
    for id in [4u32, 9] {
        let mut p = StoredPerson::new(PersonId(id), "someone").unwrap();
        let v: [f32; 128] = core::array::from_fn(|i| ((i as u32 * 7 + id) % 13) as f32 - 6.0);
        p.push_template(Template::quantize(&Embedding::normalize(v).unwrap()))
            .unwrap();
        assert!(store.enroll(&p).unwrap());
        audit.record(AuditEvent {
            time_ms: u64::from(id),
            outcome: Outcome::Rejected { best: Some(0.2) },
        });
    }
    store.set_threshold(0.61).unwrap();
    assert_eq!(audit.lost(), 0);
    drop((store, audit));

    // Reboot: a new driver on the same chip.
    let chip = chip.into_inner().release();
    assert!(chip.violations.is_empty(), "{:?}", chip.violations);
    let chip = RefCell::new(SpiNor::new(chip, SIZE as u32).unwrap());
    let store = FlashStore::<_, 8>::open(
        Partition::new(&chip, store_range.clone()).unwrap(),
        store_range,
        model,
        &InsecureTestKey,
    )
    .unwrap();
    assert_eq!((store.len(), store.threshold()), (2, 0.61));
    let mut audit =
        FlashAuditLog::open(Partition::new(&chip, audit_range).unwrap(), log_range).unwrap();
    let mut events = Vec::new();
    audit.read(&mut |e| events.push(e.time_ms)).unwrap();
    assert_eq!(events, [4, 9]);
}
