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
    /// Estimate a foreground mask of every train/good image (the part against a plain background:
    /// colour distance from the border's colour above the border's own spread, holes filled,
    /// largest region; whole-image masks for a category where no part stands out) for `host train glass --fg-masks OUT` / `host experiment --fg-masks`. Writes
    /// OUT/<image stem>.png (0 background, 255 part) and prints how many images got a part.
    FgMasks(FgMasksArgs),
}

#[derive(Debug, Args)]
pub struct FgMasksArgs {
    /// The category folder (ROOT/CATEGORY).
    #[arg(long)]
    data: PathBuf,
    /// Where the masks go (created). For `host experiment --fg-masks DIR`, use DIR/CATEGORY.
    #[arg(long)]
    out: PathBuf,
}

pub fn fg_masks(args: FgMasksArgs) -> anyhow::Result<ExitCode> {
    let s = host::data::foreground::write_masks(&args.data, &args.out, super::show_progress())
        .with_context(|| format!("foreground masks of {}", args.data.display()))?;
    if !s.objects {
        println!(
            "{} masks in {}: the whole image on every one (a part stood out on {} images only: \
             not a category of parts on a background)",
            s.whole,
            s.out.display(),
            s.parts.len()
        );
    } else {
        let mut f = s.parts.clone();
        f.sort_by(f32::total_cmp);
        println!(
            "{} masks in {}: a part on {} images (part area {:.0}% median, {:.0}-{:.0}%), the whole \
             image on {}",
            s.parts.len() + s.whole,
            s.out.display(),
            s.parts.len(),
            100.0 * f[f.len() / 2],
            100.0 * f[0],
            100.0 * f[f.len() - 1],
            s.whole
        );
    }
    Ok(ExitCode::SUCCESS)
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
