//! `host experiment`: the experiment protocol (docs/experiment-protocol.md) in one call. Per category
//! it trains and evaluates GLASS and each classifier architecture on the same seed (so the same normal
//! test images), runs experiment 3 (a classifier trained on one defect type), draws the side-by-side
//! maps and curves, and writes `results.json`, `report.md` and `index.html` into the report folder.
//!
//! Layout of the report folder:
//! ```text
//! REPORT/runs/<category>/glass/                 GLASS run (resumable run dir, metrics.json, scores.json)
//! REPORT/runs/<category>/<arch>/                classifier, all defect types (Grad-CAM metrics.json,
//!                                               Grad-CAM++ in metrics_gradcampp.json)
//! REPORT/runs/<category>/<arch>-only-<type>/    experiment 3: classifier trained on one defect type
//! REPORT/figures/<category>/                    strips, roc.svg, pr.svg, training.svg
//! REPORT/results.json, report.md, index.html
//! ```
//! A second call reuses finished runs and evaluations (a run's settings must match, or it is an error
//! naming the differing keys); an interrupted training resumes from its last epoch, so a crash loses at
//! most the epoch in progress. `results.json` is rewritten after every category.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::category::Category;
use crate::data::split::{Label, Split};
use crate::eval::cam::CamMethod;
use crate::eval::{self, EvalOutputs, Metrics, ScoresFile};
use crate::models::classifier::ClassifierConfig;
use crate::models::glass::GlassConfig;
use crate::models::patchcore::{CoresetSize, PatchCoreConfig};
use crate::run::{
    self, ClassifierRunConfig, ComputeDevice, GlassRunConfig, PatchCoreRunConfig, RunDir,
    TrainState,
};
use crate::train::{classifier as tc, glass as tg, patchcore as tp};
use crate::{Error, Result};

pub mod figures;
pub mod report;
use report::Role;
pub mod seeds;
pub mod svg;

/// The experiment protocol's experiment-3 defect type per MVTec AD category.
pub const DEFAULT_EXP3: [(&str, &str); 4] =
    [("bottle", "broken_small"), ("hazelnut", "crack"), ("carpet", "color"), ("grid", "bent")];

/// Best F1 on test as published (docs/experiment-protocol.md): (category, GLASS, TinyViT-21M-512).
pub const PUBLISHED_BEST_F1: [(&str, f64, f64); 4] = [
    ("bottle", 0.9375, 0.7805),
    ("hazelnut", 0.9577, 0.6429),
    ("carpet", 0.8654, 0.7667),
    ("grid", 0.8788, 0.7317),
];

/// One classifier architecture of the experiment.
#[derive(Debug, Clone)]
pub struct ClassifierSpec {
    /// Training recipe (architecture, image size, epochs...).
    pub config: ClassifierConfig,
    /// Pretrained checkpoint (default: the architecture's installed weights).
    pub weights: Option<PathBuf>,
}

/// What `host experiment` runs.
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    /// Dataset root (MVTec AD layout: ROOT/<category>/train/good ...).
    pub data: PathBuf,
    /// Categories, in report order.
    pub categories: Vec<String>,
    /// Report folder.
    pub out: PathBuf,
    /// GLASS recipe (preset with overrides; its seed is the split seed).
    pub glass: GlassConfig,
    /// Classifier architectures (each also runs experiment 3; the first one's scores pick the strips).
    pub classifiers: Vec<ClassifierSpec>,
    /// Experiment-3 defect type per category (overrides [`DEFAULT_EXP3`]).
    pub exp3: BTreeMap<String, String>,
    /// Where to train.
    pub device: ComputeDevice,
    /// libtorch threads (0 = its default).
    pub threads: usize,
    /// At most this many side-by-side strips per category.
    pub max_strips: usize,
    /// Progress bars.
    pub progress: bool,
    /// Split seeds (every run is repeated per seed; empty = `glass.seed` only). With more than one,
    /// runs live in `runs/<category>/seed-<s>/` and the tables report mean and sd over seeds.
    pub seeds: Vec<u64>,
    /// Bank size of the PatchCore baseline (on the GLASS preset's features).
    pub patchcore_coreset: CoresetSize,
    /// DTD-style texture folder for GLASS's local anomaly synthesis (default: procedural textures).
    pub textures: Option<PathBuf>,
    /// Foreground masks for GLASS's local anomaly synthesis: a folder per category,
    /// `<fg_masks>/<category>/<image file name>` (default: none, the whole image).
    pub fg_masks: Option<PathBuf>,
}

/// One evaluated run in `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Category.
    pub category: String,
    /// GLASS, the memory bank, a classifier on all defect types or one without the held-out type
    /// (experiment 3).
    pub role: Role,
    /// Display name, e.g. "GLASS (edge)" or "efficientnet_lite0".
    pub name: String,
    /// Run folder relative to the report.
    pub dir: String,
    /// Test metrics (GLASS maps or Grad-CAM).
    pub metrics: Metrics,
    /// Grad-CAM++ pixel metrics of the same classifier run (pixel AUROC, AUPRO).
    pub gradcampp: Option<(Option<f64>, Option<f64>)>,
    /// Checkpoint size in bytes.
    pub checkpoint_bytes: u64,
    /// Parameters in the checkpoint.
    pub parameters: u64,
    /// Seconds this call spent evaluating (`None` when the evaluation was reused).
    pub eval_seconds: Option<f64>,
    /// Whether training and evaluation were found finished from an earlier call.
    pub reused: bool,
}

/// Test scores of one run (from its `scores.json`), for curves and strips.
pub struct RunScores {
    /// Display name.
    pub name: String,
    /// Test records.
    pub scores: ScoresFile,
    /// Decision threshold.
    pub threshold: f32,
}

/// Everything one category produced.
pub struct CategoryOutcome {
    /// Runs in order: GLASS, classifiers, experiment-3 classifiers.
    pub runs: Vec<RunResult>,
    /// Test scores of each run (same order).
    pub scores: Vec<ScoresFile>,
    /// Experiment-3 defect type.
    pub exp3: String,
    /// `train/good` images.
    pub train_normals: usize,
    /// Figures (relative paths) and strip captions.
    pub figures: figures::CategoryFigures,
}

/// Runs the experiment and writes the report; returns `results.json`'s content.
pub fn run(opts: &ExperimentOptions) -> Result<report::Results> {
    if opts.categories.is_empty() {
        return Err(Error::Config("no categories given".into()));
    }
    if opts.classifiers.is_empty() {
        return Err(Error::Config("no classifier architecture given".into()));
    }
    for c in &opts.classifiers {
        c.config.validate().map_err(Error::Config)?;
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let t0 = Instant::now();
    let seeds = if opts.seeds.is_empty() { vec![opts.glass.seed] } else { opts.seeds.clone() };
    let several = seeds.len() > 1;
    let mut first: Option<report::Results> = None;
    let mut per_seed: Vec<seeds::SeedTables> = Vec::new();
    for &seed in &seeds {
        let mut o = opts.clone();
        o.glass.seed = seed;
        let mut results = report::Results::new(&o);
        for cat in &opts.categories {
            tracing::info!("category {cat}, split seed {seed}");
            let sub = |p: PathBuf| if several { p.join(format!("seed-{seed}")) } else { p };
            let runs_dir = sub(opts.out.join("runs").join(cat));
            let fig_dir = sub(opts.out.join("figures").join(cat));
            let outcome = run_category(&o, cat, &runs_dir, &fig_dir)?;
            results.add_category(cat, outcome);
            results.meta.wall_seconds = t0.elapsed().as_secs_f64();
            results.finish();
            if !several {
                report::write_all(&opts.out, &results)?;
            } else {
                // Write what is finished so far: earlier seeds complete, this one partial.
                let mut tables = per_seed.clone();
                tables.push(seeds::SeedTables::of(seed, &results));
                let base = first.as_ref().unwrap_or(&results);
                report::write_all(&opts.out, &seeds::combine(base, tables)?)?;
            }
        }
        per_seed.push(seeds::SeedTables::of(seed, &results));
        if first.is_none() {
            first = Some(results);
        }
    }
    let first = first.ok_or_else(|| Error::Config("no seeds".into()))?;
    if !several {
        return Ok(first);
    }
    let mut combined = seeds::combine(&first, per_seed)?;
    combined.meta.wall_seconds = t0.elapsed().as_secs_f64();
    report::write_all(&opts.out, &combined)?;
    Ok(combined)
}

fn run_category(
    opts: &ExperimentOptions,
    cat: &str,
    runs_dir: &Path,
    fig_dir: &Path,
) -> Result<CategoryOutcome> {
    let data = opts.data.join(cat);
    let category = Category::open(&data)?;
    let mut runs = Vec::new();
    let mut scores = Vec::new();

    // GLASS.
    let gdir = runs_dir.join("glass");
    let (g, gs) = ensure_glass(opts, &data, &gdir)?;
    scores.push(RunScores { name: g.name.clone(), scores: gs, threshold: g.metrics.threshold });
    runs.push(g);

    // PatchCore on the same features (the training-free baseline).
    let (p, ps) = ensure_patchcore(opts, &data, &runs_dir.join("patchcore"))?;
    scores.push(RunScores { name: p.name.clone(), scores: ps, threshold: p.metrics.threshold });
    runs.push(p);

    // Classifiers on every defect type, then experiment 3.
    let exp3 = exp3_defect(opts, &category)?;
    for spec in &opts.classifiers {
        let arch = spec.config.arch.name();
        let (r, s) = ensure_classifier(opts, spec, &data, &runs_dir.join(arch), None)?;
        scores.push(RunScores { name: r.name.clone(), scores: s, threshold: r.metrics.threshold });
        runs.push(r);
    }
    for spec in &opts.classifiers {
        let arch = spec.config.arch.name();
        let dir = runs_dir.join(format!("{arch}-only-{exp3}"));
        let (r, s) = ensure_classifier(opts, spec, &data, &dir, Some(vec![exp3.clone()]))?;
        scores.push(RunScores { name: r.name.clone(), scores: s, threshold: r.metrics.threshold });
        runs.push(r);
    }

    let figures = figures::draw(opts, &category, &runs, &scores, fig_dir)?;
    Ok(CategoryOutcome {
        runs,
        scores: scores.into_iter().map(|s| s.scores).collect(),
        exp3,
        train_normals: category.train_good.len(),
        figures,
    })
}

/// The experiment-3 defect type of a category: the option, the experiment protocol's choice, or the
/// type with the most images (ties: first by name).
pub fn exp3_defect(opts: &ExperimentOptions, category: &Category) -> Result<String> {
    let pick = opts
        .exp3
        .get(&category.name)
        .cloned()
        .or_else(|| {
            DEFAULT_EXP3.iter().find(|(c, _)| *c == category.name).map(|(_, d)| d.to_string())
        })
        .or_else(|| {
            let mut best: Option<(&String, usize)> = None;
            for (k, v) in &category.defects {
                if best.is_none_or(|(_, n)| v.len() > n) {
                    best = Some((k, v.len()));
                }
            }
            best.map(|(k, _)| k.clone())
        })
        .ok_or_else(|| Error::Dataset {
            path: category.root.clone(),
            msg: "no defect types for experiment 3".into(),
        })?;
    if !category.defects.contains_key(&pick) {
        return Err(Error::Dataset {
            path: category.root.clone(),
            msg: format!(
                "experiment-3 defect type {pick:?} is not one of {:?}",
                category.defect_types()
            ),
        });
    }
    Ok(pick)
}

/// Top-level JSON keys whose values differ between two objects (nested objects compared whole).
fn differing_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<String> =
                a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
            keys.sort();
            keys.dedup();
            keys
        }
        _ => vec!["(whole config)".into()],
    }
}

fn mismatch(dir: &Path, keys: &[String]) -> Error {
    Error::Config(format!(
        "{} holds a run with other settings ({}); delete it or use another report folder",
        dir.display(),
        keys.join(", ")
    ))
}

/// Whether `metrics.json` (+ `scores.json`) of a run are newer than its training state.
pub fn eval_is_current(rd: &RunDir, metrics: &Path) -> bool {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (m(metrics), m(&rd.root.join("scores.json")), m(&rd.state())) {
        (Some(a), Some(b), Some(s)) => a >= s && b >= s,
        _ => false,
    }
}

fn checkpoint_facts(path: &Path) -> (u64, u64) {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let params = tch::Tensor::read_safetensors(path)
        .map(|ts| ts.iter().map(|(_, t)| t.numel() as u64).sum())
        .unwrap_or(0);
    (bytes, params)
}

fn rel(opts: &ExperimentOptions, p: &Path) -> String {
    p.strip_prefix(&opts.out).unwrap_or(p).to_string_lossy().into_owned()
}

fn ensure_glass(
    opts: &ExperimentOptions,
    data: &Path,
    dir: &Path,
) -> Result<(RunResult, ScoresFile)> {
    let cfg = opts.glass.clone();
    if dir.join("config.json").is_file() {
        let old: GlassRunConfig = run::read_json(&dir.join("config.json"))?;
        let mut want = cfg.clone();
        want.feature_scale = old.glass.feature_scale; // measured at training start
        let diff =
            differing_keys(&serde_json::to_value(&old.glass)?, &serde_json::to_value(&want)?);
        if !diff.is_empty() {
            return Err(mismatch(dir, &diff));
        }
    }
    let state_before = read_state(dir);
    let fg_masks = opts
        .fg_masks
        .as_ref()
        .map(|d| d.join(data.file_name().map(|n| n.to_os_string()).unwrap_or_default()));
    let topts = tg::GlassTrainOptions {
        data: data.to_path_buf(),
        out: dir.to_path_buf(),
        device: opts.device,
        backbone_weights: None,
        textures: opts.textures.clone(),
        fg_masks,
        threads: opts.threads,
        progress: opts.progress,
        pause_after: None,
    };
    tg::train(cfg.clone(), &topts)?;
    let name = format!("GLASS ({})", cfg.preset);
    detector_result(opts, dir, Role::Glass, name, state_before, |rd| {
        eval::glass::evaluate(rd, opts.device, opts.threads, opts.progress)
    })
}

/// The evaluated result of a trained detector run in `dir`: its current `metrics.json` reused, or
/// `evaluate` run; its scores and checkpoint facts.
fn detector_result(
    opts: &ExperimentOptions,
    dir: &Path,
    role: Role,
    name: String,
    state_before: Option<TrainState>,
    evaluate: impl FnOnce(&RunDir) -> Result<Metrics>,
) -> Result<(RunResult, ScoresFile)> {
    let rd = RunDir::open(dir)?;
    let (metrics, eval_seconds) = if eval_is_current(&rd, &rd.metrics()) {
        (run::read_json::<Metrics>(&rd.metrics())?, None)
    } else {
        let t = Instant::now();
        let m = evaluate(&rd)?;
        (m, Some(t.elapsed().as_secs_f64()))
    };
    let scores: ScoresFile = run::read_json(&rd.root.join("scores.json"))?;
    let (checkpoint_bytes, parameters) = checkpoint_facts(&rd.best());
    Ok((
        RunResult {
            category: metrics.run.category.clone(),
            role,
            name,
            dir: rel(opts, dir),
            metrics,
            gradcampp: None,
            checkpoint_bytes,
            parameters,
            eval_seconds,
            reused: state_before.is_some_and(|s| s.finished) && eval_seconds.is_none(),
        },
        scores,
    ))
}

fn ensure_patchcore(
    opts: &ExperimentOptions,
    data: &Path,
    dir: &Path,
) -> Result<(RunResult, ScoresFile)> {
    let mut cfg = PatchCoreConfig::from_glass(&opts.glass);
    cfg.coreset = opts.patchcore_coreset;
    if dir.join("config.json").is_file() {
        let old: PatchCoreRunConfig = run::read_json(&dir.join("config.json"))?;
        let diff =
            differing_keys(&serde_json::to_value(&old.patchcore)?, &serde_json::to_value(&cfg)?);
        if !diff.is_empty() {
            return Err(mismatch(dir, &diff));
        }
    }
    let state_before = read_state(dir);
    let topts = tp::PatchCoreTrainOptions {
        data: data.to_path_buf(),
        out: dir.to_path_buf(),
        device: opts.device,
        backbone_weights: None,
        threads: opts.threads,
        progress: opts.progress,
    };
    tp::train(cfg.clone(), &topts)?;
    let name = format!("PatchCore ({} features)", cfg.preset);
    detector_result(opts, dir, Role::Patchcore, name, state_before, |rd| {
        eval::patchcore::evaluate(rd, opts.device, opts.threads, opts.progress)
    })
}

fn read_state(dir: &Path) -> Option<TrainState> {
    run::read_json(&dir.join("state.json")).ok()
}

fn ensure_classifier(
    opts: &ExperimentOptions,
    spec: &ClassifierSpec,
    data: &Path,
    dir: &Path,
    train_defects: Option<Vec<String>>,
) -> Result<(RunResult, ScoresFile)> {
    let mut cfg = spec.config.clone();
    cfg.seed = opts.glass.seed;
    if dir.join("config.json").is_file() {
        let old: ClassifierRunConfig = run::read_json(&dir.join("config.json"))?;
        let mut diff =
            differing_keys(&serde_json::to_value(&old.classifier)?, &serde_json::to_value(&cfg)?);
        if old.train_defects != train_defects {
            diff.push("train_defects".into());
        }
        if !diff.is_empty() {
            return Err(mismatch(dir, &diff));
        }
    }
    let state_before = read_state(dir);
    let topts = tc::ClassifierTrainOptions {
        data: data.to_path_buf(),
        out: dir.to_path_buf(),
        device: opts.device,
        weights: spec.weights.clone(),
        allow_random: false,
        train_defects: train_defects.clone(),
        threads: opts.threads,
        progress: opts.progress,
        pause_after: None,
    };
    tc::train(cfg.clone(), &topts)?;
    let rd = RunDir::open(dir)?;
    let pp_metrics = rd.root.join("metrics_gradcampp.json");
    let mut eval_seconds = None;
    let metrics = if eval_is_current(&rd, &rd.metrics()) {
        run::read_json::<Metrics>(&rd.metrics())?
    } else {
        let t = Instant::now();
        let m = eval::classifier::evaluate(
            &rd,
            opts.device,
            opts.threads,
            CamMethod::GradCam,
            None,
            opts.progress,
        )?;
        eval_seconds = Some(t.elapsed().as_secs_f64());
        m
    };
    // Grad-CAM++ for the full-protocol classifier (explanation table); experiment 3 needs recall only.
    let gradcampp = if train_defects.is_none() {
        let m = if eval_seconds.is_none() && pp_metrics.is_file() {
            run::read_json::<Metrics>(&pp_metrics)?
        } else {
            let t = Instant::now();
            let out = EvalOutputs {
                metrics: pp_metrics.clone(),
                maps: rd.root.join("maps_gradcampp"),
                scores: None,
            };
            let m = eval::classifier::evaluate_to(
                &rd,
                opts.device,
                opts.threads,
                CamMethod::GradCamPlusPlus,
                None,
                opts.progress,
                &out,
            )?;
            eval_seconds = Some(eval_seconds.unwrap_or(0.0) + t.elapsed().as_secs_f64());
            m
        };
        Some((m.pixel_auroc, m.aupro))
    } else {
        None
    };
    let scores: ScoresFile = run::read_json(&rd.root.join("scores.json"))?;
    let (checkpoint_bytes, parameters) = checkpoint_facts(&rd.best());
    let name = match &train_defects {
        Some(d) => format!("{} (trained on {} only)", cfg.arch.name(), d.join(",")),
        None => cfg.arch.name().to_string(),
    };
    Ok((
        RunResult {
            category: metrics.run.category.clone(),
            role: if train_defects.is_some() { Role::Unseen } else { Role::Classifier },
            name,
            dir: rel(opts, dir),
            metrics,
            gradcampp,
            checkpoint_bytes,
            parameters,
            eval_seconds,
            reused: state_before.is_some_and(|s| s.finished) && eval_seconds.is_none(),
        },
        scores,
    ))
}

/// The abnormal test images both models are scored on: the classifier split's test abnormals (a
/// subset of the anomaly-detection test abnormals), in split order.
pub fn shared_abnormal_items(
    category: &Category,
    seed: u64,
) -> Result<Vec<crate::data::split::Item>> {
    let split = Split::classifier(category, seed, None)?;
    Ok(split.test.into_iter().filter(|i| i.label == Label::Abnormal).collect())
}
