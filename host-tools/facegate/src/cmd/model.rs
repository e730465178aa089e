//! `facegate model …`: what a network costs.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use facegate_train::model::Preset;

/// `facegate model …`
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Parameters, MACs and the largest activation of a preset.
    Info(InfoArgs),
    /// Measure the shipped models and write models/MODEL_CARD.md and model_card.json.
    Card(super::model_card::CardArgs),
}

/// `facegate model info …`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The preset.
    #[arg(long, value_enum, default_value = "mfn")]
    preset: Preset,
}

/// Runs `facegate model …`.
pub fn run(c: ModelCommand) -> Result<ExitCode> {
    match c {
        ModelCommand::Card(a) => super::model_card::run(a),
        ModelCommand::Info(a) => {
            let arch = a.preset.architecture();
            let i = arch.info();
            println!("preset:              {:?}", a.preset);
            println!("input:               {0}×{0}×3", arch.input);
            println!("embedding:           {}", arch.embedding);
            println!(
                "parameters:          {} (trainable; BatchNorm folds on export)",
                i.params
            );
            println!(
                "MACs per face:       {} ({:.1} M)",
                i.macs,
                i.macs as f64 / 1e6
            );
            println!(
                "largest activation:  {} elements ({} KiB as int8)",
                i.largest_activation,
                i.largest_activation.div_ceil(1024)
            );
            println!(
                "peak live (in+out+residual): {} KiB as int8",
                i.peak_live.div_ceil(1024)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
