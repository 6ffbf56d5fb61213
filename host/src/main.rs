//! `host`: the workstation CLI of glass-edge: datasets, training, evaluation, export, signing and the
//! experiment. One file per subcommand under `cli/`.
//!
//! ```text
//! cargo run -p host -- synth --out /tmp/d --category widget --kind object
//! cargo run -p host -- data check --data /tmp/d/widget --json
//! cargo run --release -p host -- train glass --data /tmp/d/widget --out runs/widget --preset edge
//! cargo run --release -p host -- eval --run runs/widget
//! cargo run --release -p host -- export --run runs/widget --out bundle --int8
//! ```
//! Logging goes to stderr and follows `RUST_LOG` (default `info`).
use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::data::DataCommand;
use cli::Command;

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

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(args) => cli::synth::run(args),
        Command::Data { command: DataCommand::Check(args) } => cli::data::run(args),
        Command::Data { command: DataCommand::FgMasks(args) } => cli::data::fg_masks(args),
        Command::Train { command } => cli::train::run(command).map(|()| ExitCode::SUCCESS),
        Command::Eval(args) => cli::eval::run(args).map(|()| ExitCode::SUCCESS),
        Command::Gradcam(args) => cli::gradcam::run(args).map(|()| ExitCode::SUCCESS),
        Command::Export(args) => cli::export::run(args).map(|()| ExitCode::SUCCESS),
        Command::Keygen(args) => cli::keygen::run(args).map(|()| ExitCode::SUCCESS),
        Command::Sign(args) => cli::sign::run(args).map(|()| ExitCode::SUCCESS),
        Command::Experiment(args) => cli::experiment::run(*args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
