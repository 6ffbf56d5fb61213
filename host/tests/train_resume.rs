//! Resume: a training run stopped after one epoch (`pause_after`, as an interrupted run) and started
//! again ends bit-identical to an uninterrupted run: weights, optimizer moments (saved with the run,
//! `train::optim`), random streams (re-seeded per epoch) and the epoch log. A control run that loses
//! its optimizer state on resume must differ, so the comparison can see what resume restores.
//!
//! libtorch's random generator is global to the process, so the runs of this file hold one lock.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{ensure, Context, Result};
use host::data::synth::{self, DefectKind, Kind, SynthConfig};
use host::models::classifier::Arch;
use host::models::classifier::ClassifierConfig;
use host::models::glass::GlassConfig;
use host::run::ComputeDevice;
use host::train::classifier::ClassifierTrainOptions;
use host::train::glass::GlassTrainOptions;
use tch::Tensor;

static TORCH_RNG: Mutex<()> = Mutex::new(());

fn category(dir: &Path, kind: Kind) -> Result<PathBuf> {
    let mut sc = SynthConfig::new(dir, "cat", kind);
    sc.size = 96;
    sc.train = 12;
    sc.test_good = 8;
    sc.test_defect = 4;
    sc.seed = 5;
    sc.defects = vec![DefectKind::Hole, DefectKind::Scratch];
    synth::generate(&sc).context("generating the category")?;
    Ok(dir.join("cat"))
}

fn tensors(file: &Path) -> Result<BTreeMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(file)
        .with_context(|| file.display().to_string())?
        .into_iter()
        .collect())
}

/// Largest absolute difference over every tensor of two checkpoints with the same names.
fn max_diff(a: &Path, b: &Path) -> Result<f64> {
    let (ta, tb) = (tensors(a)?, tensors(b)?);
    ensure!(ta.keys().eq(tb.keys()), "{} and {} hold other names", a.display(), b.display());
    let mut d = 0f64;
    for (k, x) in &ta {
        let y = &tb[k];
        ensure!(x.size() == y.size(), "{k}: shapes differ");
        d = d.max(
            (x.to_kind(tch::Kind::Double) - y.to_kind(tch::Kind::Double))
                .abs()
                .max()
                .double_value(&[]),
        );
    }
    Ok(d)
}

/// The epoch log without its timings.
fn epochs(run: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(run.join("epochs.jsonl"))?;
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l)?;
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| !k.contains("seconds"));
            }
            Ok(v)
        })
        .collect()
}

/// Trains `straight` uninterrupted, `resumed` in two calls, `control` in two calls with its optimizer
/// files deleted in between; checks the outcome.
fn check_resume(
    root: &Path,
    train: impl Fn(&Path, Option<usize>) -> Result<host::run::TrainState>,
    epochs_total: usize,
) -> Result<()> {
    let (straight, resumed, control) =
        (root.join("straight"), root.join("resumed"), root.join("control"));
    let s = train(&straight, None)?;
    ensure!(s.finished && s.epochs_done == epochs_total, "straight run: {s:?}");
    for dir in [&resumed, &control] {
        let p = train(dir, Some(1))?;
        ensure!(!p.finished && p.epochs_done == 1, "paused run: {p:?}");
    }
    for e in std::fs::read_dir(&control)? {
        let path = e?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("optimizer_")) {
            std::fs::remove_file(path)?;
        }
    }
    for dir in [&resumed, &control] {
        let r = train(dir, None)?;
        ensure!(r.finished && r.epochs_done == epochs_total, "resumed run: {r:?}");
    }
    let last = |d: &Path| d.join("checkpoint_last.safetensors");
    let same = max_diff(&last(&straight), &last(&resumed))?;
    let lost = max_diff(&last(&straight), &last(&control))?;
    eprintln!("max |weight diff|: resumed {same:.3e}, resumed without optimizer state {lost:.3e}");
    ensure!(
        same == 0.0,
        "the resumed run's weights differ from the uninterrupted run's by {same:e}"
    );
    ensure!(
        lost > 1e-6,
        "losing the optimizer state changed nothing ({lost:e}): the test is blind"
    );
    ensure!(epochs(&straight)? == epochs(&resumed)?, "the epoch logs differ");
    for f in
        ["optimizer_proj.safetensors", "optimizer_dsc.safetensors", "optimizer_model.safetensors"]
    {
        if straight.join(f).is_file() {
            ensure!(max_diff(&straight.join(f), &resumed.join(f))? == 0.0, "{f} differs");
        }
    }
    Ok(())
}

#[test]
fn glass_resumes_exactly() -> Result<()> {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir()?;
    let data = category(dir.path(), Kind::Texture)?;
    let mut cfg = GlassConfig::tiny();
    cfg.image_size = 96;
    cfg.max_epochs = 3;
    cfg.patience = 3;
    let train = |out: &Path, pause_after| {
        let opts = GlassTrainOptions {
            data: data.clone(),
            out: out.to_path_buf(),
            device: ComputeDevice::Cpu,
            backbone_weights: None,
            textures: None,
            fg_masks: None,
            threads: 1,
            progress: false,
            pause_after,
        };
        Ok(host::train::glass::train(cfg.clone(), &opts)?)
    };
    check_resume(dir.path(), train, 3)
}

#[test]
fn classifier_resumes_exactly() -> Result<()> {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir()?;
    let data = category(dir.path(), Kind::Object)?;
    let mut cfg = ClassifierConfig::for_arch(Arch::EfficientnetLite0);
    cfg.image_size = 96;
    cfg.max_epochs = Some(3);
    cfg.patience = 3;
    cfg.batch_size = 4;
    let train = |out: &Path, pause_after| {
        let opts = ClassifierTrainOptions {
            data: data.clone(),
            out: out.to_path_buf(),
            device: ComputeDevice::Cpu,
            weights: None,
            allow_random: false,
            train_defects: None,
            threads: 1,
            progress: false,
            pause_after,
        };
        Ok(host::train::classifier::train(cfg.clone(), &opts)?)
    };
    check_resume(dir.path(), train, 3)
}
