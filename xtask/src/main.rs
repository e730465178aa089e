//! `cargo xtask`: the one entry point for facegate's builds and tests.
//!
//! - `cargo xtask test`: everything CI runs (format, clippy, rustdoc, host tests, a
//!   10-second smoke run of every fuzz target, the core for
//!   `thumbv7em-none-eabihf` with and without defmt, both firmware boards,
//!   and the firmware self-test in QEMU).
//! - `cargo xtask fuzz [TARGET…] --seconds N [--record FILE]`: libFuzzer on
//!   every parser that meets outside bytes.
//! - `cargo xtask demo`: builds the firmware and boots it in QEMU, then both
//!   doors decide from full photos: the M7 door in QEMU from frames over
//!   its UART, the Linux door (`facegate-edge`) from an MJPEG camera stream.
//! - `cargo xtask edge-package`: a deployable folder for a Linux board.
//! - `cargo xtask door --port 4444`: boots the door image in QEMU with its
//!   UART on a TCP port, for `facegate provision --port tcp:127.0.0.1:4444`.
//!
//! Cortex-M builds use an installed rustup target when there is one, and
//! otherwise Debian's `rustc-web` + `rust-web-src` with `-Zbuild-std`
//! (see `toolchain.rs` and DESIGN.md).

mod edge;
mod fuzz;
mod qemu;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::toolchain::CrossToolchain;

/// Core crate name, built for the boards.
const CORE: &str = "facegate-core";
/// The Cortex-M target.
const THUMB: &str = "thumbv7em-none-eabihf";

#[derive(Parser)]
#[command(about = "facegate build and test tasks", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every check CI runs: fmt, clippy, rustdoc, host tests, cross builds, QEMU.
    Test {
        /// Skip `cargo fmt --check`, clippy and rustdoc (faster local loop).
        #[arg(long)]
        no_lint: bool,
    },
    /// Build the firmware and run its self-test on the emulated Cortex-M7 board.
    Demo,
    /// Build the core for Cortex-M (with and without defmt) and both firmware boards.
    Cross,
    /// Boot the QEMU board firmware (already built or not) and check its pass line.
    Qemu {
        /// Also write each shipped model's measured cost (instructions per
        /// embedding under `-icount`, bound to the blob's model hash) as
        /// `DIR/<name>.cortex-m7.json`, e.g. `--cost-out models` for
        /// `facegate model card`.
        #[arg(long, value_name = "DIR")]
        cost_out: Option<PathBuf>,
    },
    /// Boot the door image in QEMU with UART0 on a TCP port (for `facegate
    /// provision`/`board`); its flash persists in target/door-state. Ctrl-C stops it.
    Door {
        /// TCP port for the board's UART (`--port tcp:127.0.0.1:PORT` on the host tools).
        #[arg(long, default_value_t = 4444)]
        port: u16,
        /// Start from erased flash (unclaimed, nobody enrolled).
        #[arg(long)]
        fresh: bool,
    },
    /// Build a deployable folder for a Linux board: binary (aarch64 unless
    /// --host), model, config, systemd unit.
    EdgePackage {
        /// Output folder.
        #[arg(long, default_value = "target/edge-package")]
        out: PathBuf,
        /// Build for this machine instead of aarch64.
        #[arg(long)]
        host: bool,
    },
    /// Print which Cortex-M toolchain would be used, and why.
    Toolchain,
    /// Fuzz the parsers that meet outside bytes with libFuzzer (protocol
    /// frames, template database, flash store image, model blob, images).
    Fuzz {
        /// Only these targets (default: all).
        targets: Vec<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Stop a target after this many inputs.
        #[arg(long)]
        runs: Option<u64>,
        /// Write the runs as a Markdown table here (e.g. docs/fuzz-runs.md).
        #[arg(long)]
        record: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match run_task(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` gives the context chain without a backtrace dump.
            eprintln!("\nxtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_task(cli: Cli) -> Result<()> {
    let root = repo_root()?;
    match cli.task {
        Task::Test { no_lint } => test_all(&root, !no_lint),
        Task::Demo => {
            let tc = CrossToolchain::detect()?;
            let elf = build_firmware(&root, &tc)?;
            qemu::run_selftest(&root, &elf)?;
            host_demo(&root)?;
            door_demo(&root, &elf.with_file_name("door"))?;
            let db = target_dir(&root).join("demo-site.fgdb");
            if !db.is_file() {
                return Ok(()); // the host demo was skipped (no shipped model)
            }
            let lfw = data_dir(&root).join("lfw/raw_subset");
            let photo = |who: &str, n: u32| lfw.join(who).join(format!("{who}_{n:04}.jpg"));
            edge::demo(
                &root,
                &db,
                &photo(DEMO_PERSON, DEMO_PROBE),
                &photo(DEMO_STRANGER, 1),
            )
        }
        Task::Cross => {
            let tc = CrossToolchain::detect()?;
            build_core_for_thumb(&root, &tc)?;
            build_firmware(&root, &tc).map(drop)
        }
        Task::Qemu { cost_out } => {
            let tc = CrossToolchain::detect()?;
            let elf = build_firmware(&root, &tc)?;
            let costs = qemu::run_selftest(&root, &elf)?;
            match cost_out {
                Some(dir) => qemu::write_costs(&root, costs, &dir),
                None => Ok(()),
            }
        }
        Task::Door { port, fresh } => {
            let tc = CrossToolchain::detect()?;
            let elf = build_firmware(&root, &tc)?;
            qemu::run_door(&root, &elf.with_file_name("door"), port, fresh)
        }
        Task::EdgePackage { out, host } => edge::package(&root, &out, host).map(drop),
        Task::Fuzz {
            targets,
            seconds,
            runs,
            record,
        } => {
            let chosen: Vec<&'static str> = if targets.is_empty() {
                fuzz::TARGETS.to_vec()
            } else {
                targets
                    .iter()
                    .map(|a| {
                        fuzz::TARGETS
                            .iter()
                            .copied()
                            .find(|t| t == a)
                            .with_context(|| {
                                format!(
                                    "no fuzz target {a}; the targets are {}",
                                    fuzz::TARGETS.join(", ")
                                )
                            })
                    })
                    .collect::<Result<_>>()?
            };
            // The code the targets are built from (`-dirty`: uncommitted
            // changes), taken before the runs: commits made meanwhile are not it.
            let commit = Command::new("git")
                .args(["describe", "--always", "--dirty"])
                .current_dir(&root)
                .output()
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map_or_else(|| "?".into(), |c| c.trim().to_string());
            let done = fuzz::fuzz(&root, &chosen, seconds, runs)?;
            match record {
                Some(path) => {
                    let command = std::iter::once("cargo xtask".to_string())
                        .chain(std::env::args().skip(1))
                        .collect::<Vec<_>>()
                        .join(" ");
                    fuzz::write_record(&path, &done, &command, &commit)
                }
                None => Ok(()),
            }
        }
        Task::Toolchain => {
            println!("{}", CrossToolchain::detect()?);
            Ok(())
        }
    }
}

fn test_all(root: &Path, lint: bool) -> Result<()> {
    let started = Instant::now();
    // Detect first: a machine that cannot cross-build should fail in seconds, not after the host tests.
    let tc = CrossToolchain::detect()?;
    println!("cortex-m toolchain: {tc}");
    if lint {
        step("cargo fmt --check", || {
            run(cargo(root).args(["fmt", "--all", "--", "--check"]))?;
            run(cargo(&root.join("firmware")).args(["fmt", "--all", "--", "--check"]))?;
            run(cargo(&root.join("fuzz")).args(["fmt", "--all", "--", "--check"]))
        })?;
        step("clippy (host workspace, -D warnings)", || {
            run(cargo(root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ]))?;
            // The edge runtime's GPIO relay is behind a feature: lint it too.
            run(cargo(root).args([
                "clippy",
                "--locked",
                "-p",
                "facegate-edge",
                "--features",
                "gpio",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
        step("rustdoc (host workspace, warnings denied)", || {
            run(cargo(root)
                .args(["doc", "--workspace", "--no-deps", "--locked"])
                .env("RUSTDOCFLAGS", "-D warnings"))
        })?;
    }
    step("host tests", || {
        run(cargo(root).args(["test", "--workspace", "--locked"]))
    })?;
    step(
        "fuzz smoke: every libFuzzer target for 10 s (cargo xtask fuzz)",
        || fuzz::fuzz(root, &fuzz::TARGETS, 10, None).map(drop),
    )?;
    step("facegate-core for thumbv7em-none-eabihf", || {
        build_core_for_thumb(root, &tc)
    })?;
    let elf = step("firmware (qemu-mps2-an500, stm32h743)", || {
        build_firmware(root, &tc)
    })?;
    step("firmware self-test in QEMU mps2-an500", || {
        qemu::run_selftest(root, &elf).map(drop)
    })?;
    step(
        "door image over its UART in QEMU (provision, verify, restart)",
        || {
            run(cargo(root)
                .args([
                    "test",
                    "--locked",
                    "-p",
                    "facegate",
                    "--test",
                    "door_targets",
                    "--",
                ])
                .args(["qemu_door", "--include-ignored", "--nocapture"])
                .env("FACEGATE_DOOR_ELF", elf.with_file_name("door")))
        },
    )?;
    step(
        "facegate-edge on aarch64 under qemu-aarch64 (parity with x86 and the engine)",
        || edge::test(root),
    )?;
    println!("\nxtask test: all passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Builds the no_std core for Cortex-M, plain and with the `defmt` feature.
fn build_core_for_thumb(root: &Path, tc: &CrossToolchain) -> Result<()> {
    // A separate target dir: the cross toolchain may be another rustc, and
    // sharing host build-script outputs with it would force rebuilds both ways.
    let target_dir = target_dir(root).join("cross");
    for features in [&[][..], &["--features", "defmt"][..]] {
        let mut cmd = cargo(root);
        tc.apply(&mut cmd);
        cmd.args([
            "build",
            "--release",
            "--locked",
            "-p",
            CORE,
            "--target",
            THUMB,
        ])
        .args(tc.build_std_args())
        .args(features)
        .env("CARGO_TARGET_DIR", &target_dir);
        run(&mut cmd)?;
        println!("built {CORE} for {THUMB} {}", features.join(" "));
    }
    Ok(())
}

/// The shared face data: `$FACEGATE_DATA`, else `../shared/data` beside the checkout.
fn data_dir(root: &Path) -> PathBuf {
    std::env::var_os("FACEGATE_DATA").map_or_else(|| root.join("../shared/data"), PathBuf::from)
}

/// The demo's person (enrolled from raw LFW photos 1–3, probed with
/// `DEMO_PROBE`) and a stranger's raw photo.
const DEMO_PERSON: &str = "Abdullah_Gul";
const DEMO_PROBE: u32 = 4;
const DEMO_STRANGER: &str = "Alan_Greenspan";

/// Enroll and verify on the host with the shipped reference model: a person
/// enrolled from three raw LFW photos (faces detected, aligned and
/// quality-checked), then another photo of them and a photo of someone else
/// checked against the site database.
fn host_demo(root: &Path) -> Result<()> {
    let model = root.join("models/nano.fgm");
    let deployment = root.join("models/nano.deployment.toml");
    if !model.is_file() {
        println!("host demo skipped: no shipped model at {}", model.display());
        return Ok(());
    }
    let lfw = data_dir(root).join("lfw/raw_subset");
    let photo = |who: &str, n: u32| lfw.join(who).join(format!("{who}_{n:04}.jpg"));
    let db = target_dir(root).join("demo-site.fgdb");
    let _ = std::fs::remove_file(&db);
    let facegate = |args: &[&std::ffi::OsStr]| facegate_cli(root, args);
    let os = |s: &str| std::ffi::OsString::from(s);
    let name = DEMO_PERSON.replace('_', " ");
    println!("host demo: enroll {name} from 3 raw LFW photos with models/nano.fgm");
    run(&mut facegate(&[
        &os("enroll"),
        &os("--db"),
        db.as_os_str(),
        &os("--model"),
        model.as_os_str(),
        &os("--face"),
        &os("central"),
        &os("--id"),
        &os("1"),
        &os("--name"),
        &os(&name),
        photo(DEMO_PERSON, 1).as_os_str(),
        photo(DEMO_PERSON, 2).as_os_str(),
        photo(DEMO_PERSON, 3).as_os_str(),
    ]))?;
    for (who, n, expect) in [(DEMO_PERSON, DEMO_PROBE, 0), (DEMO_STRANGER, 1, 3)] {
        let p = photo(who, n);
        println!("host demo: verify {}", p.display());
        let status = facegate(&[
            &os("verify"),
            &os("--db"),
            db.as_os_str(),
            &os("--model"),
            model.as_os_str(),
            &os("--deployment"),
            deployment.as_os_str(),
            &os("--face"),
            &os("central"),
            p.as_os_str(),
        ])
        .status()?;
        let verdict = match status.code() {
            Some(0) => "accepted",
            Some(3) => "rejected",
            _ => bail!("facegate verify failed ({status})"),
        };
        let right = status.code() == Some(expect);
        println!(
            "host demo: {who} #{n} {verdict} ({})",
            if right {
                "as expected"
            } else {
                "NOT as expected"
            }
        );
    }
    Ok(())
}

/// `facegate ARGS…`, built and run by cargo.
pub(crate) fn facegate_cli(root: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let mut c = cargo(root);
    c.args(["run", "--quiet", "--locked", "-p", "facegate", "--"])
        .args(args);
    c
}

/// Runs `facegate ARGS…`; it must succeed.
pub(crate) fn facegate_ok(root: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let s = facegate_cli(root, args).status()?;
    if !s.success() {
        bail!("facegate failed ({s})");
    }
    Ok(())
}

/// A new site key in `key` and the host demo's site database `db`
/// provisioned onto the door at `port` with `nano`'s deployment threshold.
pub(crate) fn provision_demo_site(root: &Path, port: &str, key: &Path, db: &Path) -> Result<()> {
    let os = std::ffi::OsStr::new;
    facegate_ok(root, &[os("keygen"), os("--out"), key.as_os_str()])?;
    facegate_ok(
        root,
        &[
            os("provision"),
            os("--port"),
            os(port),
            os("--key"),
            key.as_os_str(),
            os("--db"),
            db.as_os_str(),
            os("--deployment"),
            root.join("models/nano.deployment.toml").as_os_str(),
        ],
    )
}

/// Prints the door's audit log (`facegate board audit`, signed with `key`).
pub(crate) fn board_audit(root: &Path, port: &str, key: &Path) -> Result<()> {
    let os = std::ffi::OsStr::new;
    facegate_ok(
        root,
        &[
            os("board"),
            os("audit"),
            os("--port"),
            os(port),
            os("--key"),
            key.as_os_str(),
        ],
    )
}

/// The same person and probes on the door image in QEMU: provision the site
/// database from the host demo over the board's UART, then let the board decide.
fn door_demo(root: &Path, elf: &Path) -> Result<()> {
    let db = target_dir(root).join("demo-site.fgdb");
    if !db.is_file() {
        return Ok(()); // the host demo was skipped (no shipped model)
    }
    let state = target_dir(root).join("demo-door");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = state.join("qemu.log");
    let mut door = qemu::spawn_door(root, elf, port, &state, &log)?;
    let result = (|| -> Result<()> {
        qemu::wait_for_line(
            &log,
            "door: ready on UART0",
            std::time::Duration::from_secs(60),
        )?;
        let port = format!("tcp:127.0.0.1:{port}");
        let key = state.join("site.key");
        let facegate = |args: &[&std::ffi::OsStr]| -> Result<std::process::ExitStatus> {
            Ok(facegate_cli(root, args).status()?)
        };
        let os = std::ffi::OsStr::new;
        println!("\ndoor demo: the door image in QEMU, UART0 on {port}");
        provision_demo_site(root, &port, &key, &db)?;
        let lfw = data_dir(root).join("lfw/raw_subset");
        for (who, n) in [(DEMO_PERSON, DEMO_PROBE), (DEMO_STRANGER, 1)] {
            let p = lfw.join(who).join(format!("{who}_{n:04}.jpg"));
            println!(
                "door demo: the board checks the face the host found in {}",
                p.display()
            );
            // Exit 0 unlocked, 3 rejected: both are the board deciding.
            let verify = |how: &[&std::ffi::OsStr]| -> Result<()> {
                let mut args = vec![
                    os("board"),
                    os("verify"),
                    os("--port"),
                    os(&port),
                    os("--key"),
                    key.as_os_str(),
                ];
                args.extend_from_slice(how);
                args.push(p.as_os_str());
                let s = facegate(&args)?;
                if !matches!(s.code(), Some(0 | 3)) {
                    bail!("facegate board verify failed ({s})");
                }
                Ok(())
            };
            verify(&[os("--face"), os("central")])?;
            // The door seeing for itself: the whole photo as an RGB565
            // camera frame; detection, alignment and embedding on the board.
            println!(
                "door demo: the board sees {} as a camera frame",
                p.display()
            );
            verify(&[os("--frame")])?;
        }
        board_audit(root, &port, &key)?;
        let text = std::fs::read_to_string(&log)?;
        for line in text.lines().filter(|l| l.contains("lock relay")) {
            println!("  [board] {line}");
        }
        println!("door demo: the board's whole log is in {}", log.display());
        Ok(())
    })();
    qemu::stop(&mut door);
    result
}

/// Writes the engine check's model, faces and host embeddings (see facegate-quant's
/// `engine_fixture` example); returns the folder.
fn engine_fixture(root: &Path) -> Result<PathBuf> {
    let out = target_dir(root).join("engine-fixture");
    // Built like `cargo test --workspace` builds it (same features, same
    // profile), so after the host tests this compiles nothing.
    run(cargo(root).args(["build", "--quiet", "--locked", "--workspace", "--examples"]))?;
    let exe = target_dir(root).join("debug/examples/engine_fixture");
    run(Command::new(&exe).arg(&out).arg(data_dir(root)))?;
    Ok(out)
}

/// Builds all firmware boards; returns the QEMU board's self-test ELF (the
/// door image, `door`, is beside it).
fn build_firmware(root: &Path, tc: &CrossToolchain) -> Result<PathBuf> {
    let fixture = engine_fixture(root)?;
    let fw = root.join("firmware");
    let target_dir = firmware_target_dir(root);
    let mut cmd = cargo(&fw);
    tc.apply(&mut cmd);
    cmd.env("FACEGATE_ENGINE_FIXTURE", &fixture);
    cmd.args(["build", "--release", "--locked", "--workspace"])
        .args(tc.build_std_args())
        .env("CARGO_TARGET_DIR", &target_dir);
    run(&mut cmd)?;
    let out = target_dir.join(THUMB).join("release");
    for board in ["qemu-mps2-an500", "door", "stm32h743"] {
        let elf = out.join(board);
        let size = std::fs::metadata(&elf)
            .with_context(|| format!("missing {}", elf.display()))?
            .len();
        println!("built firmware {board}: {} ({size} B ELF)", elf.display());
    }
    Ok(out.join("qemu-mps2-an500"))
}

pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

pub(crate) fn firmware_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("firmware"),
        None => root.join("firmware").join("target"),
    }
}

fn repo_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// `cargo` in `dir`, with the variables of an enclosing `cargo xtask` removed
/// so that a cross build does not inherit the host's rustc.
fn cargo(dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir);
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_BOOTSTRAP",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("command failed ({status}): {shown}");
    }
    Ok(())
}

fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("\n==> {name}");
    let t = Instant::now();
    let r = f().with_context(|| format!("step failed: {name}"))?;
    println!("<== {name}: ok ({:.1?})", t.elapsed());
    Ok(r)
}
