//! `host eval` for classifier runs: the same protocol and `metrics.json` fields as GLASS
//! ([`super::score_split`]), where the image score is the abnormal probability and the heat map is the
//! Grad-CAM (or Grad-CAM++) map of the abnormal logit on the run's `cam_layer`; `per_defect_recall`
//! covers every defect type and `seen_defects` names those that were in training.
use tch::Tensor;

use crate::data::category::Category;
use crate::data::loader;
use crate::data::split::{Item, Split};
use crate::eval::cam::{self, CamMethod};
use crate::eval::{EvalOutputs, Metrics, RunFacts, Scored};
use crate::models::classifier::Classifier;
use crate::run::{self, ClassifierRunConfig, ComputeDevice, RunDir, TrainState};
use crate::Result;

/// Abnormal probability and (when `with_map`) the CAM map of one preprocessed image `[3,H,W]`.
pub fn score_tensor(
    model: &Classifier,
    x: &Tensor,
    layer: &str,
    method: CamMethod,
    with_map: bool,
) -> Result<Scored> {
    let x = x.unsqueeze(0).to_device(model.vs.device());
    if !with_map {
        let p = f32::try_from(model.abnormal_prob(&x).get(0))?;
        return Ok(Scored { score: p, map: Vec::new() });
    }
    let (maps, prob) = cam::gradcam(model, &x, layer, method)?;
    let map = Vec::<f32>::try_from(maps.get(0).reshape([-1]).to_device(tch::Device::Cpu))?;
    Ok(Scored { score: f32::try_from(prob.get(0))?, map })
}

/// Evaluates a classifier run directory and writes `metrics.json`, `maps/` (CAM strips) and
/// `scores.json`.
pub fn evaluate(
    rd: &RunDir,
    device: ComputeDevice,
    threads: usize,
    method: CamMethod,
    cam_layer: Option<&str>,
    progress: bool,
) -> Result<Metrics> {
    evaluate_to(rd, device, threads, method, cam_layer, progress, &EvalOutputs::of(rd))
}

/// [`evaluate`] into the given outputs (e.g. a second CAM method next to the first).
pub fn evaluate_to(
    rd: &RunDir,
    device: ComputeDevice,
    threads: usize,
    method: CamMethod,
    cam_layer: Option<&str>,
    progress: bool,
    out: &EvalOutputs,
) -> Result<Metrics> {
    run::set_threads(threads);
    let device = device.resolve()?;
    let cfg: ClassifierRunConfig = run::read_json(&rd.config())?;
    let state: TrainState = run::read_json(&rd.state())?;
    let model = cfg.load_model(&rd.best(), device)?;
    let category = Category::open(&cfg.data)?;
    let split = Split::classifier(&category, cfg.split_seed, cfg.train_defects.as_deref())?;
    let layer = cam_layer.unwrap_or(&cfg.classifier.cam_layer).to_owned();
    let scores = super::score_split(
        &split,
        &cfg.preprocess,
        &out.maps,
        progress,
        false,
        |item: &Item, m| {
            let x = loader::image_tensor(item, &cfg.preprocess)?;
            score_tensor(&model, &x, &layer, method, m)
        },
    )?;
    let facts = RunFacts {
        model: shared::manifest::ModelKind::Classifier,
        arch: cfg.classifier.arch.name().into(),
        category: cfg.category.clone(),
        split_seed: cfg.split_seed,
        seen_defects: Some(cfg.seen_defects.clone()),
        epochs_trained: state.epochs_done,
        best_epoch: state.best_epoch,
        train_seconds: state.train_seconds,
        image_size: cfg.classifier.image_size,
        preset: match &cfg.train_defects {
            Some(d) => format!("classifier (train defects: {})", d.join(",")),
            None => "classifier".into(),
        },
        heatmap: format!("{} on {} (min-max normalised)", method.name(), layer),
    };
    let m = Metrics::from_scores(&split, &scores, facts);
    super::write_outputs(out, &m, &scores)?;
    Ok(m)
}
