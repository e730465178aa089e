//! The `.fgm` model blob: any bytes either parse (structure fully checked,
//! so no later run can panic) or give a typed error. The fuzzer's inputs
//! are shorter than a real blob, so the header's total length is set to the
//! input's own and the CRC is skipped: the structural checks behind them
//! are what is fuzzed. The CRC-checked parse runs on the raw bytes too.
//! A blob that parses is also run (on a blank image, when its arena and
//! input are of a size a test can afford): parsing promises that no run can
//! panic.
#![no_main]

use facegate_core::engine::Model;
use libfuzzer_sys::fuzz_target;

/// Where the header keeps the blob's total length (`engine/blob.rs`).
const TOTAL_AT: usize = 8;

fuzz_target!(|data: &[u8]| {
    let _ = Model::parse(data);
    let mut bytes = data.to_vec();
    if let (Some(total), Ok(len)) = (
        bytes.get_mut(TOTAL_AT..TOTAL_AT + 4),
        u32::try_from(data.len()),
    ) {
        total.copy_from_slice(&len.to_le_bytes());
    }
    if let Ok(m) = Model::parse_intact(&bytes) {
        let (h, w) = m.input_size();
        if m.arena_len() <= 4 << 20 && h * w <= 1 << 18 {
            let mut arena = vec![0i8; m.arena_len()];
            let _ = m.run(&vec![0u8; h * w * 3], &mut arena);
        }
    }
});
