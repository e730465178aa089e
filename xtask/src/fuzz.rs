//! `cargo xtask fuzz`: libFuzzer on every parser that meets outside bytes
//! (`fuzz/fuzz_targets/`), seeded from real structures.
//!
//! The targets link `libfuzzer-sys` and are instrumented with LLVM's
//! SanitizerCoverage through stable `-C` flags, so no nightly toolchain is
//! needed. What nightly would add is AddressSanitizer (`cargo fuzz`'s
//! default), which matters for `unsafe` code: the workspace denies
//! `unsafe_code`, so a memory error would have to come from a dependency;
//! panics, overflows (checked in these builds) and failed assertions abort
//! and count as crashes either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, run, target_dir};

/// Every fuzz target.
pub const TARGETS: [&str; 6] = [
    "protocol_frame",
    "template_db",
    "flash_store",
    "model_blob",
    "image_decode",
    "detect_frame",
];

const SANCOV: &str = "--cfg fuzzing -Cdebug-assertions -Coverflow-checks \
     -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
     -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares";

/// One target's run, as libFuzzer reported it.
#[derive(Debug)]
pub struct FuzzRun {
    /// Target name.
    pub target: &'static str,
    /// Inputs executed.
    pub executions: u64,
    /// Wall time, seconds.
    pub seconds: u64,
    /// Coverage points (`cov:`) and features (`ft:`) at the end.
    pub coverage: (u64, u64),
    /// Corpus size at the end.
    pub corpus: u64,
    /// Whether it ended on a crash (the input is in `crash_dir`).
    pub crashed: bool,
}

/// The host's target triple (`rustc -vV`).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .context("rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

/// Builds the targets (instrumented) and the seed writer (plain); returns
/// the folders of their binaries.
pub fn build(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let dir = target_dir(root).join("fuzz");
    let host = host_triple()?;
    let mut cmd = cargo(&root.join("fuzz"));
    cmd.args(["build", "--release", "--target", &host]);
    for t in TARGETS {
        cmd.args(["--bin", t]);
    }
    // An explicit --target keeps RUSTFLAGS (the coverage instrumentation)
    // off build scripts and proc macros, which link no fuzzer runtime.
    run(cmd.env("RUSTFLAGS", SANCOV).env("CARGO_TARGET_DIR", &dir))?;
    run(cargo(&root.join("fuzz"))
        .args(["build", "--release", "--bin", "write_seeds"])
        .env("CARGO_TARGET_DIR", &dir))?;
    Ok((dir.join(host).join("release"), dir.join("release")))
}

/// Runs `targets` for `seconds` each (or `runs` inputs, whichever first).
pub fn fuzz(
    root: &Path,
    targets: &[&'static str],
    seconds: u64,
    runs: Option<u64>,
) -> Result<Vec<FuzzRun>> {
    let (bin, plain) = build(root)?;
    let work = target_dir(root).join("fuzz-work");
    let seeds = work.join("seeds");
    let data = crate::data_dir(root);
    run(Command::new(plain.join("write_seeds"))
        .arg(&seeds)
        .arg(root)
        .arg(&data))?;
    let mut out = Vec::new();
    for &target in targets {
        if !TARGETS.contains(&target) {
            bail!(
                "no fuzz target {target}; the targets are {}",
                TARGETS.join(", ")
            );
        }
        let corpus = work.join("corpus").join(target);
        let crashes = work.join("crashes").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&crashes)?;
        let mut cmd = Command::new(bin.join(target));
        cmd.arg(&corpus)
            .arg(seeds.join(target))
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", crashes.display()))
            .arg("-print_final_stats=1")
            // The flash image (16 KiB) and the small model blob seed (24 KiB)
            // are larger than libFuzzer's default 4 KiB.
            .arg("-max_len=32768");
        if let Some(n) = runs {
            cmd.arg(format!("-runs={n}"));
        }
        println!("fuzz: {target} for up to {seconds} s");
        let started = std::time::Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("could not start the {target} fuzzer"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        let r = FuzzRun {
            target,
            executions: stat(&log, "stat::number_of_executed_units:").unwrap_or(0),
            seconds: started.elapsed().as_secs(),
            coverage: last_coverage(&log),
            corpus: last_field(&log, "corp:").unwrap_or(0),
            crashed: !output.status.success(),
        };
        println!(
            "fuzz: {target}: {} executions in {} s, cov {} ft {}, corpus {}, {}",
            r.executions,
            r.seconds,
            r.coverage.0,
            r.coverage.1,
            r.corpus,
            if r.crashed { "CRASHED" } else { "no crash" }
        );
        if r.crashed {
            eprintln!(
                "{}",
                log.lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        out.push(r);
    }
    if out.iter().any(|r| r.crashed) {
        bail!(
            "a fuzz target crashed; its input is under {}",
            work.join("crashes").display()
        );
    }
    Ok(out)
}

/// Cells of a record row, the target's name included.
const RECORD_COLUMNS: usize = 9;

/// Writes `runs` into the Markdown table at `path` (the record kept in the
/// repo): one row per target, a re-run target's row replaced, the others
/// kept, each row with the date, commit and command that measured it.
pub fn write_record(path: &Path, runs: &[FuzzRun], command: &str, commit: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut rows: Vec<(String, String)> = old
        .lines()
        .filter_map(|l| {
            let target = l.strip_prefix("| `")?.split('`').next()?.to_string();
            // Rows written before the date/commit/command columns get empty ones.
            let cells = l.matches('|').count().saturating_sub(1);
            let pad = " |".repeat(RECORD_COLUMNS.saturating_sub(cells));
            Some((target, format!("{l}{pad}")))
        })
        .collect();
    let date = utc_date();
    for r in runs {
        let row = format!(
            "| `{}` | {} | {} | {} / {} | {} | {} | {date} | `{commit}` | `{command}` |",
            r.target,
            r.executions,
            r.seconds,
            r.coverage.0,
            r.coverage.1,
            r.corpus,
            u8::from(r.crashed)
        );
        match rows.iter_mut().find(|(t, _)| *t == r.target) {
            Some(slot) => slot.1 = row,
            None => rows.push((r.target.to_string(), row)),
        }
    }
    rows.sort_by_key(|(t, _)| TARGETS.iter().position(|k| k == t).unwrap_or(usize::MAX));
    let mut text = String::from(
        "<!-- written by `cargo xtask fuzz … --record`: a re-run target's row is replaced; do not edit -->\n\n| target | executions | seconds | coverage (cov / ft) | corpus | crashes | date | commit | command |\n|---|---:|---:|---|---:|---:|---|---|---|\n",
    );
    for (_, row) in rows {
        text.push_str(&row);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Today's date (UTC) as `YYYY-MM-DD`, from `date` (no date crate for one line).
fn utc_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".into(), |d| d.trim().to_string())
}

fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// `cov:` and `ft:` of libFuzzer's last status line.
fn last_coverage(log: &str) -> (u64, u64) {
    (
        last_field(log, "cov:").unwrap_or(0),
        last_field(log, "ft:").unwrap_or(0),
    )
}

fn last_field(log: &str, key: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == key)?;
        // `corp: 27/1337b`: the number before any unit or slash.
        let digits: String = words
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_status_lines_are_read() {
        let log = "#2\tINITED cov: 10 ft: 11 corp: 2/40b exec/s: 0 rss: 30Mb\n\
                   #4096\tpulse  cov: 120 ft: 300 corp: 25/1Kb lim: 43 exec/s: 2048 rss: 31Mb\n\
                   #5000\tDONE   cov: 130 ft: 321 corp: 27/1337b lim: 43 exec/s: 2500 rss: 31Mb\n\
                   stat::number_of_executed_units: 5000\n\
                   stat::peak_rss_mb:              31\n";
        assert_eq!(stat(log, "stat::number_of_executed_units:"), Some(5000));
        assert_eq!(last_coverage(log), (130, 321));
        assert_eq!(last_field(log, "corp:"), Some(27));
    }

    #[test]
    fn a_record_keeps_other_targets_and_replaces_a_rerun_one() {
        let path = std::env::temp_dir().join(format!("fuzz-record-{}.md", std::process::id()));
        // A record in the first format (no date, commit, command).
        std::fs::write(
            &path,
            "<!-- old -->\n\n| target | executions | seconds | coverage (cov / ft) | corpus | crashes |\n|---|---:|---:|---|---:|---:|\n| `protocol_frame` | 5 | 1 | 2 / 3 | 4 | 0 |\n| `template_db` | 7 | 1 | 2 / 3 | 4 | 0 |\n",
        )
        .unwrap();
        let run = FuzzRun {
            target: "protocol_frame",
            executions: 10_000_000,
            seconds: 1200,
            coverage: (230, 1100),
            corpus: 160,
            crashed: false,
        };
        write_record(&path, &[run], "cargo xtask fuzz protocol_frame", "abc1234").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].starts_with("| `protocol_frame` | 10000000 | 1200 | 230 / 1100 | 160 | 0 |"),
            "{text}"
        );
        assert!(
            rows[0].ends_with("| `abc1234` | `cargo xtask fuzz protocol_frame` |"),
            "{text}"
        );
        // The other row stays, padded to the new columns.
        assert_eq!(rows[1], "| `template_db` | 7 | 1 | 2 / 3 | 4 | 0 | | | |");
    }
}
