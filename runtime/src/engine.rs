//! The inference engine: the only module that touches tract's API.
//!
//! [`Engine::load_trusted`] reads a model bundle (`manifest.json` + one ONNX file, each read once:
//! signature, schema and sha256 are checked on the bytes that are then parsed), pins the input shape to
//! `1 x C x H x W` from the manifest's preprocessing contract, checks the outputs against the manifest,
//! optimises the graph, makes it runnable and runs the golden self-test ([`crate::golden`]; README.md,
//! "Loading a bundle"). [`Engine::infer_rgb`] runs one decoded RGB frame through
//! `shared::preprocess` (the same code the host trains and evaluates with), the network and, for GLASS,
//! `shared::preprocess::glass_postprocess` (bilinear upsample + Gaussian blur), and returns the score,
//! the anomaly map and the verdict.
//!
//! Threads: tract's `multithread-mm` executor (`threads` > 1), process-wide.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use shared::manifest::{self, Manifest, ModelKind};
use shared::preprocess::{self, ImageView, Preprocessor};
use tract_onnx::prelude::*;

use crate::contract::{
    check_input_shape, check_output_names, check_output_shapes, read_limited, read_verified,
    MAX_GOLDEN_BYTES, MAX_MANIFEST_BYTES, MAX_MODEL_BYTES,
};
use crate::golden::{Golden, SelfTest};

/// Which model file of a bundle runs, and in which arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `files.fp32`.
    Fp32,
    /// `files.int8`.
    Int8,
    /// `files.fp32` in half precision: tract's f32-to-f16 translation of the whole graph (weights and
    /// activations f16; the engine's input and outputs stay f32). Meant for aarch64 cores with FP16
    /// arithmetic (Raspberry Pi 5, Jetson Orin); elsewhere tract runs it on portable kernels, correct
    /// but slow. `docs/performance.md`, "Half precision".
    F16,
}

impl Precision {
    /// "fp32" / "int8" / "f16".
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::F16 => "f16",
        }
    }
}

pub use crate::error::EngineError;

/// One inference.
#[derive(Debug, Clone)]
pub struct Inference {
    /// The image score after the manifest's score normalisation (GLASS: max patch score).
    pub score: f32,
    /// The threshold in force.
    pub threshold: f32,
    /// `score >= threshold`: the part is rejected.
    pub fail: bool,
    /// GLASS patch-score grid (row-major), and its `(width, height)`.
    pub patch_scores: Vec<f32>,
    /// Grid size `(width, height)`; `(0, 0)` for classifiers.
    pub grid: (usize, usize),
    /// Anomaly map at model input size (row-major, `input_size()`), when computed.
    pub map: Option<Vec<f32>>,
    /// Stage timings in milliseconds.
    pub timings: Timings,
}

/// Per-stage times of one inference, milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timings {
    /// `shared::preprocess`.
    pub preprocess_ms: f64,
    /// The network.
    pub infer_ms: f64,
    /// Map upsample + blur.
    pub postprocess_ms: f64,
}

/// Raw network outputs for a preprocessed input (what golden tests compare).
#[derive(Debug, Clone)]
pub struct RawOutput {
    /// Image score, before score normalisation.
    pub image_score: f32,
    /// Patch scores (GLASS) or probabilities (classifier), row-major.
    pub patch_scores: Vec<f32>,
    /// Shape of `patch_scores` without the batch dimension.
    pub shape: Vec<usize>,
}

/// A loaded, optimised model bundle.
pub struct Engine {
    manifest: Manifest,
    dir: PathBuf,
    precision: Precision,
    model_path: PathBuf,
    pub(crate) plan: Arc<TypedRunnableModel>,
    /// Resampling tables for the last frame size (a station's camera keeps one size).
    preprocessor: std::sync::Mutex<Option<Preprocessor>>,
    /// Threshold in force (starts at the manifest's; the station may change it).
    threshold: f32,
    /// The golden self-test at load, when the bundle has one.
    self_test: Option<SelfTest>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.dir)
            .field("precision", &self.precision)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// The precision a bundle prefers (`metrics.preferred` = "int8" and an int8 file present), else fp32.
/// An unreadable manifest yields fp32; [`Engine::load`] then reports the problem.
pub fn preferred_precision(dir: &Path) -> Precision {
    match Manifest::load(dir) {
        Ok(m)
            if m.files.int8.is_some()
                && m.metrics.as_ref().and_then(|x| x.preferred.as_deref()) == Some("int8") =>
        {
            Precision::Int8
        }
        _ => Precision::Fp32,
    }
}

/// Sets tract's matrix-multiply executor to `threads` threads (1 = single-threaded). Process-wide.
pub fn set_threads(threads: usize) {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads > 1 {
        set_default_executor(Executor::multithread(threads));
    } else {
        set_default_executor(Executor::SingleThread);
    }
}

/// Reads public key files (`host keygen`'s `KEY.pub`).
///
/// # Errors
/// A file is unreadable or not a public key.
pub fn read_trusted_keys(files: &[PathBuf]) -> Result<Vec<PublicKey>, EngineError> {
    files.iter().map(|f| Ok(shared::signature::read_public_key(f)?)).collect()
}

/// Refuses a bundle that is not signed by one of `trusted` (nothing to check when `trusted` is empty;
/// see `shared::signature`). Call before anything reads the manifest.
///
/// # Errors
/// [`EngineError::Signature`] naming the reason: unsigned, untrusted key or changed manifest.
pub fn verify_bundle(dir: &Path, trusted: &[PublicKey]) -> Result<(), EngineError> {
    Ok(shared::signature::verify_bundle(dir, trusted)?)
}

/// An ed25519 public key that may sign bundles.
pub use shared::signature::PublicKey;

impl Engine {
    /// Loads `dir/manifest.json` and the model of the given precision (sha256-checked), with no
    /// signature check: [`Engine::load_trusted`] with no trusted keys.
    pub fn load(dir: &Path, precision: Precision) -> Result<Engine, EngineError> {
        Engine::load_trusted(dir, precision, &[])
    }

    /// Loads a bundle the way a station must: `manifest.json` is read once, its signature checked
    /// against `trusted` (none: unchecked) and parsed from those same bytes; the model file is read
    /// once and the bytes that were hashed are the bytes tract parses; the graph's input, output count,
    /// names and shapes are checked against the manifest; and when the manifest lists `golden.npz`
    /// with a tolerance for this model file, the self-test ([`crate::golden`]) runs before the engine
    /// is returned.
    ///
    /// # Errors
    /// Each refusal names the file and the reason: signature, manifest, hash, model, contract or
    /// [`EngineError::SelfTest`].
    pub fn load_trusted(
        dir: &Path,
        precision: Precision,
        trusted: &[PublicKey],
    ) -> Result<Engine, EngineError> {
        let manifest_path = dir.join(manifest::FILE_NAME);
        let bytes = read_limited(&manifest_path, MAX_MANIFEST_BYTES)?;
        shared::signature::verify_manifest_bytes(dir, &bytes, trusted)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| manifest::Error::Invalid {
            path: manifest_path.clone(),
            field: String::new(),
            reason: "not UTF-8 text".into(),
        })?;
        let manifest = Manifest::parse(text, &manifest_path)?;
        let file = match precision {
            Precision::Fp32 | Precision::F16 => &manifest.files.fp32,
            Precision::Int8 => manifest
                .files
                .int8
                .as_ref()
                .ok_or_else(|| EngineError::NoInt8 { path: manifest_path.clone() })?,
        };
        let model_path = dir.join(&file.path);
        let model_bytes = read_verified(dir, file, MAX_MODEL_BYTES)?;
        let inp = &manifest.input;
        let shape = [1usize, inp.channels as usize, inp.height as usize, inp.width as usize];
        let model_err =
            |e: TractError| EngineError::Model { path: model_path.clone(), msg: format!("{e:#}") };
        let contract = |msg: String| EngineError::Contract { path: model_path.clone(), msg };
        crate::kernels::configure();
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_read(&mut &model_bytes[..]).map_err(model_err)?;
        drop(model_bytes);
        check_input_shape(&proto, &shape).map_err(|msg| {
            contract(format!(
                "{msg} (manifest.json `input` says {}x{}x{})",
                shape[1], shape[2], shape[3]
            ))
        })?;
        check_output_names(&proto, &manifest).map_err(contract)?;
        let model = onnx
            .model_for_proto_model(&proto)
            .map_err(model_err)?
            .with_input_fact(0, f32::fact(shape).into())
            .map_err(model_err)?;
        let model = match precision {
            Precision::F16 => {
                use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
                use tract_onnx::tract_core::transform::ModelTransform;
                let typed = model.into_typed().map_err(model_err)?;
                // tract's Resize computes in f32 only: it stays f32, with casts around it.
                FloatPrecisionTranslator::with_filter(f32::datum_type(), f16::datum_type(), |n| {
                    n.op.name() != "Resize"
                })
                .transform_into(typed)
                .and_then(|m| m.into_optimized())
                .map_err(model_err)?
            }
            Precision::Fp32 | Precision::Int8 => model.into_optimized().map_err(model_err)?,
        };
        check_output_shapes(&model, &manifest).map_err(contract)?;
        let plan = model.into_runnable().map_err(model_err)?;
        let threshold = manifest.threshold.value;
        let mut engine = Engine {
            manifest,
            dir: dir.to_path_buf(),
            precision,
            model_path,
            plan,
            preprocessor: std::sync::Mutex::new(None),
            threshold,
            self_test: None,
        };
        engine.self_test = engine.run_self_test()?;
        Ok(engine)
    }

    /// The golden self-test at load: `None` when the manifest lists no golden file or no tolerance
    /// for this model file.
    fn run_self_test(&self) -> Result<Option<SelfTest>, EngineError> {
        let Some(g) = &self.manifest.files.golden else { return Ok(None) };
        let tolerance = match self.precision {
            Precision::Fp32 => Some(g.fp32_tolerance),
            Precision::Int8 => g.int8_tolerance,
            Precision::F16 => g.f16_tolerance,
        };
        let Some(tolerance) = tolerance else { return Ok(None) };
        let path = self.dir.join(&g.file.path);
        let bytes = read_verified(&self.dir, &g.file, MAX_GOLDEN_BYTES)?;
        let inp = &self.manifest.input;
        let input_len = inp.channels as usize * inp.height as usize * inp.width as usize;
        let golden = Golden::parse(&bytes, self.manifest.model_kind, input_len)
            .map_err(|msg| EngineError::Golden { path: path.clone(), msg })?;
        let max_difference = self.golden_difference(&golden)?;
        if max_difference.is_nan() || max_difference > tolerance {
            return Err(EngineError::SelfTest {
                path,
                precision: self.precision.name(),
                max_difference,
                tolerance,
            });
        }
        Ok(Some(SelfTest { images: golden.inputs.len(), max_difference, tolerance }))
    }

    /// Largest difference between this engine's outputs and the golden file's (see
    /// [`Golden::max_difference`]).
    ///
    /// # Errors
    /// The engine fails on a golden input or gives another number of values.
    pub fn golden_difference(&self, golden: &Golden) -> Result<f32, EngineError> {
        golden.max_difference(|x| {
            let raw = self.run_preprocessed(x)?;
            Ok((raw.patch_scores, raw.image_score))
        })
    }

    /// What the golden self-test at load measured (`None`: the bundle has no golden tolerance for
    /// this model file).
    pub fn self_test(&self) -> Option<SelfTest> {
        self.self_test
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which model file runs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The ONNX file in use.
    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Threshold in force.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Changes the threshold (must be finite).
    pub fn set_threshold(&mut self, t: f32) -> bool {
        if t.is_finite() {
            self.threshold = t;
            true
        } else {
            false
        }
    }

    /// Model input `(width, height)`.
    pub fn input_size(&self) -> (usize, usize) {
        (self.manifest.input.width as usize, self.manifest.input.height as usize)
    }

    /// Runs the network on one preprocessed input (`C*H*W` floats, CHW).
    pub fn run_preprocessed(&self, input: &[f32]) -> Result<RawOutput, EngineError> {
        let inp = &self.manifest.input;
        let shape = [1usize, inp.channels as usize, inp.height as usize, inp.width as usize];
        if input.len() != shape.iter().product::<usize>() {
            return Err(EngineError::Run(format!(
                "input has {} values, the model takes {:?}",
                input.len(),
                shape
            )));
        }
        let run_err = |e: TractError| EngineError::Run(format!("{e:#}"));
        let mut t = Tensor::from_shape(&shape, input).map_err(run_err)?;
        if self.precision == Precision::F16 {
            t = t.cast_to::<f16>().map_err(run_err)?.into_owned();
        }
        // A panic inside the runtime must not take the station down: it becomes an error (fail-safe).
        let plan = &self.plan;
        let out =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(tvec!(t.into()))))
                .map_err(|p| {
                    let what = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    EngineError::Run(format!("the runtime panicked: {what}"))
                })?
                .map_err(|e| EngineError::Run(format!("{e:#}")))?;
        let view = |i: usize| -> Result<(Vec<f32>, Vec<usize>), EngineError> {
            // f16 outputs come back as f32 (a borrow when they already are).
            let o = out[i].cast_to::<f32>().map_err(run_err)?;
            let a = o.to_plain_array_view::<f32>().map_err(run_err)?;
            Ok((a.iter().copied().collect(), a.shape().to_vec()))
        };
        match self.manifest.model_kind {
            ModelKind::Glass | ModelKind::Patchcore => {
                let (ps, shape) = view(0)?;
                let (img, _) = view(1)?;
                let image_score =
                    *img.first().ok_or_else(|| EngineError::Run("empty image_score".into()))?;
                Ok(RawOutput { image_score, patch_scores: ps, shape: tail(&shape) })
            }
            ModelKind::Classifier => {
                let (logits, shape) = view(0)?;
                let (prob, _) = view(1)?;
                let image_score =
                    *prob.first().ok_or_else(|| EngineError::Run("empty probability".into()))?;
                Ok(RawOutput { image_score, patch_scores: logits, shape: tail(&shape) })
            }
        }
    }

    /// Preprocesses an RGB8 frame (`width * height * 3` bytes), runs the model and, when `with_map`,
    /// post-processes the GLASS map to input size.
    pub fn infer_rgb(
        &self,
        rgb: &[u8],
        width: usize,
        height: usize,
        with_map: bool,
    ) -> Result<Inference, EngineError> {
        let t0 = Instant::now();
        let view = ImageView::rgb(rgb, width, height).map_err(EngineError::Preprocess)?;
        let x = {
            // A poisoned lock only means another frame panicked mid-preprocess; the tables are rebuilt.
            let mut slot = self.preprocessor.lock().unwrap_or_else(|p| p.into_inner());
            let fits = slot.as_ref().is_some_and(|p| {
                p.geometry().src_width == width && p.geometry().src_height == height
            });
            if !fits {
                *slot = Some(
                    Preprocessor::new(width, height, &self.manifest.input)
                        .map_err(EngineError::Preprocess)?,
                );
            }
            match slot.as_mut() {
                Some(pp) => pp.run_vec(&view).map_err(EngineError::Preprocess)?,
                None => return Err(EngineError::Run("no preprocessor".into())),
            }
        };
        let t1 = Instant::now();
        let raw = self.run_preprocessed(&x)?;
        let t2 = Instant::now();
        let score = self.manifest.score_normalisation.apply(raw.image_score);
        let (grid, map) = match (self.manifest.model_kind, &self.manifest.anomaly_map) {
            (kind, Some(spec)) if kind.has_map() && raw.shape.len() == 2 => {
                let (gh, gw) = (raw.shape[0], raw.shape[1]);
                let map = if with_map {
                    Some(
                        preprocess::glass_postprocess(
                            &raw.patch_scores,
                            gw,
                            gh,
                            spec.width as usize,
                            spec.height as usize,
                            spec.blur_sigma,
                        )
                        .map_err(EngineError::Preprocess)?,
                    )
                } else {
                    None
                };
                ((gw, gh), map)
            }
            _ => ((0, 0), None),
        };
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        Ok(Inference {
            score,
            threshold: self.threshold,
            // Fail-safe: a NaN score (or threshold) rejects the part.
            fail: score.is_nan() || score >= self.threshold || self.threshold.is_nan(),
            patch_scores: raw.patch_scores,
            grid,
            map,
            timings: Timings {
                preprocess_ms: ms(t0, t1),
                infer_ms: ms(t1, t2),
                postprocess_ms: ms(t2, t3),
            },
        })
    }
}

/// A shape without its batch dimension (empty for a scalar; `contract::check_output_shapes` refuses those
/// at load).
fn tail(shape: &[usize]) -> Vec<usize> {
    shape.get(1..).map(<[usize]>::to_vec).unwrap_or_default()
}

pub use crate::decode::decode_file;

/// Running min/max of named tensors of an ONNX model over a set of inputs, for int8 calibration
/// (`host export --int8`). `names` are ONNX tensor names; `inputs` yields preprocessed inputs of
/// `shape` (CHW floats, batch 1).
pub fn tensor_ranges(
    model_path: &Path,
    shape: [usize; 4],
    names: &[String],
    inputs: &mut dyn Iterator<Item = Vec<f32>>,
) -> Result<Vec<(f32, f32)>, EngineError> {
    let err = |e: TractError| EngineError::Model {
        path: model_path.to_path_buf(),
        msg: format!("{e:#}"),
    };
    crate::kernels::configure();
    let mut model = tract_onnx::onnx()
        .model_for_path(model_path)
        .map_err(err)?
        .with_input_fact(0, f32::fact(shape).into())
        .map_err(err)?;
    model.select_outputs_by_name(names).map_err(err)?;
    let plan = model.into_optimized().map_err(err)?.into_runnable().map_err(err)?;
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); names.len()];
    for x in inputs {
        let t = Tensor::from_shape(&shape, &x).map_err(|e| EngineError::Run(format!("{e:#}")))?;
        let out = plan.run(tvec!(t.into())).map_err(|e| EngineError::Run(format!("{e:#}")))?;
        for (r, o) in ranges.iter_mut().zip(out.iter()) {
            let a =
                o.to_plain_array_view::<f32>().map_err(|e| EngineError::Run(format!("{e:#}")))?;
            for &v in a.iter() {
                if v.is_finite() {
                    r.0 = r.0.min(v);
                    r.1 = r.1.max(v);
                }
            }
        }
    }
    Ok(ranges)
}
