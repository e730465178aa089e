//! `facegate bench engine`: host latency of facegate's int8 engine against
//! tract on the same model, batch 1, one thread, side by side.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use facegate_eval::embedder::Embedder;
use facegate_eval::faces::{Face, FaceSet};
use facegate_eval::onnx::OnnxEmbedder;
use facegate_quant::engine::EngineEmbedder;

/// `facegate bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Per-embedding latency: int8 engine (`.fgm`) vs tract (float ONNX, optional QDQ ONNX).
    Engine(EngineArgs),
    /// Train the same network with each loss and compare them on LFW.
    Losses(super::bench_losses::LossesArgs),
    /// Training images/s: burn against PyTorch on the same network, data and threads.
    Train(super::bench_train::TrainBenchArgs),
    /// Photo → decision (detect, align, embed, match), one thread, against dlib's face_recognition pipeline.
    Photo(super::bench_photo::PhotoBenchArgs),
}

/// `facegate bench engine …`
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The engine blob.
    #[arg(long)]
    blob: PathBuf,
    /// The float ONNX model it was quantized from.
    #[arg(long)]
    float: PathBuf,
    /// The QDQ ONNX export of the same quantisation (`facegate quantize --qdq`).
    #[arg(long)]
    qdq: Option<PathBuf>,
    /// Identity-per-folder faces to embed (the first N files).
    #[arg(long, value_name = "DIR")]
    faces: PathBuf,
    /// Faces per engine (after 3 warm-up runs).
    #[arg(long, default_value_t = 50)]
    images: usize,
    /// How pixels are scaled for the ONNX models' input.
    #[arg(long, value_enum, default_value_t = super::eval::Norm::Arcface)]
    input_norm: super::eval::Norm,
    /// Also time onnxruntime on the same ONNX files, faces and thread count
    /// (the peer; set it up with `bench/setup-ort.sh`).
    #[arg(long)]
    onnxruntime: bool,
    /// Python with onnxruntime for the peer.
    #[arg(long, default_value = "bench/.venv-ort/bin/python")]
    python: PathBuf,
    /// The peer script.
    #[arg(long, default_value = "bench/ort_latency.py")]
    peer: PathBuf,
    /// Also write the medians, this CPU's name and the blob's model hash as
    /// JSON (`models/<name>.host-latency.json` goes into the model card).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

/// A recorded host latency measurement (read back by `facegate model card`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HostLatency {
    /// The blob's model hash (hex): the record only counts for that blob.
    pub model_hash: String,
    /// The CPU it ran on (`/proc/cpuinfo` model name).
    pub cpu: String,
    /// Faces timed per engine.
    pub faces: usize,
    /// Median ms per embedding: facegate's int8 engine.
    pub engine_ms: f64,
    /// Median ms per embedding: tract on the float ONNX model.
    pub tract_float_ms: f64,
    /// Median ms per embedding: tract on the QDQ ONNX model.
    pub tract_qdq_ms: Option<f64>,
    /// The onnxruntime peer on the same files, when it was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnxruntime: Option<OrtLatency>,
}

/// The onnxruntime peer's medians (`bench/ort_latency.py`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct OrtLatency {
    /// Its version.
    pub version: String,
    /// Median ms per embedding on the float ONNX model.
    pub float_ms: f64,
    /// Median ms per embedding on the QDQ ONNX model (all graph optimisations on).
    pub qdq_ms: Option<f64>,
}

/// What `bench/ort_latency.py` prints.
#[derive(Debug, serde::Deserialize)]
struct OrtPeerResult {
    onnxruntime: String,
    float: f64,
    qdq: Option<f64>,
}

/// Runs the onnxruntime peer on the same face files, batch 1, one thread.
fn onnxruntime_peer(a: &EngineArgs, files: &[PathBuf]) -> Result<OrtLatency> {
    let mut cmd = Command::new(&a.python);
    cmd.arg(&a.peer)
        .arg("--model")
        .arg(format!("float={}", a.float.display()));
    if let Some(q) = &a.qdq {
        cmd.arg("--model").arg(format!("qdq={}", q.display()));
    }
    let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    let setup = format!("{}; set it up with bench/setup-ort.sh", a.python.display());
    let r: OrtPeerResult = super::peer::run_peer(cmd, list.as_bytes(), "onnxruntime", &setup)?;
    Ok(OrtLatency {
        version: r.onnxruntime,
        float_ms: r.float,
        qdq_ms: r.qdq,
    })
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Runs a `bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Engine(a) => engine(a),
        BenchCommand::Losses(a) => super::bench_losses::run(a),
        BenchCommand::Train(a) => super::bench_train::run(a),
        BenchCommand::Photo(a) => super::bench_photo::run(a),
    }
}

/// The first `n` files of a face set, as paths.
pub(super) fn first_files(set: &FaceSet, n: usize) -> Vec<PathBuf> {
    set.files
        .iter()
        .take(n)
        .map(|f| set.root.join(&f.path))
        .collect()
}

fn median_ms(embedder: &dyn Embedder, faces: &[Face]) -> Result<f64> {
    for f in faces.iter().take(3) {
        embedder.embed(f).map_err(anyhow::Error::msg)?;
    }
    let mut times: Vec<f64> = Vec::with_capacity(faces.len());
    for f in faces {
        let t = Instant::now();
        embedder.embed(f).map_err(anyhow::Error::msg)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn engine(a: EngineArgs) -> Result<ExitCode> {
    if a.images == 0 {
        bail!("--images must be at least 1");
    }
    let files = first_files(&FaceSet::scan(&a.faces)?, a.images);
    let faces = files
        .iter()
        .map(|f| Face::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    let norm = super::eval::input_norm(a.input_norm);
    let engine = EngineEmbedder::load(&a.blob).map_err(anyhow::Error::msg)?;
    let float = OnnxEmbedder::load(&a.float, norm)?;
    // One thread for everyone: the comparison is per core.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("thread pool")?;
    let (e_ms, f_ms, q_ms) = pool.install(|| -> Result<_> {
        let e = median_ms(&engine, &faces)?;
        let f = median_ms(&float, &faces)?;
        let q = match &a.qdq {
            Some(p) => Some(median_ms(&OnnxEmbedder::load(p, norm)?, &faces)?),
            None => None,
        };
        Ok((e, f, q))
    })?;
    println!(
        "median latency per embedding, batch 1, {} faces, this machine:",
        faces.len()
    );
    println!(
        "  facegate int8 engine   {e_ms:8.2} ms   ({})",
        a.blob.display()
    );
    println!(
        "  tract float            {f_ms:8.2} ms   ({})   engine/tract-float = {:.2}x time",
        a.float.display(),
        e_ms / f_ms
    );
    if let (Some(q), Some(p)) = (q_ms, &a.qdq) {
        println!(
            "  tract QDQ (int8 sim.)  {q:8.2} ms   ({})   engine/tract-QDQ = {:.2}x time",
            p.display(),
            e_ms / q
        );
    }
    let ort = if a.onnxruntime {
        let o = onnxruntime_peer(&a, &files)?;
        println!(
            "  onnxruntime {} float {:8.2} ms   engine/ort-float = {:.2}x time, tract-float/ort-float = {:.2}x",
            o.version,
            o.float_ms,
            e_ms / o.float_ms,
            f_ms / o.float_ms
        );
        if let Some(q) = o.qdq_ms {
            println!(
                "  onnxruntime QDQ        {q:8.2} ms   engine/ort-QDQ = {:.2}x time",
                e_ms / q
            );
        }
        Some(o)
    } else {
        None
    };
    if let Some(out) = &a.record {
        let record = HostLatency {
            model_hash: engine
                .model_hash()
                .0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            cpu: cpu_name(),
            faces: faces.len(),
            engine_ms: e_ms,
            tract_float_ms: f_ms,
            tract_qdq_ms: q_ms,
            onnxruntime: ort,
        };
        std::fs::write(out, serde_json::to_string_pretty(&record)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        println!("recorded → {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
