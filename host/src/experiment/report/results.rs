//! The results model: the serde structs written to `results.json` (metadata, the three tables'
//! rows, the findings, per-category runs and figures) and empty results with a run's metadata.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::machine::{cpu_model, libtorch_version, memory_gib};
use crate::experiment::figures::CategoryFigures;
use crate::experiment::{ExperimentOptions, RunResult};

/// What a run is in the experiment (`results.json`'s `role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The GLASS anomaly detector (experiments 1 and 2).
    Glass,
    /// The memory-bank baseline (PatchCore) on the same features.
    Patchcore,
    /// A classifier trained on every defect type (experiments 1 and 2).
    Classifier,
    /// A classifier trained without the held-out defect type (experiment 3).
    Unseen,
}

impl Role {
    /// The JSON spelling.
    pub fn name(self) -> &'static str {
        match self {
            Role::Glass => "glass",
            Role::Patchcore => "patchcore",
            Role::Classifier => "classifier",
            Role::Unseen => "unseen",
        }
    }

    /// GLASS or the memory bank: the anomaly detectors.
    pub fn is_detector(self) -> bool {
        matches!(self, Role::Glass | Role::Patchcore)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a finding came out, judged from the numbers (`results.json`'s `verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// GLASS is ahead (or, for finding 4, not behind) in every comparison.
    #[serde(rename = "holds")]
    Holds,
    /// GLASS is behind in at least one comparison and ahead in none.
    #[serde(rename = "does not hold")]
    DoesNotHold,
    /// Ahead in some comparisons, behind in others.
    #[serde(rename = "mixed")]
    Mixed,
    /// Every comparison is within the spread, or there was nothing to compare.
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    /// The report's wording (also the JSON spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Mixed => "mixed",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how the experiment ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// `host` version.
    pub tool_version: String,
    /// `git describe` of the tool's own checkout at build time.
    pub git: Option<String>,
    /// The libtorch build (torch wheel version), when found.
    pub libtorch: Option<String>,
    /// Dataset root.
    pub data: String,
    /// Split and training seed.
    pub seed: u64,
    /// GLASS preset.
    pub glass_preset: String,
    /// GLASS recipe (as trained).
    pub glass_config: serde_json::Value,
    /// Classifier recipes.
    pub classifier_configs: Vec<serde_json::Value>,
    /// GLASS input size.
    pub glass_image_size: i64,
    /// Classifier input sizes.
    pub classifier_image_sizes: Vec<i64>,
    /// Experiment-3 defect type per category.
    pub exp3_defects: BTreeMap<String, String>,
    /// `train/good` images per category.
    pub train_normals: BTreeMap<String, usize>,
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// RAM in GiB.
    pub memory_gib: f64,
    /// CUDA devices libtorch sees.
    pub cuda_devices: i64,
    /// Wall-clock seconds of this call (reused runs cost nothing).
    pub wall_seconds: f64,
    /// When the report was written (UTC, RFC 3339).
    pub written: String,
}

/// Spread of a row over split seeds: standard deviation (sample, n - 1) per numeric field that
/// varied, and how many seeds the row's values are the mean of (1 for a single-seed report).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spread {
    /// Seeds averaged.
    #[serde(default)]
    pub n_seeds: usize,
    /// Field name -> standard deviation over the seeds.
    #[serde(default)]
    pub sd: BTreeMap<String, f64>,
}

impl Spread {
    /// The sd of `field` (0 when it did not vary or there is one seed).
    pub fn of(&self, field: &str) -> f64 {
        self.sd.get(field).copied().unwrap_or(0.0)
    }
}

fn nan() -> f64 {
    f64::NAN
}

/// `null` (how serde_json writes NaN) reads back as NaN.
pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Table 1 row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectionRow {
    /// Category, or "mean".
    pub category: String,
    /// Model display name.
    pub model: String,
    /// GLASS, the memory bank or a classifier.
    pub role: Role,
    /// Oracle best F1 on test (as published).
    #[serde(deserialize_with = "f64_or_nan")]
    pub best_f1_test: f64,
    /// At the validation threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub accuracy: f64,
    /// At the validation threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub precision: f64,
    /// At the validation threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub recall: f64,
    /// False-alarm rate on good test parts at the validation threshold (FP / (FP + TN)): the price
    /// of that recall.
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub fpr: f64,
    /// At the validation threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub f1: f64,
    /// Test image AUROC.
    #[serde(deserialize_with = "f64_or_nan")]
    pub auroc: f64,
    /// The published best F1 for this kind of model on this category.
    pub published_best_f1: Option<f64>,
    /// Which published model that is.
    pub published_model: Option<String>,
    /// Spread over split seeds.
    #[serde(default)]
    pub spread: Spread,
}

/// Table 2 row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplanationRow {
    /// Category, or "mean".
    pub category: String,
    /// Heat map name, e.g. "GLASS (edge) map" or "efficientnet_lite0 Grad-CAM".
    pub heatmap: String,
    /// GLASS, the memory bank or a classifier.
    pub role: Role,
    /// Pixel AUROC against the masks.
    #[serde(deserialize_with = "f64_or_nan")]
    pub pixel_auroc: f64,
    /// AUPRO (FPR <= 0.3).
    #[serde(deserialize_with = "f64_or_nan")]
    pub aupro: f64,
    /// Spread over split seeds.
    #[serde(default)]
    pub spread: Spread,
}

/// A detector and a classifier at the same false-alarm rate: the detector's recall on its test
/// defects at the threshold where it flags no more of its good test parts than the classifier does
/// at the classifier's validation threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatchedRow {
    /// Category.
    pub category: String,
    /// Detector display name.
    pub model: String,
    /// GLASS or the memory bank.
    pub role: Role,
    /// Classifier display name.
    pub classifier: String,
    /// The classifier's false-alarm rate on good test parts at its validation threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub classifier_fpr: f64,
    /// The classifier's recall at that threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub classifier_recall: f64,
    /// The detector's recall at the same false-alarm rate.
    #[serde(deserialize_with = "f64_or_nan")]
    pub recall: f64,
    /// Spread over split seeds.
    #[serde(default)]
    pub spread: Spread,
}

/// Table 3 row: one defect type of one category.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnseenRow {
    /// Category.
    pub category: String,
    /// Defect type.
    pub defect: String,
    /// The experiment-3 classifier.
    pub classifier: String,
    /// Whether the experiment-3 classifier saw this type in training.
    pub seen: bool,
    /// Test images of this type (the classifier split's test quarter).
    pub n_images: usize,
    /// Recall of the experiment-3 classifier at its validation threshold.
    #[serde(deserialize_with = "f64_or_nan")]
    pub classifier_recall: f64,
    /// Recall of the same architecture trained on every type (same images).
    #[serde(deserialize_with = "f64_or_nan")]
    pub classifier_all_types_recall: f64,
    /// GLASS recall at its validation threshold on the same images.
    #[serde(deserialize_with = "f64_or_nan")]
    pub glass_recall: f64,
    /// The experiment-3 classifier's false-alarm rate on its good test parts at its validation
    /// threshold.
    #[serde(default)]
    pub classifier_fpr: Option<f64>,
    /// GLASS recall on the same images at that false-alarm rate on its own good test parts (the
    /// comparison at matched false alarms; `glass_recall` is at GLASS's own validation threshold).
    #[serde(default)]
    pub glass_recall_matched: Option<f64>,
    /// PatchCore recall at its validation threshold on the same images (when it ran).
    #[serde(default)]
    pub patchcore_recall: Option<f64>,
    /// Spread over split seeds.
    #[serde(default)]
    pub spread: Spread,
}

/// One of the experiment protocol's three findings, judged from the numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// 1, 2 or 3 (the experiment's findings); 4: GLASS against the memory-bank baseline.
    pub id: u8,
    /// The finding's claim.
    pub claim: String,
    /// How the finding came out.
    pub verdict: Verdict,
    /// The numbers behind the verdict.
    pub evidence: String,
}

/// Per-category results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CategoryResult {
    /// Category.
    pub name: String,
    /// Experiment-3 defect type.
    pub exp3_defect: String,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// Figures.
    pub figures: CategoryFigures,
}

/// `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// Metadata.
    pub meta: Meta,
    /// Per category.
    pub categories: Vec<CategoryResult>,
    /// Table 1, detection.
    pub detection: Vec<DetectionRow>,
    /// Table 2, explanation.
    pub explanation: Vec<ExplanationRow>,
    /// Table 3, unseen defect types.
    pub unseen: Vec<UnseenRow>,
    /// Each detector against each classifier at the classifier's false-alarm rate (per category).
    #[serde(default)]
    pub matched: Vec<MatchedRow>,
    /// The three findings.
    pub conclusion: Vec<Finding>,
    /// Split seeds of the runs; with more than one, the tables above hold the mean over seeds with
    /// the standard deviation in each row's `spread`, and `per_seed` the single-seed tables.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Per split seed: its own tables (as a single-seed report would have them).
    #[serde(default)]
    pub per_seed: Vec<crate::experiment::seeds::SeedTables>,
}

impl Results {
    /// Empty results with the metadata of `opts`.
    pub fn new(opts: &ExperimentOptions) -> Results {
        Results {
            meta: Meta {
                tool_version: env!("CARGO_PKG_VERSION").into(),
                git: option_env!("GLASS_EDGE_GIT").map(str::to_owned),
                libtorch: libtorch_version(),
                data: opts.data.to_string_lossy().into_owned(),
                seed: opts.glass.seed,
                glass_preset: opts.glass.preset.clone(),
                glass_config: serde_json::to_value(&opts.glass).unwrap_or_default(),
                classifier_configs: opts
                    .classifiers
                    .iter()
                    .map(|c| serde_json::to_value(&c.config).unwrap_or_default())
                    .collect(),
                glass_image_size: opts.glass.image_size,
                classifier_image_sizes: opts
                    .classifiers
                    .iter()
                    .map(|c| c.config.image_size)
                    .collect(),
                exp3_defects: BTreeMap::new(),
                train_normals: BTreeMap::new(),
                cpu: cpu_model(),
                cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                memory_gib: memory_gib(),
                cuda_devices: tch::Cuda::device_count(),
                wall_seconds: 0.0,
                written: String::new(),
            },
            categories: Vec::new(),
            detection: Vec::new(),
            explanation: Vec::new(),
            unseen: Vec::new(),
            matched: Vec::new(),
            conclusion: Vec::new(),
            seeds: vec![opts.glass.seed],
            per_seed: Vec::new(),
        }
    }
}
