//! `host data ...`: dataset tools (`host data check`).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
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
pub struct CheckArgs {
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

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
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
