//! `host eval` for GLASS runs: threshold from the validation split (best F1), then the test split,
//! streamed one image at a time (image scores, pixel AUROC / AUPRO histograms, overlay strips), into
//! `metrics.json` and `maps/`.
use std::collections::BTreeMap;
use std::path::Path;

use tch::Device;

use crate::data::category::Category;
use crate::data::loader;
use crate::data::split::{Item, Label, Split};
use crate::eval::metrics::{self, Confusion, PixelMetrics};
use crate::eval::{visual, Metrics};
use crate::models::glass::Glass;
use crate::train::glass::{self as tg, GlassRunConfig, TrainState};
use crate::train::run::{self, DeviceChoice, RunDir};
use crate::{Error, Result};

/// Patch scores `[h, w]` and the post-processed pixel map (input size) of one item.
pub struct Scored {
    /// Image score (max patch score).
    pub score: f32,
    /// Pixel map at input resolution, row-major.
    pub map: Vec<f32>,
}

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

/// The GLASS pixel map of one patch-score grid (`gw x gh`): bilinear upsample to the input size and
/// Gaussian blur through `shared::preprocess::glass_postprocess`, the station's own code.
pub fn postprocess(
    cfg: &crate::models::glass::GlassConfig,
    grid: &[f32],
    gw: usize,
    gh: usize,
) -> Result<Vec<f32>> {
    let s = cfg.image_size as usize;
    shared::preprocess::glass_postprocess(grid, gw, gh, s, s, cfg.blur_sigma)
        .map_err(|e| Error::Config(format!("map post-processing: {e}")))
}

/// Evaluates a GLASS run directory and writes `metrics.json` + `maps/`.
pub fn evaluate(
    rd: &RunDir,
    device: DeviceChoice,
    threads: usize,
    progress: bool,
) -> Result<Metrics> {
    run::set_threads(threads);
    let device = device.resolve()?;
    let cfg: GlassRunConfig = run::read_json(&rd.config())?;
    let state: TrainState = run::read_json(&rd.state())?;
    let glass = tg::load_model(&cfg, &rd.best(), device)?;
    let category = Category::open(&cfg.data)?;
    let split = Split::anomaly_detection(&category, cfg.split_seed);
    let pb = run::progress_bar(split.valid.len() + split.test.len(), "eval", progress);

    // Threshold: best F1 on validation.
    let mut vs = Vec::new();
    let mut vl = Vec::new();
    for item in &split.valid {
        vs.push(score_item(&glass, &cfg, item)?.score);
        vl.push(item.label == Label::Abnormal);
        pb.inc(1);
    }
    let (threshold, val_f1) = metrics::best_f1(&vs, &vl).unwrap_or((0.5, 0.0));
    let val_auroc = metrics::auroc(&vs, &vl);

    let maps_dir = rd.maps();
    if maps_dir.is_dir() {
        std::fs::remove_dir_all(&maps_dir).map_err(|e| Error::io(&maps_dir, e))?;
    }
    let s = cfg.glass.image_size as u32;
    let mut pixels = PixelMetrics::default();
    let mut ts = Vec::new();
    let mut tl = Vec::new();
    let mut defect_of = Vec::new();
    for item in &split.test {
        let sc = score_item(&glass, &cfg, item)?;
        let mask_t = loader::mask_tensor(item, &cfg.preprocess)?;
        let mask: Vec<bool> =
            Vec::<f32>::try_from(mask_t.reshape([-1]))?.iter().map(|&v| v > 0.5).collect();
        pixels.add(&sc.map, &mask, s as usize, s as usize);
        if item.label == Label::Abnormal {
            let img = loader::load_rgb(&item.image, item.rotation)?;
            let name = strip_name(item);
            let lo = 0.0;
            let hi = 1.0;
            visual::write_strip(
                &maps_dir.join(name),
                &img,
                Some(&mask),
                &[(&sc.map, (lo, hi))],
                s,
                s,
                256,
            )?;
        }
        ts.push(sc.score);
        tl.push(item.label == Label::Abnormal);
        defect_of.push(item.defect.clone());
        pb.inc(1);
    }
    pb.finish_and_clear();

    let conf = Confusion::at(&ts, &tl, threshold);
    let best_test = metrics::best_f1(&ts, &tl);
    let mut per_defect: BTreeMap<String, f64> = BTreeMap::new();
    let mut per_defect_n: BTreeMap<String, usize> = BTreeMap::new();
    for ((s, _), d) in ts.iter().zip(&tl).zip(&defect_of) {
        if let Some(d) = d {
            *per_defect.entry(d.clone()).or_default() += (*s >= threshold) as u8 as f64;
            *per_defect_n.entry(d.clone()).or_default() += 1;
        }
    }
    for (k, v) in per_defect.iter_mut() {
        *v /= per_defect_n[k] as f64;
    }
    let counts = split.counts();
    let m = Metrics {
        model: "glass".into(),
        arch: format!("glass/{}", cfg.glass.backbone.name()),
        category: cfg.category.clone(),
        split_seed: cfg.split_seed,
        n_test_normal: counts.test_normal,
        n_test_abnormal: counts.test_abnormal,
        image_auroc: metrics::auroc(&ts, &tl),
        pixel_auroc: pixels.auroc(),
        aupro: pixels.aupro(),
        threshold,
        threshold_method: "best_f1_validation".into(),
        accuracy: conf.accuracy(),
        precision: conf.precision(),
        recall: conf.recall(),
        f1: conf.f1(),
        confusion: conf,
        best_f1_test: best_test.map(|b| b.1).unwrap_or(0.0),
        best_f1_test_threshold: best_test.map(|b| b.0),
        per_defect_recall: per_defect,
        seen_defects: None,
        val_image_auroc: val_auroc,
        val_best_f1: val_f1,
        epochs_trained: state.epochs_done,
        best_epoch: state.best_epoch,
        train_seconds: state.train_seconds,
        image_size: cfg.glass.image_size,
        preset: cfg.glass.preset.clone(),
        heatmap: "glass anomaly map (bilinear upsample + gaussian sigma 4)".into(),
    };
    run::write_json(&rd.metrics(), &m)?;
    Ok(m)
}

/// `maps/<defect>_<file stem>.png`.
pub fn strip_name(item: &Item) -> String {
    let stem = item.image.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    format!("{}_{stem}.png", item.defect.as_deref().unwrap_or("good"))
}

/// True when `dir` holds a GLASS run.
pub fn is_glass_run(dir: &Path) -> bool {
    run::read_json::<serde_json::Value>(&dir.join("config.json"))
        .map(|v| v.get("model").and_then(|m| m.as_str()) == Some("glass"))
        .unwrap_or(false)
}
