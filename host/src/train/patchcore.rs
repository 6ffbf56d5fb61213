//! Building a PatchCore memory bank (`host train patchcore`) on the anomaly-detection split: features
//! of every training normal, a greedy coreset of them, then the validation split scored once (its image
//! and pixel AUROC go into `state.json` and `epochs.jsonl`, as a GLASS epoch's would). Nothing is
//! trained and the test split is never read. See `docs/patchcore.md`.
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shared::preprocess::PreprocessConfig;
use tch::{Device, Kind, Tensor};

use crate::data::category::Category;
use crate::data::loader;
use crate::data::split::{Item, Label, Split};
use crate::metrics;
use crate::models::patchcore::{self as pc, normalise_map, PatchCore, PatchCoreConfig};
use crate::run::config::BankFacts;
use crate::run::{self, ComputeDevice, PatchCoreRunConfig, RunDir, TrainState};
use crate::train::glass::default_weights;
use crate::{Error, Result};

/// Everything `host train patchcore` needs besides the settings.
#[derive(Debug, Clone)]
pub struct PatchCoreTrainOptions {
    /// Category folder (MVTec AD layout).
    pub data: PathBuf,
    /// Run directory.
    pub out: PathBuf,
    /// Where to compute.
    pub device: ComputeDevice,
    /// Backbone safetensors; default `$GLASS_EDGE_WEIGHTS/<backbone>.safetensors`.
    pub backbone_weights: Option<PathBuf>,
    /// libtorch threads (0 = all cores).
    pub threads: usize,
    /// Show progress bars.
    pub progress: bool,
}

/// One line of a PatchCore run's `epochs.jsonl` (a single "epoch": building the bank).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BankLine {
    /// Always 1.
    pub epoch: usize,
    /// Bank entries.
    pub bank_size: usize,
    /// Validation image AUROC.
    pub val_image_auroc: f64,
    /// Validation pixel AUROC (absent without validation masks).
    pub val_pixel_auroc: Option<f64>,
    /// Image + pixel AUROC, as GLASS's selection score.
    pub score: f64,
    /// Best validation image AUROC (= this one).
    pub best_val_auroc: f64,
    /// Seconds.
    pub seconds: f64,
}

/// The input contract of a PatchCore config (the GLASS one: square, squashed, its mean/std).
pub fn preprocess_config(cfg: &PatchCoreConfig) -> PreprocessConfig {
    crate::train::glass::square_input(cfg.image_size, cfg.mean, cfg.std)
}

/// Builds the bank; returns the final state. A finished run with the same settings is left as is; a
/// run directory holding other settings is refused.
pub fn train(cfg: PatchCoreConfig, opts: &PatchCoreTrainOptions) -> Result<TrainState> {
    cfg.validate().map_err(Error::Config)?;
    run::set_threads(opts.threads);
    let device = opts.device.resolve()?;
    let rd = RunDir::create(&opts.out)?;
    let category = Category::open(&opts.data)?;
    let split = Split::anomaly_detection(&category, cfg.seed);
    if split.train.is_empty() {
        return Err(Error::Dataset { path: opts.data.clone(), msg: "no train/good images".into() });
    }
    if rd.state().is_file() && rd.config().is_file() {
        let state: TrainState = run::read_json(&rd.state())?;
        let old: PatchCoreRunConfig = run::read_json(&rd.config())?;
        if serde_json::to_value(&old.patchcore)? != serde_json::to_value(&cfg)? {
            return Err(Error::Config(format!(
                "{} holds a run with other settings; use a new --out or delete it",
                rd.root.display()
            )));
        }
        if state.finished {
            tracing::info!("{}: memory bank already built", rd.root.display());
            return Ok(state);
        }
    }
    let weights = match &opts.backbone_weights {
        Some(w) => w.clone(),
        None => default_weights(cfg.backbone)?,
    };
    let pp = preprocess_config(&cfg);
    let started = Instant::now();
    let mut model = PatchCore::new(cfg.clone(), &weights, device)?;

    // 1. Features of every training normal, as rows [N, d] on the CPU.
    let pb = run::progress_bar(split.train.len(), "features", opts.progress);
    let mut rows = Vec::with_capacity(split.train.len());
    for chunk in split.train.chunks(8) {
        let x = batch(chunk, &pp, device)?;
        rows.push(pc::rows(&model.embed(&x)).to_device(Device::Cpu));
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let rows = Tensor::cat(&rows, 0);
    let feature_seconds = started.elapsed().as_secs_f64();
    let (n, d) = rows.size2()?;
    let m = cfg.coreset.resolve(n as usize, d);

    // 2. Greedy coreset.
    let t1 = Instant::now();
    let pb = run::progress_bar(m, "coreset", opts.progress);
    let idx = pc::greedy_coreset(&rows, m, cfg.seed, || pb.inc(1));
    pb.finish_and_clear();
    let bank = rows.index_select(0, &Tensor::from_slice(&idx));
    drop(rows);
    model.set_bank(bank)?;
    let coreset_seconds = t1.elapsed().as_secs_f64();
    let patches = (cfg.image_size / 8) * (cfg.image_size / 8);
    let facts = BankFacts {
        size: m,
        train_patches: n as usize,
        dims: d,
        bytes: m * d as usize * 4,
        search_gflop: 2.0 * d as f64 * m as f64 * patches as f64 / 1e9,
        feature_seconds,
        coreset_seconds,
    };
    tracing::info!(
        "memory bank {m} of {n} patches ({:.1} MB, search {:.2} GFLOP/frame)",
        facts.bytes as f64 / 1e6,
        facts.search_gflop
    );

    // 3. Validation: image AUROC, pixel AUROC (maps as at inference), the map range.
    let pb = run::progress_bar(split.valid.len(), "valid", opts.progress);
    let mut grids = Vec::with_capacity(split.valid.len());
    for chunk in split.valid.chunks(8) {
        let ps = model.patch_scores(&batch(chunk, &pp, device)?).to_device(Device::Cpu);
        for j in 0..chunk.len() as i64 {
            grids.push(ps.get(j));
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut scores = Vec::with_capacity(grids.len());
    for g in &grids {
        lo = lo.min(g.min().double_value(&[]) as f32);
        let mx = g.max().double_value(&[]) as f32;
        hi = hi.max(mx);
        scores.push(mx);
    }
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        (lo, hi) = (0.0, 1.0);
    }
    let labels: Vec<bool> = split.valid.iter().map(|i| i.label == Label::Abnormal).collect();
    let val_auroc = metrics::auroc(&scores, &labels).unwrap_or(0.0);
    let with_masks = split.valid.iter().any(|i| i.mask.is_some());
    let val_pixel = if with_masks {
        let mut pixels = metrics::PixelMetrics::default();
        let s = cfg.image_size as usize;
        for (item, g) in split.valid.iter().zip(&grids) {
            if item.label == Label::Abnormal && item.mask.is_none() {
                continue; // no ground truth for this one
            }
            let (gh, gw) = g.size2()?;
            let v: Vec<f32> = Vec::<f32>::try_from(g.reshape([-1]).to_kind(Kind::Float))?;
            let mut map = shared::preprocess::glass_postprocess(
                &v,
                gw as usize,
                gh as usize,
                s,
                s,
                cfg.blur_sigma,
            )
            .map_err(|e| Error::Config(format!("map post-processing: {e}")))?;
            normalise_map(&mut map, [lo, hi]);
            pixels.add(&map, &loader::mask_pixels(item, &pp)?, s, s);
        }
        pixels.auroc()
    } else {
        None
    };

    // 4. Config, bank, log line, state (state last: it marks the run finished).
    let run_cfg = PatchCoreRunConfig {
        model: shared::manifest::ModelKind::Patchcore,
        patchcore: cfg.clone(),
        data: opts.data.clone(),
        category: category.name.clone(),
        split_seed: cfg.seed,
        backbone_weights: weights,
        preprocess: pp,
        bank: facts,
        map_range: [lo, hi],
    };
    run::write_json(&rd.config(), &run_cfg)?;
    model.save(&rd.best())?;
    model.save(&rd.last())?;
    let mut state = TrainState::default();
    let score = val_auroc + val_pixel.unwrap_or(0.0);
    state.record_epoch(1, val_auroc, score);
    state.train_seconds = started.elapsed().as_secs_f64();
    state.finished = true;
    let _ = std::fs::remove_file(rd.epochs());
    rd.append_epoch(&BankLine {
        epoch: 1,
        bank_size: m,
        val_image_auroc: val_auroc,
        val_pixel_auroc: val_pixel,
        score,
        best_val_auroc: val_auroc,
        seconds: state.train_seconds,
    })?;
    run::write_json(&rd.state(), &state)?;
    Ok(state)
}

/// Preprocessed batch of items on `device`.
fn batch(items: &[Item], pp: &PreprocessConfig, device: Device) -> Result<Tensor> {
    let ts = items.iter().map(|i| loader::image_tensor(i, pp)).collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&ts, 0).to_device(device))
}
