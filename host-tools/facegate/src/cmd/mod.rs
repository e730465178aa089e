//! Subcommands.

pub mod bench;
pub mod bench_losses;
pub mod bench_photo;
pub mod bench_train;
pub mod board;
pub mod center;
pub mod claim_token;
pub mod db;
pub mod detector;
pub mod enroll;
pub mod eval;
pub mod eval_enroll;
pub mod export;
pub mod keygen;
pub mod model;
pub mod model_card;
pub mod peer;
pub mod photos;
pub mod provision;
pub mod quantize;
pub mod train;
pub mod train_views;
pub mod verify;
pub mod viz;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Offline face verification for doors: train, evaluate, enroll, provision.
#[derive(Debug, Parser)]
#[command(name = "facegate", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect and check template databases.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Train a face embedder (burn, CPU) with a margin loss.
    Train(train::TrainArgs),
    /// Render augmented views of training faces for a teacher to embed (consistent distillation).
    TrainViews(train_views::TrainViewsArgs),
    /// Write a training run's embedder as float ONNX (BatchNorm folded).
    Export(export::ExportArgs),
    /// Centre a float embedder on the mean face of its training faces (folded into its last bias).
    Center(center::CenterArgs),
    /// Draw the 2-D feature spaces the six losses learn on Fashion-MNIST (one PNG grid).
    Viz(viz::VizArgs),
    /// Model presets: parameters, MACs, activations.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Evaluate an embedder on LFW: 10-fold, all pairs (ROC, TAR@FAR), 1:N, door threshold.
    Eval(eval::EvalArgs),
    /// Quantize a float ONNX embedder to an int8 `.fgm` blob for the engine.
    Quantize(quantize::QuantizeArgs),
    /// The board's face detector (MTCNN, int8): build its blobs, compare it with the host's.
    #[command(subcommand)]
    Detector(detector::DetectorCommand),
    /// Create the site's Ed25519 key pair (signs every provisioning command).
    Keygen(keygen::KeygenArgs),
    /// Enroll a person from photos (faces detected, aligned and quality-checked) into the site database.
    Enroll(enroll::EnrollArgs),
    /// Identification quality of enrollment from raw photos: rank-1, FAR/FRR at the deployed threshold.
    EvalEnroll(eval_enroll::EvalEnrollArgs),
    /// Check a face against the site database on the host, or on a board with --port (exit 0 accept, 3 reject).
    Verify(verify::VerifyArgs),
    /// An installer's token that lets one site claim one board (boards built with an installer key).
    ClaimToken(claim_token::ClaimTokenArgs),
    /// Sync the site database to a board over its serial port (claim, enroll, remove, threshold).
    Provision(provision::ProvisionArgs),
    /// Ask a board: info, people, audit log, or its decision on a face.
    #[command(subcommand)]
    Board(board::BoardCommand),
    /// Benchmarks (measurements, not tests).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Db(c) => db::run(c),
        Command::Train(a) => train::run(a),
        Command::TrainViews(a) => train_views::run(a),
        Command::Model(c) => model::run(c),
        Command::Export(a) => export::run(a),
        Command::Center(a) => center::run(a),
        Command::Viz(a) => viz::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::Detector(c) => detector::run(c),
        Command::Keygen(a) => keygen::run(a),
        Command::Bench(c) => bench::run(c),
        Command::Enroll(a) => enroll::run(a),
        Command::EvalEnroll(a) => eval_enroll::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Provision(a) => provision::run(a),
        Command::ClaimToken(a) => claim_token::run(a),
        Command::Board(c) => board::run(c),
    }
}
