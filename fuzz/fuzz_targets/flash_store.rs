//! The flash store and audit log opened on arbitrary flash contents (a
//! damaged chip, an attacker's image): opening either succeeds or gives a
//! typed error; an opened store answers, matches and takes writes without
//! panicking, and never reports a threshold outside (0, 1].
#![no_main]

use facegate_core::audit::FlashAuditLog;
use facegate_core::flash_store::{FlashStore, InsecureTestKey};
use facegate_core::protocol::device::{DoorStore, StoredPerson};
use facegate_core::{Embedding, PersonId, Template};
use libfuzzer_sys::fuzz_target;

#[path = "../src/ram_flash.rs"]
mod ram_flash;
use ram_flash::{PAGE, PAGES, RamFlash};

fuzz_target!(|data: &[u8]| {
    let mut image = vec![0xFF; PAGE * PAGES];
    let n = data.len().min(image.len());
    image[..n].copy_from_slice(&data[..n]);
    let range = 0..(PAGE * PAGES) as u32;

    if let Ok(mut store) = FlashStore::<_, 8>::open(
        RamFlash(image.clone()),
        range.clone(),
        facegate_core::ModelHash([0x42; 32]),
        &InsecureTestKey,
    ) {
        let t = store.threshold();
        assert!(t > 0.0 && t <= 1.0, "threshold {t}");
        let mut seen = 0usize;
        store.for_each_template(&mut |_, _| seen += 1);
        for i in 0..store.len() {
            let _ = store.entry(i);
        }
        let mut p = StoredPerson::new(PersonId(1), "fuzz").unwrap();
        let v: [f32; 128] = core::array::from_fn(|i| (i % 7) as f32 - 3.0);
        p.push_template(Template::quantize(&Embedding::normalize(v).unwrap()))
            .unwrap();
        let _ = store.enroll(&p);
        let _ = store.set_nonce(store.nonce().wrapping_add(1));
    }
    if let Ok(mut log) = FlashAuditLog::open(RamFlash(image), range) {
        let _ = log.read(&mut |_| {});
    }
});
