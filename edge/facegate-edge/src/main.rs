//! `facegate-edge`: the door on a Linux board.
//!
//! ```sh
//! facegate-edge serve --model nano.onnx --blob nano.fgm --state /var/lib/facegate \
//!     --port tcp:0.0.0.0:4555 --faces /run/facegate/faces [--gpio-chip /dev/gpiochip0 --gpio-line 17]
//! ```

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand};
use facegate_edge::door_app::{ServeConfig, serve};

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
    /// Device id (up to 16 bytes of text); default: the board's hardware
    /// serial number, else a random id kept in the state folder.
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
    };
    match run {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
