//! The `host` subcommands: the top-level [`Command`] enum lists them all; one module per subcommand
//! holds its clap arguments and its `run`, and this module the helpers they share.
use clap::{Subcommand, ValueEnum};
use host::models::glass::GlassConfig;

pub mod data;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod gradcam;
pub mod keygen;
pub mod sign;
pub mod synth;
pub mod train;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a synthetic MVTec-AD-layout category (procedural images, defects and masks).
    Synth(synth::SynthArgs),
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Train a model into a run directory (resumable).
    Train {
        #[command(subcommand)]
        command: train::TrainCommand,
    },
    /// Evaluate a run on its test split: metrics.json and overlay strips in maps/.
    Eval(eval::EvalArgs),
    /// Grad-CAM / Grad-CAM++ strips of single images with a classifier run.
    Gradcam(gradcam::GradcamArgs),
    /// Export a trained run to a model bundle for the station: ONNX fp32 (and int8 with --int8),
    /// golden.npz and manifest.json (threshold, map spec, sha256, provenance, accuracy and latency).
    Export(export::ExportArgs),
    /// A new ed25519 key pair for signing bundles: the secret key to OUT, the public key to OUT.pub.
    Keygen(keygen::KeygenArgs),
    /// Sign a bundle's manifest.json with a secret key (writes manifest.sig); `export --sign` does it
    /// as part of the export.
    Sign(sign::SignArgs),
    /// The experiment protocol (docs/experiment-protocol.md) in one command: per category GLASS and
    /// each classifier (same seed), Grad-CAM, experiment 3 (a classifier trained on one defect type),
    /// and a report (index.html, report.md, results.json). Rerun to resume: finished runs are reused.
    Experiment(Box<experiment::ExperimentArgs>),
}

/// Classifier architectures (CLI spelling).
pub type ClassifierArch = host::models::classifier::Arch;

/// Named GLASS presets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// As published: WRN50-2 layer2+3, embed 1536, 20 ascent steps, batch 8, 512 px.
    Paper,
    /// EfficientNet-Lite0, 152-dim patches, 5 ascent steps, 1/4 of the patch rows: one MVTec category at
    /// 512 px in under an hour on a 2-core CPU; runs on a Raspberry Pi.
    Edge,
    /// The edge model at 160 px with a short budget, for tests (minutes on 2 cores).
    Tiny,
}

impl Preset {
    /// The preset's GLASS recipe.
    pub fn config(self) -> GlassConfig {
        match self {
            Preset::Paper => GlassConfig::paper(),
            Preset::Edge => GlassConfig::edge(),
            Preset::Tiny => GlassConfig::tiny(),
        }
    }
}

pub fn show_progress() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
