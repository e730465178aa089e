//! `facegate keygen`: a usable key pair, a private file only its owner reads, no silent overwrite.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s.trim()[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn keygen_writes_a_matching_private_key_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["keygen", "--out", "site.key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_path = dir.path().join("site.key");
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let seed: [u8; 32] = unhex(&std::fs::read_to_string(&key_path).unwrap())
        .try_into()
        .unwrap();
    let public: [u8; 32] =
        unhex(&std::fs::read_to_string(dir.path().join("site.key.pub")).unwrap())
            .try_into()
            .unwrap();
    let key = SigningKey::from_bytes(&seed);
    assert_eq!(key.verifying_key().to_bytes(), public);
    let sig = key.sign(b"enroll");
    assert!(
        VerifyingKey::from_bytes(&public)
            .unwrap()
            .verify(b"enroll", &sig)
            .is_ok()
    );

    let again = run(&["keygen", "--out", "site.key"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("site.key exists"));
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        format!(
            "{}\n",
            seed.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
        .into_bytes()
    );
    let forced = run(&["keygen", "--out", "site.key", "--force"]);
    assert!(forced.status.success());
    assert_ne!(
        unhex(&std::fs::read_to_string(&key_path).unwrap()),
        seed.to_vec(),
        "a new key each time"
    );
}
