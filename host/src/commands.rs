//! `host train ...` and `host eval` (binary side: clap arguments, anyhow context, printing).
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use host::eval::cam::CamMethod;
use host::models::backbone::BackboneKind;
use host::models::glass::{Distribution, GlassConfig};
use host::train::glass::{train, GlassTrainOptions};
use host::train::run::{DeviceChoice, RunDir};

/// What `host train` can train.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train the GLASS anomaly detector on the anomaly-detection split (normals only; early
    /// stopping and checkpoint selection on the validation split's image AUROC + pixel AUROC; never reads
    /// the test split).
    Glass(Box<TrainGlassArgs>),
    /// Train the supervised normal/abnormal classifier baseline (TinyViT-21M-512 or EfficientNet-Lite0)
    /// on the classifier split (abnormals 50% x4 rotations / 25% / 25%; normals as the
    /// anomaly-detection split with the same seed); early stopping on validation AUROC.
    Classifier(Box<TrainClassifierArgs>),
    /// Build a PatchCore memory bank (the training-free baseline; Roth et al., CVPR 2022) on the
    /// anomaly-detection split's training normals: the backbone taps, aggregation and input size of
    /// a GLASS preset, a greedy coreset of the patch features, 1-NN distance per patch, image score =
    /// max. Validation is scored once; the test split is never read.
    Patchcore(Box<TrainPatchcoreArgs>),
}

/// `host train patchcore` options.
#[derive(Debug, Args)]
pub struct TrainPatchcoreArgs {
    /// The category folder in MVTec AD layout.
    #[arg(long)]
    pub data: PathBuf,
    /// The run directory (config.json, checkpoint_best.safetensors = the bank, state.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The GLASS preset whose features (backbone, taps, aggregation, input size) the bank uses.
    #[arg(long, value_enum, default_value = "edge")]
    pub preset: Preset,
    /// Bank size: `station` (default: <= 64 MB at fp32 and a search that costs no more FLOPs per
    /// frame than the backbone), `full` (every training patch), a fraction in (0, 1] such as 0.01, or a
    /// patch count.
    #[arg(long, default_value = "station", value_parser = host::models::patchcore::CoresetSize::parse)]
    pub coreset: host::models::patchcore::CoresetSize,
    /// Square input size in pixels (a multiple of 32; default: the preset's).
    #[arg(long)]
    pub image_size: Option<i64>,
    /// Where to compute: CUDA when libtorch sees a GPU (auto), or force cpu / cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Backbone weights (safetensors). Default: $GLASS_EDGE_WEIGHTS/<backbone>.safetensors.
    #[arg(long)]
    pub backbone_weights: Option<PathBuf>,
    /// Split seed (also seeds the coreset's projection and first point).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Runs `host train patchcore`.
fn run_train_patchcore(a: &TrainPatchcoreArgs) -> anyhow::Result<()> {
    use host::models::patchcore::PatchCoreConfig;
    use host::train::patchcore::{self as tp, PatchCoreTrainOptions};
    let mut cfg = PatchCoreConfig::from_glass(&a.preset.config());
    if let Some(v) = a.image_size {
        cfg.image_size = v;
    }
    cfg.coreset = a.coreset;
    cfg.seed = a.seed;
    if let Err(e) = cfg.validate() {
        bail!("invalid options: {e}");
    }
    let opts = PatchCoreTrainOptions {
        data: a.data.clone(),
        out: a.out.clone(),
        device: a.device,
        backbone_weights: a.backbone_weights.clone(),
        threads: a.threads,
        progress: show_progress(),
    };
    let state = tp::train(cfg, &opts).with_context(|| {
        format!("building the PatchCore bank on {} into {}", a.data.display(), a.out.display())
    })?;
    let rc: tp::PatchCoreRunConfig = host::train::run::read_json(&a.out.join("config.json"))?;
    println!(
        "memory bank: {} of {} patches ({:.2} MB at fp32, nearest-neighbour search {:.2} GFLOP per \
         frame) in {:.0} s; validation image AUROC {:.4} -> {}",
        rc.bank.size,
        rc.bank.train_patches,
        rc.bank.bytes as f64 / 1e6,
        rc.bank.search_gflop,
        state.train_seconds,
        state.best_val_auroc,
        a.out.join("checkpoint_best.safetensors").display()
    );
    Ok(())
}

/// `host train classifier` options.
#[derive(Debug, Args)]
pub struct TrainClassifierArgs {
    /// Architecture: tinyvit_21m_512 (the experiment protocol's classifier; needs --weights for
    /// pretrained training) or efficientnet_lite0 (ImageNet weights installed by scripts/setup).
    #[arg(long, value_enum)]
    pub arch: ClassifierArch,
    /// The category folder in MVTec AD layout.
    #[arg(long)]
    pub data: PathBuf,
    /// The run directory (config.json, epochs.jsonl, checkpoints, state.json; rerun to resume).
    #[arg(long)]
    pub out: PathBuf,
    /// Pretrained checkpoint (safetensors with the reference names: timm tiny_vit_21m_512 /
    /// efficientnet_lite_pytorch); its 1000-class head is replaced by a 2-class head. Default for
    /// efficientnet_lite0: $GLASS_EDGE_WEIGHTS/efficientnet_lite0.safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Train from random weights when no --weights is given (only sensible for tests).
    #[arg(long)]
    pub random_init: bool,
    /// Experiment 3: keep only these defect types (comma-separated) in train and validation; the
    /// others are tested as unseen defects.
    #[arg(long, value_delimiter = ',')]
    pub train_defects: Option<Vec<String>>,
    /// Square input size in pixels (multiple of 32; default 512).
    #[arg(long)]
    pub image_size: Option<i64>,
    /// Where to train: CUDA when libtorch sees a GPU (auto), or force cpu / cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Split and training seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epochs without a better validation AUROC before stopping (default 10).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Epoch cap (default: none, early stopping decides).
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Images per step (default 8).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate of the head (default: tinyvit 2e-4, efficientnet_lite0 3e-4).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Layer-wise learning-rate decay per layer group (default 0.8).
    #[arg(long)]
    pub layer_decay: Option<f64>,
    /// AdamW weight decay (default 0.05).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Disable random horizontal flips.
    #[arg(long)]
    pub no_flip: bool,
    /// Grad-CAM target layer `host eval` uses (default: the last stage's output; tinyvit also offers
    /// stages.3.downsample.conv3, the experiment protocol's "stage 4, third conv").
    #[arg(long)]
    pub cam_layer: Option<String>,
    /// Stop after N epochs in this call, unfinished; running the same command again resumes exactly
    /// where it stopped (weights, optimizer moments, random streams). Splits a long run into chunks.
    #[arg(long)]
    pub pause_after: Option<usize>,
    /// libtorch threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
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
    /// Square input size in pixels (a multiple of 32); the experiment protocol needs >= 512 for small
    /// defects.
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
    /// Std of the Gaussian noise that starts gradient ascent (paper 0.015).
    #[arg(long)]
    pub noise: Option<f64>,
    /// Projection learning rate (Adam; paper 1e-4).
    #[arg(long)]
    pub lr_proj: Option<f64>,
    /// Discriminator learning rate (AdamW; paper 2e-4).
    #[arg(long)]
    pub lr_dsc: Option<f64>,
    /// GAS truncation: manifold, hypersphere, or auto (the official spectral judge on the mean image).
    #[arg(long, value_enum)]
    pub distribution: Option<Distribution>,
    /// Rescale the aggregated features so their mean per-dimension std on training normals is this
    /// (0 = keep the backbone's scale; the paper preset's default). GAS noise and radii are absolute.
    #[arg(long)]
    pub feature_std: Option<f64>,
    /// DTD-style folder of texture images for Local Anomaly Synthesis (default: procedural textures).
    #[arg(long)]
    pub textures: Option<PathBuf>,
    /// Folder of foreground masks named like the training images (restricts LAS to the part).
    #[arg(long)]
    pub fg_masks: Option<PathBuf>,
    /// Stop after N epochs in this call, unfinished; running the same command again resumes exactly
    /// where it stopped (weights, optimizer moments, random streams). Splits a long run into chunks.
    #[arg(long)]
    pub pause_after: Option<usize>,
    /// libtorch threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// `host eval` options.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory written by `host train`. Repeat it (e.g. one run per split seed) to get a
    /// summary table with the mean and standard deviation over the runs.
    #[arg(long, required = true)]
    pub run: Vec<PathBuf>,
    /// Reuse a run's metrics.json when it is newer than its training state instead of evaluating
    /// again.
    #[arg(long)]
    pub reuse: bool,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// libtorch threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Classifier runs: the CAM weighting.
    #[arg(long, value_enum, default_value = "gradcam")]
    pub cam: CamMethod,
    /// Classifier runs: the CAM layer (default: the run's cam_layer).
    #[arg(long)]
    pub cam_layer: Option<String>,
}

/// `host gradcam` options.
#[derive(Debug, Args)]
pub struct GradcamArgs {
    /// A classifier run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Images to explain.
    #[arg(long, num_args = 1.., required = true)]
    pub images: Vec<PathBuf>,
    /// Output folder for the strips (image | heatmap overlay | heatmap).
    #[arg(long)]
    pub out: PathBuf,
    /// The CAM weighting.
    #[arg(long, value_enum, default_value = "gradcam")]
    pub cam: CamMethod,
    /// The CAM layer (default: the run's cam_layer).
    #[arg(long)]
    pub cam_layer: Option<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
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
    #[arg(long, default_value_t = host::export::DEFAULT_CALIB)]
    pub calib: usize,
    /// Validation images stored with libtorch's outputs in golden.npz.
    #[arg(long, default_value_t = 4)]
    pub golden: usize,
    /// Threads for libtorch and for tract when the bundle is checked (latency is measured with it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Sign the bundle with this secret key (`host keygen`): writes manifest.sig, an ed25519 signature
    /// of manifest.json, which lists every model file's sha256.
    #[arg(long)]
    pub sign: Option<PathBuf>,
}

/// `host keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The secret key file to write (mode 0600); the public key goes to OUT.pub. Existing files are
    /// never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `host keygen`: a new ed25519 key pair from the operating system's random source.
pub fn run_keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let public = shared::signature::write_key_pair(&a.out, seed)?;
    println!(
        "secret key {} (keep it on the workstation), public key {} (list it in the station's \
         trusted_keys, or pass it to device --trusted-key)",
        a.out.display(),
        public.display()
    );
    Ok(())
}

/// `host sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The bundle directory (manifest.json as exported; sign after the last edit).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The secret key file (`host keygen`).
    #[arg(long)]
    pub key: PathBuf,
}

/// Runs `host sign`.
pub fn run_sign(a: SignArgs) -> anyhow::Result<()> {
    sign_bundle(&a.bundle, &a.key)
}

fn sign_bundle(bundle: &Path, key: &Path) -> anyhow::Result<()> {
    let k = shared::signature::read_secret_key(key)?;
    shared::signature::sign_bundle(bundle, &k)?;
    println!(
        "  signed {} with {}",
        bundle.join(shared::signature::SIG_FILE).display(),
        shared::signature::public_key_path(key).display()
    );
    Ok(())
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
    // A signature from an earlier export would not match the new manifest.
    let stale = a.out.join(shared::signature::SIG_FILE);
    if stale.is_file() {
        std::fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
    }
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
    if let Some(key) = &a.sign {
        sign_bundle(&a.out, key)?;
    }
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
            let mut cfg = a.preset.config();
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
            if let Some(v) = a.noise {
                cfg.noise = v;
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
            if let Some(v) = a.feature_std {
                cfg.feature_std = (v > 0.0).then_some(v);
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
                pause_after: a.pause_after,
            };
            let state = train(cfg, &opts).with_context(|| {
                format!("training GLASS on {} into {}", a.data.display(), a.out.display())
            })?;
            println!(
                "{} {} epochs in {:.0} s; best validation image AUROC {:.4} at epoch {} -> {}",
                if state.finished { "trained" } else { "paused after" },
                state.epochs_done,
                state.train_seconds,
                state.best_val_auroc,
                state.best_epoch,
                a.out.join("checkpoint_best.safetensors").display()
            );
            Ok(())
        }
        TrainCommand::Classifier(a) => run_train_classifier(&a),
        TrainCommand::Patchcore(a) => run_train_patchcore(&a),
    }
}

fn run_train_classifier(a: &TrainClassifierArgs) -> anyhow::Result<()> {
    use host::train::classifier::{self as tc, ClassifierConfig, ClassifierTrainOptions};
    let mut cfg = ClassifierConfig::for_arch(a.arch);
    cfg.seed = a.seed;
    if let Some(v) = a.image_size {
        cfg.image_size = v;
    }
    if let Some(v) = a.patience {
        cfg.patience = v;
    }
    cfg.max_epochs = a.max_epochs;
    if let Some(v) = a.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = a.lr {
        cfg.lr = v;
    }
    if let Some(v) = a.layer_decay {
        cfg.layer_decay = v;
    }
    if let Some(v) = a.weight_decay {
        cfg.weight_decay = v;
    }
    cfg.hflip = !a.no_flip;
    if let Some(v) = &a.cam_layer {
        cfg.cam_layer = v.clone();
    }
    if let Err(e) = cfg.validate() {
        bail!("invalid options: {e}");
    }
    let opts = ClassifierTrainOptions {
        data: a.data.clone(),
        out: a.out.clone(),
        device: a.device,
        weights: a.weights.clone(),
        allow_random: a.random_init,
        train_defects: a.train_defects.clone(),
        threads: a.threads,
        progress: show_progress(),
        pause_after: a.pause_after,
    };
    let state = tc::train(cfg, &opts).with_context(|| {
        format!(
            "training the {} classifier on {} into {}",
            a.arch,
            a.data.display(),
            a.out.display()
        )
    })?;
    println!(
        "{} {} epochs in {:.0} s; best validation AUROC {:.4} at epoch {} -> {}",
        if state.finished { "trained" } else { "paused after" },
        state.epochs_done,
        state.train_seconds,
        state.best_val_auroc,
        state.best_epoch,
        a.out.join("checkpoint_best.safetensors").display()
    );
    Ok(())
}

/// Runs `host gradcam`: strips of single images with the run's classifier.
pub fn run_gradcam(a: GradcamArgs) -> anyhow::Result<()> {
    use host::train::classifier::{self as tc, ClassifierRunConfig};
    let rd = RunDir::open(&a.run).with_context(|| format!("opening run {}", a.run.display()))?;
    let cfg: ClassifierRunConfig = host::train::run::read_json(&rd.config())
        .with_context(|| format!("{}: not a classifier run", a.run.display()))?;
    let device = a.device.resolve()?;
    let model = tc::load_model(&cfg, &rd.best(), device)
        .with_context(|| format!("loading {}", rd.best().display()))?;
    let layer = a.cam_layer.clone().unwrap_or_else(|| cfg.classifier.cam_layer.clone());
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let (w, h) = (cfg.preprocess.width, cfg.preprocess.height);
    for img_path in &a.images {
        let img = host::data::loader::load_rgb(img_path, Default::default())
            .with_context(|| format!("reading {}", img_path.display()))?;
        let x = host::data::loader::rgb_to_tensor(&img, &cfg.preprocess, img_path)?;
        let sc = host::eval::classifier::score_tensor(&model, &x, &layer, a.cam, true)
            .with_context(|| format!("explaining {}", img_path.display()))?;
        let stem = img_path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
        let out = a.out.join(format!("{stem}_{}.png", a.cam.name().replace('+', "pp")));
        host::eval::visual::write_strip(&out, &img, None, &[(&sc.map, (0.0, 1.0))], w, h, 256)
            .with_context(|| format!("writing {}", out.display()))?;
        println!(
            "{}: abnormal probability {:.4} -> {}",
            img_path.display(),
            sc.score,
            out.display()
        );
    }
    Ok(())
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", 100.0 * x)).unwrap_or_else(|| "n/a".into())
}

/// Runs `host eval`.
pub fn run_eval(a: EvalArgs) -> anyhow::Result<()> {
    let mut all = Vec::with_capacity(a.run.len());
    for run in &a.run {
        all.push(eval_one(&a, run)?);
    }
    if all.len() > 1 {
        print_spread(&all);
    }
    Ok(())
}

/// Mean ± sd over several evaluated runs (e.g. split seeds), one line per metric.
fn print_spread(all: &[host::eval::Metrics]) {
    use host::experiment::seeds::mean_sd;
    let seeds: Vec<String> = all.iter().map(|m| m.split_seed.to_string()).collect();
    println!("\n{} runs (split seeds {}):", all.len(), seeds.join(", "));
    println!("  {:<24} {:>18}  per run", "metric", "mean ± sd");
    type Get = fn(&host::eval::Metrics) -> Option<f64>;
    let rows: [(&str, Get); 8] = [
        ("image AUROC", |m| m.image_auroc),
        ("F1 at val threshold", |m| Some(m.f1)),
        ("recall at val threshold", |m| Some(m.recall)),
        ("precision at val thr.", |m| Some(m.precision)),
        ("best F1 (test, oracle)", |m| Some(m.best_f1_test)),
        ("pixel AUROC", |m| m.pixel_auroc),
        ("AUPRO (<=0.3)", |m| m.aupro),
        ("validation image AUROC", |m| m.val_image_auroc),
    ];
    for (name, get) in rows {
        let v: Vec<f64> = all.iter().filter_map(get).collect();
        if v.is_empty() {
            println!("  {name:<24} {:>18}", "n/a");
            continue;
        }
        let (m, sd) = mean_sd(&v);
        let per: Vec<String> = v.iter().map(|x| format!("{:.3}", x)).collect();
        println!("  {name:<24} {:>18}  {}", format!("{m:.3} ± {sd:.3}"), per.join(" "));
    }
}

fn eval_one(a: &EvalArgs, run: &std::path::Path) -> anyhow::Result<host::eval::Metrics> {
    let rd = RunDir::open(run).with_context(|| format!("opening run {}", run.display()))?;
    if a.reuse && host::experiment::eval_is_current(&rd, &rd.metrics()) {
        let m: host::eval::Metrics = host::train::run::read_json(&rd.metrics())?;
        println!("{}: reusing {}", run.display(), rd.metrics().display());
        return Ok(m);
    }
    let m = match host::eval::run_model(run).as_deref() {
        Some("glass") => host::eval::glass::evaluate(&rd, a.device, a.threads, show_progress()),
        Some("patchcore") => {
            host::eval::patchcore::evaluate(&rd, a.device, a.threads, show_progress())
        }
        Some("classifier") => host::eval::classifier::evaluate(
            &rd,
            a.device,
            a.threads,
            a.cam,
            a.cam_layer.as_deref(),
            show_progress(),
        ),
        other => bail!(
            "{}: config.json has model {:?}; expected \"glass\", \"patchcore\" or \"classifier\"",
            run.display(),
            other
        ),
    }
    .with_context(|| format!("evaluating {}", run.display()))?;
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
        let seen = match &m.seen_defects {
            Some(s) if s.contains(k) => " (seen in training)",
            Some(_) => " (unseen)",
            None => "",
        };
        println!("    recall {k:<16} {}{seen}", pct(Some(*v)));
    }
    println!("  -> {} and {}/", rd.metrics().display(), rd.maps().display());
    Ok(m)
}

/// `host experiment` options.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// Dataset root in MVTec AD layout (ROOT/<category>/train/good, test/*, ground_truth/*).
    #[arg(long)]
    pub data: PathBuf,
    /// Categories (comma-separated), e.g. bottle,hazelnut,carpet,grid.
    #[arg(long, value_delimiter = ',', required = true)]
    pub categories: Vec<String>,
    /// Report folder: index.html, report.md, results.json, figures/ and the runs (rerun to resume).
    #[arg(long)]
    pub out: PathBuf,
    /// GLASS preset.
    #[arg(long, value_enum, default_value = "edge")]
    pub glass_preset: Preset,
    /// Classifier architectures (repeat or comma-separate). tinyvit_21m_512 needs
    /// --classifier-weights tinyvit_21m_512=FILE (a timm checkpoint you provide).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "efficientnet_lite0")]
    pub classifier_arch: Vec<ClassifierArch>,
    /// Pretrained weights per architecture, ARCH=FILE (repeatable).
    #[arg(long, value_delimiter = ',')]
    pub classifier_weights: Vec<String>,
    /// Square input size of every model (default: the preset's / 512 for classifiers).
    #[arg(long)]
    pub image_size: Option<i64>,
    /// Split and training seed of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Several split seeds (comma-separated, e.g. 0,1,2,3,4): every run is repeated per seed (in
    /// runs/<category>/seed-<s>/) and the tables report mean and standard deviation; overrides --seed.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Bank size of the PatchCore baseline: station (default), full, a fraction or a count.
    #[arg(long, default_value = "station", value_parser = host::models::patchcore::CoresetSize::parse)]
    pub patchcore_coreset: host::models::patchcore::CoresetSize,
    /// GLASS: DTD-style texture folder for local anomaly synthesis (default: procedural textures).
    #[arg(long)]
    pub textures: Option<PathBuf>,
    /// GLASS: foreground masks, FG_MASKS/<category>/<image file name> (restricts anomaly synthesis
    /// to the part; default: none).
    #[arg(long)]
    pub fg_masks: Option<PathBuf>,
    /// GLASS: override the preset's feature std (0 = the backbone's own scale).
    #[arg(long)]
    pub glass_feature_std: Option<f64>,
    /// GLASS: override the preset's fraction of patch positions per iteration, in (0, 1].
    #[arg(long)]
    pub glass_patch_fraction: Option<f64>,
    /// GLASS: override the map blur sigma (input pixels).
    #[arg(long)]
    pub glass_blur_sigma: Option<f32>,
    /// GLASS: override the number of gradient-ascent steps.
    #[arg(long)]
    pub glass_ascent_steps: Option<usize>,
    /// GLASS: override the std of the Gaussian noise that starts gradient ascent.
    #[arg(long)]
    pub glass_noise: Option<f64>,
    /// Where to train: CUDA when libtorch sees a GPU (auto), or force cpu / cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Experiment-3 defect type per category, CAT=TYPE (repeatable). Defaults: bottle broken_small,
    /// hazelnut crack, carpet color, grid bent; other categories: the type with the most images.
    #[arg(long, value_delimiter = ',')]
    pub exp3_defect: Vec<String>,
    /// GLASS epoch cap (default: the preset's).
    #[arg(long)]
    pub glass_max_epochs: Option<usize>,
    /// GLASS early-stopping patience (default: the preset's).
    #[arg(long)]
    pub glass_patience: Option<usize>,
    /// Classifier epoch cap (default: none, as in the experiment protocol).
    #[arg(long)]
    pub classifier_max_epochs: Option<usize>,
    /// Classifier early-stopping patience in epochs (default 10).
    #[arg(long)]
    pub classifier_patience: Option<usize>,
    /// Side-by-side strips per category (image | ground truth | GLASS map | Grad-CAM).
    #[arg(long, default_value_t = 6)]
    pub strips: usize,
    /// libtorch CPU threads (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn key_values(list: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what}: expected KEY=VALUE, got {kv:?}"),
        })
        .collect()
}

/// Runs `host experiment`.
pub fn run_experiment(a: ExperimentArgs) -> anyhow::Result<()> {
    use host::experiment::{self, ClassifierSpec, ExperimentOptions};
    use host::train::classifier::ClassifierConfig;
    let mut glass = a.glass_preset.config();
    glass.seed = a.seeds.first().copied().unwrap_or(a.seed);
    if let Some(v) = a.image_size {
        glass.image_size = v;
    }
    if let Some(v) = a.glass_max_epochs {
        glass.max_epochs = v;
    }
    if let Some(v) = a.glass_patience {
        glass.patience = v;
    }
    if let Some(v) = a.glass_feature_std {
        glass.feature_std = (v > 0.0).then_some(v);
    }
    if let Some(v) = a.glass_patch_fraction {
        glass.patch_fraction = v;
    }
    if let Some(v) = a.glass_blur_sigma {
        glass.blur_sigma = v;
    }
    if let Some(v) = a.glass_ascent_steps {
        glass.ascent_steps = v;
    }
    if let Some(v) = a.glass_noise {
        glass.noise = v;
    }
    if let Err(e) = glass.validate() {
        bail!("invalid GLASS options: {e}");
    }
    let weights = key_values(&a.classifier_weights, "--classifier-weights")?;
    let mut classifiers = Vec::new();
    for arch in &a.classifier_arch {
        let mut cfg = ClassifierConfig::for_arch(*arch);
        cfg.seed = a.seed;
        if let Some(v) = a.image_size {
            cfg.image_size = v;
        }
        cfg.max_epochs = a.classifier_max_epochs;
        if let Some(v) = a.classifier_patience {
            cfg.patience = v;
        }
        let w = weights.iter().find(|(k, _)| k == arch.name()).map(|(_, v)| PathBuf::from(v));
        classifiers.push(ClassifierSpec { config: cfg, weights: w });
    }
    for (k, _) in &weights {
        if !a.classifier_arch.iter().any(|x| x.name() == k) {
            bail!("--classifier-weights names {k:?}, which is not among --classifier-arch");
        }
    }
    let opts = ExperimentOptions {
        data: a.data.clone(),
        categories: a.categories.clone(),
        out: a.out.clone(),
        glass,
        classifiers,
        exp3: key_values(&a.exp3_defect, "--exp3-defect")?.into_iter().collect(),
        device: a.device,
        threads: a.threads,
        max_strips: a.strips,
        progress: show_progress(),
        seeds: a.seeds.clone(),
        patchcore_coreset: a.patchcore_coreset,
        textures: a.textures.clone(),
        fg_masks: a.fg_masks.clone(),
    };
    let r =
        experiment::run(&opts).with_context(|| format!("experiment into {}", a.out.display()))?;
    println!("{}", experiment::report::markdown_summary(&r));
    println!("report: {}", a.out.join("index.html").display());
    Ok(())
}
