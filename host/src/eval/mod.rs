//! Evaluation: metrics, pictures, and per model kind the code that scores a run's test split into
//! `metrics.json` (the same fields for every model, so reports can put them side by side).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod glass;
pub mod metrics;
pub mod visual;

/// `metrics.json`: test-split results of one run. Positive = abnormal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    /// "glass" or "classifier".
    pub model: String,
    /// Architecture, e.g. "glass/efficientnet_lite0" or "tinyvit_21m_512".
    pub arch: String,
    /// Category name.
    pub category: String,
    /// Split seed.
    pub split_seed: u64,
    /// Normal test images.
    pub n_test_normal: usize,
    /// Abnormal test images.
    pub n_test_abnormal: usize,
    /// Image-level AUROC on test.
    pub image_auroc: Option<f64>,
    /// Pixel AUROC of the heat maps against the ground-truth masks (all test pixels).
    pub pixel_auroc: Option<f64>,
    /// Standard AUPRO (FPR <= 0.3, normalised).
    pub aupro: Option<f64>,
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
    /// Oracle best F1 on test (what the user published).
    pub best_f1_test: f64,
    /// The threshold of `best_f1_test`.
    pub best_f1_test_threshold: Option<f32>,
    /// Recall at `threshold` per defect type.
    pub per_defect_recall: BTreeMap<String, f64>,
    /// Classifier: defect types seen in training (others are unseen). `None` for GLASS (saw none).
    pub seen_defects: Option<Vec<String>>,
    /// Validation image AUROC of the selected checkpoint.
    pub val_image_auroc: Option<f64>,
    /// Validation F1 at `threshold`.
    pub val_best_f1: f64,
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
