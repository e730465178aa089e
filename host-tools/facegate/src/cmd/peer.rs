//! Peer benchmarks in Python (onnxruntime, PyTorch): run one and read its
//! result, shared by `bench engine` and `bench train`.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs a Python peer benchmark (`cmd`, its script and arguments set),
/// feeding it `stdin`, and reads the JSON object on its last output line.
/// `name` and `setup` go into the errors (which peer, how to install it).
pub fn run_peer<T: serde::de::DeserializeOwned>(
    mut cmd: Command,
    stdin: &[u8],
    name: &str,
    setup: &str,
) -> Result<T> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running the {name} peer ({setup})"))?;
    // A peer that dies early closes its stdin: its exit status and stderr
    // say more than the broken pipe, so the write error waits for them.
    let written = child
        .stdin
        .take()
        .context("no stdin for the peer")?
        .write_all(stdin);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "the {name} peer failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    written.with_context(|| format!("feeding the {name} peer"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading the {name} peer's result {line:?}"))
}
