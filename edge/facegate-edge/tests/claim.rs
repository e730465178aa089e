//! Issue 25 #10 on the Linux door: started with an installer's public key
//! (`--claim-key`), the board refuses a plain claim and one signed for
//! another board, and takes the claim its installer signed for it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use facegate_core::protocol::ErrorCode;
use facegate_edge::door_app::{ServeConfig, serve};
use facegate_link::{Board, LinkError, claim_token};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn only_the_installers_token_claims_the_board() {
    let dir = tempfile::tempdir().unwrap();
    let installer = SigningKey::from_bytes(&[5; 32]);
    let pub_file = dir.path().join("installer.key.pub");
    let hex: String = installer
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&pub_file, format!("{hex}\n")).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = ServeConfig {
        model: repo().join("models/nano.onnx"),
        blob: repo().join("models/nano.fgm"),
        state: dir.path().join("state"),
        port: format!("tcp:127.0.0.1:{port}"),
        faces: None,
        camera: None,
        device_id: Some("edge-claim-test".into()),
        gpio: None,
        claim_key: Some(pub_file),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let door = std::thread::spawn(move || serve(&config, &flag));
    let started = Instant::now();
    let mut board = loop {
        if let Ok(b) = Board::connect(&format!("tcp:127.0.0.1:{port}")) {
            break b;
        }
        assert!(!door.is_finished(), "the edge runtime stopped at start-up");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "edge never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let info = board.info().unwrap();
    assert!(info.claim_needs_token && !info.claimed);
    let site = SigningKey::from_bytes(&[6; 32]).verifying_key();
    let refused =
        |r: Result<(), LinkError>| matches!(r, Err(LinkError::Refused(ErrorCode::BadSignature)));
    assert!(refused(board.claim(&site, &[])), "a plain claim");
    let other_board = claim_token(&installer, b"another-board-01", &site);
    assert!(
        refused(board.claim(&site, &other_board)),
        "a token for another board"
    );
    board
        .claim(&site, &claim_token(&installer, &info.device_id, &site))
        .unwrap();
    let info = board.info().unwrap();
    assert_eq!(info.site_key, Some(site.to_bytes()));
    stop.store(true, Ordering::Relaxed);
    door.join().unwrap().unwrap();
}
