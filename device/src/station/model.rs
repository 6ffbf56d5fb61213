//! The bundle the station runs. At start it loads `model` (a bundle folder, or a bundle store's
//! `current` link from `device install`); when that bundle is refused (signature, hashes, contract,
//! golden self-test) and `model` is a store's `current` with a `previous`, the station rolls back:
//! it loads `previous`, points `current` at it again and says so in its status. On SIGHUP or an MQTT
//! `load_model` command the bundle `model` names is loaded again on a background thread while frames go
//! on being inspected with the old one; the new one takes over between two frames (a frame in flight
//! finishes on the model it started with). A reload that is refused leaves the old model running.
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use anyhow::{Context, Result};
use shared::signature::PublicKey;
use shared::wire::ModelId;

use super::commands::{threshold_file, SavedThreshold};
use super::config::{PrecisionChoice, StationConfig};
use super::pipeline::Inspector;
use crate::engine::{self, Engine, EngineError, Precision};
use crate::store::{Store, PREVIOUS};

/// The running model and what the loop needs from its manifest.
pub struct Loaded {
    /// The inspection worker that owns the engine.
    pub inspector: Inspector,
    /// sha256 of the fp32 model (the persisted threshold's key).
    pub model_sha: String,
    /// The bundle's allowed threshold range.
    pub threshold_range: [f32; 2],
    /// The model id on the wire.
    pub mid: ModelId,
    /// The threshold in force.
    pub threshold: f32,
    /// The bundle folder (links resolved).
    pub bundle: PathBuf,
}

/// The model id on the wire: the first bytes of the fp32 model's sha256.
fn model_id(engine: &Engine) -> ModelId {
    let hex = &engine.manifest().files.fp32.sha256;
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    ModelId::from_digest(&bytes).unwrap_or_default()
}

/// Loads the bundle at `path` (links resolved first, so a switch during the load cannot mix two
/// bundles) the way the station runs it, on a thread of its own: the golden self-test's scratch
/// buffers (tract keeps them per thread) go when that thread ends, instead of staying beside the
/// inspection worker's for the station's life.
fn load_engine(cfg: &StationConfig, trusted: &[PublicKey], path: &Path) -> Result<Engine> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("load-model".into())
            .spawn_scoped(s, || load_engine_here(cfg, trusted, path))
            .context("starting the model loader thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("loading {} panicked", path.display()))?
    })
}

fn load_engine_here(cfg: &StationConfig, trusted: &[PublicKey], path: &Path) -> Result<Engine> {
    let dir = std::fs::canonicalize(path)
        .with_context(|| format!("the model bundle {}", path.display()))?;
    let precision = match cfg.precision {
        PrecisionChoice::Auto => engine::preferred_precision(&dir),
        PrecisionChoice::Fp32 => Precision::Fp32,
        PrecisionChoice::Int8 => Precision::Int8,
        PrecisionChoice::F16 => Precision::F16,
    };
    let engine = Engine::load_trusted(&dir, precision, trusted)
        .map_err(|e: EngineError| anyhow::Error::new(e))
        .with_context(|| format!("the model bundle {}", path.display()))?;
    if let Some(t) = engine.self_test() {
        tracing::info!(
            "self-test of {}: {} golden image(s), largest difference {:.2e} (tolerance {:.2e})",
            dir.display(),
            t.images,
            t.max_difference,
            t.tolerance
        );
    }
    Ok(engine)
}

/// Wraps a loaded engine: the worker thread, and the threshold (the one persisted for this model when
/// it lies in the bundle's range, else the bundle's).
fn wrap(cfg: &StationConfig, engine: Engine) -> Loaded {
    let model_sha = engine.manifest().files.fp32.sha256.clone();
    let threshold_range = engine.manifest().threshold_range();
    let mid = model_id(&engine);
    let bundle = engine.dir().to_path_buf();
    let mut threshold = engine.threshold();
    if let Ok(text) = std::fs::read_to_string(threshold_file(&cfg.state_dir)) {
        match serde_json::from_str::<SavedThreshold>(&text) {
            Ok(s)
                if s.model_sha256 == model_sha
                    && (threshold_range[0]..=threshold_range[1]).contains(&s.threshold) =>
            {
                threshold = s.threshold
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("ignoring {}: {e}", threshold_file(&cfg.state_dir).display()),
        }
    }
    let inspector =
        Inspector::new(engine, Duration::from_millis(cfg.inspect_window_ms), cfg.limits)
            .with_policy(cfg.busy_policy);
    Loaded { inspector, model_sha, threshold_range, mid, threshold, bundle }
}

/// Loads the model at start, rolling back to the store's `previous` bundle when `current` is refused;
/// the second value says what happened when it rolled back.
///
/// # Errors
/// The bundle is refused and there is nothing to roll back to (or that is refused too).
pub fn start(cfg: &StationConfig, trusted: &[PublicKey]) -> Result<(Loaded, Option<String>)> {
    let first = match load_engine(cfg, trusted, &cfg.model) {
        Ok(e) => return Ok((wrap(cfg, e), None)),
        Err(e) => e,
    };
    let store = Store::of_link(&cfg.model).filter(|s| {
        s.resolve(PREVIOUS).is_some() && s.resolve(PREVIOUS) != cfg.model.canonicalize().ok()
    });
    let Some(store) = store else { return Err(first) };
    let previous = store.root().join(PREVIOUS);
    let engine = load_engine(cfg, trusted, &previous)
        .with_context(|| format!("{first:#}; rolling back to {} failed too", previous.display()))?;
    let id = store.roll_back().with_context(|| format!("{first:#}; rolling back"))?;
    let note = format!("rolled back to bundle {id}: {first:#}");
    tracing::warn!("{note}");
    Ok((wrap(cfg, engine), Some(note)))
}

/// A reload in progress on a background thread.
#[derive(Default)]
pub struct Reloader {
    pending: Option<Receiver<Result<Engine, String>>>,
}

impl Reloader {
    /// Starts loading `cfg.model` again (a request while one is in progress is folded into it).
    pub fn request(&mut self, cfg: &StationConfig, trusted: &[PublicKey]) {
        if self.pending.is_some() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let (cfg, trusted) = (cfg.clone(), trusted.to_vec());
        let spawned = std::thread::Builder::new().name("reload".into()).spawn(move || {
            let r = load_engine(&cfg, &trusted, &cfg.model).map_err(|e| format!("{e:#}"));
            let _ = tx.send(r);
        });
        match spawned {
            Ok(_) => self.pending = Some(rx),
            Err(e) => tracing::error!("reload: cannot start the loader thread: {e}"),
        }
    }

    /// The finished reload, if any: the new model (swap it in now) or why it was refused (the old one
    /// stays); the text is the note for the status.
    pub fn poll(&mut self, cfg: &StationConfig) -> Option<(Option<Loaded>, String)> {
        let rx = self.pending.as_ref()?;
        let r = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Err("the loader thread stopped".into()),
        };
        self.pending = None;
        Some(match r {
            Ok(engine) => {
                let l = wrap(cfg, engine);
                let note = format!("reloaded {}", l.bundle.display());
                (Some(l), note)
            }
            Err(e) => (None, format!("reload refused, the running model stays: {e}")),
        })
    }
}
