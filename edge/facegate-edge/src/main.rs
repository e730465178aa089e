//! `facegate-edge`: the door on a Linux board.
//!
//! ```sh
//! facegate-edge serve --model nano.onnx --blob nano.fgm --state /var/lib/facegate \
//!     --port tcp:0.0.0.0:4555 --faces /run/facegate/faces [--gpio-chip /dev/gpiochip0 --gpio-line 17]
//! facegate-edge embed --model nano.onnx FACE.jpg…     # raw embeddings, one line per face
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use facegate_edge::door_app::{ServeConfig, serve};
use facegate_eval::embedder::Embedder as _;
use facegate_eval::faces::Face;
use facegate_eval::onnx::{InputNorm, OnnxEmbedder};

/// The facegate door on a Linux board (Cortex-A).
#[derive(Debug, Parser)]
#[command(name = "facegate-edge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the door: provisioning link, face frames, lock relay.
    Serve(ServeArgs),
    /// Print the raw embedding of each face (one line of floats per face).
    Embed {
        /// Float or QDQ ONNX model.
        #[arg(long)]
        model: PathBuf,
        /// Aligned 112×112 face images.
        #[arg(required = true)]
        faces: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Float ONNX model (or its QDQ int8 export: tract runs it as simulated float, slower).
    #[arg(long)]
    model: PathBuf,
    /// The int8 blob the site's templates are made with (its hash binds them).
    #[arg(long)]
    blob: PathBuf,
    /// Folder for the store, audit log and device key (created if absent).
    #[arg(long)]
    state: PathBuf,
    /// Provisioning link: `tcp:ADDR:PORT` or a serial device `PATH[@BAUD]`.
    #[arg(long)]
    port: String,
    /// Folder whose new aligned face images are camera frames.
    #[arg(long)]
    faces: Option<PathBuf>,
    /// Device id (16 bytes of text); default: from /etc/machine-id.
    #[arg(long)]
    device_id: Option<String>,
    /// GPIO chip of the lock relay (feature `gpio`).
    #[arg(long, requires = "gpio_line")]
    gpio_chip: Option<String>,
    /// GPIO line of the lock relay.
    #[arg(long, requires = "gpio_chip")]
    gpio_line: Option<u32>,
}

fn main() -> std::process::ExitCode {
    let run = match Cli::parse().command {
        Command::Serve(a) => serve(
            &ServeConfig {
                model: a.model,
                blob: a.blob,
                state: a.state,
                port: a.port,
                faces: a.faces,
                device_id: a.device_id,
                gpio: a.gpio_chip.zip(a.gpio_line),
            },
            &AtomicBool::new(false),
        ),
        Command::Embed { model, faces } => embed(&model, &faces),
    };
    match run {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn embed(model: &Path, faces: &[PathBuf]) -> Result<()> {
    let onnx = OnnxEmbedder::load(model, InputNorm::ArcFace)?;
    let mut out = std::io::stdout().lock();
    for f in faces {
        let v = onnx.embed(&Face::load(f)?).map_err(anyhow::Error::msg)?;
        let line: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
        writeln!(out, "{}", line.join(" "))?;
    }
    Ok(())
}
