//! Walking-skeleton self-test: match probes against a template database
//! compiled into flash and check every decision.

use facegate_core::db::{DbError, DbReader};
use facegate_core::matcher::{Decision, Matcher, MatcherConfig};
use facegate_core::{EMBEDDING_DIM, Embedding, PersonId, Template};

/// A probe embedding and the person it must be identified as (`None`: must be rejected).
#[derive(Debug)]
pub struct Probe {
    /// Expected decision.
    pub expect: Option<PersonId>,
    /// Raw model output, normalised on the device like a real one.
    pub raw: [f32; EMBEDDING_DIM],
}

include!(concat!(env!("OUT_DIR"), "/demo_probes.rs"));

/// The demo template database (format of `facegate_core::db`).
pub static DEMO_DB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo.fgdb"));

/// Most templates a demo person has.
const SLOTS: usize = 8;
/// Policy for the demo: cosine ≥ 0.40 and 0.10 ahead of the next person.
const POLICY: MatcherConfig = MatcherConfig {
    threshold: 0.40,
    margin: Some(0.10),
};

/// Outcome of the self-test.
#[derive(Debug, Default, defmt::Format)]
pub struct Report {
    /// Checks that held.
    pub passed: u32,
    /// Checks that did not.
    pub failed: u32,
}

impl Report {
    fn check(&mut self, ok: bool) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    /// True when at least one check ran and none failed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

/// Runs the self-test, logging each decision.
pub fn run() -> Report {
    let mut report = Report::default();
    match check_matching(&mut report) {
        Ok(()) => {}
        Err(e) => {
            defmt::error!("demo database unusable: {}", e);
            report.check(false);
        }
    }
    check_damage_is_contained(&mut report);
    report
}

fn check_matching(report: &mut Report) -> Result<(), DbError> {
    let db = DbReader::<EMBEDDING_DIM>::open_for_model(DEMO_DB, &DEMO_MODEL_HASH)?;
    defmt::info!(
        "template db: {} people, {} B, header {}",
        db.len(),
        DEMO_DB.len(),
        db.header_health()
    );
    // Views are checked once; the gallery below borrows straight from flash.
    let mut people: heapless::Vec<_, 16> = heapless::Vec::new();
    for rec in db.records() {
        let rec = rec?;
        defmt::info!(
            "  person {} '{}': {} templates",
            rec.id().0,
            rec.name(),
            rec.template_count()
        );
        if people.push(rec.to_record::<SLOTS>()?).is_err() {
            defmt::warn!("demo gallery full; ignoring the rest");
            break;
        }
    }
    let matcher = Matcher::new(POLICY).map_err(|_| DbError::BadGeometry)?;
    let gallery = || {
        people
            .iter()
            .flat_map(|p| p.templates.iter().map(move |t| (p.id, t)))
    };

    for (i, probe) in PROBES.iter().enumerate() {
        let Ok(embedding) = Embedding::normalize(probe.raw) else {
            defmt::error!("probe {}: not a valid embedding", i);
            report.check(false);
            continue;
        };
        let q = Template::quantize(&embedding);
        let decision = matcher.identify(&q, gallery());
        let ok = decision.accepted() == probe.expect;
        match decision {
            Decision::Accept(c) => {
                defmt::info!("probe {}: ACCEPT person {} score {}", i, c.id.0, c.score)
            }
            Decision::Reject { reason, best } => {
                defmt::info!("probe {}: REJECT {} (best {})", i, reason, best)
            }
        }
        if !ok {
            defmt::error!(
                "probe {}: expected {}, got {}",
                i,
                probe.expect,
                decision.accepted()
            );
        }
        report.check(ok);

        // 1:1: the probe against its claimed person only.
        if let Some(claimed) = probe.expect {
            if let Some(p) = people.iter().find(|p| p.id == claimed) {
                let v = matcher.verify(&q, claimed, p.templates.iter());
                report.check(v.accepted() == Some(claimed));
            }
        }
    }
    Ok(())
}

/// Flips one byte of a RAM copy of the database: only that record may fail, with a CRC error.
fn check_damage_is_contained(report: &mut Report) {
    let mut copy = [0u8; 4096];
    let Some(dst) = copy.get_mut(..DEMO_DB.len()) else {
        defmt::error!("demo db larger than the scratch buffer");
        report.check(false);
        return;
    };
    dst.copy_from_slice(DEMO_DB);
    let Ok(clean) = DbReader::<EMBEDDING_DIM>::open(DEMO_DB) else {
        report.check(false);
        return;
    };
    let target = 1;
    let at = 2 * facegate_core::db::HEADER_LEN + target * clean.header().record_size() + 50;
    if let Some(b) = dst.get_mut(at) {
        *b ^= 0x40;
    }
    let Ok(damaged) = DbReader::<EMBEDDING_DIM>::open(dst) else {
        report.check(false);
        return;
    };
    let mut ok = true;
    for (i, rec) in damaged.records().enumerate() {
        let expect_damaged = i == target;
        match rec {
            Err(DbError::RecordCrc { index }) if expect_damaged && index as usize == i => {}
            Ok(_) if !expect_damaged => {}
            other => {
                defmt::error!("record {}: unexpected {}", i, other.map(|r| r.id().0));
                ok = false;
            }
        }
    }
    defmt::info!(
        "damaged record {} detected by CRC, others intact: {}",
        target,
        ok
    );
    report.check(ok);
}
