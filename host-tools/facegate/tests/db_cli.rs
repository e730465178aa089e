//! CLI output of `facegate db` on a database written by the core's writer.

use std::path::Path;
use std::process::Command;

use facegate_core::db::{DbWriter, HEADER_LEN, PersonRecord, record_size};
use facegate_core::{Embedding, ModelHash, PersonId, Template};

fn write_db(path: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 2 * HEADER_LEN + 3 * record_size(128, 4)];
    let mut w = DbWriter::<128>::new(&mut buf, ModelHash([7; 32]), 4).unwrap();
    for (i, name) in ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
        .iter()
        .enumerate()
    {
        let mut p = PersonRecord::<128, 4>::new(PersonId(10 + i as u32), name).unwrap();
        for k in 0..=i {
            let v: [f32; 128] =
                core::array::from_fn(|j| ((j * 7 + k * 13 + i * 31) % 17) as f32 - 8.0);
            p.push_template(Template::quantize(&Embedding::normalize(v).unwrap()))
                .unwrap();
        }
        w.push(&p).unwrap();
    }
    let n = w.finish();
    buf.truncate(n);
    std::fs::write(path, &buf).unwrap();
    buf
}

fn facegate(args: &[&str], dir: &Path) -> (String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

#[test]
fn show_and_check_a_healthy_database() {
    let dir = tempfile::tempdir().unwrap();
    write_db(&dir.path().join("site.fgdb"));
    let (text, code) = facegate(&["db", "check", "site.fgdb"], dir.path());
    assert_eq!(code, 0);
    insta::assert_snapshot!(text);
}

#[test]
fn check_reports_a_damaged_record_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = write_db(&dir.path().join("site.fgdb"));
    bytes[2 * HEADER_LEN + record_size(128, 4) + 100] ^= 0x10; // inside record 1
    bytes[3] ^= 0x01; // primary header magic
    std::fs::write(dir.path().join("site.fgdb"), &bytes).unwrap();
    let (text, code) = facegate(&["db", "check", "site.fgdb"], dir.path());
    assert_eq!(code, 2);
    insta::assert_snapshot!(text);
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("photo.jpg"),
        [0xFF, 0xD8, 0xFF, 0xE0].repeat(100),
    )
    .unwrap();
    let (text, code) = facegate(&["db", "show", "photo.jpg"], dir.path());
    assert_eq!(code, 1);
    insta::assert_snapshot!(text);
    let (text, code) = facegate(&["db", "show", "missing.fgdb"], dir.path());
    assert_eq!(code, 1);
    assert!(
        text.starts_with("error: cannot read missing.fgdb"),
        "{text}"
    );
}
