//! `host train ...` and `host eval` (binary side: clap arguments, anyhow context, printing).
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use host::models::backbone::BackboneKind;
use host::models::glass::{Distribution, GlassConfig};
use host::train::glass::{train, GlassTrainOptions};
use host::train::run::{DeviceChoice, RunDir};

/// What `host train` can train.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train the GLASS anomaly detector on the user's anomaly-detection split (normals only; early
    /// stopping and checkpoint selection on the validation split's image AUROC + pixel AUROC; never reads
    /// the test split).
    Glass(Box<TrainGlassArgs>),
}

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

/// `host train glass` options.
#[derive(Debug, Args)]
pub struct TrainGlassArgs {
    /// The category folder in MVTec AD layout (ROOT/CATEGORY with train/good, test/*, ground_truth/*).
    #[arg(long)]
    pub data: PathBuf,
    /// The run directory: config.json, epochs.jsonl, checkpoints, state.json. Rerunning the same
    /// command resumes after the last finished epoch.
    #[arg(long)]
    pub out: PathBuf,
    /// Hyper-parameter preset; the options below override single values.
    #[arg(long, value_enum, default_value = "edge")]
    pub preset: Preset,
    /// Square input size in pixels (a multiple of 32); the user's protocol needs >= 512 for small defects.
    #[arg(long)]
    pub image_size: Option<i64>,
    /// Where to train: CUDA when libtorch sees a GPU (auto), or force cpu / cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Backbone weights (safetensors; convert .pth with scripts/convert-weights). Default:
    /// $GLASS_EDGE_WEIGHTS/<backbone>.safetensors.
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    /// Override the preset's backbone.
    #[arg(long, value_enum)]
    pub backbone: Option<BackboneKind>,
    /// At most this many epochs (paper default 200).
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Stop after this many epochs without a better validation score, image AUROC + pixel AUROC (paper
    /// default 30).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Seed of the split, the LAS draws and the initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per iteration.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Gradient-ascent steps per iteration.
    #[arg(long)]
    pub ascent_steps: Option<usize>,
    /// Projection learning rate (Adam; paper 1e-4).
    #[arg(long)]
    pub lr_proj: Option<f64>,
    /// Discriminator learning rate (AdamW; paper 2e-4).
    #[arg(long)]
    pub lr_dsc: Option<f64>,
    /// GAS truncation: manifold, hypersphere, or auto (the official spectral judge on the mean image).
    #[arg(long, value_enum)]
    pub distribution: Option<Distribution>,
    /// DTD-style folder of texture images for Local Anomaly Synthesis (default: procedural textures).
    #[arg(long)]
    pub textures: Option<PathBuf>,
    /// Folder of foreground masks named like the training images (restricts LAS to the part).
    #[arg(long)]
    pub fg_masks: Option<PathBuf>,
    /// libtorch threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `host eval` options.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory written by `host train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// libtorch threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `host export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run directory written by `host train` (its best checkpoint is exported).
    #[arg(long)]
    pub run: PathBuf,
    /// The bundle directory to write (created; existing bundle files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write an int8 model (post-training static quantization, ONNX QOperator form).
    #[arg(long)]
    pub int8: bool,
    /// Training normals used to calibrate the int8 activation ranges.
    #[arg(long, default_value_t = 32)]
    pub calib: usize,
    /// Validation images stored with libtorch's outputs in golden.npz.
    #[arg(long, default_value_t = 4)]
    pub golden: usize,
    /// Threads for libtorch and for tract when the bundle is checked (latency is measured with it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Runs `host export`.
pub fn run_export(a: ExportArgs) -> anyhow::Result<()> {
    let r = host::export::export(&host::export::ExportOptions {
        run: a.run.clone(),
        out: a.out.clone(),
        int8: a.int8,
        calib: a.calib,
        golden: a.golden,
        threads: a.threads,
        progress: show_progress(),
    })
    .with_context(|| format!("exporting {} to {}", a.run.display(), a.out.display()))?;
    let m = &r.manifest;
    let mm = m.metrics.clone().unwrap_or_default();
    println!("{} -> {} ({})", a.run.display(), a.out.display(), m.architecture);
    println!(
        "  threshold {:.4} ({}), {} validation images",
        m.threshold.value, m.threshold.method, r.n_valid
    );
    println!("  {:<6} {:>12} {:>14}  file", "model", "val AUROC", "latency ms");
    let f = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    println!(
        "  {:<6} {:>12} {:>14}  {}",
        "fp32",
        f(mm.fp32_val_auroc),
        f(mm.fp32_latency_ms),
        m.files.fp32.path
    );
    if let Some(i8f) = &m.files.int8 {
        println!(
            "  {:<6} {:>12} {:>14}  {}",
            "int8",
            f(mm.int8_val_auroc),
            f(mm.int8_latency_ms),
            i8f.path
        );
        if let Some(agree) = r.int8_verdict_agreement {
            println!("  int8 verdict = fp32 verdict on {:.1}% of validation images", agree * 100.0);
        }
    }
    println!("  latency measured on: {}", mm.latency_device);
    println!(
        "  the station runs {} by default (int8 only when faster and within 0.005 AUROC)",
        mm.preferred.as_deref().unwrap_or("fp32")
    );
    Ok(())
}

fn show_progress() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Runs `host train ...`.
pub fn run_train(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Glass(a) => {
            let mut cfg = match a.preset {
                Preset::Paper => GlassConfig::paper(),
                Preset::Edge => GlassConfig::edge(),
                Preset::Tiny => GlassConfig::tiny(),
            };
            if let Some(b) = a.backbone {
                let (mean, std) = host::models::backbone::default_mean_std(b);
                cfg.backbone = b;
                cfg.mean = mean;
                cfg.std = std;
                let (c2, c3) = b.channels();
                if host::models::glass::aggregator::check_dims((c2, c3), cfg.embed_dims).is_err() {
                    cfg.embed_dims = [c2, c3];
                }
            }
            if let Some(v) = a.image_size {
                cfg.image_size = v;
            }
            if let Some(v) = a.max_epochs {
                cfg.max_epochs = v;
            }
            if let Some(v) = a.patience {
                cfg.patience = v;
            }
            if let Some(v) = a.batch_size {
                cfg.batch_size = v;
            }
            if let Some(v) = a.ascent_steps {
                cfg.ascent_steps = v;
            }
            if let Some(v) = a.lr_proj {
                cfg.lr_proj = v;
            }
            if let Some(v) = a.lr_dsc {
                cfg.lr_dsc = v;
            }
            if let Some(v) = a.distribution {
                cfg.distribution = v;
            }
            cfg.seed = a.seed;
            if let Err(e) = cfg.validate() {
                bail!("invalid options: {e}");
            }
            let opts = GlassTrainOptions {
                data: a.data.clone(),
                out: a.out.clone(),
                device: a.device,
                backbone_weights: a.backbone_weights.clone(),
                textures: a.textures.clone(),
                fg_masks: a.fg_masks.clone(),
                threads: a.threads,
                progress: show_progress(),
            };
            let state = train(cfg, &opts).with_context(|| {
                format!("training GLASS on {} into {}", a.data.display(), a.out.display())
            })?;
            println!(
                "trained {} epochs in {:.0} s; best validation image AUROC {:.4} at epoch {} -> {}",
                state.epochs_done,
                state.train_seconds,
                state.best_val_auroc,
                state.best_epoch,
                a.out.join("checkpoint_best.safetensors").display()
            );
            Ok(())
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", 100.0 * x)).unwrap_or_else(|| "n/a".into())
}

/// Runs `host eval`.
pub fn run_eval(a: EvalArgs) -> anyhow::Result<()> {
    let rd = RunDir::open(&a.run).with_context(|| format!("opening run {}", a.run.display()))?;
    if !host::eval::glass::is_glass_run(&a.run) {
        bail!(
            "{}: only GLASS runs can be evaluated so far (config.json model != \"glass\")",
            a.run.display()
        );
    }
    let m = host::eval::glass::evaluate(&rd, a.device, a.threads, show_progress())
        .with_context(|| format!("evaluating {}", a.run.display()))?;
    println!(
        "{} on {} (seed {}): {} normal + {} abnormal test images",
        m.arch, m.category, m.split_seed, m.n_test_normal, m.n_test_abnormal
    );
    println!("  image AUROC      {}", pct(m.image_auroc));
    println!("  pixel AUROC      {}", pct(m.pixel_auroc));
    println!("  AUPRO (<=0.3)    {}", pct(m.aupro));
    println!("  best F1 (test)   {}", pct(Some(m.best_f1_test)));
    println!("  at threshold {:.4} chosen on validation (best F1):", m.threshold);
    println!(
        "    accuracy {}  precision {}  recall {}  F1 {}",
        pct(Some(m.accuracy)),
        pct(Some(m.precision)),
        pct(Some(m.recall)),
        pct(Some(m.f1))
    );
    for (k, v) in &m.per_defect_recall {
        println!("    recall {k:<16} {}", pct(Some(*v)));
    }
    println!("  -> {} and {}/", rd.metrics().display(), rd.maps().display());
    Ok(())
}
