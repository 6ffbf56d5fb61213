//! What every stage of a run shares: the run directory and its files, the training state kept across
//! restarts, where libtorch computes ([`ComputeDevice`]; not the inspection station), progress bars,
//! JSON I/O, and the run's configuration ([`RunConfig`], one record per model kind, in [`config`]).
//!
//! Train writes a run directory, eval and export read it; neither imports the other.
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tch::Device;

use crate::{Error, Result};

pub mod config;
pub use config::{ClassifierRunConfig, GlassRunConfig, Model, PatchCoreRunConfig, RunConfig};

/// Where libtorch computes (training, evaluation): the workstation's CPU or GPU. `--device` on the
/// command line.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDevice {
    /// CUDA when libtorch sees a GPU, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device (an error without one).
    Cuda,
}

impl ComputeDevice {
    /// Resolves to a tch device.
    pub fn resolve(self) -> Result<Device> {
        match self {
            ComputeDevice::Auto => Ok(Device::cuda_if_available()),
            ComputeDevice::Cpu => Ok(Device::Cpu),
            ComputeDevice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            ComputeDevice::Cuda => {
                Err(Error::Config("--device cuda: libtorch sees no CUDA device".into()))
            }
        }
    }
}

/// File names inside a run directory.
pub struct RunDir {
    /// The run directory.
    pub root: PathBuf,
}

impl RunDir {
    /// Creates (if needed) and wraps `root`.
    pub fn create(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        Ok(RunDir { root: root.to_path_buf() })
    }
    /// Wraps an existing run directory.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("config.json").is_file() {
            return Err(Error::Dataset {
                path: root.into(),
                msg: "not a run directory (no config.json)".into(),
            });
        }
        Ok(RunDir { root: root.to_path_buf() })
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// `epochs.jsonl`.
    pub fn epochs(&self) -> PathBuf {
        self.root.join("epochs.jsonl")
    }
    /// `checkpoint_best.safetensors`.
    pub fn best(&self) -> PathBuf {
        self.root.join("checkpoint_best.safetensors")
    }
    /// `checkpoint_last.safetensors`.
    pub fn last(&self) -> PathBuf {
        self.root.join("checkpoint_last.safetensors")
    }
    /// `optimizer_NAME.safetensors`: an optimizer's moments after the last epoch (resume).
    pub fn optimizer(&self, name: &str) -> PathBuf {
        self.root.join(format!("optimizer_{name}.safetensors"))
    }
    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// `metrics.json`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.json")
    }
    /// `maps/`.
    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }
    /// Appends one JSON line to `epochs.jsonl`.
    pub fn append_epoch<T: Serialize>(&self, line: &T) -> Result<()> {
        let path = self.epochs();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let s = serde_json::to_string(line)?;
        writeln!(f, "{s}").map_err(|e| Error::io(&path, e))
    }
}

/// Writes JSON atomically (temp file + rename), so a crash never leaves a half-written file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let s = serde_json::to_string_pretty(value)?;
    std::fs::write(&tmp, s).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads JSON, naming the file on error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&s)
        .map_err(|e| Error::Dataset { path: path.into(), msg: format!("invalid JSON: {e}") })
}

/// Sets libtorch's intra-op threads: `0` = all cores.
///
/// Only when the count changes: libtorch's `set_num_threads` also rebuilds its shared worker pool, and
/// doing that while another thread of the process is inside a convolution can free the pool under it
/// (the suspected cause of a rare crash of a test binary whose tests train in parallel).
pub fn set_threads(n: usize) {
    let n =
        if n == 0 { std::thread::available_parallelism().map(|v| v.get()).unwrap_or(1) } else { n };
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    if tch::get_num_threads() != n {
        tch::set_num_threads(n);
    }
}

/// The project's progress bar: `prefix [=====>   ] pos/len msg`, hidden when `show` is false.
pub fn progress_bar(n: usize, prefix: &str, show: bool) -> indicatif::ProgressBar {
    let pb =
        if show { indicatif::ProgressBar::new(n as u64) } else { indicatif::ProgressBar::hidden() };
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// Progress kept across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Validation image AUROC of the best epoch.
    pub best_val_auroc: f64,
    /// Selection score of the best epoch (image AUROC + pixel AUROC on validation, or image AUROC).
    #[serde(default)]
    pub best_score: f64,
    /// Epoch (1-based) of the best checkpoint.
    pub best_epoch: usize,
    /// Epochs since the best one.
    pub since_best: usize,
    /// Wall-clock training seconds, summed over restarts.
    pub train_seconds: f64,
    /// Early stopping or the epoch cap ended training.
    pub finished: bool,
}

impl TrainState {
    /// Records a finished epoch: a better selection `score` (or the first epoch) makes it the best one
    /// (returns true: save the best checkpoint), else the patience counter grows.
    pub fn record_epoch(&mut self, epoch: usize, val_auroc: f64, score: f64) -> bool {
        let best = score > self.best_score || self.best_epoch == 0;
        if best {
            self.best_score = score;
            self.best_val_auroc = val_auroc;
            self.best_epoch = epoch;
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        self.epochs_done = epoch;
        best
    }
}
