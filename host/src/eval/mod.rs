//! Evaluation: metrics, pictures, and per model kind the code that scores a run's test split into
//! `metrics.json` (the same fields for every model, so reports can put them side by side).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::manifest::ModelKind;
use shared::preprocess::PreprocessConfig;

use crate::data::loader;
use crate::data::split::{Item, Label, Split};
use crate::metrics::{self, Confusion, PixelMetrics};
use crate::run;
use crate::{Error, Result};

pub mod cam;
pub mod classifier;
pub mod glass;
pub mod patchcore;
pub mod visual;

/// One scored image: the image score (higher = more abnormal) and, when asked for, the heat map at
/// input resolution (row-major, values in [0, 1]).
pub struct Scored {
    /// Image score.
    pub score: f32,
    /// Heat map (empty when not asked for).
    pub map: Vec<f32>,
}

/// One image's score as written to a run's `scores.json` (the report's ROC / PR curves and strips
/// come from these).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreRecord {
    /// Image file.
    pub file: PathBuf,
    /// Clockwise rotation applied (degrees).
    pub rotation: u16,
    /// Defect type (`None` for good parts).
    pub defect: Option<String>,
    /// Ground truth: abnormal.
    pub abnormal: bool,
    /// Image score (higher = more abnormal).
    pub score: f32,
}

/// `scores.json`: every validation and test image's score of one evaluation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScoresFile {
    /// Validation images.
    pub valid: Vec<ScoreRecord>,
    /// Test images.
    pub test: Vec<ScoreRecord>,
}

/// Scores of a split's validation and test parts, and the test maps' pixel statistics.
pub struct SplitScores {
    /// Validation scores and labels (true = abnormal).
    pub valid: (Vec<f32>, Vec<bool>),
    /// Test scores, labels and defect types.
    pub test: (Vec<f32>, Vec<bool>, Vec<Option<String>>),
    /// Pixel AUROC / AUPRO accumulators over the test images with pixel truth (normals, and
    /// abnormals that have a mask).
    pub pixels: PixelMetrics,
    /// How many test images went into `pixels`.
    pub pixel_images: usize,
    /// Pixel AUROC of the validation maps (images with pixel truth), when validation was scored
    /// with maps.
    pub val_pixel_auroc: Option<f64>,
    /// Every scored image, for `scores.json`.
    pub records: ScoresFile,
}

/// The evaluation protocol shared by every model: score validation (with maps only when `val_maps`:
/// their pixel AUROC is then reported), then test one image at a time with maps; test maps go into
/// the pixel statistics, and each abnormal test image's strip (image | ground truth | map) into
/// `maps_dir/<defect>_<stem>.png` (the folder is recreated). `score(item, with_map)` returns the
/// image score and, when `with_map`, the map.
pub fn score_split(
    split: &Split,
    pp: &PreprocessConfig,
    maps_dir: &Path,
    progress: bool,
    val_maps: bool,
    mut score: impl FnMut(&Item, bool) -> Result<Scored>,
) -> Result<SplitScores> {
    let pb = run::progress_bar(split.valid.len() + split.test.len(), "eval", progress);
    let (w, h) = (pp.width as usize, pp.height as usize);
    let mut valid = (Vec::new(), Vec::new());
    let mut val_pixels = PixelMetrics::default();
    let mut records = ScoresFile::default();
    for item in &split.valid {
        let sc = score(item, val_maps)?;
        if val_maps {
            if let Some(mask) = pixel_truth(item, pp)? {
                val_pixels.add(&sc.map, &mask, w, h);
            }
        }
        valid.0.push(sc.score);
        valid.1.push(item.label == Label::Abnormal);
        records.valid.push(record(item, sc.score));
        pb.inc(1);
    }
    if maps_dir.is_dir() {
        std::fs::remove_dir_all(maps_dir).map_err(|e| Error::io(maps_dir, e))?;
    }
    let mut pixels = PixelMetrics::default();
    let mut test = (Vec::new(), Vec::new(), Vec::new());
    let mut pixel_images = 0usize;
    for item in &split.test {
        let sc = score(item, true)?;
        let mask = pixel_truth(item, pp)?;
        if let Some(mask) = &mask {
            pixels.add(&sc.map, mask, w, h);
            pixel_images += 1;
        }
        if item.label == Label::Abnormal {
            let img = loader::load_rgb(&item.image, item.rotation)?;
            visual::write_strip(
                &maps_dir.join(strip_name(item)),
                &img,
                mask.as_deref(),
                &[(&sc.map, (0.0, 1.0))],
                w as u32,
                h as u32,
                256,
            )?;
        }
        test.0.push(sc.score);
        test.1.push(item.label == Label::Abnormal);
        test.2.push(item.defect.clone());
        records.test.push(record(item, sc.score));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let val_pixel_auroc = if val_maps { val_pixels.auroc() } else { None };
    Ok(SplitScores { valid, test, pixels, pixel_images, val_pixel_auroc, records })
}

/// An image's pixel truth at input resolution: a normal image is all good pixels; an abnormal one
/// only with its mask (an abnormal image without one is left out, `None`, rather than counted as
/// all-good pixels).
fn pixel_truth(item: &Item, pp: &PreprocessConfig) -> Result<Option<Vec<bool>>> {
    if item.label == Label::Abnormal && item.mask.is_none() {
        return Ok(None);
    }
    Ok(Some(loader::mask_pixels(item, pp)?))
}

/// The protocol for the anomaly detectors (GLASS, PatchCore): the anomaly-detection split of
/// `data` with `split_seed`, [`score_split`] with `score`, metrics, `metrics.json` + `scores.json`.
pub fn evaluate_detector(
    data: &Path,
    split_seed: u64,
    pp: &PreprocessConfig,
    out: &EvalOutputs,
    progress: bool,
    facts: RunFacts,
    score: impl FnMut(&Item, bool) -> Result<Scored>,
) -> Result<Metrics> {
    let category = crate::data::category::Category::open(data)?;
    let split = Split::anomaly_detection(&category, split_seed);
    let scores = score_split(&split, pp, &out.maps, progress, true, score)?;
    let m = Metrics::from_scores(&split, &scores, facts);
    write_outputs(out, &m, &scores)?;
    Ok(m)
}

fn record(item: &Item, score: f32) -> ScoreRecord {
    ScoreRecord {
        file: item.image.clone(),
        rotation: item.rotation.degrees(),
        defect: item.defect.clone(),
        abnormal: item.label == Label::Abnormal,
        score,
    }
}

/// Where one evaluation writes: `metrics.json`, the strips folder and (optionally) `scores.json`.
pub struct EvalOutputs {
    /// Metrics file.
    pub metrics: PathBuf,
    /// Strips folder (recreated).
    pub maps: PathBuf,
    /// Per-image scores file, if wanted.
    pub scores: Option<PathBuf>,
}

impl EvalOutputs {
    /// The run directory's defaults: `metrics.json`, `maps/`, `scores.json`.
    pub fn of(rd: &run::RunDir) -> Self {
        EvalOutputs {
            metrics: rd.metrics(),
            maps: rd.maps(),
            scores: Some(rd.root.join("scores.json")),
        }
    }
}

/// Writes `metrics.json` and, when asked, `scores.json`.
pub fn write_outputs(out: &EvalOutputs, m: &Metrics, scores: &SplitScores) -> Result<()> {
    run::write_json(&out.metrics, m)?;
    if let Some(p) = &out.scores {
        run::write_json(p, &scores.records)?;
    }
    Ok(())
}

/// `maps/<defect>_<file stem>.png`.
pub fn strip_name(item: &Item) -> String {
    let stem = item.image.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    format!("{}_{stem}.png", item.defect.as_deref().unwrap_or("good"))
}

/// What a run contributes to [`Metrics`] besides its scores: the run's facts, one record, flattened
/// into `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFacts {
    /// The model kind (`"glass"`, `"patchcore"`, `"classifier"`).
    pub model: ModelKind,
    /// Architecture, e.g. "glass/efficientnet_lite0" or "tinyvit_21m_512".
    pub arch: String,
    /// Category name.
    pub category: String,
    /// Split seed.
    pub split_seed: u64,
    /// Classifier: defect types seen in training (others are unseen). `None` for the anomaly
    /// detectors (they saw none).
    pub seen_defects: Option<Vec<String>>,
    /// Epochs trained.
    pub epochs_trained: usize,
    /// Epoch of the selected checkpoint.
    pub best_epoch: usize,
    /// Training wall-clock seconds.
    pub train_seconds: f64,
    /// Input size.
    pub image_size: i64,
    /// Preset or recipe name.
    pub preset: String,
    /// What the heat map is.
    pub heatmap: String,
}

impl Metrics {
    /// Threshold = best F1 on validation; test metrics at that threshold, oracle best F1 on test,
    /// recall per defect type, pixel metrics.
    pub fn from_scores(split: &Split, s: &SplitScores, facts: RunFacts) -> Metrics {
        let (vs, vl) = &s.valid;
        let (ts, tl, defects) = &s.test;
        let (threshold, val_f1) = metrics::best_f1(vs, vl).unwrap_or((0.5, 0.0));
        let conf = Confusion::at(ts, tl, threshold);
        let best_test = metrics::best_f1(ts, tl);
        let mut hits: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (score, d) in ts.iter().zip(defects) {
            if let Some(d) = d {
                let e = hits.entry(d.clone()).or_default();
                e.0 += usize::from(*score >= threshold);
                e.1 += 1;
            }
        }
        let per_defect_recall =
            hits.into_iter().map(|(k, (hit, n))| (k, hit as f64 / n as f64)).collect();
        let counts = split.counts();
        let pixel_auroc = s.pixels.auroc();
        Metrics {
            run: facts,
            n_test_normal: counts.test_normal,
            n_test_abnormal: counts.test_abnormal,
            image_auroc: metrics::auroc(ts, tl),
            pixel_auroc,
            aupro: s.pixels.aupro(),
            pixel_metric_images: if pixel_auroc.is_some() { s.pixel_images } else { 0 },
            threshold,
            threshold_method: "best_f1_validation".into(),
            accuracy: conf.accuracy(),
            precision: conf.precision(),
            recall: conf.recall(),
            f1: conf.f1(),
            confusion: conf,
            best_f1_test: best_test.map(|b| b.1).unwrap_or(0.0),
            best_f1_test_threshold: best_test.map(|b| b.0),
            per_defect_recall,
            val_image_auroc: metrics::auroc(vs, vl),
            val_pixel_auroc: s.val_pixel_auroc,
            val_best_f1: val_f1,
        }
    }
}

/// `metrics.json`: test-split results of one run. Positive = abnormal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    /// The run's facts (model, architecture, category, split seed, training, input size, ...).
    #[serde(flatten)]
    pub run: RunFacts,
    /// Normal test images.
    pub n_test_normal: usize,
    /// Abnormal test images.
    pub n_test_abnormal: usize,
    /// Image-level AUROC on test.
    pub image_auroc: Option<f64>,
    /// Pixel AUROC of the heat maps against the ground-truth masks (pixels of the images counted in
    /// `pixel_metric_images`); `null` without masks.
    pub pixel_auroc: Option<f64>,
    /// Standard AUPRO (FPR <= 0.3, normalised).
    pub aupro: Option<f64>,
    /// Test images the pixel metrics cover: normals plus abnormals with a mask (0 when the pixel
    /// metrics are null). Below the test-image count when some defect images have no mask.
    #[serde(default)]
    pub pixel_metric_images: usize,
    /// Decision threshold on the image score (chosen on validation).
    pub threshold: f32,
    /// How the threshold was chosen.
    pub threshold_method: String,
    /// Test accuracy at `threshold`.
    pub accuracy: f64,
    /// Test precision at `threshold`.
    pub precision: f64,
    /// Test recall at `threshold` (a missed defect ships).
    pub recall: f64,
    /// Test F1 at `threshold`.
    pub f1: f64,
    /// Test confusion counts at `threshold`.
    pub confusion: metrics::Confusion,
    /// Oracle best F1 on test (as published).
    pub best_f1_test: f64,
    /// The threshold of `best_f1_test`.
    pub best_f1_test_threshold: Option<f32>,
    /// Recall at `threshold` per defect type.
    pub per_defect_recall: BTreeMap<String, f64>,
    /// Validation image AUROC of the selected checkpoint.
    pub val_image_auroc: Option<f64>,
    /// Validation pixel AUROC (the anomaly detectors' maps; `null` for the classifier, whose
    /// validation is scored without CAMs, and without masks). Settings of the map post-processing
    /// are compared on this, never on test.
    #[serde(default)]
    pub val_pixel_auroc: Option<f64>,
    /// Validation F1 at `threshold`.
    pub val_best_f1: f64,
}
