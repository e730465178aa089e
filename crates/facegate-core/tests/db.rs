//! Template database: round trip, damage detection, and no panics on arbitrary bytes.

use facegate_core::db::{
    DbError, DbReader, DbWriter, HEADER_LEN, HeaderHealth, PersonRecord, record_size,
};
use facegate_core::{Embedding, ModelHash, PersonId, Template};
use proptest::prelude::*;

const D: usize = 128;
const SLOTS: u8 = 5;
const MODEL: ModelHash = ModelHash([0xA5; 32]);

/// Deterministic pseudo-random unit template (xorshift; no test depends on a global RNG).
fn template(seed: u32) -> Template<D> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    let v: [f32; D] = core::array::from_fn(|_| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s as f32 / u32::MAX as f32) - 0.5
    });
    Template::quantize(&Embedding::normalize(v).unwrap())
}

fn people() -> Vec<PersonRecord<D, 5>> {
    let names = [
        "Ada Lovelace",
        "Grace Hopper",
        "Émilie du Châtelet",
        "",
        "Hedy Lamarr",
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let i = u32::try_from(i).unwrap();
            let mut p = PersonRecord::new(PersonId(100 + i), name).unwrap();
            // 1..=5 templates, so partially filled records are covered too.
            for k in 0..=i {
                p.push_template(template(i * 10 + k)).unwrap();
            }
            p
        })
        .collect()
}

fn encode(people: &[PersonRecord<D, 5>]) -> Vec<u8> {
    let mut buf = vec![0u8; 2 * HEADER_LEN + people.len() * record_size(D, SLOTS.into())];
    let mut w = DbWriter::<D>::new(&mut buf, MODEL, SLOTS).unwrap();
    for p in people {
        w.push(p).unwrap();
    }
    let n = w.finish();
    assert_eq!(n, buf.len());
    buf
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Result<PersonRecord<D, 5>, DbError>>, DbError> {
    let r = DbReader::<D>::open(bytes)?;
    Ok(r.records().map(|v| v.and_then(|v| v.to_record())).collect())
}

#[test]
fn round_trip() {
    let ps = people();
    let bytes = encode(&ps);
    let r = DbReader::<D>::open_for_model(&bytes, &MODEL).unwrap();
    assert_eq!(r.header_health(), HeaderHealth::Intact);
    assert_eq!(r.len(), 5);
    let back: Vec<_> = decode_all(&bytes)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, ps);
    assert_eq!(r.record(2).unwrap().name(), "Émilie du Châtelet");
    assert_eq!(r.record(5).unwrap_err(), DbError::NoSuchRecord);
}

#[test]
fn empty_database_round_trips() {
    let bytes = encode(&[]);
    assert_eq!(bytes.len(), 2 * HEADER_LEN);
    assert!(DbReader::<D>::open(&bytes).unwrap().is_empty());
}

#[test]
fn every_single_byte_flip_is_detected_and_contained() {
    let ps = people();
    let clean = encode(&ps);
    let rs = record_size(D, SLOTS.into());
    let mut flips = 0;
    for pos in 0..clean.len() {
        for mask in [0x01u8, 0x80, 0xFF, 0x5A] {
            let mut bytes = clean.clone();
            bytes[pos] ^= mask;
            flips += 1;
            let r = DbReader::<D>::open(&bytes).unwrap_or_else(|e| panic!("flip at {pos}: {e}"));
            if pos < 2 * HEADER_LEN {
                // Header damage: detected, the other copy is used, all records intact.
                let expect = if pos < HEADER_LEN {
                    HeaderHealth::PrimaryDamaged
                } else {
                    HeaderHealth::BackupDamaged
                };
                assert_eq!(r.header_health(), expect, "flip at {pos}");
                let back: Vec<_> = decode_all(&bytes)
                    .unwrap()
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(back, ps);
            } else {
                let damaged = u32::try_from((pos - 2 * HEADER_LEN) / rs).unwrap();
                assert_eq!(r.header_health(), HeaderHealth::Intact);
                for (i, rec) in decode_all(&bytes).unwrap().into_iter().enumerate() {
                    if i as u32 == damaged {
                        assert_eq!(
                            rec,
                            Err(DbError::RecordCrc { index: damaged }),
                            "flip at {pos}"
                        );
                    } else {
                        assert_eq!(rec.as_ref(), Ok(&ps[i]), "flip at {pos} hurt record {i}");
                    }
                }
            }
        }
    }
    assert_eq!(flips, clean.len() * 4);
}

#[test]
fn both_headers_damaged_is_an_error() {
    let mut bytes = encode(&people());
    bytes[20] ^= 1;
    bytes[HEADER_LEN + 20] ^= 1;
    assert_eq!(DbReader::<D>::open(&bytes).unwrap_err(), DbError::HeaderCrc);
    bytes[0] = b'X';
    bytes[HEADER_LEN] = b'X';
    assert_eq!(DbReader::<D>::open(&bytes).unwrap_err(), DbError::BadMagic);
    assert_eq!(DbReader::<D>::open(b"FGDB").unwrap_err(), DbError::TooShort);
}

#[test]
fn wrong_model_and_width_are_refused() {
    let bytes = encode(&people());
    let other = ModelHash([0x5A; 32]);
    assert_eq!(
        DbReader::<D>::open_for_model(&bytes, &other).unwrap_err(),
        DbError::ModelMismatch { found: MODEL }
    );
    assert_eq!(
        DbReader::<64>::open(&bytes).unwrap_err(),
        DbError::DimensionMismatch {
            expected: 64,
            found: 128
        }
    );
}

#[test]
fn truncation_loses_only_the_cut_records() {
    let ps = people();
    let bytes = encode(&ps);
    let cut = &bytes[..bytes.len() - 10];
    let recs = decode_all(cut).unwrap();
    assert_eq!(
        recs[..4]
            .iter()
            .cloned()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        ps[..4]
    );
    assert_eq!(recs[4], Err(DbError::RecordTruncated { index: 4 }));
}

#[test]
fn writer_capacity_errors_keep_what_was_written() {
    let ps = people();
    let rs = record_size(D, SLOTS.into());
    let mut buf = vec![0u8; 2 * HEADER_LEN + 2 * rs + rs / 2];
    let mut w = DbWriter::<D>::new(&mut buf, MODEL, SLOTS).unwrap();
    w.push(&ps[0]).unwrap();
    w.push(&ps[1]).unwrap();
    assert_eq!(w.push(&ps[2]), Err(DbError::BufferFull));
    let n = w.finish();
    let back: Vec<_> = decode_all(&buf[..n])
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, ps[..2]);

    let mut small = vec![0u8; 4096];
    let mut w = DbWriter::<D>::new(&mut small, MODEL, 2).unwrap();
    assert_eq!(w.push(&ps[4]), Err(DbError::TooManyTemplates));
    assert!(w.is_empty());
    assert_eq!(
        DbWriter::<D>::new(&mut small, MODEL, 0).unwrap_err(),
        DbError::TooManyTemplates
    );
    assert_eq!(
        DbWriter::<D>::new(&mut [0u8; 10], MODEL, 1).unwrap_err(),
        DbError::BufferFull
    );

    let long = "x".repeat(33);
    assert_eq!(
        PersonRecord::<D, 5>::new(PersonId(1), &long).unwrap_err(),
        DbError::NameTooLong
    );
    let mut p = PersonRecord::<D, 1>::new(PersonId(1), "one").unwrap();
    p.push_template(template(1)).unwrap();
    assert_eq!(p.push_template(template(2)), Err(DbError::TooManyTemplates));
    // A stored record with more templates than the caller's type holds is a capacity error, not a panic.
    let bytes = encode(&ps);
    let r = DbReader::<D>::open(&bytes).unwrap();
    assert_eq!(
        r.record(4).unwrap().to_record::<2>().unwrap_err(),
        DbError::TooManyTemplates
    );
}

/// Drives the reader over bytes: any outcome is fine except a panic.
fn exercise(bytes: &[u8]) -> usize {
    let Ok(r) = DbReader::<D>::open(bytes) else {
        return 0;
    };
    let mut n = 0;
    // Bound the walk: a forged header can announce 4 G records.
    for rec in r.records().take(64).flatten() {
        n += rec.name().len() + rec.templates().count();
        let _ = rec.to_record::<8>();
    }
    n
}

// Counted runs: 20,000 arbitrary byte strings + 20,000 damaged valid databases per `cargo test`.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        exercise(&bytes);
    }

    #[test]
    fn reader_never_panics_on_damaged_databases(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in any::<prop::sample::Index>(),
        keep_crc in any::<bool>(),
    ) {
        let mut bytes = encode(&people());
        for (at, v) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *v;
        }
        if keep_crc {
            // Re-seal the header so that forged geometry (counts, sizes) reaches the record parser.
            let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes[..60]);
            bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        }
        let len = cut.index(bytes.len() + 1);
        exercise(&bytes[..len]);
    }
}
