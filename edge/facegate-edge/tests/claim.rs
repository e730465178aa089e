//! Issue 25 #10 on the Linux door: started with an installer's public key
//! (`--claim-key`), the board refuses a plain claim and one signed for
//! another board, and takes the claim its installer signed for it.

mod common;

use common::Door;
use ed25519_dalek::SigningKey;
use facegate_core::protocol::ErrorCode;
use facegate_link::{LinkError, claim_token};

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
    let (door, mut board) = Door::boot(&dir.path().join("state"), |c| c.claim_key = Some(pub_file));
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
    door.stop();
}
