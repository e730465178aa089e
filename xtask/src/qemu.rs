//! Runs the QEMU board's firmware and checks its verdict.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The line the firmware logs when every check held.
const PASS_PREFIX: &str = "PASS:";
/// The line the engine check logs when the board's embeddings equal the host engine's.
const ENGINE_LINE: &str = "equal the host engine's bit for bit";
/// The line the door end-to-end check logs when it passed.
const DOOR_LINE: &str = "door: provisioning, matching, lock and restart checks passed";

/// Boots `elf` through `firmware/scripts/qemu-run.sh`, echoes the decoded log,
/// and requires both QEMU's exit status 0 and the firmware's pass line.
pub fn run_selftest(root: &Path, elf: &Path) -> Result<()> {
    if which("defmt-print").is_none() {
        bail!(
            "defmt-print is not installed: run scripts/setup.sh (or `cargo install defmt-print --locked`)"
        );
    }
    if which("qemu-system-arm").is_none() {
        bail!("qemu-system-arm is not installed: run scripts/setup.sh");
    }
    let script = root.join("firmware/scripts/qemu-run.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg(elf)
        // Deterministic virtual time: one nanosecond per instruction, so the
        // firmware's cost report counts instructions.
        .env("QEMU_EXTRA_ARGS", "-icount shift=0")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {}", script.display()))?;
    let stdout = child.stdout.take().context("no stdout from qemu-run.sh")?;
    let mut passed = false;
    let mut engine_equal = false;
    let mut door_ok = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("  [qemu] {line}");
        engine_equal |= line.contains(ENGINE_LINE);
        door_ok |= line.contains(DOOR_LINE);
        passed |= line
            .split_whitespace()
            .nth(1)
            .is_some_and(|w| w == PASS_PREFIX);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("firmware failed in QEMU ({status})");
    }
    if !passed {
        bail!("QEMU exited cleanly but the firmware never logged its `{PASS_PREFIX}` line");
    }
    // xtask always compiles the engine check in: it must have run, not been skipped.
    if !door_ok {
        bail!("the firmware did not report its door end-to-end check (`{DOOR_LINE}`)");
    }
    if !engine_equal {
        bail!(
            "the firmware did not report its int8 embeddings equal to the host's (`{ENGINE_LINE}`)"
        );
    }
    println!("QEMU mps2-an500: firmware self-test passed");
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
