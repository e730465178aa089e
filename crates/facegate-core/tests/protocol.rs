//! The provisioning protocol: every command, every rejection path, and
//! arbitrary frames that must neither panic nor change anything.

use ed25519_dalek::{Signer, SigningKey};
use facegate_core::protocol::device::{BoardInfo, RamStore, handle};
use facegate_core::protocol::frame::{decode, encode};
use facegate_core::protocol::{
    Command, ErrorCode, Request, Response, claim_message, key_from_hex, person_digest,
    signing_message,
};
use facegate_core::{Embedding, ModelHash, Template};
use proptest::prelude::*;

const DEVICE: [u8; 16] = *b"fg-test-board-01";
const BOARD: BoardInfo<'static> = BoardInfo {
    firmware: "0.1.0",
    model_hash: ModelHash([3; 32]),
    device_id: DEVICE,
    claim_key: None,
};

fn site() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// Sends one request; returns the decoded response.
fn send(store: &mut RamStore<4>, req: &Request<'_>) -> Response<'static> {
    send_to(&BOARD, store, req)
}

/// [`send`] to the board `board`.
fn send_to(board: &BoardInfo<'_>, store: &mut RamStore<4>, req: &Request<'_>) -> Response<'static> {
    let mut frame = [0u8; 2048];
    let n = encode(req, &mut frame).unwrap();
    exchange_with(board, store, &mut frame[..n])
}

fn exchange(store: &mut RamStore<4>, frame: &mut [u8]) -> Response<'static> {
    exchange_with(&BOARD, store, frame)
}

fn exchange_with(
    board: &BoardInfo<'_>,
    store: &mut RamStore<4>,
    frame: &mut [u8],
) -> Response<'static> {
    let mut out = vec![0u8; 2048];
    let n = handle(board, store, frame, &mut out).unwrap();
    out.truncate(n);
    let out: &'static mut [u8] = Box::leak(out.into_boxed_slice());
    decode::<Response<'static>>(out).unwrap()
}

fn command_bytes(cmd: &Command<'_>) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    postcard::to_slice(cmd, &mut buf).unwrap().to_vec()
}

fn signed(key: &SigningKey, nonce: u32, cmd: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let msg = signing_message(&DEVICE, nonce, cmd, &mut buf).unwrap();
    key.sign(msg).to_bytes().to_vec()
}

fn templates(n: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..n {
        let v: [f32; 128] =
            core::array::from_fn(|i| ((i as u32 * 31 + k as u32 * 7 + seed) % 17) as f32 - 8.0);
        let t = Template::quantize(&Embedding::normalize(v).unwrap());
        out.extend(t.scale().to_le_bytes());
        out.extend(t.values().iter().map(|v| v.to_le_bytes()[0]));
    }
    out
}

/// Runs a signed command at the board's current nonce.
fn run(store: &mut RamStore<4>, key: &SigningKey, cmd: &Command<'_>) -> Response<'static> {
    let c = command_bytes(cmd);
    let nonce = store.nonce;
    let sig = signed(key, nonce, &c);
    send(
        store,
        &Request::Signed {
            nonce,
            command: &c,
            signature: &sig,
        },
    )
}

fn claimed() -> RamStore<4> {
    let mut s = RamStore::default();
    let r = send(
        &mut s,
        &Request::Claim {
            site_key: site().verifying_key().to_bytes(),
            token: &[],
        },
    );
    assert_eq!(r, Response::Ok { nonce: 0 });
    s
}

#[test]
fn info_claim_and_every_command() {
    let mut s = RamStore::<4>::default();
    let Response::Info {
        claimed: is_claimed,
        device_id,
        capacity,
        ..
    } = send(&mut s, &Request::Info)
    else {
        panic!()
    };
    assert!(!is_claimed);
    assert_eq!((device_id, capacity), (DEVICE, 4));
    let mut s = claimed();
    let key = site();
    let t = templates(3, 1);
    assert_eq!(
        run(
            &mut s,
            &key,
            &Command::Enroll {
                id: 10,
                name: "Ada",
                templates: &t
            }
        ),
        Response::Ok { nonce: 1 }
    );
    assert_eq!(
        run(
            &mut s,
            &key,
            &Command::Enroll {
                id: 11,
                name: "Alan",
                templates: &templates(1, 2)
            }
        ),
        Response::Ok { nonce: 2 }
    );
    assert_eq!(s.people.len(), 2);
    assert_eq!(s.people[0].templates.len(), 3);
    // Reading who is enrolled is a signed command like any other.
    let Response::List {
        people,
        more,
        nonce,
    } = run(&mut s, &key, &Command::ReadPeople { start: 0 })
    else {
        panic!()
    };
    assert_eq!(nonce, 3);
    let listed: Vec<(u32, u8)> = people.iter().map(|p| (p.id, p.templates)).collect();
    assert_eq!((listed.as_slice(), more), (&[(10, 3), (11, 1)][..], false));
    // The digest is what the host computes from what it sent.
    let sent: Vec<Template> = t
        .chunks_exact(132)
        .map(|c| {
            let v: [i8; 128] = core::array::from_fn(|i| i8::from_le_bytes([c[4 + i]]));
            Template::from_parts(v, f32::from_le_bytes(c[..4].try_into().unwrap())).unwrap()
        })
        .collect();
    assert_eq!(people[0].digest, person_digest("Ada", &sent));
    assert_ne!(people[0].digest, person_digest("Ada", &sent[..2]));
    assert_ne!(people[0].digest, person_digest("Adb", &sent));
    assert_eq!(
        run(&mut s, &key, &Command::Remove { id: 10 }),
        Response::Ok { nonce: 4 }
    );
    assert_eq!(
        run(&mut s, &key, &Command::Remove { id: 10 }),
        Response::Error(ErrorCode::UnknownPerson)
    );
    assert_eq!(
        run(&mut s, &key, &Command::SetThreshold { threshold: 0.42 }),
        Response::Ok { nonce: 5 }
    );
    assert_eq!(s.threshold, 0.42);
    assert_eq!(
        run(&mut s, &key, &Command::SetUnlockTime { ms: 1500 }),
        Response::Ok { nonce: 6 }
    );
    assert_eq!(s.unlock_ms, 1500);
    assert_eq!(
        run(&mut s, &key, &Command::FactoryReset),
        Response::Ok { nonce: 7 }
    );
    assert!(s.people.is_empty() && s.site_key.is_some());
    assert_eq!(
        run(&mut s, &key, &Command::Unclaim),
        Response::Ok { nonce: 8 }
    );
    assert_eq!(s.site_key, None);
    let Response::Info {
        claimed: is_claimed,
        nonce,
        ..
    } = send(&mut s, &Request::Info)
    else {
        panic!()
    };
    assert!(!is_claimed);
    assert_eq!(nonce, 8);
}

#[test]
fn every_rejection_changes_nothing() {
    let key = site();
    let enroll = command_bytes(&Command::Enroll {
        id: 1,
        name: "Eve",
        templates: &templates(1, 3),
    });

    // Unclaimed board: signed commands refused.
    let mut s = RamStore::<4>::default();
    let sig = signed(&key, 0, &enroll);
    assert_eq!(
        send(
            &mut s,
            &Request::Signed {
                nonce: 0,
                command: &enroll,
                signature: &sig
            }
        ),
        Response::Error(ErrorCode::Unclaimed)
    );

    let mut s = claimed();
    let before = s.clone();
    let cases: Vec<(Vec<u8>, u32, Vec<u8>, ErrorCode)> = vec![
        // Unsigned (zero signature), wrong key, truncated signature.
        (enroll.clone(), 0, vec![0; 64], ErrorCode::BadSignature),
        (
            enroll.clone(),
            0,
            signed(&SigningKey::from_bytes(&[8; 32]), 0, &enroll),
            ErrorCode::BadSignature,
        ),
        (
            enroll.clone(),
            0,
            signed(&key, 0, &enroll)[..63].to_vec(),
            ErrorCode::BadSignature,
        ),
        // Signed for another nonce (stale or future).
        (
            enroll.clone(),
            5,
            signed(&key, 5, &enroll),
            ErrorCode::BadNonce,
        ),
        // Command altered after signing.
        (
            {
                let mut c = enroll.clone();
                c[2] ^= 1;
                c
            },
            0,
            signed(&key, 0, &enroll),
            ErrorCode::BadSignature,
        ),
        // Signed, but not a command / invalid contents.
        (
            vec![0xFF, 0xFF],
            0,
            signed(&key, 0, &[0xFF, 0xFF]),
            ErrorCode::Invalid,
        ),
        (
            command_bytes(&Command::Enroll {
                id: 1,
                name: "x",
                templates: &[1, 2, 3],
            }),
            0,
            signed(
                &key,
                0,
                &command_bytes(&Command::Enroll {
                    id: 1,
                    name: "x",
                    templates: &[1, 2, 3],
                }),
            ),
            ErrorCode::Invalid,
        ),
        (
            command_bytes(&Command::SetThreshold { threshold: 2.0 }),
            0,
            signed(
                &key,
                0,
                &command_bytes(&Command::SetThreshold { threshold: 2.0 }),
            ),
            ErrorCode::Invalid,
        ),
    ];
    for (i, (cmd, nonce, sig, code)) in cases.iter().enumerate() {
        let r = send(
            &mut s,
            &Request::Signed {
                nonce: *nonce,
                command: cmd,
                signature: sig,
            },
        );
        assert_eq!(r, Response::Error(*code), "case {i}");
        assert_eq!(s, before, "case {i} changed state");
    }
    // Second claim refused.
    assert_eq!(
        send(
            &mut s,
            &Request::Claim {
                site_key: [1; 32],
                token: &[]
            }
        ),
        Response::Error(ErrorCode::AlreadyClaimed)
    );
    assert_eq!(s, before);

    // Replay: the same signed enroll twice; the second is refused.
    let sig = signed(&key, 0, &enroll);
    let req = Request::Signed {
        nonce: 0,
        command: &enroll,
        signature: &sig,
    };
    assert_eq!(send(&mut s, &req), Response::Ok { nonce: 1 });
    let after = s.clone();
    assert_eq!(send(&mut s, &req), Response::Error(ErrorCode::BadNonce));
    assert_eq!(s, after);

    // Garbled and truncated frames.
    let mut frame = [0u8; 2048];
    let sig = signed(&key, 1, &enroll);
    let n = encode(
        &Request::Signed {
            nonce: 1,
            command: &enroll,
            signature: &sig,
        },
        &mut frame,
    )
    .unwrap();
    for cut in [1, n / 2, n - 2] {
        let mut f = frame[..cut].to_vec();
        assert_eq!(
            exchange(&mut s, &mut f),
            Response::Error(ErrorCode::Garbled),
            "cut at {cut}"
        );
    }
    let mut f = frame[..n].to_vec();
    f[n / 3] ^= 0x04;
    assert_eq!(
        exchange(&mut s, &mut f),
        Response::Error(ErrorCode::Garbled)
    );
    assert_eq!(s, after);

    // Full store.
    for id in 2..=4 {
        assert!(matches!(
            run(
                &mut s,
                &key,
                &Command::Enroll {
                    id,
                    name: "p",
                    templates: &templates(1, id)
                }
            ),
            Response::Ok { .. }
        ));
    }
    let full = s.clone();
    assert_eq!(
        run(
            &mut s,
            &key,
            &Command::Enroll {
                id: 9,
                name: "q",
                templates: &templates(1, 9)
            }
        ),
        Response::Error(ErrorCode::Full)
    );
    assert_eq!(s, full);
}

// Counted: 3,000 arbitrary frames and 3,000 damaged valid frames per `cargo test`.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn arbitrary_frames_never_panic_or_change_state(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut s = claimed();
        let before = s.clone();
        let mut f = bytes;
        let r = exchange(&mut s, &mut f);
        prop_assert!(matches!(r, Response::Error(_) | Response::Info { .. } | Response::List { .. }), "{r:?}");
        prop_assert_eq!(s, before);
    }

    #[test]
    fn damaged_signed_frames_change_nothing(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5)) {
        let mut s = claimed();
        let before = s.clone();
        let key = site();
        let t = templates(2, 5);
        let c = command_bytes(&Command::Enroll { id: 3, name: "Mallory", templates: &t });
        let sig = signed(&key, 0, &c);
        let mut frame = [0u8; 2048];
        let n = encode(&Request::Signed { nonce: 0, command: &c, signature: &sig }, &mut frame).unwrap();
        let mut f = frame[..n].to_vec();
        let original = f.clone();
        for (at, v) in &edits {
            let i = at.index(n);
            f[i] = *v;
        }
        let r = exchange(&mut s, &mut f);
        if f_equal(&original, &edits, n) {
            prop_assert_eq!(r, Response::Ok { nonce: 1 });
        } else {
            prop_assert!(matches!(r, Response::Error(_)), "{r:?}");
            prop_assert_eq!(s, before);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Past the framing: a well-formed frame (valid COBS and CRC) whose
    /// command, nonce or signature was altered after signing must be refused
    /// and change nothing; only the untouched one is carried out.
    #[test]
    fn tampered_commands_in_valid_frames_change_nothing(
        part in 0..3usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut s = claimed();
        let before = s.clone();
        let key = site();
        let t = templates(1, 9);
        let mut c = command_bytes(&Command::Enroll { id: 5, name: "Eve", templates: &t });
        let mut sig = signed(&key, 0, &c);
        let mut nonce_bytes = 0u32.to_le_bytes();
        let target: &mut [u8] = match part {
            0 => &mut c,
            1 => &mut sig,
            _ => &mut nonce_bytes,
        };
        let original = target.to_vec();
        for (at, v) in &edits {
            let i = at.index(target.len());
            target[i] = *v;
        }
        let unchanged = target == original.as_slice();
        let r = send(&mut s, &Request::Signed {
            nonce: u32::from_le_bytes(nonce_bytes),
            command: &c,
            signature: &sig,
        });
        if unchanged {
            prop_assert_eq!(r, Response::Ok { nonce: 1 });
        } else {
            prop_assert!(matches!(r, Response::Error(_)), "{r:?}");
            prop_assert_eq!(s, before);
        }
    }
}

/// Whether the edits left the frame as it was.
fn f_equal(original: &[u8], edits: &[(prop::sample::Index, u8)], n: usize) -> bool {
    let mut f = original.to_vec();
    for (at, v) in edits {
        f[at.index(n)] = *v;
    }
    f == original
}

#[test]
fn a_board_without_a_face_pipeline_says_unsupported() {
    let mut store = claimed();
    let before = store.clone();
    assert_eq!(
        send(
            &mut store,
            &Request::FaceChunk {
                offset: 0,
                bytes: &[1, 2, 3],
            }
        ),
        Response::Error(ErrorCode::Unsupported)
    );
    assert_eq!(store, before);
    // Signed VerifyFace and ReadAudit too, and they spend no nonce.
    for command in [
        Command::VerifyFace {
            face_sha256: [0; 32],
        },
        Command::ReadAudit { start: 0 },
    ] {
        assert_eq!(
            run(&mut store, &site(), &command),
            Response::Error(ErrorCode::Unsupported),
            "{command:?}"
        );
        assert_eq!(store, before, "{command:?}");
    }
}

/// Issue 25 #2: an id ≥ 2³¹ used to wrap the flash store's person key onto
/// its settings record. The protocol refuses it before anything is stored.
#[test]
fn person_ids_above_31_bits_are_refused_and_change_nothing() {
    let mut s = claimed();
    let key = site();
    for id in [0x8000_0000u32, 0x8000_0001, u32::MAX] {
        let before = s.clone();
        assert_eq!(
            run(
                &mut s,
                &key,
                &Command::Enroll {
                    id,
                    name: "Mallory",
                    templates: &templates(1, 3)
                }
            ),
            Response::Error(ErrorCode::Invalid),
            "id {id:#x}"
        );
        assert_eq!(s, before, "id {id:#x}");
    }
    assert_eq!(
        run(
            &mut s,
            &key,
            &Command::Enroll {
                id: 0x7FFF_FFFF,
                name: "Max",
                templates: &templates(1, 3)
            }
        ),
        Response::Ok { nonce: 1 }
    );
}

/// Issue 25 #11: thresholds outside (0, 1], NaN and infinities are refused.
#[test]
fn thresholds_outside_a_meaningful_cosine_are_refused() {
    let mut s = claimed();
    let key = site();
    for t in [
        -1.0f32,
        -0.5,
        0.0,
        -0.0,
        1.0001,
        2.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -3e-45,
    ] {
        let before = s.clone();
        assert_eq!(
            run(&mut s, &key, &Command::SetThreshold { threshold: t }),
            Response::Error(ErrorCode::Invalid),
            "threshold {t}"
        );
        assert_eq!(s, before, "threshold {t}");
    }
    for (t, nonce) in [(0.9007f32, 1), (1.0, 2), (1e-3, 3)] {
        assert_eq!(
            run(&mut s, &key, &Command::SetThreshold { threshold: t }),
            Response::Ok { nonce }
        );
        assert_eq!(s.threshold, t);
    }
}

/// Issue 25 #6: a template whose scale is not `1/‖q‖` (the forged scale
/// that made one template match half of all strangers) is refused.
#[test]
fn templates_with_a_forged_scale_are_refused() {
    let mut s = claimed();
    let key = site();
    let mut t = templates(1, 4);
    let honest = f32::from_le_bytes(t[..4].try_into().unwrap());
    for factor in [2.0f32, 1.01, 0.5] {
        t[..4].copy_from_slice(&(honest * factor).to_le_bytes());
        assert_eq!(
            run(
                &mut s,
                &key,
                &Command::Enroll {
                    id: 5,
                    name: "Forger",
                    templates: &t
                }
            ),
            Response::Error(ErrorCode::Invalid),
            "scale × {factor}"
        );
    }
    assert!(s.people.is_empty());
}

/// Issue 25 #10: a board built with an installer's key is not trust on
/// first use: only a claim carrying the installer's signature over this
/// board's id and this site key takes it; every other claim changes nothing.
#[test]
fn a_board_with_an_installer_key_is_claimed_only_with_its_token() {
    let installer = SigningKey::from_bytes(&[41; 32]);
    let board = BoardInfo {
        claim_key: Some(installer.verifying_key().to_bytes()),
        ..BOARD
    };
    let send = |s: &mut RamStore<4>, req: &Request<'_>| send_to(&board, s, req);
    let site_key = site().verifying_key().to_bytes();
    let token = |by: &SigningKey, device: &[u8; 16], key: &[u8; 32]| {
        by.sign(&claim_message(device, key)).to_bytes()
    };
    let mut s = RamStore::<4>::default();
    let Response::Info {
        claim_needs_token, ..
    } = send(&mut s, &Request::Info)
    else {
        panic!()
    };
    assert!(claim_needs_token);
    let stranger = SigningKey::from_bytes(&[42; 32]);
    let refused: [(&str, Vec<u8>); 5] = [
        ("no token", Vec::new()),
        (
            "short token",
            token(&installer, &DEVICE, &site_key)[..63].to_vec(),
        ),
        (
            "another signer",
            token(&stranger, &DEVICE, &site_key).to_vec(),
        ),
        (
            "another board",
            token(&installer, b"fg-test-board-99", &site_key).to_vec(),
        ),
        (
            "another site key",
            token(&installer, &DEVICE, &[9; 32]).to_vec(),
        ),
    ];
    for (why, t) in &refused {
        assert_eq!(
            send(&mut s, &Request::Claim { site_key, token: t }),
            Response::Error(ErrorCode::BadSignature),
            "{why}"
        );
        assert_eq!(s, RamStore::default(), "{why}");
    }
    let good = token(&installer, &DEVICE, &site_key);
    assert_eq!(
        send(
            &mut s,
            &Request::Claim {
                site_key,
                token: &good
            }
        ),
        Response::Ok { nonce: 0 }
    );
    assert_eq!(s.site_key, Some(site_key));
    // A trust-on-first-use board says it needs no token.
    let Response::Info {
        claim_needs_token, ..
    } = send_to(&BOARD, &mut RamStore::default(), &Request::Info)
    else {
        panic!()
    };
    assert!(!claim_needs_token);
}

#[test]
fn installer_keys_are_read_from_64_hex_digits() {
    let key: [u8; 32] = core::array::from_fn(|i| (i * 9) as u8);
    let hex: String = key.iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(key_from_hex(&hex), Some(key));
    assert_eq!(key_from_hex(&hex.to_lowercase()), Some(key));
    assert_eq!(key_from_hex(&hex[..62]), None);
    assert_eq!(key_from_hex(&format!("{}g", &hex[..63])), None);
    assert_eq!(key_from_hex(""), None);
}
