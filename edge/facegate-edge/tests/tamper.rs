//! Issue 25 #5 on the Linux door: someone with the SD card rewrites the
//! store's state record (a threshold that lets everyone in, their own site
//! key) with a valid map item. The door boots, says it is tampered, opens
//! for no one and refuses every request but `Info`.

mod common;

use common::Door;
use ed25519_dalek::SigningKey;
use facegate_core::flash_store::block_on;
use facegate_core::matcher::FACTORY_THRESHOLD;
use facegate_core::protocol::ErrorCode;
use facegate_edge::door_app::STORE_PAGES;
use facegate_edge::file_flash::{FileFlash, PAGE};
use facegate_link::LinkError;
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};

/// The map key of the state record (`flash_store`).
const KEY_STATE: u32 = 6;

#[test]
fn a_rewritten_state_record_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let site = SigningKey::from_bytes(&[6; 32]).verifying_key();
    let (door, mut board) = Door::boot(&state, |_| {});
    board.claim(&site, &[]).unwrap();
    assert!(!board.info().unwrap().tampered);
    door.stop();

    // The attacker's state: the last one with another threshold and key.
    let flash = FileFlash::open(&state.join("store.bin"), STORE_PAGES).unwrap();
    let config = MapConfig::try_new(0..u32::try_from(STORE_PAGES * PAGE).unwrap()).unwrap();
    let mut map: MapStorage<u32, _, Cache<Uncached, Uncached, Uncached, u32>> =
        MapStorage::new(flash, config, Cache::new_uncached());
    let mut buf = [0u8; 4096];
    let mut record = block_on(map.fetch_item::<&[u8]>(&mut buf, &KEY_STATE))
        .unwrap()
        .expect("a state record")
        .to_vec();
    record[20..24].copy_from_slice(&0.01f32.to_bits().to_le_bytes());
    record[29..61].copy_from_slice(&[9; 32]);
    block_on(map.store_item(&mut buf, &KEY_STATE, &record.as_slice())).unwrap();
    drop(map);

    let (door, mut board) = Door::boot(&state, |_| {});
    let info = board.info().unwrap();
    assert!(info.tampered);
    assert_eq!(info.threshold, FACTORY_THRESHOLD);
    let attacker = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(matches!(
        board.claim(&attacker, &[]),
        Err(LinkError::Refused(ErrorCode::Tampered))
    ));
    door.stop();
}
