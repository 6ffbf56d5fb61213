//! `host experiment`: the experiment protocol in one command, with its report.
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use host::run::ComputeDevice;

use super::{show_progress, ClassifierArch, Preset};

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
    /// GLASS: colour of the LAS textures (colour, gray, or auto: gray for a gray category).
    #[arg(long, value_enum)]
    pub glass_texture_colour: Option<host::models::glass::TextureColour>,
    /// GLASS: override the preset's feature std (0 = the backbone's own scale).
    #[arg(long)]
    pub glass_feature_std: Option<f64>,
    /// GLASS: override the preset's fraction of patch positions per iteration, in (0, 1].
    #[arg(long)]
    pub glass_patch_fraction: Option<f64>,
    /// GLASS: override the map blur sigma (input pixels; edge 7.1 at 512 px). The PatchCore column
    /// uses the same post-processing, so it follows.
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
    pub device: ComputeDevice,
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
pub fn run(a: ExperimentArgs) -> anyhow::Result<()> {
    use host::experiment::{self, ClassifierSpec, ExperimentOptions};
    use host::models::classifier::ClassifierConfig;
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
    if let Some(v) = a.glass_texture_colour {
        glass.texture_colour = v;
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
