//! The template database (`.fgdb`, and each person record of the flash
//! store): any bytes either open with every record readable or give a
//! typed error, never a panic; every template read is unit-length.
#![no_main]

use facegate_core::EMBEDDING_DIM;
use facegate_core::db::DbReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(db) = DbReader::<EMBEDDING_DIM>::open(data) else {
        return;
    };
    for rec in db.records().flatten() {
        let _ = rec.name();
        assert!(rec.id().is_valid());
        for t in rec.templates() {
            let n: f32 = t.dequantize().iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-3, "template norm² {n}");
        }
    }
});
