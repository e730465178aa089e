//! `facegate bench train`: training images per second of burn (flex, CPU;
//! or LibTorch in a `tch` build) against PyTorch on the same network, head,
//! optimiser, images, batch size and threads (`bench/train_peer.py`), side by
//! side, with the ratios.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_train::data::{DecodedFaces, FaceFolders};
use facegate_train::device::ComputeDevice;
use facegate_train::model::Preset;
use facegate_train::throughput;
use serde::Deserialize;

/// `facegate bench train …`
#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    /// Network preset.
    #[arg(long, value_enum, default_value_t = Preset::Mfn)]
    preset: Preset,
    /// Identity-per-folder faces (the first `--images` in sorted order).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "../shared/data/celeba/wild_112"
    )]
    data: PathBuf,
    /// Faces held in memory and cycled through.
    #[arg(long, default_value_t = 512)]
    images: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Threads for both frameworks.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Python with torch for the peer (set up by `bench/setup-torch.sh`).
    #[arg(long, default_value = "bench/.venv-torch/bin/python")]
    python: PathBuf,
    /// The peer script.
    #[arg(long, default_value = "bench/train_peer.py")]
    peer: PathBuf,
    /// Only burn (no PyTorch run).
    #[arg(long)]
    no_peer: bool,
    /// burn's compute devices to time, comma-separated: flex, and in a
    /// LibTorch build (scripts/build-tch.sh) tch-cpu, tch-cuda or tch-cuda:N (GPU N).
    #[arg(long, value_delimiter = ',', default_value = "flex")]
    device: Vec<ComputeDevice>,
}

fn burn_label(d: ComputeDevice) -> String {
    match d {
        ComputeDevice::Flex => "burn 0.22 flex (simd, rayon)".into(),
        ComputeDevice::TchCpu => "burn 0.22 tch (LibTorch CPU)".into(),
        ComputeDevice::TchCuda(n) => format!("burn 0.22 tch (LibTorch CUDA:{n})"),
    }
}

#[derive(Debug, Deserialize)]
struct PeerResult {
    framework: String,
    params: usize,
    images_per_second: f64,
    final_loss: f64,
}

/// The first `n` faces, identities and files in sorted order (the peer
/// script picks the same ones).
fn first_faces(dir: &PathBuf, n: usize) -> Result<FaceFolders> {
    let mut folders = FaceFolders::scan(std::slice::from_ref(dir))
        .with_context(|| format!("reading faces from {}", dir.display()))?;
    let mut left = n;
    folders.identities.retain_mut(|id| {
        id.files.truncate(left);
        left -= id.files.len();
        !id.files.is_empty()
    });
    if folders.images() < n {
        bail!(
            "{} holds {} faces, fewer than --images {n}",
            dir.display(),
            folders.images()
        );
    }
    Ok(folders)
}

fn peer(a: &TrainBenchArgs, channels_last: bool) -> Result<PeerResult> {
    let arch = serde_json::to_string(&a.preset.architecture())?;
    let mut cmd = Command::new(&a.python);
    cmd.arg(&a.peer)
        .args(["--arch", &arch])
        .arg("--data")
        .arg(&a.data)
        .args(["--images", &a.images.to_string()])
        .args(["--batch", &a.batch.to_string()])
        .args(["--threads", &a.threads.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .args(["--steps", &a.steps.to_string()])
        .env("GLIBC_TUNABLES", crate::memory::GLIBC_TUNABLES);
    if channels_last {
        cmd.arg("--channels-last");
    }
    let setup = format!(
        "{}; set it up with bench/setup-torch.sh, or pass --no-peer",
        a.python.display()
    );
    super::peer::run_peer(cmd, &[], "PyTorch", &setup)
}

/// Runs `facegate bench train`.
pub fn run(a: TrainBenchArgs) -> Result<ExitCode> {
    if a.batch == 0 || a.steps == 0 || a.threads == 0 {
        bail!("--batch, --steps and --threads must be at least 1");
    }
    // The global pool is set once per process; this command is its own process.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global();
    let folders = first_faces(&a.data, a.images)?;
    let faces = DecodedFaces::decode(&folders, false);
    if faces.len() < a.images {
        bail!(
            "{} of the first {} faces could not be decoded: {:?}",
            a.images - faces.len(),
            a.images,
            faces.skipped.first()
        );
    }
    let arch = a.preset.architecture();
    let info = arch.info();
    println!(
        "{:?}: {} params, {:.1} M MACs; {} faces of {} people, batch {}, {} threads, {} + {} steps",
        a.preset,
        info.params,
        info.macs as f64 / 1e6,
        faces.len(),
        faces.classes(),
        a.batch,
        a.threads,
        a.warmup,
        a.steps
    );
    // Every device is checked before the first (long) timing starts.
    let devices = a
        .device
        .iter()
        .map(|&d| Ok((d, d.device(a.threads)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut burns = Vec::new();
    for (d, device) in &devices {
        let t = throughput::measure(&arch, &faces, a.batch, a.warmup, a.steps, 1, device);
        println!(
            "{:<36} {:>8.1} img/s  (last loss {:.3})",
            burn_label(*d),
            t.images_per_second,
            t.final_loss
        );
        burns.push((*d, t));
    }
    if a.no_peer {
        return Ok(ExitCode::SUCCESS);
    }
    for channels_last in [false, true] {
        let p = peer(&a, channels_last)?;
        if let Some((_, b)) = burns.iter().find(|(_, b)| b.params != p.params) {
            bail!(
                "the peer built a different network: {} params against burn's {}",
                p.params,
                b.params
            );
        }
        let ratios: Vec<String> = burns
            .iter()
            .map(|(d, b)| {
                format!(
                    "burn {d}/peer = {:.2}×",
                    b.images_per_second / p.images_per_second
                )
            })
            .collect();
        println!(
            "{:<36} {:>8.1} img/s  (last loss {:.3})  {}",
            p.framework,
            p.images_per_second,
            p.final_loss,
            ratios.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
