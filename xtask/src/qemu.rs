//! Runs the QEMU board's firmware and checks its verdict.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The line the firmware logs when every check held.
const PASS_PREFIX: &str = "PASS:";
/// The line the engine check logs when the board's embeddings equal the host engine's.
const ENGINE_LINE: &str = "equal the host engine's bit for bit";
/// The line the MobileFaceNet-size check logs when the board's embedding equals the host's.
const MFN_LINE: &str = "mfn embedding equals the host engine's bit for bit";
/// The start of the engine's cost line (`… N instructions per embedding …, M MACs, …`).
const COST_LINE: &str = "engine cost: ";
/// What follows [`MFN_LINE`] on the MobileFaceNet check's line (`… N instructions, M MACs, …`).
const MFN_COST: &str = "; cost ";
/// The line the detector check logs when the board found the host's faces.
const DETECT_LINE: &str = "landmarks and the aligned face's embedding equal the host's bit for bit";
/// The line the photo → decision check logs when every decision equals the host's.
const DOOR_PHOTOS_LINE: &str = "decisions from raw photos equal the host's";
/// The start of the detector's cost line (`… N instructions to detect, M from photo to embedding …`).
const DETECT_COST: &str = "detect cost: ";
/// The line the door end-to-end check logs when it passed.
const DOOR_LINE: &str = "door: provisioning, matching, lock and restart checks passed";

/// What the firmware measured for one embedding on the emulated Cortex-M7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineCost {
    /// Instructions per embedding (QEMU `-icount`: one per virtual nanosecond).
    pub instructions: u64,
    /// The model's multiply-accumulates per embedding.
    pub macs: u64,
}

/// What the self-test measured: the engine check's model (the shipped
/// `nano` when present) and the MobileFaceNet-size one (the shipped `mfn`
/// when present).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Costs {
    /// From the `engine cost:` line.
    pub engine: Option<EngineCost>,
    /// From the `mfn embedding equals …; cost …` line.
    pub mfn: Option<EngineCost>,
    /// From the `detect cost:` line.
    pub detect: Option<DetectCost>,
    /// From the door photos' line: the most instructions one raw photo took
    /// from the frame to the door's decision.
    pub photo_to_decision: Option<u64>,
}

/// What the detector check measured on its photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectCost {
    /// Instructions to find the faces.
    pub detect: u64,
    /// Instructions from the photo to the best face's embedding.
    pub photo_to_embedding: u64,
}

/// Reads `detect cost: N instructions to detect, M from photo to embedding …`.
fn parse_detect_cost(line: &str) -> Option<DetectCost> {
    let rest = &line[line.find(DETECT_COST)? + DETECT_COST.len()..];
    let detect = rest.split_whitespace().next()?.parse().ok()?;
    let after = &rest[rest.find(", ")? + 2..];
    let photo_to_embedding = after.split_whitespace().next()?.parse().ok()?;
    Some(DetectCost {
        detect,
        photo_to_embedding,
    })
}

/// Reads `door photos: … at most N instructions from photo to decision …`.
fn parse_photo_to_decision(line: &str) -> Option<u64> {
    if !line.contains(DOOR_PHOTOS_LINE) {
        return None;
    }
    const AT_MOST: &str = "at most ";
    let rest = &line[line.find(AT_MOST)? + AT_MOST.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Reads `engine cost: N instructions per embedding (…), M MACs, …`.
fn parse_cost(line: &str) -> Option<EngineCost> {
    cost_after(line, COST_LINE)
}

/// Reads `… mfn embedding equals the host engine's bit for bit; cost N instructions, M MACs, …`.
fn parse_mfn_cost(line: &str) -> Option<EngineCost> {
    cost_after(&line[line.find(MFN_LINE)?..], MFN_COST)
}

/// Reads `N …, M MACs` after `marker`.
fn cost_after(line: &str, marker: &str) -> Option<EngineCost> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let mut words = rest.split_whitespace();
    let instructions = words.next()?.parse().ok()?;
    let macs = rest
        .split(", ")
        .find_map(|part| part.strip_suffix(" MACs"))?
        .parse()
        .ok()?;
    Some(EngineCost { instructions, macs })
}

/// Boots `elf` through `firmware/scripts/qemu-run.sh`, echoes the decoded log,
/// and requires both QEMU's exit status 0 and the firmware's pass line.
/// Returns the costs the firmware logged.
pub fn run_selftest(root: &Path, elf: &Path) -> Result<Costs> {
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
    let mut mfn_equal = false;
    let mut door_ok = false;
    let mut detect_equal = false;
    let mut door_photos_equal = false;
    let mut costs = Costs::default();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("  [qemu] {line}");
        engine_equal |= line.contains(ENGINE_LINE);
        mfn_equal |= line.contains(MFN_LINE);
        door_ok |= line.contains(DOOR_LINE);
        detect_equal |= line.contains(DETECT_LINE);
        door_photos_equal |= line.contains(DOOR_PHOTOS_LINE);
        costs.detect = costs.detect.or_else(|| parse_detect_cost(&line));
        costs.photo_to_decision = costs
            .photo_to_decision
            .or_else(|| parse_photo_to_decision(&line));
        costs.engine = costs.engine.or_else(|| parse_cost(&line));
        costs.mfn = costs.mfn.or_else(|| parse_mfn_cost(&line));
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
    if !mfn_equal {
        bail!(
            "the firmware did not report the MobileFaceNet-size embedding equal to the host's (`{MFN_LINE}`)"
        );
    }
    // The detector check is compiled in whenever the fixture has its photo
    // (the raw LFW photos and models/detector exist): then it must have run.
    let photo = crate::target_dir(root).join("engine-fixture/photo.bin");
    let detect_compiled = std::fs::metadata(&photo).is_ok_and(|m| m.len() > 0);
    if detect_compiled && !detect_equal {
        bail!(
            "the firmware did not report the detector's faces equal to the host's (`{DETECT_LINE}`)"
        );
    }
    let photos = crate::target_dir(root).join("engine-fixture/door_photos.bin");
    let photos_compiled = std::fs::metadata(&photos).is_ok_and(|m| m.len() > 0);
    if photos_compiled && !door_photos_equal {
        bail!(
            "the firmware did not report its decisions on raw photos equal to the host's (`{DOOR_PHOTOS_LINE}`)"
        );
    }
    println!("QEMU mps2-an500: firmware self-test passed");
    Ok(costs)
}

/// Boots the door image with UART0 on `127.0.0.1:port` until stopped; its
/// flash files live in `target/door-state`.
pub fn run_door(root: &Path, elf: &Path, port: u16, fresh: bool) -> Result<()> {
    let state = crate::target_dir(root).join("door-state");
    if fresh && state.exists() {
        std::fs::remove_dir_all(&state)?;
    }
    std::fs::create_dir_all(&state)?;
    println!(
        "door image on QEMU mps2-an500: UART0 on tcp:127.0.0.1:{port}, flash in {}",
        state.display()
    );
    println!("  facegate board info --port tcp:127.0.0.1:{port}");
    println!(
        "  facegate provision --port tcp:127.0.0.1:{port} --key site.key --db site.fgdb --deployment models/nano.deployment.toml"
    );
    // No timeout: it runs until stopped.
    crate::run(door_command(root, elf, port, &state).env("QEMU_TIMEOUT", "0"))
}

/// `qemu-run.sh` for the door image, UART0 on `127.0.0.1:port`, QEMU's
/// working directory (its flash files) in `dir`.
fn door_command(root: &Path, elf: &Path, port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("firmware/scripts/qemu-run.sh"))
        .arg(elf)
        .env(
            "QEMU_SERIAL",
            format!("tcp:127.0.0.1:{port},server=on,wait=off"),
        )
        .current_dir(dir);
    cmd
}

/// Starts the door image in the background (its own process group), UART0
/// on `127.0.0.1:port`, log to `log`, flash files in `dir`.
pub fn spawn_door(
    root: &Path,
    elf: &Path,
    port: u16,
    dir: &Path,
    log: &Path,
) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    door_command(root, elf, port, dir)
        .env("QEMU_TIMEOUT", "600")
        .stdout(std::fs::File::create(log)?)
        .process_group(0)
        .spawn()
        .context("could not start firmware/scripts/qemu-run.sh")
}

/// Waits until `log` contains `line`.
pub fn wait_for_line(log: &Path, line: &str, timeout: std::time::Duration) -> Result<()> {
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(line)
    {
        if started.elapsed() > timeout {
            bail!("the firmware never logged `{line}` (see {})", log.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// Stops a process group started by [`spawn_door`].
pub fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}

/// Writes the measured cost of each shipped model the firmware ran
/// (`models/nano.fgm` in the engine check, `models/mfn.fgm` in the
/// MobileFaceNet-size one) as `<dir>/<name>.cortex-m7.json`, with the blob's
/// model hash so a later card can tell whether the figure is still current.
/// A model that is not shipped ran as a stand-in and gets no record.
pub fn write_costs(root: &Path, costs: Costs, dir: &Path) -> Result<()> {
    use facegate_core::engine::blob::HASH_AT;
    let mut written = 0;
    for (name, cost) in [("nano", costs.engine), ("mfn", costs.mfn)] {
        let blob_path = root.join("models").join(format!("{name}.fgm"));
        let Ok(blob) = std::fs::read(&blob_path) else {
            println!(
                "{}: not shipped, so the firmware ran a stand-in: no cost record",
                blob_path.display()
            );
            continue;
        };
        let cost = cost.with_context(|| {
            format!(
                "the firmware logged no cost line for {}",
                blob_path.display()
            )
        })?;
        let hash = blob
            .get(HASH_AT..HASH_AT + 32)
            .with_context(|| format!("{} is shorter than its header", blob_path.display()))?;
        let hash: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let json = format!(
            "{{\n  \"model_hash\": \"{hash}\",\n  \"instructions_per_embedding\": {},\n  \"macs\": {},\n  \"measured_by\": \"cargo xtask qemu --cost-out (QEMU mps2-an500, Cortex-M7, -icount shift=0)\"\n}}\n",
            cost.instructions, cost.macs
        );
        let out = dir.join(format!("{name}.cortex-m7.json"));
        std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "{name} engine cost: {} instructions per embedding → {}",
            cost.instructions,
            out.display()
        );
        written += 1;
    }
    if written == 0 {
        bail!("no shipped model (models/nano.fgm, models/mfn.fgm) to record a cost for");
    }
    if let Some(d) = costs.detect {
        let mut hashes = Vec::new();
        for net in ["pnet", "rnet", "onet"] {
            let path = root.join(format!("models/detector/{net}.fgm"));
            let blob = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let hash = blob
                .get(HASH_AT..HASH_AT + 32)
                .with_context(|| format!("{} is shorter than its header", path.display()))?;
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            hashes.push(format!("\"{net}\": \"{hex}\""));
        }
        let decision = costs.photo_to_decision.map_or(String::new(), |n| {
            format!("\n  \"instructions_photo_to_decision_max\": {n},")
        });
        let json = format!(
            "{{\n  \"model_hashes\": {{ {} }},\n  \"cascade\": \"door (DetectConfig::DOOR)\",\n  \"photo\": \"lfw/raw_subset/Abdullah_Gul/Abdullah_Gul_0001.jpg (250x250, one face)\",\n  \"instructions_to_detect\": {},\n  \"instructions_photo_to_nano_embedding\": {},{decision}\n  \"measured_by\": \"cargo xtask qemu --cost-out (QEMU mps2-an500, Cortex-M7, -icount shift=0; the decision: the slowest of the firmware's three raw door photos)\"\n}}\n",
            hashes.join(", "),
            d.detect,
            d.photo_to_embedding
        );
        let out = dir.join("detector.cortex-m7.json");
        std::fs::write(&out, json).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "detector cost: {} instructions to detect → {}",
            d.detect,
            out.display()
        );
    }
    Ok(())
}

pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_line_is_read() {
        let line = "INFO engine cost: 1234567 instructions per embedding (meaningful under -icount), 22500000 MACs, 54 instructions per 1000 MACs";
        assert_eq!(
            parse_cost(line),
            Some(EngineCost {
                instructions: 1_234_567,
                macs: 22_500_000
            })
        );
        assert_eq!(parse_cost("INFO engine: 3 embeddings equal"), None);
    }

    #[test]
    fn the_detect_cost_is_read() {
        let line = "INFO  detect cost: 292703840 instructions to detect, 344486840 from photo to embedding (717 ms at 480 MHz, one instruction a cycle)";
        assert_eq!(
            parse_detect_cost(line),
            Some(DetectCost {
                detect: 292_703_840,
                photo_to_embedding: 344_486_840
            })
        );
        assert_eq!(parse_detect_cost("INFO  detect nets: P-Net 9681480"), None);
        let door = "INFO  door photos: 3 decisions from raw photos equal the host's (1 accepted); at most 220225500 instructions from photo to decision (458 ms at 480 MHz)";
        assert_eq!(parse_photo_to_decision(door), Some(220_225_500));
        assert_eq!(parse_photo_to_decision(line), None);
        assert_eq!(parse_cost(line), None);
    }

    #[test]
    fn the_mfn_cost_is_read_from_its_own_line_only() {
        let line = "INFO engine: mfn embedding equals the host engine's bit for bit; cost 436123456 instructions, 203000000 MACs, 2148 instructions per 1000 MACs";
        assert_eq!(
            parse_mfn_cost(line),
            Some(EngineCost {
                instructions: 436_123_456,
                macs: 203_000_000
            })
        );
        assert_eq!(parse_cost(line), None);
        let nano = "INFO engine cost: 1234567 instructions per embedding (meaningful under -icount), 22500000 MACs, 54 instructions per 1000 MACs";
        assert_eq!(parse_mfn_cost(nano), None);
    }
}
