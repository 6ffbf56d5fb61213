//! `host export`: a trained run -> a model bundle for the station.
//!
//! Bundle layout (`BUNDLE_DIR/`):
//! - `model_fp32.onnx`: the graph written from the trained weights ([`glass::build`],
//!   [`classifier::build`]);
//! - `model_int8.onnx` (`--int8`): post-training static quantization in QOperator form ([`quant`]);
//! - `golden.npz`: a few preprocessed validation inputs with libtorch's outputs (`input`,
//!   `patch_scores`, `image_score`, `map`), which tie libtorch, tract and onnxruntime together in tests;
//! - `manifest.json` (`shared::manifest`): input contract, threshold (best F1 on the validation split,
//!   scored by the bundle's own fp32 model in tract), map spec, sha256 of each file, provenance, and
//!   fp32/int8 validation AUROC and latency measured here with the `runtime` engine (the station's).
use std::path::{Path, PathBuf};

use shared::manifest::{
    self, AnomalyMapSpec, FileRef, Files, Manifest, ModelKind, OutputSpec, Provenance,
    ScoreNormalisation, Threshold,
};
use tch::{Device, Tensor};

use crate::data::category::Category;
use crate::data::loader;
use crate::data::split::{Item, Label, Split};
use crate::metrics;
use crate::run::{self, RunDir};
use crate::run::{GlassRunConfig, TrainState};
use crate::{Error, Result};

pub mod classifier;
pub mod glass;
pub mod onnx;
pub mod patchcore;
pub mod quant;

/// fp32 ONNX file name in a bundle.
pub const FP32_FILE: &str = "model_fp32.onnx";
/// int8 ONNX file name in a bundle.
pub const INT8_FILE: &str = "model_int8.onnx";
/// Training normals that calibrate int8 activation ranges unless told otherwise (`--calib`). On the
/// CI's tiny model 16 normals left one validation verdict of 25 flipped (ranges too narrow for
/// defect activations), 32 none.
pub const DEFAULT_CALIB: usize = 32;
/// Golden vectors file name.
pub const GOLDEN_FILE: &str = "golden.npz";

/// `host export` options.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Trained run directory.
    pub run: PathBuf,
    /// Bundle directory (created).
    pub out: PathBuf,
    /// Also write the int8 model.
    pub int8: bool,
    /// Training normals used to calibrate int8 activation ranges.
    pub calib: usize,
    /// Also measure the fp32 model in half precision (the station's `f16` option) and record its
    /// self-test tolerance, validation AUROC and verdict agreement in the manifest.
    pub f16: bool,
    /// Validation images stored in `golden.npz`.
    pub golden: usize,
    /// Threads for libtorch and tract.
    pub threads: usize,
    /// Progress bars.
    pub progress: bool,
}

/// What an export measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Validation images scored per model.
    pub n_valid: usize,
    /// Share of validation images where int8 and fp32 give the same verdict.
    pub int8_verdict_agreement: Option<f64>,
}

/// Validation scores of one bundle model, plus median inference latency (ms).
struct Scored {
    scores: Vec<f32>,
    latency_ms: f64,
}

fn score_bundle(
    dir: &Path,
    precision: runtime::engine::Precision,
    items: &[Item],
    progress: bool,
) -> Result<Scored> {
    let engine = runtime::engine::Engine::load(dir, precision)?;
    let pb = run::progress_bar(items.len(), precision.name(), progress);
    let mut scores = Vec::with_capacity(items.len());
    let mut lat = Vec::with_capacity(items.len());
    for item in items {
        let img = loader::load_rgb(&item.image, item.rotation)?;
        let (w, h) = img.dimensions();
        let r = engine
            .infer_rgb(img.as_raw(), w as usize, h as usize, false)
            .map_err(|e| Error::Config(format!("{}: {e}", item.image.display())))?;
        scores.push(r.score);
        lat.push(r.timings.infer_ms);
        pb.inc(1);
    }
    pb.finish_and_clear();
    lat.sort_by(f64::total_cmp);
    let latency_ms = lat.get(lat.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(Scored { scores, latency_ms })
}

/// Picks up to `n` validation items for the golden file: alternating normal / abnormal, in split order.
fn golden_items(valid: &[Item], n: usize) -> Vec<&Item> {
    let normals = valid.iter().filter(|i| i.label == Label::Normal);
    let abnormals = valid.iter().filter(|i| i.label == Label::Abnormal);
    let mut out = Vec::new();
    let (mut a, mut b) = (normals, abnormals);
    while out.len() < n {
        let before = out.len();
        if let Some(x) = a.next() {
            out.push(x);
        }
        if out.len() < n {
            if let Some(x) = b.next() {
                out.push(x);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

/// Exports a GLASS or classifier run to a bundle.
pub fn export(opts: &ExportOptions) -> Result<ExportReport> {
    run::set_threads(opts.threads);
    runtime::engine::set_threads(opts.threads.max(1));
    let rd = RunDir::open(&opts.run)?;
    let kind = run::config::run_kind(&rd.root)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let (man, valid) = match kind {
        ModelKind::Glass => glass_bundle(opts, &rd)?,
        ModelKind::Classifier => classifier_bundle(opts, &rd)?,
        ModelKind::Patchcore => patchcore_bundle(opts, &rd)?,
    };
    finish(opts, &rd, man, &valid)
}

/// `golden.npz` of a model with a map (GLASS, PatchCore): a few validation inputs ([`golden_items`])
/// with libtorch's `patch_scores [N, h, w]` (from `patch_scores`), `image_score` (their max) and
/// `map` (the shared post-processing at `s x s`, blur `blur`).
fn map_golden(
    opts: &ExportOptions,
    valid: &[Item],
    pp: &shared::preprocess::PreprocessConfig,
    s: i64,
    blur: f32,
    patch_scores: impl Fn(&Tensor) -> Tensor,
) -> Result<()> {
    let gitems = golden_items(valid, opts.golden.max(1));
    let inputs = gitems.iter().map(|i| loader::image_tensor(i, pp)).collect::<Result<Vec<_>>>()?;
    let x = Tensor::stack(&inputs, 0);
    let ps = patch_scores(&x);
    let img = Tensor::amax(&ps, [1, 2], false);
    let (n, gh, gw) = ps.size3()?;
    let mut maps = Vec::with_capacity(n as usize);
    for i in 0..n {
        let v: Vec<f32> = Vec::<f32>::try_from(ps.get(i).reshape([-1]))?;
        let su = s as usize;
        let m = shared::preprocess::glass_postprocess(&v, gw as usize, gh as usize, su, su, blur)
            .map_err(|e| Error::Config(format!("map post-processing: {e}")))?;
        maps.push(Tensor::from_slice(&m).view([s, s]));
    }
    let maps = Tensor::stack(&maps, 0);
    Tensor::write_npz(
        &[("input", &x), ("patch_scores", &ps), ("image_score", &img), ("map", &maps)],
        opts.out.join(GOLDEN_FILE),
    )?;
    Ok(())
}

/// Steps 1-4 for GLASS: fp32 graph, golden vectors, int8 graph, provisional manifest.
fn glass_bundle(opts: &ExportOptions, rd: &RunDir) -> Result<(Manifest, Vec<Item>)> {
    let cfg: GlassRunConfig = run::read_json(&rd.config())?;
    let state: TrainState = run::read_json(&rd.state())?;
    let glass_model = cfg.load_model(&rd.best(), Device::Cpu)?;

    // 1. fp32 graph.
    let model = glass::build(&glass_model)?;
    onnx::write_model(&model, &opts.out.join(FP32_FILE))?;

    let category = Category::open(&cfg.data)?;
    let split = Split::anomaly_detection(&category, cfg.split_seed);

    // 2. Golden vectors from libtorch.
    let (s, blur) = (cfg.glass.image_size, cfg.glass.blur_sigma);
    map_golden(opts, &split.valid, &cfg.preprocess, s, blur, |x| {
        tch::no_grad(|| glass_model.patch_scores(x))
    })?;

    // 3. int8 graph (calibrated on training normals).
    let int8_ref = if opts.int8 {
        let calib: Vec<&Item> = split.train.iter().take(opts.calib.max(1)).collect();
        let qmodel = quant::quantize_glass(&model, &calib, &cfg, opts.progress)?;
        onnx::write_model(&qmodel, &opts.out.join(INT8_FILE))?;
        Some(FileRef::from_file(&opts.out, INT8_FILE)?)
    } else {
        None
    };

    // 4. Manifest (threshold provisional until the fp32 bundle model scored the validation split).
    let grid = cfg.glass.grid();
    let man = Manifest {
        schema_version: manifest::SCHEMA_VERSION,
        model_kind: ModelKind::Glass,
        architecture: format!("glass/{}", cfg.glass.backbone.name()),
        backbone: cfg.glass.backbone.name().to_string(),
        input: cfg.preprocess.clone(),
        classes: vec![],
        outputs: vec![
            OutputSpec {
                name: glass::PATCH_SCORES.into(),
                shape: vec![-1, grid, grid],
                meaning: "per-patch anomaly probability at stride 8".into(),
            },
            OutputSpec {
                name: glass::IMAGE_SCORE.into(),
                shape: vec![-1],
                meaning: "image score: max of the patch scores".into(),
            },
        ],
        score_normalisation: ScoreNormalisation::default(),
        threshold: provisional_threshold(),
        anomaly_map: Some(AnomalyMapSpec {
            width: cfg.glass.image_size as u32,
            height: cfg.glass.image_size as u32,
            blur_sigma: cfg.glass.blur_sigma,
            lo: 0.0,
            hi: 1.0,
        }),
        files: Files {
            fp32: FileRef::from_file(&opts.out, FP32_FILE)?,
            int8: int8_ref,
            golden: None,
        },
        metrics: None,
        provenance: provenance(&cfg.data, &cfg.category, cfg.split_seed, &state),
    };
    Ok((man, split.valid))
}

/// Steps 1-4 for PatchCore: fp32 graph (bank as initializers), golden vectors (`input`,
/// `patch_scores`, `image_score`, `map`), int8 graph (the backbone only; the distance stays fp32),
/// provisional manifest with the bank's size and cost. The map spec's range is the run's validation
/// distance range.
fn patchcore_bundle(opts: &ExportOptions, rd: &RunDir) -> Result<(Manifest, Vec<Item>)> {
    use crate::run::PatchCoreRunConfig;
    let cfg: PatchCoreRunConfig = run::read_json(&rd.config())?;
    let state: TrainState = run::read_json(&rd.state())?;
    let pc_model = cfg.load_model(&rd.best(), Device::Cpu)?;
    let model = patchcore::build(&pc_model)?;
    onnx::write_model(&model, &opts.out.join(FP32_FILE))?;

    let category = Category::open(&cfg.data)?;
    let split = Split::anomaly_detection(&category, cfg.split_seed);
    let (s, blur) = (cfg.patchcore.image_size, cfg.patchcore.blur_sigma);
    map_golden(opts, &split.valid, &cfg.preprocess, s, blur, |x| pc_model.patch_scores(x))?;

    let int8_ref = if opts.int8 {
        let calib: Vec<&Item> = split.train.iter().take(opts.calib.max(1)).collect();
        let tag = format!("{}-patchcore", cfg.category);
        let q = quant::quantize(
            &model,
            &calib,
            &cfg.preprocess,
            &tag,
            &["bank", "aggregate"],
            opts.progress,
        )?;
        onnx::write_model(&q, &opts.out.join(INT8_FILE))?;
        Some(FileRef::from_file(&opts.out, INT8_FILE)?)
    } else {
        None
    };

    let grid = s / 8;
    let mut provenance = provenance(&cfg.data, &cfg.category, cfg.split_seed, &state);
    provenance.metrics.insert("bank".into(), serde_json::to_value(&cfg.bank)?);
    let man = Manifest {
        schema_version: manifest::SCHEMA_VERSION,
        model_kind: ModelKind::Patchcore,
        architecture: format!("patchcore/{}", cfg.patchcore.backbone.name()),
        backbone: cfg.patchcore.backbone.name().to_string(),
        input: cfg.preprocess.clone(),
        classes: vec![],
        outputs: vec![
            OutputSpec {
                name: glass::PATCH_SCORES.into(),
                shape: vec![-1, grid, grid],
                meaning: format!(
                    "per-patch distance to the nearest of {} memory-bank features at stride 8",
                    cfg.bank.size
                ),
            },
            OutputSpec {
                name: glass::IMAGE_SCORE.into(),
                shape: vec![-1],
                meaning: "image score: max of the patch distances".into(),
            },
        ],
        score_normalisation: ScoreNormalisation::default(),
        threshold: provisional_threshold(),
        anomaly_map: Some(AnomalyMapSpec {
            width: s as u32,
            height: s as u32,
            blur_sigma: cfg.patchcore.blur_sigma,
            lo: cfg.map_range[0],
            hi: cfg.map_range[1],
        }),
        files: Files {
            fp32: FileRef::from_file(&opts.out, FP32_FILE)?,
            int8: int8_ref,
            golden: None,
        },
        metrics: None,
        provenance,
    };
    Ok((man, split.valid))
}

/// Steps 1-4 for a classifier (EfficientNet-Lite0): fp32 graph, golden vectors (`input`, `logits`,
/// `abnormal_prob`), int8 graph, provisional manifest. The threshold is chosen on the classifier
/// split's validation part (the run's `train_defects` respected).
fn classifier_bundle(opts: &ExportOptions, rd: &RunDir) -> Result<(Manifest, Vec<Item>)> {
    use crate::run::ClassifierRunConfig;
    let cfg: ClassifierRunConfig = run::read_json(&rd.config())?;
    let state: TrainState = run::read_json(&rd.state())?;
    let model = cfg.load_model(&rd.best(), Device::Cpu)?;
    let graph = classifier::build(&model, cfg.classifier.image_size)?;
    onnx::write_model(&graph, &opts.out.join(FP32_FILE))?;

    let category = Category::open(&cfg.data)?;
    let split = Split::classifier(&category, cfg.split_seed, cfg.train_defects.as_deref())?;
    let gitems = golden_items(&split.valid, opts.golden.max(1));
    let mut inputs = Vec::new();
    for item in &gitems {
        inputs.push(loader::image_tensor(item, &cfg.preprocess)?);
    }
    let x = Tensor::stack(&inputs, 0);
    let logits = tch::no_grad(|| model.forward(&x, false));
    let prob = model.abnormal_prob(&x);
    Tensor::write_npz(
        &[("input", &x), (classifier::LOGITS, &logits), (classifier::ABNORMAL_PROB, &prob)],
        opts.out.join(GOLDEN_FILE),
    )?;

    let int8_ref = if opts.int8 {
        let normals = split.train.iter().filter(|i| i.label == Label::Normal);
        let calib: Vec<&Item> = normals.take(opts.calib.max(1)).collect();
        let tag = format!("{}-classifier", cfg.category);
        let q = quant::quantize(&graph, &calib, &cfg.preprocess, &tag, &["_fc"], opts.progress)?;
        onnx::write_model(&q, &opts.out.join(INT8_FILE))?;
        Some(FileRef::from_file(&opts.out, INT8_FILE)?)
    } else {
        None
    };
    let n_classes = logits.size().get(1).copied().unwrap_or(2);
    let man = Manifest {
        schema_version: manifest::SCHEMA_VERSION,
        model_kind: ModelKind::Classifier,
        architecture: format!("classifier/{}", cfg.classifier.arch.name()),
        backbone: cfg.classifier.arch.name().to_string(),
        input: cfg.preprocess.clone(),
        classes: vec!["normal".into(), "abnormal".into()],
        outputs: vec![
            OutputSpec {
                name: classifier::LOGITS.into(),
                shape: vec![-1, n_classes],
                meaning: "logits (index 1 = abnormal)".into(),
            },
            OutputSpec {
                name: classifier::ABNORMAL_PROB.into(),
                shape: vec![-1],
                meaning: "image score: softmax probability of abnormal".into(),
            },
        ],
        score_normalisation: ScoreNormalisation::default(),
        threshold: provisional_threshold(),
        anomaly_map: None,
        files: Files {
            fp32: FileRef::from_file(&opts.out, FP32_FILE)?,
            int8: int8_ref,
            golden: None,
        },
        metrics: None,
        provenance: provenance(&cfg.data, &cfg.category, cfg.split_seed, &state),
    };
    Ok((man, split.valid))
}

fn provisional_threshold() -> Threshold {
    Threshold { value: 0.5, method: "provisional".into(), details: Default::default(), range: None }
}

fn provenance(data: &Path, category: &str, seed: u64, state: &TrainState) -> Provenance {
    Provenance {
        dataset: data.display().to_string(),
        category: category.to_string(),
        split_seed: seed,
        epochs: state.best_epoch as u32,
        metrics: Default::default(),
        git_commit: option_env!("GLASS_EDGE_GIT").unwrap_or("").to_string(),
        created: created_stamp(),
    }
}

/// Step 5 for every model: the run's test metrics into the provenance, then the validation split
/// scored by the bundle's own models (tract): threshold, AUROC, latency, int8 agreement, preference.
fn finish(
    opts: &ExportOptions,
    rd: &RunDir,
    mut man: Manifest,
    valid: &[Item],
) -> Result<ExportReport> {
    if let Ok(m) = run::read_json::<serde_json::Value>(&rd.metrics()) {
        for k in ["image_auroc", "pixel_auroc", "aupro", "best_f1_test", "val_image_auroc"] {
            if let Some(v) = m.get(k) {
                man.provenance.metrics.insert(k.to_string(), v.clone());
            }
        }
    }
    man.save(&opts.out)?;

    // 5. Score validation with the bundle's own models (tract), choose the threshold, record metrics.
    let labels: Vec<bool> = valid.iter().map(|i| i.label == Label::Abnormal).collect();
    let fp = score_bundle(&opts.out, runtime::engine::Precision::Fp32, valid, opts.progress)?;
    let (thr, f1) = metrics::best_f1_margin(&fp.scores, &labels).unwrap_or((0.5, 0.0));
    let mut details = serde_json::Map::new();
    details.insert("val_f1".into(), f1.into());
    details.insert("n_valid".into(), valid.len().into());
    // Line commands may move the threshold only within the validation scores' span.
    let lo = fp.scores.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = fp.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    man.threshold = Threshold {
        value: thr,
        method: "best_f1_validation_midgap (fp32, tract)".into(),
        details,
        range: (lo.is_finite() && hi.is_finite()).then_some([lo.min(thr), hi.max(thr)]),
    };
    let mut mm = manifest::Metrics {
        fp32_val_auroc: metrics::auroc(&fp.scores, &labels),
        fp32_latency_ms: Some(fp.latency_ms),
        latency_device: format!(
            "{} {} (export host), tract, {} thread(s), inference only",
            std::env::consts::ARCH,
            std::env::consts::OS,
            opts.threads.max(1)
        ),
        ..Default::default()
    };
    let mut agreement = None;
    if opts.int8 {
        let q = score_bundle(&opts.out, runtime::engine::Precision::Int8, valid, opts.progress)?;
        mm.int8_val_auroc = metrics::auroc(&q.scores, &labels);
        mm.int8_latency_ms = Some(q.latency_ms);
        let same =
            fp.scores.iter().zip(&q.scores).filter(|(a, b)| (**a >= thr) == (**b >= thr)).count();
        agreement = Some(same as f64 / fp.scores.len().max(1) as f64);
    }
    if opts.f16 {
        // tract's portable f16 kernels here; a board with FP16 arithmetic runs its own (the
        // self-test tolerance below leaves room for that).
        let h = score_bundle(&opts.out, runtime::engine::Precision::F16, valid, opts.progress)?;
        mm.f16_val_auroc = metrics::auroc(&h.scores, &labels);
        let same =
            fp.scores.iter().zip(&h.scores).filter(|(a, b)| (**a >= thr) == (**b >= thr)).count();
        mm.f16_verdict_agreement = Some(same as f64 / fp.scores.len().max(1) as f64);
    }
    mm.preferred = Some(preferred(&mm).to_string());
    man.metrics = Some(mm);
    man.files.golden = Some(golden_ref(&opts.out, &man, opts.f16)?);
    man.save(&opts.out)?;
    // The station's own load path, self-test included, must accept what was just written.
    runtime::engine::Engine::load(&opts.out, runtime::engine::Precision::Fp32)?;
    if opts.int8 {
        runtime::engine::Engine::load(&opts.out, runtime::engine::Precision::Int8)?;
    }
    if opts.f16 {
        runtime::engine::Engine::load(&opts.out, runtime::engine::Precision::F16)?;
    }
    Ok(ExportReport { manifest: man, n_valid: valid.len(), int8_verdict_agreement: agreement })
}

/// Step 6: `golden.npz`'s manifest entry. The station's self-test at load (`runtime::golden`) holds each
/// model file to a tolerance on the largest difference between its outputs and libtorch's on the
/// golden inputs. Measured here with tract, then widened for other CPUs' kernels (README.md, "Loading
/// a bundle"): fp32 `max(10 x measured, 1e-3 x scale)`, int8 and f16 (when `f16`) `max(3 x measured,
/// 0.05 x scale)`, where scale is the largest golden value's magnitude (at least 1). Wide enough for a
/// board's summation order (f16: a board's FP16 kernels accumulate in half precision, the portable
/// ones measured here may not), narrow enough to refuse a model that computes something else.
fn golden_ref(dir: &Path, man: &Manifest, f16: bool) -> Result<manifest::GoldenRef> {
    let bytes = std::fs::read(dir.join(GOLDEN_FILE))
        .map_err(|e| Error::Config(format!("{}: {e}", dir.join(GOLDEN_FILE).display())))?;
    let inp = &man.input;
    let input_len = inp.channels as usize * inp.height as usize * inp.width as usize;
    let golden = runtime::golden::Golden::parse(&bytes, man.model_kind, input_len)
        .map_err(|e| Error::Config(format!("{GOLDEN_FILE}: {e}")))?;
    let scale = golden.outputs.iter().flatten().chain(&golden.scores).fold(1f32, |m, v| {
        if v.is_finite() {
            m.max(v.abs())
        } else {
            m
        }
    });
    let measure = |p: runtime::engine::Precision| -> Result<f32> {
        let engine = runtime::engine::Engine::load(dir, p)?;
        Ok(engine.golden_difference(&golden)?)
    };
    let fp32 = measure(runtime::engine::Precision::Fp32)?;
    let int8 = match man.files.int8 {
        Some(_) => Some(measure(runtime::engine::Precision::Int8)?),
        None => None,
    };
    let half = if f16 { Some(measure(runtime::engine::Precision::F16)?) } else { None };
    let finite = |d: f32, what: &str| {
        if d.is_finite() {
            Ok(d)
        } else {
            Err(Error::Config(format!("the {what} model gives non-finite outputs on golden.npz")))
        }
    };
    Ok(manifest::GoldenRef {
        file: FileRef { path: GOLDEN_FILE.into(), sha256: manifest::sha256_bytes(&bytes) },
        fp32_tolerance: (10.0 * finite(fp32, "fp32")?).max(1e-3 * scale),
        int8_tolerance: int8
            .map(|d| finite(d, "int8").map(|d| (3.0 * d).max(0.05 * scale)))
            .transpose()?,
        f16_tolerance: half
            .map(|d| finite(d, "f16").map(|d| (3.0 * d).max(0.05 * scale)))
            .transpose()?,
    })
}

/// int8 only when it is both faster and as accurate (AUROC drop <= 0.005) as fp32; else fp32.
pub fn preferred(m: &manifest::Metrics) -> &'static str {
    match (m.fp32_val_auroc, m.int8_val_auroc, m.fp32_latency_ms, m.int8_latency_ms) {
        (Some(fa), Some(qa), Some(fl), Some(ql)) if ql < fl && fa - qa <= 0.005 => "int8",
        _ => "fp32",
    }
}

/// Seconds since the Unix epoch, as text (no clock crate).
fn created_stamp() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix:{t}")
}
