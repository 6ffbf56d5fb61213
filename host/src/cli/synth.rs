//! `host synth`: a synthetic MVTec-AD-layout category.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use host::data::synth::{self, DefectKind, Kind, SynthConfig};

#[derive(Debug, Args)]
pub struct SynthArgs {
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

pub fn run(args: SynthArgs) -> anyhow::Result<ExitCode> {
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
