//! `host train ...`: GLASS, the classifier baseline and the PatchCore memory bank.
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use host::models::backbone::BackboneKind;
use host::models::glass::{Distribution, TextureColour};
use host::run::ComputeDevice;
use host::train::glass::{train, GlassTrainOptions};

use super::{show_progress, ClassifierArch, Preset};

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
    /// Gaussian blur of the distance map in pixels of the input image (default: the preset's, the
    /// same post-processing as the GLASS run it is compared with; edge 7.1 at 512 px).
    #[arg(long)]
    pub blur_sigma: Option<f32>,
    /// Where to compute: CUDA when libtorch sees a GPU (auto), or force cpu / cuda.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: ComputeDevice,
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
    if let Some(v) = a.blur_sigma {
        cfg.blur_sigma = v;
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
    let rc: host::run::PatchCoreRunConfig = host::run::read_json(&a.out.join("config.json"))?;
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
    pub device: ComputeDevice,
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
    pub device: ComputeDevice,
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
    /// Share of patch positions per iteration that enter the discriminator (LAS positions are always
    /// kept; paper 1.0, edge 0.25).
    #[arg(long)]
    pub patch_fraction: Option<f64>,
    /// Dims each backbone level contributes to a patch feature, `STRIDE8,STRIDE16` (each must divide
    /// its level's channels x 9; edge 40,112).
    #[arg(long, value_parser = parse_dims)]
    pub embed_dims: Option<[i64; 2]>,
    /// Gaussian blur of the anomaly map in pixels of the input image (edge 7.1 at 512 px; 4 × S / 288
    /// keeps the reference's proportion at another input size S).
    #[arg(long)]
    pub blur_sigma: Option<f32>,
    /// DTD-style folder of texture images for Local Anomaly Synthesis (default: procedural textures).
    #[arg(long)]
    pub textures: Option<PathBuf>,
    /// Colour of the LAS textures: colour, gray, or auto (gray when every training image is gray).
    #[arg(long, value_enum)]
    pub texture_colour: Option<TextureColour>,
    /// Folder of foreground masks named like the training images, or by their stem with `.png`
    /// (`host data fg-masks` writes one); restricts LAS to the part.
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

/// Parses `A,B` into the two per-level dims of `--embed-dims`.
fn parse_dims(s: &str) -> Result<[i64; 2], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [a, b] = parts.as_slice() else {
        return Err(format!("expected two numbers `STRIDE8,STRIDE16`, got `{s}`"));
    };
    let num = |t: &str| t.parse::<i64>().map_err(|e| format!("`{t}` in `{s}`: {e}"));
    Ok([num(a)?, num(b)?])
}

/// Runs `host train ...`.
pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
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
            if let Some(v) = a.patch_fraction {
                cfg.patch_fraction = v;
            }
            if let Some(v) = a.embed_dims {
                cfg.embed_dims = v;
            }
            if let Some(v) = a.blur_sigma {
                cfg.blur_sigma = v;
            }
            if let Some(v) = a.texture_colour {
                cfg.texture_colour = v;
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
    use host::models::classifier::ClassifierConfig;
    use host::train::classifier::{self as tc, ClassifierTrainOptions};
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
