//! `host eval` for GLASS runs: threshold from the validation split (best F1), then the test split,
//! streamed one image at a time (image scores, pixel AUROC / AUPRO histograms, overlay strips), into
//! `metrics.json` and `maps/`.
use tch::Device;

use crate::data::loader;
use crate::data::split::Item;
use crate::eval::{EvalOutputs, Metrics, RunFacts, Scored};
use crate::models::glass::postprocess;
use crate::models::glass::Glass;
use crate::run::{self, ComputeDevice, GlassRunConfig, RunDir, TrainState};
use crate::Result;

/// Scores one item: preprocess -> model -> max patch score; map = upsample + Gaussian blur through
/// `shared::preprocess::glass_postprocess`, the station's own code.
pub fn score_item(glass: &Glass, cfg: &GlassRunConfig, item: &Item) -> Result<Scored> {
    let x = loader::image_tensor(item, &cfg.preprocess)?.unsqueeze(0).to_device(glass.device());
    let ps = glass.patch_scores(&x).to_device(Device::Cpu); // [1, h, w]
    let (_, gh, gw) = ps.size3()?;
    let v: Vec<f32> = Vec::<f32>::try_from(ps.reshape([-1]))?;
    let score = v.iter().copied().fold(f32::MIN, f32::max);
    let map = postprocess(&cfg.glass, &v, gw as usize, gh as usize)?;
    Ok(Scored { score, map })
}

/// Evaluates a GLASS run directory and writes `metrics.json`, `maps/` and `scores.json`.
pub fn evaluate(
    rd: &RunDir,
    device: ComputeDevice,
    threads: usize,
    progress: bool,
) -> Result<Metrics> {
    evaluate_to(rd, device, threads, progress, &EvalOutputs::of(rd))
}

/// [`evaluate`] into the given outputs.
pub fn evaluate_to(
    rd: &RunDir,
    device: ComputeDevice,
    threads: usize,
    progress: bool,
    out: &EvalOutputs,
) -> Result<Metrics> {
    run::set_threads(threads);
    let device = device.resolve()?;
    let cfg: GlassRunConfig = run::read_json(&rd.config())?;
    let state: TrainState = run::read_json(&rd.state())?;
    let glass = cfg.load_model(&rd.best(), device)?;
    let facts = RunFacts {
        model: shared::manifest::ModelKind::Glass,
        arch: format!("glass/{}", cfg.glass.backbone.name()),
        category: cfg.category.clone(),
        split_seed: cfg.split_seed,
        seen_defects: None,
        epochs_trained: state.epochs_done,
        best_epoch: state.best_epoch,
        train_seconds: state.train_seconds,
        image_size: cfg.glass.image_size,
        preset: cfg.glass.preset.clone(),
        heatmap: format!(
            "glass anomaly map (bilinear upsample + gaussian sigma {})",
            cfg.glass.blur_sigma
        ),
    };
    super::evaluate_detector(
        &cfg.data,
        cfg.split_seed,
        &cfg.preprocess,
        out,
        progress,
        facts,
        |item, _| score_item(&glass, &cfg, item),
    )
}
