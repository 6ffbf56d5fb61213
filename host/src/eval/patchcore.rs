//! `host eval` for PatchCore runs: the protocol of [`super::score_split`] with nearest-neighbour
//! distances as scores; maps are the GLASS post-processing of the distance grid, mapped to [0, 1] with
//! the run's `map_range` (validation distances) for pixel metrics and strips.
use tch::Device;

use crate::data::loader;
use crate::data::split::Item;
use crate::eval::{EvalOutputs, Metrics, RunFacts, Scored};
use crate::models::patchcore::normalise_map;
use crate::models::patchcore::PatchCore;
use crate::run::{self, ComputeDevice, PatchCoreRunConfig, RunDir, TrainState};
use crate::{Error, Result};

/// Scores one item: preprocess -> features -> nearest-neighbour distance per patch -> max; the map
/// is upsampled and blurred by `shared::preprocess::glass_postprocess` (the station's code), then
/// mapped to [0, 1].
pub fn score_item(model: &PatchCore, cfg: &PatchCoreRunConfig, item: &Item) -> Result<Scored> {
    let x = loader::image_tensor(item, &cfg.preprocess)?.unsqueeze(0).to_device(model.device());
    let ps = model.patch_scores(&x).to_device(Device::Cpu);
    let (_, gh, gw) = ps.size3()?;
    let v: Vec<f32> = Vec::<f32>::try_from(ps.reshape([-1]))?;
    let score = v.iter().copied().fold(f32::MIN, f32::max);
    let s = cfg.patchcore.image_size as usize;
    let mut map = shared::preprocess::glass_postprocess(
        &v,
        gw as usize,
        gh as usize,
        s,
        s,
        cfg.patchcore.blur_sigma,
    )
    .map_err(|e| Error::Config(format!("map post-processing: {e}")))?;
    normalise_map(&mut map, cfg.map_range);
    Ok(Scored { score, map })
}

/// Evaluates a PatchCore run directory into `metrics.json`, `maps/` and `scores.json`.
pub fn evaluate(
    rd: &RunDir,
    device: ComputeDevice,
    threads: usize,
    progress: bool,
) -> Result<Metrics> {
    run::set_threads(threads);
    let device = device.resolve()?;
    let cfg: PatchCoreRunConfig = run::read_json(&rd.config())?;
    let state: TrainState = run::read_json(&rd.state())?;
    let model = cfg.load_model(&rd.best(), device)?;
    let facts = RunFacts {
        model: shared::manifest::ModelKind::Patchcore,
        arch: format!("patchcore/{}", cfg.patchcore.backbone.name()),
        category: cfg.category.clone(),
        split_seed: cfg.split_seed,
        seen_defects: None,
        epochs_trained: state.epochs_done,
        best_epoch: state.best_epoch,
        train_seconds: state.train_seconds,
        image_size: cfg.patchcore.image_size,
        preset: format!("{} features, bank {}", cfg.patchcore.preset, cfg.bank.size),
        heatmap: format!(
            "nearest-neighbour distance map (bilinear upsample + gaussian sigma {}), validation range",
            cfg.patchcore.blur_sigma
        ),
    };
    let out = EvalOutputs::of(rd);
    super::evaluate_detector(
        &cfg.data,
        cfg.split_seed,
        &cfg.preprocess,
        &out,
        progress,
        facts,
        |item, _| score_item(&model, &cfg, item),
    )
}
