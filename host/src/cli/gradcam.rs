//! `host gradcam`: Grad-CAM / Grad-CAM++ strips of single images with a classifier run.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use host::eval::cam::CamMethod;
use host::run::{ComputeDevice, RunDir};

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
    pub device: ComputeDevice,
}

/// Runs `host gradcam`: strips of single images with the run's classifier.
pub fn run(a: GradcamArgs) -> anyhow::Result<()> {
    use host::run::ClassifierRunConfig;
    let rd = RunDir::open(&a.run).with_context(|| format!("opening run {}", a.run.display()))?;
    let cfg: ClassifierRunConfig = host::run::read_json(&rd.config())
        .with_context(|| format!("{}: not a classifier run", a.run.display()))?;
    let device = a.device.resolve()?;
    let model = cfg
        .load_model(&rd.best(), device)
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
