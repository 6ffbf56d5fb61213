//! Supervised normal/abnormal classifier training on the classifier split
//! (docs/experiment-protocol.md): abnormal images 50% (x4 rotations) train / 25% validation / 25% test
//! per defect type, normals exactly as in the anomaly-detection split with the same seed (so GLASS and
//! the classifier are tested on the same normal images). `--train-defects a,b` keeps only those defect
//! types in train and validation (experiment 3); the others appear only in test, as unseen defects.
//!
//! Recipe (docs/tinyvit.md §6, adapted to small binary data): AdamW, layer-wise LR decay (group `g` at
//! `lr · decay^g`, the head at `lr`), a linear warm-up over the first epoch, gradient clipping at 5,
//! BatchNorm frozen (running statistics; affine parameters train), drop path 0.1 on TinyViT,
//! class-weighted cross-entropy (weights `N / (2 · N_class)`: experiment 3 has few abnormals), and only
//! horizontal flips as augmentation (nothing that can crop or erase a defect; the split's rotations are
//! the rest). Early stopping on validation AUROC with `patience`; no epoch cap unless `max_epochs`.
//! Resume as GLASS: `state.json` + `checkpoint_last.safetensors` after every epoch.
use std::path::PathBuf;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use tch::{Device, Kind, Tensor};

use crate::data::category::Category;
use crate::data::loader;
use crate::data::split::{Label, Split};
use crate::metrics;
use crate::models::classifier::{Classifier, ClassifierConfig};
use crate::run::{self, ClassifierRunConfig, ComputeDevice, RunDir, TrainState};
use crate::train::optim::{self, Adam, Decay};
use crate::{Error, Result};

/// Everything `host train classifier` needs besides the hyper-parameters.
#[derive(Debug, Clone)]
pub struct ClassifierTrainOptions {
    /// Category folder.
    pub data: PathBuf,
    /// Run directory.
    pub out: PathBuf,
    /// Where to compute.
    pub device: ComputeDevice,
    /// Pretrained checkpoint (safetensors, reference names); default: the architecture's ImageNet file
    /// when one exists here, else an error unless `allow_random` is set.
    pub weights: Option<PathBuf>,
    /// Train from random weights when no checkpoint is given (tests, parity).
    pub allow_random: bool,
    /// Experiment 3: the defect types of train/valid.
    pub train_defects: Option<Vec<String>>,
    /// libtorch threads (0 = all).
    pub threads: usize,
    /// Progress bars.
    pub progress: bool,
    /// Stop after this many epochs in this call, unfinished (the next call resumes); `None`: run to the
    /// end.
    pub pause_after: Option<usize>,
}

/// One line of `epochs.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierEpochLine {
    /// 1-based epoch.
    pub epoch: usize,
    /// Steps run.
    pub iterations: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy (argmax).
    pub train_accuracy: f64,
    /// Validation AUROC after this epoch.
    pub val_image_auroc: f64,
    /// Best validation AUROC so far.
    pub best_val_auroc: f64,
    /// Head learning rate at the end of the epoch.
    pub lr: f64,
    /// Seconds this epoch took.
    pub seconds: f64,
}

/// Abnormal probabilities of preprocessed `[3,H,W]` images, in batches.
pub fn predict(
    model: &Classifier,
    imgs: &[&Tensor],
    batch: usize,
    device: Device,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(imgs.len());
    for chunk in imgs.chunks(batch.max(1)) {
        let x = Tensor::stack(chunk, 0).to_device(device);
        out.extend(Vec::<f32>::try_from(model.abnormal_prob(&x).to_device(Device::Cpu))?);
    }
    Ok(out)
}

/// Trains a classifier; returns the final state. Safe to call again on the same run dir (resume).
pub fn train(cfg: ClassifierConfig, opts: &ClassifierTrainOptions) -> Result<TrainState> {
    cfg.validate().map_err(Error::Config)?;
    run::set_threads(opts.threads);
    let device = opts.device.resolve()?;
    let rd = RunDir::create(&opts.out)?;
    let category = Category::open(&opts.data)?;
    let split = Split::classifier(&category, cfg.seed, opts.train_defects.as_deref())?;
    let counts = split.counts();
    if counts.train_normal == 0 || counts.train_abnormal == 0 {
        return Err(Error::Dataset {
            path: opts.data.clone(),
            msg: format!(
                "the classifier needs normal and abnormal training images (has {} / {})",
                counts.train_normal, counts.train_abnormal
            ),
        });
    }
    if counts.valid_normal == 0 || counts.valid_abnormal == 0 {
        return Err(Error::Dataset {
            path: opts.data.clone(),
            msg: format!(
                "validation needs normal and abnormal images (has {} / {}); early stopping uses its AUROC",
                counts.valid_normal, counts.valid_abnormal
            ),
        });
    }
    let weights = match (&opts.weights, cfg.arch.default_weights_path()) {
        (Some(w), _) => Some(w.clone()),
        (None, Some(w)) if w.is_file() => Some(w),
        (None, _) if opts.allow_random => None,
        (None, _) => {
            return Err(Error::Config(format!(
                "no pretrained weights for {}: pass --weights FILE (a timm/torchvision safetensors \
                 checkpoint), or --random-init to train from scratch",
                cfg.arch
            )))
        }
    };
    let mut seen: Vec<String> = split.train.iter().filter_map(|i| i.defect.clone()).collect();
    seen.sort();
    seen.dedup();
    let pp = cfg.preprocess();
    let run_cfg = ClassifierRunConfig {
        model: shared::manifest::ModelKind::Classifier,
        classifier: cfg.clone(),
        data: opts.data.clone(),
        category: category.name.clone(),
        split_seed: cfg.seed,
        train_defects: opts.train_defects.clone(),
        seen_defects: seen,
        weights: weights.clone(),
        preprocess: pp.clone(),
    };
    let mut state: TrainState =
        if rd.state().is_file() { run::read_json(&rd.state())? } else { TrainState::default() };
    if state.finished {
        return Ok(state);
    }
    if rd.config().is_file() && state.epochs_done > 0 {
        let old: ClassifierRunConfig = run::read_json(&rd.config())?;
        if serde_json::to_value(&old.classifier)? != serde_json::to_value(&run_cfg.classifier)?
            || old.train_defects != run_cfg.train_defects
        {
            return Err(Error::Config(format!(
                "{} holds a run with other hyper-parameters; use a new --out or delete it",
                rd.root.display()
            )));
        }
    }
    run::write_json(&rd.config(), &run_cfg)?;

    let load = |items: &[crate::data::split::Item], what: &str| -> Result<Vec<Tensor>> {
        let pb = run::progress_bar(items.len(), what, opts.progress);
        let mut v = Vec::with_capacity(items.len());
        for it in items {
            v.push(loader::image_tensor(it, &pp)?);
            pb.inc(1);
        }
        pb.finish_and_clear();
        Ok(v)
    };
    let train_imgs = load(&split.train, "loading")?;
    let train_labels: Vec<i64> =
        split.train.iter().map(|i| i64::from(i.label == Label::Abnormal)).collect();
    let valid_imgs = load(&split.valid, "valid")?;
    let valid_labels: Vec<bool> = split.valid.iter().map(|i| i.label == Label::Abnormal).collect();

    tch::manual_seed(cfg.seed as i64);
    let mut model = Classifier::new(cfg.arch, device);
    if state.epochs_done > 0 {
        model.load(&rd.last())?;
    } else if let Some(w) = &weights {
        model.load_pretrained(w)?;
    }
    let mut opt = Adam::new(&model.vs, cfg.lr, cfg.weight_decay, Decay::Decoupled);
    if state.epochs_done > 0 {
        optim::resume(&mut opt, &rd.optimizer("model"))?;
    }
    let first_epoch = state.epochs_done;
    let n = train_imgs.len() as f64;
    let n_ab = counts.train_abnormal as f64;
    let class_w = Tensor::from_slice(&[(n / (2.0 * (n - n_ab))) as f32, (n / (2.0 * n_ab)) as f32])
        .to_device(device);
    let steps_per_epoch = train_imgs.len().div_ceil(cfg.batch_size);
    let set_lr = |opt: &mut Adam, step: usize| -> f64 {
        let warm = ((step + 1) as f64 / steps_per_epoch as f64).min(1.0);
        let lr = cfg.lr * warm;
        for g in 0..cfg.arch.groups() {
            opt.set_lr_group(g, lr * cfg.layer_decay.powi(g as i32));
        }
        lr
    };

    let epoch_bar = run::progress_bar(cfg.max_epochs.unwrap_or(0), "epochs", opts.progress);
    let secs_before = state.train_seconds;
    let started = Instant::now();
    loop {
        if opts.pause_after.is_some_and(|n| state.epochs_done - first_epoch >= n) {
            break;
        }
        let epoch = state.epochs_done + 1;
        let t0 = Instant::now();
        let eseed = cfg.seed.wrapping_mul(1_000_003) ^ epoch as u64;
        // Per-epoch seeding of both generators (shuffle/flips and drop path): a resumed run draws what
        // an uninterrupted one would.
        tch::manual_seed(eseed as i64);
        let mut rng = ChaCha8Rng::seed_from_u64(eseed);
        let mut order: Vec<usize> = (0..train_imgs.len()).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut iters) = (0.0, 0usize, 0usize);
        let mut lr = cfg.lr;
        let pb = run::progress_bar(steps_per_epoch, &format!("epoch {epoch}"), opts.progress);
        for idx in order.chunks(cfg.batch_size) {
            let xs: Vec<Tensor> = idx
                .iter()
                .map(|&i| {
                    let t = &train_imgs[i];
                    if cfg.hflip && rng.random_bool(0.5) {
                        t.flip([2])
                    } else {
                        t.shallow_clone()
                    }
                })
                .collect();
            let x = Tensor::stack(&xs, 0).to_device(device);
            let y = Tensor::from_slice(&idx.iter().map(|&i| train_labels[i]).collect::<Vec<_>>())
                .to_device(device);
            lr = set_lr(&mut opt, (epoch - 1) * steps_per_epoch + iters);
            let logits = model.forward(&x, true);
            let loss =
                logits.cross_entropy_loss(&y, Some(&class_w), tch::Reduction::Mean, -100, 0.0);
            opt.zero_grad();
            loss.backward();
            opt.clip_grad_norm(cfg.clip_norm);
            opt.step();
            loss_sum += loss.double_value(&[]);
            correct +=
                i64::try_from(logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64))? as usize;
            iters += 1;
            pb.inc(1);
            pb.set_message(format!("loss {:.4}", loss_sum / iters as f64));
        }
        pb.finish_and_clear();

        let vrefs: Vec<&Tensor> = valid_imgs.iter().collect();
        let vs = predict(&model, &vrefs, cfg.batch_size, device)?;
        let val_auroc = metrics::auroc(&vs, &valid_labels).unwrap_or(0.0);
        model.save(&rd.last())?;
        opt.save(&rd.optimizer("model"))?;
        if state.record_epoch(epoch, val_auroc, val_auroc) {
            model.save(&rd.best())?;
        }
        state.train_seconds = secs_before + started.elapsed().as_secs_f64();
        let line = ClassifierEpochLine {
            epoch,
            iterations: iters,
            loss: loss_sum / iters.max(1) as f64,
            train_accuracy: correct as f64 / train_imgs.len() as f64,
            val_image_auroc: val_auroc,
            best_val_auroc: state.best_val_auroc,
            lr,
            seconds: t0.elapsed().as_secs_f64(),
        };
        rd.append_epoch(&line)?;
        let capped = cfg.max_epochs.is_some_and(|m| state.epochs_done >= m);
        if capped || state.since_best >= cfg.patience {
            state.finished = true;
        }
        run::write_json(&rd.state(), &state)?;
        epoch_bar.set_position(epoch as u64);
        epoch_bar.println(format!(
            "epoch {epoch:>3}  loss {:.4}  train acc {:.3}  val AUROC {val_auroc:.4}  best {:.4} @{}  {:.0}s",
            line.loss, line.train_accuracy, state.best_val_auroc, state.best_epoch, line.seconds
        ));
        if state.finished {
            break;
        }
    }
    epoch_bar.finish_and_clear();
    Ok(state)
}
