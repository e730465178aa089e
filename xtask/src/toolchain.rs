//! Which compiler builds for Cortex-M on this machine.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::THUMB;

/// Debian's `rustc-web` puts its compiler here, with library source in `/usr/lib/rustlib/src`.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_LIBRARY_SRC: &str = "/usr/lib/rustlib/src/rust/library/core";

/// How Cortex-M code gets compiled.
#[derive(Debug)]
pub enum CrossToolchain {
    /// `rustup target add thumbv7em-none-eabihf` was done: plain cargo.
    RustupTarget,
    /// No prebuilt target: Debian's rustc builds `core` from source
    /// (`-Zbuild-std`), linked with rustup's `rust-lld`.
    BuildStd {
        /// The compiler with matching library source.
        rustc: PathBuf,
        /// The linker (Debian's rustc has none for bare metal).
        linker: PathBuf,
    },
}

impl CrossToolchain {
    /// Picks the toolchain; `FACEGATE_CROSS=rustup|build-std` forces one.
    pub fn detect() -> Result<Self> {
        let forced = std::env::var("FACEGATE_CROSS").ok();
        let rustup_has_target = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == THUMB)
            });
        match forced.as_deref() {
            Some("rustup") => return Ok(Self::RustupTarget),
            Some("build-std") => return Self::build_std(),
            Some(other) => bail!("FACEGATE_CROSS={other}: expected `rustup` or `build-std`"),
            None => {}
        }
        if rustup_has_target {
            return Ok(Self::RustupTarget);
        }
        Self::build_std().map_err(|e| {
            e.context(format!(
                "no way to build for {THUMB}: either `rustup target add {THUMB}`, \
                 or run `scripts/setup.sh` (installs Debian's rustc-web and rust-web-src)"
            ))
        })
    }

    fn build_std() -> Result<Self> {
        if !Path::new(DEBIAN_RUSTC).exists() || !Path::new(DEBIAN_LIBRARY_SRC).exists() {
            bail!("{DEBIAN_RUSTC} or {DEBIAN_LIBRARY_SRC} is missing");
        }
        let linker = rustup_sysroot()?.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld");
        if !linker.exists() {
            bail!("rust-lld not found at {}", linker.display());
        }
        Ok(Self::BuildStd {
            rustc: DEBIAN_RUSTC.into(),
            linker,
        })
    }

    /// Sets the compiler and linker environment of a cargo command.
    pub fn apply(&self, cmd: &mut Command) {
        if let Self::BuildStd { rustc, linker } = self {
            cmd.env("RUSTC", rustc)
                // build-std is unstable; Debian's stable rustc allows it with this switch.
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_THUMBV7EM_NONE_EABIHF_LINKER", linker);
        }
    }

    /// Extra cargo arguments.
    pub fn build_std_args(&self) -> &'static [&'static str] {
        match self {
            Self::RustupTarget => &[],
            Self::BuildStd { .. } => &["-Zbuild-std=core"],
        }
    }
}

impl fmt::Display for CrossToolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RustupTarget => write!(f, "rustup target {THUMB}"),
            Self::BuildStd { rustc, linker } => write!(
                f,
                "build-std with {} and {}",
                rustc.display(),
                linker.display()
            ),
        }
    }
}

fn rustup_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .env_remove("RUSTC")
        .output()?;
    if !out.status.success() {
        bail!("`rustc --print sysroot` failed");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
