//! `results.json`, `report.md` and `index.html` of an experiment: the three tables, the figures, the
//! run metadata and a conclusion generated from the numbers.
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::figures::CategoryFigures;
use super::{CategoryOutcome, ExperimentOptions, RunResult, PUBLISHED_BEST_F1};
use crate::eval::ScoresFile;
use crate::train::run;
use crate::{Error, Result};

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
    /// "glass", "patchcore" or "classifier".
    pub role: String,
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
    /// "glass", "patchcore" or "classifier".
    pub role: String,
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
    /// "glass" or "patchcore".
    pub role: String,
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

/// Recall on `abnormal` at the strictest cut that flags at most a share `fpr` of `normal` (flagged:
/// score strictly above the cut, so ties at the cut stay unflagged and the rate is never exceeded).
/// `None` without scores on either side or without a rate.
pub fn recall_at_fpr(normal: &[f32], abnormal: &[f32], fpr: f64) -> Option<f64> {
    if normal.is_empty() || abnormal.is_empty() || !fpr.is_finite() {
        return None;
    }
    let mut n = normal.to_vec();
    n.sort_by(|a, b| b.total_cmp(a));
    let k = (fpr.clamp(0.0, 1.0) * n.len() as f64 + 1e-9).floor() as usize;
    let cut = n.get(k).copied().unwrap_or(f32::NEG_INFINITY);
    Some(abnormal.iter().filter(|&&s| s > cut).count() as f64 / abnormal.len() as f64)
}

/// False-alarm rate on good test parts at the run's validation threshold, FP / (FP + TN) from its
/// confusion matrix (NaN without good parts): the one definition every table and finding uses.
fn false_alarm_rate(m: &crate::eval::Metrics) -> f64 {
    let c = &m.confusion;
    if c.fp + c.tn > 0 {
        c.fp as f64 / (c.fp + c.tn) as f64
    } else {
        f64::NAN
    }
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
    /// "holds", "does not hold" or "mixed".
    pub verdict: String,
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
    pub per_seed: Vec<super::seeds::SeedTables>,
}

fn first_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn libtorch_version() -> Option<String> {
    let dir = std::env::var_os("LIBTORCH")?;
    let text = std::fs::read_to_string(PathBuf::from(dir).join("version.py")).ok()?;
    let line = text.lines().find(|l| l.starts_with("__version__"))?;
    Some(format!("torch {}", line.split('\'').nth(1)?))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn memory_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0)
}

fn now_utc() -> String {
    first_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default()
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

    /// Adds one category's runs and figures.
    pub fn add_category(&mut self, name: &str, outcome: CategoryOutcome) {
        let exp3 = outcome.exp3.as_str();
        let scores: &[ScoresFile] = &outcome.scores;
        self.meta.exp3_defects.insert(name.into(), exp3.into());
        self.meta.train_normals.insert(name.into(), outcome.train_normals);
        let runs = &outcome.runs;
        for r in runs.iter().filter(|r| r.role != "unseen") {
            let m = &r.metrics;
            let published = PUBLISHED_BEST_F1.iter().find(|p| p.0 == name).and_then(|p| {
                match r.role.as_str() {
                    "glass" => Some((p.1, "GLASS (published)".to_string())),
                    "classifier" => Some((p.2, "TinyViT-21M-512 (published)".to_string())),
                    _ => None,
                }
            });
            self.detection.push(DetectionRow {
                category: name.into(),
                model: r.name.clone(),
                role: r.role.clone(),
                best_f1_test: m.best_f1_test,
                accuracy: m.accuracy,
                precision: m.precision,
                recall: m.recall,
                fpr: false_alarm_rate(m),
                f1: m.f1,
                auroc: m.image_auroc.unwrap_or(f64::NAN),
                published_best_f1: published.as_ref().map(|p| p.0),
                published_model: published.map(|p| p.1),
                spread: Spread::default(),
            });
            let heatmap = if r.role == "classifier" {
                format!("{} Grad-CAM", r.name)
            } else {
                format!("{} map", r.name)
            };
            self.explanation.push(ExplanationRow {
                category: name.into(),
                heatmap,
                role: r.role.clone(),
                pixel_auroc: m.pixel_auroc.unwrap_or(f64::NAN),
                aupro: m.aupro.unwrap_or(f64::NAN),
                spread: Spread::default(),
            });
            if let Some((px, pro)) = r.gradcampp {
                self.explanation.push(ExplanationRow {
                    category: name.into(),
                    heatmap: format!("{} Grad-CAM++", r.name),
                    role: r.role.clone(),
                    pixel_auroc: px.unwrap_or(f64::NAN),
                    aupro: pro.unwrap_or(f64::NAN),
                    spread: Spread::default(),
                });
            }
        }
        // Detectors against classifiers at the classifier's false-alarm rate.
        let split_scores = |i: usize| -> (Vec<f32>, Vec<f32>) {
            let t = &scores[i].test;
            (
                t.iter().filter(|r| !r.abnormal).map(|r| r.score).collect(),
                t.iter().filter(|r| r.abnormal).map(|r| r.score).collect(),
            )
        };
        for c in runs.iter().filter(|r| r.role == "classifier") {
            let c_fpr = false_alarm_rate(&c.metrics);
            for (di, d) in
                runs.iter().enumerate().filter(|(_, r)| r.role == "glass" || r.role == "patchcore")
            {
                let (d_normal, d_abnormal) = split_scores(di);
                self.matched.push(MatchedRow {
                    category: name.into(),
                    model: d.name.clone(),
                    role: d.role.clone(),
                    classifier: c.name.clone(),
                    classifier_fpr: c_fpr,
                    classifier_recall: c.metrics.recall,
                    recall: recall_at_fpr(&d_normal, &d_abnormal, c_fpr).unwrap_or(f64::NAN),
                    spread: Spread::default(),
                });
            }
        }
        // Table 3: recall per defect type on the experiment-3 classifier's test images.
        let glass_idx = runs.iter().position(|r| r.role == "glass");
        let glass_thr = glass_idx.map(|i| runs[i].metrics.threshold).unwrap_or(f32::INFINITY);
        let glass_scores: HashMap<&Path, f32> = glass_idx
            .map(|i| scores[i].test.iter().map(|r| (r.file.as_path(), r.score)).collect())
            .unwrap_or_default();
        let pc_idx = runs.iter().position(|r| r.role == "patchcore");
        let pc_thr = pc_idx.map(|i| runs[i].metrics.threshold).unwrap_or(f32::INFINITY);
        let pc_scores: HashMap<&Path, f32> = pc_idx
            .map(|i| scores[i].test.iter().map(|r| (r.file.as_path(), r.score)).collect())
            .unwrap_or_default();
        for (i, r) in runs.iter().enumerate().filter(|(_, r)| r.role == "unseen") {
            let full = runs
                .iter()
                .position(|f| f.role == "classifier" && f.metrics.arch == r.metrics.arch);
            let seen = r.metrics.seen_defects.clone().unwrap_or_default();
            let c_fpr = Some(false_alarm_rate(&r.metrics)).filter(|f| f.is_finite());
            let g_normal: Vec<f32> = glass_idx.map(|g| split_scores(g).0).unwrap_or_default();
            // Per type: GLASS scores of its images.
            let mut g_type: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
            // Per type: (GLASS hits, PatchCore hits, images).
            let mut per_type: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
            for rec in scores[i].test.iter() {
                if let Some(d) = rec.defect.as_deref() {
                    if let Some(&s) = glass_scores.get(rec.file.as_path()) {
                        g_type.entry(d).or_default().push(s);
                    }
                    let e = per_type.entry(d).or_default();
                    e.2 += 1;
                    if glass_scores.get(rec.file.as_path()).is_some_and(|&s| s >= glass_thr) {
                        e.0 += 1;
                    }
                    if pc_scores.get(rec.file.as_path()).is_some_and(|&s| s >= pc_thr) {
                        e.1 += 1;
                    }
                }
            }
            for (d, (glass_hits, pc_hits, n)) in per_type {
                self.unseen.push(UnseenRow {
                    category: name.into(),
                    defect: d.into(),
                    classifier: r.name.clone(),
                    seen: seen.iter().any(|s| s == d),
                    n_images: n,
                    classifier_recall: r.metrics.per_defect_recall.get(d).copied().unwrap_or(0.0),
                    classifier_all_types_recall: full
                        .and_then(|f| runs[f].metrics.per_defect_recall.get(d).copied())
                        .unwrap_or(f64::NAN),
                    glass_recall: glass_hits as f64 / n.max(1) as f64,
                    classifier_fpr: c_fpr,
                    glass_recall_matched: c_fpr.and_then(|f| {
                        recall_at_fpr(&g_normal, g_type.get(d).map_or(&[][..], |v| &v[..]), f)
                    }),
                    patchcore_recall: pc_idx.map(|_| pc_hits as f64 / n.max(1) as f64),
                    spread: Spread::default(),
                });
            }
        }
        let exp3_defect = exp3.to_string();
        self.categories.push(CategoryResult {
            name: name.into(),
            exp3_defect,
            runs: outcome.runs,
            figures: outcome.figures,
        });
    }

    /// Mean rows and the conclusion (recomputed from the per-category rows).
    pub fn finish(&mut self) {
        self.meta.written = now_utc();
        self.detection.retain(|r| r.category != "mean");
        self.explanation.retain(|r| r.category != "mean");
        let n_cat = self.categories.len();
        if n_cat > 1 {
            let models = unique(self.detection.iter().map(|r| (r.model.clone(), r.role.clone())));
            for (model, role) in models {
                let rows: Vec<&DetectionRow> =
                    self.detection.iter().filter(|r| r.model == model).collect();
                let mean = |f: fn(&DetectionRow) -> f64| {
                    rows.iter().map(|r| f(r)).sum::<f64>() / rows.len() as f64
                };
                let published: Vec<f64> = rows.iter().filter_map(|r| r.published_best_f1).collect();
                let all_published = published.len() == rows.len();
                self.detection.push(DetectionRow {
                    category: "mean".into(),
                    model,
                    role,
                    best_f1_test: mean(|r| r.best_f1_test),
                    accuracy: mean(|r| r.accuracy),
                    precision: mean(|r| r.precision),
                    recall: mean(|r| r.recall),
                    fpr: mean(|r| r.fpr),
                    f1: mean(|r| r.f1),
                    auroc: mean(|r| r.auroc),
                    published_best_f1: all_published
                        .then(|| published.iter().sum::<f64>() / published.len() as f64),
                    published_model: rows.first().and_then(|r| r.published_model.clone()),
                    spread: Spread::default(),
                });
            }
            let maps = unique(self.explanation.iter().map(|r| (r.heatmap.clone(), r.role.clone())));
            for (heatmap, role) in maps {
                let rows: Vec<&ExplanationRow> =
                    self.explanation.iter().filter(|r| r.heatmap == heatmap).collect();
                let n = rows.len() as f64;
                self.explanation.push(ExplanationRow {
                    category: "mean".into(),
                    heatmap,
                    role,
                    pixel_auroc: rows.iter().map(|r| r.pixel_auroc).sum::<f64>() / n,
                    aupro: rows.iter().map(|r| r.aupro).sum::<f64>() / n,
                    spread: Spread::default(),
                });
            }
        }
        self.conclusion = conclude(self);
    }
}

fn unique(it: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for x in it {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Percent with one decimal.
pub fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", 100.0 * v)
    } else {
        "n/a".into()
    }
}

/// How one comparison came out, after the spread over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// GLASS ahead by more than the spread.
    Ahead,
    /// Within the spread (or equal).
    Level,
    /// GLASS behind by more than the spread.
    Behind,
}

/// Compares GLASS's `g` with the other model's `c`: a difference counts only when it exceeds the
/// larger of the two standard deviations over seeds (0 with one seed: any difference counts).
pub fn compare(g: f64, g_sd: f64, c: f64, c_sd: f64) -> Cmp {
    let spread = g_sd.max(c_sd).max(0.0);
    if g - c > spread {
        Cmp::Ahead
    } else if c - g > spread {
        Cmp::Behind
    } else {
        Cmp::Level
    }
}

/// "holds" when GLASS is ahead in all `total` comparisons, "does not hold" when it is behind in at
/// least one and ahead in none, "inconclusive" when every comparison is within the spread, "mixed"
/// otherwise.
fn verdict(better: usize, worse: usize, total: usize) -> String {
    if total > 0 && better == total {
        "holds"
    } else if total > 0 && better == 0 && worse > 0 {
        "does not hold"
    } else if better == 0 && worse == 0 {
        "inconclusive" // also: nothing to compare
    } else {
        "mixed"
    }
    .into()
}

/// Mean over rows of each row's sd of `field` (the spread of a per-category mean).
fn sd_of<T: HasSpread>(rows: &[&T], field: &str) -> f64 {
    rows.iter().map(|r| r.spread().of(field)).sum::<f64>() / rows.len().max(1) as f64
}

/// Rows that carry a [`Spread`].
trait HasSpread {
    fn spread(&self) -> &Spread;
}
impl HasSpread for DetectionRow {
    fn spread(&self) -> &Spread {
        &self.spread
    }
}
impl HasSpread for MatchedRow {
    fn spread(&self) -> &Spread {
        &self.spread
    }
}
impl HasSpread for ExplanationRow {
    fn spread(&self) -> &Spread {
        &self.spread
    }
}

/// " ± sd" when the value is a mean over several seeds.
fn pm(sd: f64) -> String {
    if sd > 0.0 {
        format!(" ± {:.1}", 100.0 * sd)
    } else {
        String::new()
    }
}

fn mean_of<T>(rows: &[&T], f: impl Fn(&T) -> f64) -> f64 {
    rows.iter().map(|r| f(r)).sum::<f64>() / rows.len().max(1) as f64
}

/// The three findings from the tables: each compares GLASS with every classifier; a finding holds
/// when GLASS is ahead in every comparison, does not hold when it is behind or level in all of them.
pub(crate) fn conclude(r: &Results) -> Vec<Finding> {
    let cats: Vec<&str> = r.categories.iter().map(|c| c.name.as_str()).collect();
    let per_cat = |role: &str, model: Option<&str>| -> Vec<&DetectionRow> {
        r.detection
            .iter()
            .filter(|d| {
                d.category != "mean" && d.role == role && model.is_none_or(|m| d.model == m)
            })
            .collect()
    };
    let glass = per_cat("glass", None);
    let normals: Vec<String> =
        r.meta.train_normals.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let mut out = Vec::new();

    // 1. Detection.
    let (mut better, mut worse) = (0, 0);
    let mut ev = Vec::new();
    let classifiers = unique(
        r.detection
            .iter()
            .filter(|d| d.role == "classifier")
            .map(|d| (d.model.clone(), String::new())),
    );
    for (model, _) in &classifiers {
        let c = per_cat("classifier", Some(model));
        let (gf, cf) = (mean_of(&glass, |d| d.best_f1_test), mean_of(&c, |d| d.best_f1_test));
        let (gr, cr) = (mean_of(&glass, |d| d.recall), mean_of(&c, |d| d.recall));
        let (gfa, cfa) = (mean_of(&glass, |d| d.fpr), mean_of(&c, |d| d.fpr));
        // GLASS at the classifier's false-alarm rate, where the runs' scores were available.
        let m: Vec<&MatchedRow> = r
            .matched
            .iter()
            .filter(|m| m.role == "glass" && m.classifier == *model && m.recall.is_finite())
            .collect();
        let matched = (m.len() == cats.len() && !m.is_empty()).then(|| {
            let mean = |f: fn(&MatchedRow) -> f64| mean_of(&m, f);
            (mean(|m| m.recall), mean(|m| m.classifier_recall), mean(|m| m.classifier_fpr))
        });
        let msd = |f: &str| sd_of(&m, f);
        let wins = cats
            .iter()
            .filter(|cat| {
                let g = glass.iter().find(|d| d.category == **cat).map(|d| d.best_f1_test);
                let k = c.iter().find(|d| d.category == **cat).map(|d| d.best_f1_test);
                matches!((g, k), (Some(g), Some(k)) if g > k)
            })
            .count();
        let (gfs, cfs) = (sd_of(&glass, "best_f1_test"), sd_of(&c, "best_f1_test"));
        let (grs, crs) = (sd_of(&glass, "recall"), sd_of(&c, "recall"));
        // Recall is compared at matched false alarms when possible: recall at each model's own
        // threshold rewards the one that flags more good parts.
        let recall_cmp = match matched {
            Some((gm, cm, _)) => compare(gm, msd("recall"), cm, msd("classifier_recall")),
            None => compare(gr, grs, cr, crs),
        };
        match (compare(gf, gfs, cf, cfs), recall_cmp) {
            (Cmp::Ahead, r) if r != Cmp::Behind => better += 1,
            (Cmp::Behind, r) if r != Cmp::Ahead => worse += 1,
            (Cmp::Level, Cmp::Behind) => worse += 1,
            _ => {}
        }
        ev.push(format!(
            "GLASS mean best-F1 {}{} vs {model} {}{} (GLASS ahead on {wins} of {} categories); \
             recall at the validation threshold {}{} vs {}{} (false alarms on good parts {} vs {})",
            pct(gf),
            pm(gfs),
            pct(cf),
            pm(cfs),
            cats.len(),
            pct(gr),
            pm(grs),
            pct(cr),
            pm(crs),
            pct(gfa),
            pct(cfa)
        ));
        if let Some((gm, cm, fa)) = matched {
            ev.push(format!(
                "at the same false-alarm rate as {model} ({}), GLASS recalls {}{} vs {}",
                pct(fa),
                pct(gm),
                pm(msd("recall")),
                pct(cm)
            ));
        }
    }
    out.push(Finding {
        id: 1,
        claim: format!(
            "The anomaly detector beats the classifier on detection, trained on normal images only \
             (train/good: {}).",
            normals.join(", ")
        ),
        verdict: verdict(better, worse, classifiers.len()),
        evidence: ev.join("; ") + ".",
    });

    // 2. Explanation.
    let ex = |pred: &dyn Fn(&ExplanationRow) -> bool| -> Vec<&ExplanationRow> {
        r.explanation.iter().filter(|e| e.category != "mean" && pred(e)).collect()
    };
    let gmaps = ex(&|e| e.role == "glass");
    let (gpx, gpro) = (mean_of(&gmaps, |e| e.pixel_auroc), mean_of(&gmaps, |e| e.aupro));
    let (mut better, mut worse) = (0, 0);
    let mut ev = Vec::new();
    let cams = unique(
        r.explanation
            .iter()
            .filter(|e| e.role == "classifier")
            .map(|e| (e.heatmap.clone(), String::new())),
    );
    for (cam, _) in &cams {
        let rows = ex(&|e| e.heatmap == *cam);
        let (px, pro) = (mean_of(&rows, |e| e.pixel_auroc), mean_of(&rows, |e| e.aupro));
        let a = compare(gpx, sd_of(&gmaps, "pixel_auroc"), px, sd_of(&rows, "pixel_auroc"));
        let b = compare(gpro, sd_of(&gmaps, "aupro"), pro, sd_of(&rows, "aupro"));
        match (a, b) {
            (Cmp::Ahead, Cmp::Ahead) => better += 1,
            (Cmp::Behind, _) | (_, Cmp::Behind) => worse += 1,
            _ => {}
        }
        ev.push(format!(
            "GLASS map pixel AUROC {} / AUPRO {} vs {cam} {} / {}",
            pct(gpx),
            pct(gpro),
            pct(px),
            pct(pro)
        ));
    }
    out.push(Finding {
        id: 2,
        claim: "The anomaly map shows where the defect is better than Grad-CAM of the classifier."
            .into(),
        verdict: verdict(better, worse, cams.len()),
        evidence: ev.join("; ") + ".",
    });

    // 3. Unseen defect types.
    let unseen: Vec<&UnseenRow> = r.unseen.iter().filter(|u| !u.seen).collect();
    let (mut better, mut worse) = (0, 0);
    let mut ev = Vec::new();
    let unseen_classifiers = unique(unseen.iter().map(|u| (u.classifier.clone(), String::new())));
    for (cls, _) in &unseen_classifiers {
        let rows: Vec<&&UnseenRow> = unseen.iter().filter(|u| u.classifier == *cls).collect();
        let n: usize = rows.iter().map(|u| u.n_images).sum();
        let w = |f: fn(&UnseenRow) -> f64| {
            rows.iter().map(|u| f(u) * u.n_images as f64).sum::<f64>() / n.max(1) as f64
        };
        let (c, g, all) = (
            w(|u| u.classifier_recall),
            w(|u| u.glass_recall),
            w(|u| u.classifier_all_types_recall),
        );
        // GLASS at the classifier's false-alarm rate, when every row has it.
        let g_matched = rows
            .iter()
            .all(|u| u.glass_recall_matched.is_some_and(f64::is_finite))
            .then(|| w(|u| u.glass_recall_matched.unwrap_or(f64::NAN)));
        let c_fpr = rows
            .iter()
            .all(|u| u.classifier_fpr.is_some())
            .then(|| w(|u| u.classifier_fpr.unwrap_or(f64::NAN)));
        let sd = |field: &str| {
            rows.iter().map(|u| u.spread.of(field)).sum::<f64>() / rows.len().max(1) as f64
        };
        // Recall alone flatters a detector that flags everything: with GLASS near chance on these
        // categories (test image AUROC < 0.6) a higher recall is no evidence; the comparison is
        // left undecided.
        let ucats: Vec<&str> = rows.iter().map(|u| u.category.as_str()).collect();
        let g_rows: Vec<&&DetectionRow> =
            glass.iter().filter(|d| ucats.contains(&d.category.as_str())).collect();
        let g_auroc = g_rows.iter().map(|d| d.auroc).sum::<f64>() / g_rows.len().max(1) as f64;
        let g_fpr = g_rows.iter().map(|d| d.fpr).sum::<f64>() / g_rows.len().max(1) as f64;
        let near_chance = g_auroc < 0.6;
        let cmp = match g_matched {
            Some(gm) => compare(gm, sd("glass_recall_matched"), c, sd("classifier_recall")),
            None => compare(g, sd("glass_recall"), c, sd("classifier_recall")),
        };
        match cmp {
            Cmp::Ahead if !near_chance => better += 1,
            Cmp::Behind => worse += 1,
            _ => {}
        }
        ev.push(format!(
            "on {n} test images of defect types it never saw, {cls} recalls {} (the same \
             architecture trained on every type: {}); GLASS recalls {} of the same images, \
             flagging {} of good test parts at that threshold (test image AUROC {}){}",
            pct(c),
            pct(all),
            pct(g),
            pct(g_fpr),
            pct(g_auroc),
            if near_chance { ": near chance, so its recall is no evidence" } else { "" }
        ));
        if let (Some(gm), Some(fa)) = (g_matched, c_fpr) {
            ev.push(format!(
                "at {cls}'s false-alarm rate on good parts ({}), GLASS recalls {} of those images",
                pct(fa),
                pct(gm)
            ));
        }
    }
    out.push(Finding {
        id: 3,
        claim: "A classifier trained on one defect type misses defect types it did not see; the \
                anomaly detector, which saw none, does not."
            .into(),
        verdict: verdict(better, worse, unseen_classifiers.len()),
        evidence: if ev.is_empty() {
            "no unseen defect types (the categories have one defect type each).".into()
        } else {
            ev.join("; ") + "."
        },
    });

    // 4. The training-free baseline on the same features, per category.
    let pcs = per_cat("patchcore", None);
    if !pcs.is_empty() {
        let mut worse = 0;
        let mut ev = Vec::new();
        let mut behind = Vec::new();
        for cat in &cats {
            let (Some(g), Some(p)) = (
                glass.iter().find(|d| d.category == *cat),
                pcs.iter().find(|d| d.category == *cat),
            ) else {
                continue;
            };
            let sd = |d: &DetectionRow, f: &str| d.spread.of(f);
            let a = compare(g.auroc, sd(g, "auroc"), p.auroc, sd(p, "auroc"));
            let f = compare(g.f1, sd(g, "f1"), p.f1, sd(p, "f1"));
            if a == Cmp::Behind || f == Cmp::Behind {
                worse += 1;
                behind.push(*cat);
            }
            ev.push(format!(
                "{cat}: image AUROC {}{} vs {}{}, F1 at the validation threshold {}{} vs {}{}",
                pct(g.auroc),
                pm(sd(g, "auroc")),
                pct(p.auroc),
                pm(sd(p, "auroc")),
                pct(g.f1),
                pm(sd(g, "f1")),
                pct(p.f1),
                pm(sd(p, "f1"))
            ));
        }
        let n = ev.len();
        out.push(Finding {
            id: 4,
            claim:
                "GLASS detects at least as well as the training-free memory bank (PatchCore) on \
                    the same backbone features."
                    .into(),
            // "At least as well": no category behind beyond the spread.
            verdict: match (n, worse) {
                (0, _) => "inconclusive",
                (_, 0) => "holds",
                _ => "does not hold",
            }
            .into(),
            evidence: if behind.is_empty() {
                ev.join("; ") + "."
            } else {
                format!(
                    "GLASS is behind the memory bank on {}: {}.",
                    behind.join(", "),
                    ev.join("; ")
                )
            },
        });
    }
    out
}

/// Writes `results.json`, `report.md` and `index.html` into `dir`.
pub fn write_all(dir: &Path, r: &Results) -> Result<()> {
    run::write_json(&dir.join("results.json"), r)?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(r)).map_err(|e| Error::io(&md, e))?;
    let html = dir.join("index.html");
    std::fs::write(&html, html_page(r)).map_err(|e| Error::io(&html, e))
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(pct).unwrap_or_else(|| "".into())
}

/// A percentage with its spread over seeds (`71.2% ± 3.4`).
fn pct_sd(v: f64, spread: &Spread, field: &str) -> String {
    format!("{}{}", pct(v), if v.is_finite() { pm(spread.of(field)) } else { String::new() })
}

/// Table 1 rows as cells.
fn detection_cells(r: &Results) -> Vec<Vec<String>> {
    r.detection
        .iter()
        .map(|d| {
            let sp = &d.spread;
            vec![
                d.category.clone(),
                d.model.clone(),
                pct_sd(d.best_f1_test, sp, "best_f1_test"),
                pct_sd(d.accuracy, sp, "accuracy"),
                pct_sd(d.precision, sp, "precision"),
                pct_sd(d.recall, sp, "recall"),
                pct_sd(d.fpr, sp, "fpr"),
                pct_sd(d.f1, sp, "f1"),
                pct_sd(d.auroc, sp, "auroc"),
                match (&d.published_best_f1, &d.published_model) {
                    (Some(v), Some(m)) => format!("{} ({m})", pct(*v)),
                    _ => opt_pct(d.published_best_f1),
                },
            ]
        })
        .collect()
}

const DETECTION_HEAD: [&str; 10] = [
    "category",
    "model",
    "best F1 (test, oracle)",
    "accuracy",
    "precision",
    "recall",
    "false alarms (good parts)",
    "F1",
    "AUROC",
    "published best F1",
];

fn explanation_cells(r: &Results) -> Vec<Vec<String>> {
    r.explanation
        .iter()
        .map(|e| {
            vec![
                e.category.clone(),
                e.heatmap.clone(),
                pct_sd(e.pixel_auroc, &e.spread, "pixel_auroc"),
                pct_sd(e.aupro, &e.spread, "aupro"),
            ]
        })
        .collect()
}

const EXPLANATION_HEAD: [&str; 4] = ["category", "heat map", "pixel AUROC", "AUPRO (FPR <= 0.3)"];

fn unseen_cells(r: &Results) -> Vec<Vec<String>> {
    r.unseen
        .iter()
        .map(|u| {
            vec![
                u.category.clone(),
                u.defect.clone(),
                if u.seen { "seen" } else { "unseen" }.into(),
                u.n_images.to_string(),
                u.classifier.clone(),
                pct_sd(u.classifier_recall, &u.spread, "classifier_recall"),
                pct_sd(u.classifier_all_types_recall, &u.spread, "classifier_all_types_recall"),
                pct_sd(u.glass_recall, &u.spread, "glass_recall"),
                u.glass_recall_matched
                    .map(|v| pct_sd(v, &u.spread, "glass_recall_matched"))
                    .unwrap_or_else(|| "n/a".into()),
                u.patchcore_recall
                    .map(|v| pct_sd(v, &u.spread, "patchcore_recall"))
                    .unwrap_or_else(|| "n/a".into()),
            ]
        })
        .collect()
}

const MATCHED_TEXT: &str =
    "At matched false alarms: each detector's recall at the threshold where \
     it flags no more good test parts than the classifier does at its validation threshold (the \
     comparison the conclusion uses for recall).";

const MATCHED_HEAD: [&str; 6] = [
    "category",
    "detector",
    "classifier",
    "classifier false-alarm rate",
    "classifier recall",
    "detector recall at that rate",
];

fn matched_cells(r: &Results) -> Vec<Vec<String>> {
    r.matched
        .iter()
        .map(|m| {
            vec![
                m.category.clone(),
                m.model.clone(),
                m.classifier.clone(),
                pct_sd(m.classifier_fpr, &m.spread, "classifier_fpr"),
                pct_sd(m.classifier_recall, &m.spread, "classifier_recall"),
                pct_sd(m.recall, &m.spread, "recall"),
            ]
        })
        .collect()
}

const UNSEEN_HEAD: [&str; 10] = [
    "category",
    "defect type",
    "in classifier training",
    "test images",
    "classifier",
    "classifier recall",
    "same arch, all types",
    "GLASS recall",
    "GLASS recall at the classifier's false-alarm rate",
    "PatchCore recall",
];

fn md_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

fn runs_cells(r: &Results) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for c in &r.categories {
        for run in &c.runs {
            let m = &run.metrics;
            rows.push(vec![
                c.name.clone(),
                run.name.clone(),
                format!("{}/{}", m.best_epoch, m.epochs_trained),
                format!("{:.0}", m.train_seconds),
                run.eval_seconds.map(|s| format!("{s:.0}")).unwrap_or_else(|| "reused".into()),
                format!("{:.1}", run.parameters as f64 / 1e6),
                format!("{:.1}", run.checkpoint_bytes as f64 / 1e6),
                format!("{} + {}", m.n_test_normal, m.n_test_abnormal),
                m.image_size.to_string(),
                run.dir.clone(),
            ]);
        }
    }
    rows
}

const RUNS_HEAD: [&str; 10] = [
    "category",
    "run",
    "best / trained epochs",
    "train s",
    "eval s",
    "trained params (M)",
    "checkpoint (MB)",
    "test normal + abnormal",
    "input px",
    "folder",
];

fn meta_lines(r: &Results) -> Vec<(String, String)> {
    let m = &r.meta;
    vec![
        ("tool".into(), format!("host {} ({})", m.tool_version, m.git.as_deref().unwrap_or("?"))),
        ("libtorch".into(), m.libtorch.clone().unwrap_or_else(|| "?".into())),
        ("data".into(), m.data.clone()),
        ("seed".into(), m.seed.to_string()),
        ("GLASS".into(), format!("preset {}, {} px", m.glass_preset, m.glass_image_size)),
        (
            "classifiers".into(),
            m.classifier_configs
                .iter()
                .map(|c| {
                    format!(
                        "{} at {} px (max epochs {}, patience {})",
                        c["arch"].as_str().unwrap_or("?"),
                        c["image_size"],
                        c["max_epochs"],
                        c["patience"]
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "experiment 3".into(),
            m.exp3_defects.iter().map(|(c, d)| format!("{c}: {d}")).collect::<Vec<_>>().join(", "),
        ),
        (
            "hardware".into(),
            format!(
                "{} ({} CPUs), {:.0} GiB RAM, {} CUDA device(s)",
                m.cpu, m.cpus, m.memory_gib, m.cuda_devices
            ),
        ),
        ("this call".into(), format!("{:.0} s, written {}", m.wall_seconds, m.written)),
    ]
}

/// The conclusion and Table 1 as plain text for the terminal.
pub fn markdown_summary(r: &Results) -> String {
    let mut s = String::new();
    for f in &r.conclusion {
        let _ = writeln!(s, "finding {} {}: {}", f.id, f.verdict.to_uppercase(), f.evidence);
    }
    s.push('\n');
    s.push_str(&md_table(&DETECTION_HEAD, &detection_cells(r)));
    s
}

/// `report.md`.
pub fn markdown(r: &Results) -> String {
    let mut s = String::from("# Anomaly detection vs classification\n\n");
    s.push_str("## Conclusion\n\n");
    for f in &r.conclusion {
        let _ = writeln!(s, "{}. **{}**: {} {}\n", f.id, f.verdict, f.claim, f.evidence);
    }
    if r.seeds.len() > 1 {
        let _ = writeln!(
            s,
            "Every number is the mean over split seeds {} with its standard deviation (± points); \
             the single-seed tables are in results.json (`per_seed`). A difference counts in the \
             conclusion only when it exceeds the larger standard deviation.\n",
            seeds_text(r)
        );
    }
    s.push_str("## Table 1: detection (test split; positive = abnormal)\n\n");
    s.push_str(
        "Best F1 is the oracle threshold on test, as published; accuracy, precision, \
         recall and F1 are at the threshold chosen on validation.\n\n",
    );
    s.push_str(&md_table(&DETECTION_HEAD, &detection_cells(r)));
    if !r.matched.is_empty() {
        s.push_str(&format!("\n{MATCHED_TEXT}\n\n"));
        s.push_str(&md_table(&MATCHED_HEAD, &matched_cells(r)));
    }
    s.push_str("\n## Table 2: explanation (heat maps vs ground-truth masks, test split)\n\n");
    s.push_str(&md_table(&EXPLANATION_HEAD, &explanation_cells(r)));
    s.push_str("\n## Table 3: unseen defect types (classifier trained on one type)\n\n");
    s.push_str(&md_table(&UNSEEN_HEAD, &unseen_cells(r)));
    for c in &r.categories {
        let _ = writeln!(s, "\n## {}\n", c.name);
        let f = &c.figures;
        let _ = writeln!(s, "![ROC]({})\n![PR]({})\n![training]({})\n", f.roc, f.pr, f.training);
        if !f.strips.is_empty() {
            let _ = writeln!(s, "Strips: image | ground truth | {}\n", f.strip_columns.join(" | "));
            for st in &f.strips {
                let _ = writeln!(s, "![{}]({})  \n{}: {}\n", st.defect, st.file, st.defect, st.why);
            }
        }
    }
    s.push_str("\n## Runs\n\n");
    s.push_str(&md_table(&RUNS_HEAD, &runs_cells(r)));
    s.push_str("\n## Metadata\n\n");
    for (k, v) in meta_lines(r) {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}

fn seeds_text(r: &Results) -> String {
    if r.seeds.is_empty() {
        r.meta.seed.to_string()
    } else {
        r.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html_table(head: &[&str], rows: &[Vec<String>], mean_col0: bool) -> String {
    let mut s = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        let cls = if mean_col0 && r.first().is_some_and(|c| c == "mean") {
            " class=\"mean\""
        } else {
            ""
        };
        let _ = write!(s, "<tr{cls}>");
        for c in r {
            let numeric = c.ends_with('%') || c.parse::<f64>().is_ok() || c == "reused";
            let cls = if numeric { " class=\"num\"" } else { "" };
            let _ = write!(s, "<td{cls}>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>\n");
    s
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;\
color:#222}h1{margin-bottom:.2em}table{border-collapse:collapse;margin:1em 0;font-size:14px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}\
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.mean{font-weight:bold;background:#fafafa}\
.finding{border-left:6px solid #999;padding:.4em 1em;margin:.6em 0;background:#fafafa}\
.holds{border-color:#27ae60}.does-not-hold{border-color:#c0392b}.mixed{border-color:#d68910}\
.verdict{font-weight:bold;text-transform:uppercase}.charts img{margin:4px;border:1px solid #ddd}\
figure{margin:1em 0}figcaption{font-size:13px;color:#444}.strip{max-width:100%}\
.meta td{text-align:left}";

/// `index.html` (no scripts, no network; figures are files next to it).
pub fn html_page(r: &Results) -> String {
    let mut s = String::from("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(
        s,
        "<title>Anomaly detection vs classification</title><style>{CSS}</style></head><body>"
    );
    let cats: Vec<&str> = r.categories.iter().map(|c| c.name.as_str()).collect();
    let _ = write!(
        s,
        "<h1>Anomaly detection vs classification</h1><p>{} on {} &middot; split seed(s) {} \
         &middot; GLASS preset {}</p>",
        esc(&cats.join(", ")),
        esc(&r.meta.data),
        seeds_text(r),
        esc(&r.meta.glass_preset)
    );
    s.push_str("<h2>Conclusion</h2>");
    for f in &r.conclusion {
        let _ = write!(
            s,
            "<div class=\"finding {}\"><span class=\"verdict\">Finding {}: {}</span><br>{}<br><small>{}</small></div>",
            f.verdict.replace(' ', "-"),
            f.id,
            esc(&f.verdict),
            esc(&f.claim),
            esc(&f.evidence)
        );
    }
    if r.seeds.len() > 1 {
        let _ = write!(
            s,
            "<p>Every number is the mean over split seeds {} with its standard deviation (± \
             points); the single-seed tables are in results.json (<code>per_seed</code>). A \
             difference counts in the conclusion only when it exceeds the larger standard \
             deviation. Figures and strips show seed {}.</p>",
            seeds_text(r),
            r.seeds.first().copied().unwrap_or(0)
        );
    }
    s.push_str("<h2>Table 1: detection</h2><p>Test split, positive = abnormal. Best F1 is the \
                oracle threshold on test (as published); the other columns are at the \
                threshold chosen on validation. Recall is the one that matters: a missed defect ships.</p>");
    s.push_str(&html_table(&DETECTION_HEAD, &detection_cells(r), true));
    if !r.matched.is_empty() {
        s.push_str(&format!("<p>{}</p>", esc(MATCHED_TEXT)));
        s.push_str(&html_table(&MATCHED_HEAD, &matched_cells(r), false));
    }
    s.push_str(
        "<h2>Table 2: explanation</h2><p>Heat maps scored against the ground-truth masks \
                of the test split.</p>",
    );
    s.push_str(&html_table(&EXPLANATION_HEAD, &explanation_cells(r), true));
    s.push_str("<h2>Table 3: unseen defect types</h2><p>The classifier is trained on normal images \
                plus one defect type; recall per type at its validation threshold, on the \
                classifier split's test images, next to GLASS (which saw no defect) on the same images.</p>");
    s.push_str(&html_table(&UNSEEN_HEAD, &unseen_cells(r), false));
    for c in &r.categories {
        let f = &c.figures;
        let _ = write!(s, "<h2>{}</h2><div class=\"charts\">", esc(&c.name));
        for (p, alt) in [(&f.roc, "ROC"), (&f.pr, "precision-recall"), (&f.training, "training")] {
            let _ = write!(s, "<img src=\"{}\" alt=\"{alt}\" width=\"390\">", esc(p));
        }
        s.push_str("</div>");
        if !f.strips.is_empty() {
            let _ = write!(
                s,
                "<p>Abnormal test images both models are scored on: image | ground truth | {}.</p>",
                esc(&f.strip_columns.join(" | "))
            );
        }
        for st in &f.strips {
            let verdicts: Vec<String> = std::iter::once(("GLASS", st.glass))
                .chain(st.patchcore.map(|v| ("PatchCore", v)))
                .chain(st.classifiers.iter().map(|v| ("classifier", *v)))
                .map(|(who, (score, fail))| {
                    format!("{who} {score:.3} ({})", if fail { "fail" } else { "pass" })
                })
                .collect();
            let _ = write!(
                s,
                "<figure><img class=\"strip\" src=\"{}\" alt=\"{}\"><figcaption>{} &middot; {} \
                 &middot; {} &middot; {}</figcaption></figure>",
                esc(&st.file),
                esc(&st.defect),
                esc(&st.defect),
                esc(Path::new(&st.image).file_name().and_then(|n| n.to_str()).unwrap_or("")),
                esc(&st.why),
                esc(&verdicts.join(", "))
            );
        }
    }
    s.push_str("<h2>Runs</h2>");
    s.push_str(&html_table(&RUNS_HEAD, &runs_cells(r), false));
    s.push_str("<h2>Metadata</h2><table class=\"meta\">");
    for (k, v) in meta_lines(r) {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    s.push_str(
        "</table><p><small>results.json holds every number of this page; report.md is the \
                same report as Markdown.</small></p></body></html>\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_counts_only_beyond_the_spread() {
        assert_eq!(compare(0.95, 0.0, 0.90, 0.0), Cmp::Ahead);
        assert_eq!(compare(0.90, 0.0, 0.95, 0.0), Cmp::Behind);
        assert_eq!(compare(0.95, 0.03, 0.90, 0.06), Cmp::Level); // 0.05 < 0.06
        assert_eq!(compare(0.95, 0.03, 0.90, 0.04), Cmp::Ahead); // 0.05 > 0.04
        assert_eq!(compare(0.90, 0.0, 0.90, 0.0), Cmp::Level);
    }

    #[test]
    fn verdicts_follow_the_counts() {
        assert_eq!(verdict(2, 0, 2), "holds");
        assert_eq!(verdict(0, 1, 2), "does not hold");
        assert_eq!(verdict(0, 0, 2), "inconclusive");
        assert_eq!(verdict(1, 1, 2), "mixed");
        assert_eq!(verdict(0, 0, 0), "inconclusive");
    }
}
