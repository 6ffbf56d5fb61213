//! `host`: the workstation CLI of glass-edge: datasets, training, evaluation (export follows).
//!
//! ```text
//! cargo run -p host -- synth --out /tmp/d --category widget --kind object
//! cargo run -p host -- data check --data /tmp/d/widget --json
//! cargo run --release -p host -- train glass --data /tmp/d/widget --out runs/widget --preset edge
//! cargo run --release -p host -- eval --run runs/widget
//! ```
//! Logging goes to stderr and follows `RUST_LOG` (default `info`).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use host::data::synth::{self, DefectKind, Kind, SynthConfig};

mod commands;

#[derive(Debug, Parser)]
#[command(
    name = "host",
    version,
    about = "glass-edge workstation: datasets, training, evaluation, export"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a synthetic MVTec-AD-layout category (procedural images, defects and masks).
    Synth(SynthArgs),
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Train a model into a run directory (resumable).
    Train {
        #[command(subcommand)]
        command: commands::TrainCommand,
    },
    /// Evaluate a run on its test split: metrics.json and overlay strips in maps/.
    Eval(commands::EvalArgs),
    /// Grad-CAM / Grad-CAM++ strips of single images with a classifier run.
    Gradcam(commands::GradcamArgs),
    /// Export a trained run to a model bundle for the station: ONNX fp32 (and int8 with --int8),
    /// golden.npz and manifest.json (threshold, map spec, sha256, provenance, accuracy and latency).
    Export(commands::ExportArgs),
    /// A new ed25519 key pair for signing bundles: the secret key to OUT, the public key to OUT.pub.
    Keygen(commands::KeygenArgs),
    /// Sign a bundle's manifest.json with a secret key (writes manifest.sig); `export --sign` does it
    /// as part of the export.
    Sign(commands::SignArgs),
    /// The experiment protocol (docs/experiment-protocol.md) in one command: per category GLASS and
    /// each classifier (same seed), Grad-CAM, experiment 3 (a classifier trained on one defect type),
    /// and a report (index.html, report.md, results.json). Rerun to resume: finished runs are reused.
    Experiment(Box<commands::ExperimentArgs>),
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Validate a category folder and show its counts and both split protocols.
    ///
    /// Every image and mask is decoded. Errors (unreadable files, masks without images, defect images
    /// without masks in a defect type that has masks, mask/image size mismatches, missing folders) are
    /// listed with their paths and do not stop the scan; the exit code is 1 when there is at least one
    /// error, 0 otherwise. A category or defect type with no masks at all is a warning (image labels
    /// only; pixel metrics leave those images out, or are null).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct SynthArgs {
    /// Dataset root; the category is written to OUT/CATEGORY (replaced if it was generated before,
    /// refused if it holds anything else).
    #[arg(long)]
    out: PathBuf,
    /// Category (folder) name.
    #[arg(long)]
    category: String,
    /// Woven texture filling the image, or a round part on a background.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Seed of everything (same seed, same pixels).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels (square), 32..=4096.
    #[arg(long, default_value_t = synth::DEFAULT_SIZE)]
    size: u32,
    /// Number of train/good images.
    #[arg(long, default_value_t = synth::DEFAULT_TRAIN)]
    train: usize,
    /// Number of test/good images.
    #[arg(long, default_value_t = synth::DEFAULT_TEST_GOOD)]
    test_good: usize,
    /// Number of test images per defect type.
    #[arg(long, default_value_t = synth::DEFAULT_TEST_DEFECT)]
    test_defect: usize,
    /// Defect types (comma-separated); default all five.
    #[arg(long, value_enum, value_delimiter = ',')]
    defects: Vec<DefectKind>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The category folder (ROOT/CATEGORY, with train/, test/, ground_truth/).
    #[arg(long)]
    data: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Seed of the splits.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(args) => run_synth(args),
        Command::Data { command: DataCommand::Check(args) } => run_check(args),
        Command::Train { command } => commands::run_train(command).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => commands::run_eval(args).map(|()| ExitCode::SUCCESS),
        Command::Gradcam(args) => commands::run_gradcam(args).map(|()| ExitCode::SUCCESS),
        Command::Export(args) => commands::run_export(args).map(|()| ExitCode::SUCCESS),
        Command::Keygen(args) => commands::run_keygen(args).map(|()| ExitCode::SUCCESS),
        Command::Sign(args) => commands::run_sign(args).map(|()| ExitCode::SUCCESS),
        Command::Experiment(args) => commands::run_experiment(*args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_synth(args: SynthArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = SynthConfig::new(&args.out, &args.category, args.kind);
    cfg.seed = args.seed;
    cfg.size = args.size;
    cfg.train = args.train;
    cfg.test_good = args.test_good;
    cfg.test_defect = args.test_defect;
    if !args.defects.is_empty() {
        cfg.defects = args.defects;
    }
    let start = std::time::Instant::now();
    let summary = synth::generate(&cfg)
        .with_context(|| format!("generating {}", args.out.join(&args.category).display()))?;
    let defects: usize = summary.test_defect.values().sum();
    println!(
        "wrote {}: {} train/good, {} test/good, {} defect images in {} types, {} masks ({:.1} s)",
        summary.root.display(),
        summary.train_good,
        summary.test_good,
        defects,
        summary.test_defect.len(),
        summary.masks,
        start.elapsed().as_secs_f32()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = host::data::check(&args.data, args.seed)
        .with_context(|| format!("checking {}", args.data.display()))?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("serialising the check report")?;
        println!("{json}");
    } else {
        print!("{report}");
    }
    Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
