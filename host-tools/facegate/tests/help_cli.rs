//! The help an installer reads for the door commands (snapshots: a change
//! to flags or wording shows up in review).

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn provision_help() {
    insta::assert_snapshot!(help(&["provision", "--help"]));
}

#[test]
fn board_help() {
    insta::assert_snapshot!(help(&["board", "--help"]));
}

#[test]
fn db_help() {
    insta::assert_snapshot!(help(&["db", "--help"]));
}

#[test]
fn enroll_help() {
    insta::assert_snapshot!(help(&["enroll", "--help"]));
}
