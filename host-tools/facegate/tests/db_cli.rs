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

#[test]
fn remove_export_and_import_people() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_db(&d.join("site.fgdb"));
    let (text, code) = facegate(
        &[
            "db",
            "export",
            "site.fgdb",
            "--id",
            "11",
            "--out",
            "alan.fgdb",
        ],
        d,
    );
    assert_eq!((code, text.trim()), (0, "exported 1 people to alan.fgdb"));
    let (text, code) = facegate(&["db", "remove", "site.fgdb", "--id", "99"], d);
    assert_eq!(code, 1);
    assert!(text.contains("has no person 99; nothing removed"), "{text}");
    let (text, code) = facegate(&["db", "remove", "site.fgdb", "--id", "11"], d);
    assert_eq!((code, text.trim()), (0, "removed 1 people; 2 remain"));
    let (text, _) = facegate(&["db", "list", "site.fgdb"], d);
    assert!(
        !text.contains("Alan Turing") && text.contains("Grace Hopper"),
        "{text}"
    );

    let (text, code) = facegate(&["db", "import", "site.fgdb", "--from", "alan.fgdb"], d);
    assert_eq!(
        (code, text.trim()),
        (0, "imported 1 people; site.fgdb now holds 3")
    );
    let (text, code) = facegate(&["db", "import", "site.fgdb", "--from", "alan.fgdb"], d);
    assert_eq!(code, 1);
    assert!(
        text.contains("ids [11] are in both databases; nothing imported"),
        "{text}"
    );
    let (_, code) = facegate(
        &[
            "db",
            "import",
            "site.fgdb",
            "--from",
            "alan.fgdb",
            "--replace",
        ],
        d,
    );
    assert_eq!(code, 0);

    // Another model's people are refused.
    let mut buf = vec![0u8; 2 * HEADER_LEN + record_size(128, 4)];
    let w = DbWriter::<128>::new(&mut buf, ModelHash([9; 32]), 4).unwrap();
    let n = w.finish();
    std::fs::write(d.join("other.fgdb"), &buf[..n]).unwrap();
    let (text, code) = facegate(&["db", "import", "site.fgdb", "--from", "other.fgdb"], d);
    assert_eq!(code, 1);
    assert!(text.contains("cannot be mixed"), "{text}");
    let (text, code) = facegate(&["db", "check", "site.fgdb"], d);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("records   3"), "{text}");
}
