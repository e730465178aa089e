//! `facegate-edge`: the door on a Linux board.
//!
//! ```sh
//! facegate-edge serve --model nano.onnx --blob nano.fgm --state /var/lib/facegate \
//!     --port tcp:0.0.0.0:4555 --camera mjpeg:/run/facegate/camera.mjpeg \
//!     [--gpio-chip /dev/gpiochip0 --gpio-line 17]
//! # the camera, into the FIFO (any MJPEG source will do):
//! ffmpeg -f v4l2 -input_format mjpeg -i /dev/video0 -c copy -f mjpeg /run/facegate/camera.mjpeg
//! ```

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::{Args, Parser, Subcommand};
use facegate_edge::bench;
use facegate_edge::door_app::{CameraConfig, CameraSource, ServeConfig, serve};

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
    /// Time the camera path photo by photo: decode, detect + align, embed.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Float ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// Its int8 blob.
    #[arg(long)]
    blob: PathBuf,
    /// Folder with the MTCNN weights.
    #[arg(long, default_value = "models/third_party/mtcnn")]
    detector: PathBuf,
    /// Folder of photos (e.g. ../shared/data/lfw/raw_subset).
    #[arg(long)]
    photos: PathBuf,
    /// At most this many photos.
    #[arg(long, default_value_t = 100)]
    limit: usize,
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
    /// A camera, faces found on the board: `mjpeg:PATH` (a FIFO the camera
    /// writes MJPEG into, e.g. with ffmpeg), `mjpeg:PATH@FPS` (a recording
    /// replayed at FPS), or `photos:DIR` (new photos dropped into DIR).
    #[arg(long, value_parser = clap::value_parser!(CameraSource))]
    camera: Option<CameraSource>,
    /// Folder with the MTCNN weights the camera's faces are found with.
    #[arg(long, default_value = "models/third_party/mtcnn")]
    detector: PathBuf,
    /// Smallest face the camera looks for, in pixels.
    #[arg(long, default_value_t = 40.0)]
    min_face: f32,
    /// Device id (up to 16 bytes of text); default: the board's hardware
    /// serial number, else a random id kept in the state folder.
    #[arg(long)]
    device_id: Option<String>,
    /// The installer's public key (`facegate keygen --out installer.key`
    /// writes installer.key.pub): only a claim carrying its token
    /// (`facegate provision --installer-key`) can claim this board. Without
    /// it, whoever reaches the unclaimed board first owns it.
    #[arg(long, value_name = "KEY_PUB")]
    claim_key: Option<PathBuf>,
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
                camera: a.camera.map(|source| CameraConfig {
                    source,
                    detector: a.detector,
                    min_face: a.min_face,
                }),
                device_id: a.device_id,
                gpio: a.gpio_chip.zip(a.gpio_line),
                claim_key: a.claim_key,
            },
            &AtomicBool::new(false),
        ),
        Command::Bench(a) => bench::run(&bench::BenchConfig {
            model: a.model,
            blob: a.blob,
            detector: a.detector,
            photos: a.photos,
            limit: a.limit,
        })
        .map(|report| println!("{report}")),
    };
    match run {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
