//! First boot of an edge board (issue 25 #9 and #12): each state folder
//! gets its own device id (never `/etc/machine-id`, which every board
//! flashed from one image shares), kept across restarts; files made at first
//! boot appear whole or not at all.

use std::io::Write as _;

use facegate_edge::door_app::device_id;
use facegate_edge::file_flash::{FileFlash, PAGE, create_atomically};

#[test]
fn two_boards_get_different_ids_and_each_keeps_its_own() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id_a = device_id(None, a.path()).unwrap();
    let id_b = device_id(None, b.path()).unwrap();
    // On a machine with a hardware serial both would be that serial; the
    // test machines have none, so these are the random per-board ids.
    if std::path::Path::new("/sys/firmware/devicetree/base/serial-number").exists() {
        assert_eq!(id_a, id_b);
        return;
    }
    assert_ne!(id_a, id_b, "two boards on one image share an id");
    assert_eq!(
        device_id(None, a.path()).unwrap(),
        id_a,
        "the id changed on restart"
    );
    if let Ok(machine) = std::fs::read_to_string("/etc/machine-id") {
        let m: Vec<u8> = machine.trim().bytes().take(16).collect();
        assert_ne!(&id_a[..m.len()], &m[..], "the id is still the machine id");
    }
    // An explicit id wins; a damaged id file is refused, never replaced.
    assert_eq!(
        &device_id(Some("door-7"), a.path()).unwrap()[..6],
        b"door-7"
    );
    std::fs::write(a.path().join("device.id"), "").unwrap();
    let e = device_id(None, a.path()).unwrap_err().to_string();
    assert!(e.contains("device.id is damaged"), "{e}");
}

#[test]
fn a_cut_while_creating_leaves_no_half_file_and_the_next_boot_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.bin");
    // The power goes half way through writing the erased image.
    let cut = create_atomically(&path, 0o600, |f| {
        f.write_all(&vec![0xFF; 3 * PAGE])?;
        Err(std::io::Error::other("power cut"))
    });
    assert!(cut.is_err());
    assert!(!path.exists(), "a half-written image is in place");
    // A stale temporary file from a cut is no obstacle either.
    std::fs::write(dir.path().join("store.bin.tmp"), [0u8; 10]).unwrap();
    let flash = FileFlash::open(&path, 8).unwrap();
    drop(flash);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), (8 * PAGE) as u64);
    assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0xFF));
}
