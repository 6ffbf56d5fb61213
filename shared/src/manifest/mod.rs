//! The model bundle's sidecar `manifest.json`: what the model is, what input it expects (the
//! [`PreprocessConfig`]), how to read its outputs, its decision threshold, the model files with their
//! SHA-256, and where it came from.
//!
//! `host export` writes it with [`Manifest::save`]; `device` reads it with [`Manifest::load`], which
//! validates everything it can (schema version, sizes, normalisation, threshold, file presence and
//! hashes) and names the file in every error. Unknown JSON fields are ignored and optional sections
//! default, so older readers accept newer manifests of the same schema version.

mod checksum;
mod error;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::preprocess::{self, PreprocessConfig};

pub use checksum::{sha256_bytes, sha256_file};
pub use error::{Error, Result};

/// The manifest schema version this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The manifest's file name inside a bundle directory.
pub const FILE_NAME: &str = "manifest.json";

/// Largest model input or anomaly-map side a manifest may declare, pixels.
pub const MAX_SIDE: u32 = 8192;
/// Largest anomaly-map blur sigma a manifest may declare, pixels (GLASS uses 4).
pub const MAX_BLUR_SIGMA: f32 = 64.0;
/// Upper bound for a golden self-test tolerance (a larger one would accept any output).
pub const MAX_GOLDEN_TOLERANCE: f32 = 1e6;
/// Most outputs a manifest may declare.
pub const MAX_OUTPUTS: usize = 16;
/// Largest output dimension a manifest may declare.
pub const MAX_DIM: i64 = 1 << 20;

/// What kind of model the bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// GLASS anomaly detector: image score + anomaly map. JSON `"glass"`.
    Glass,
    /// Normal/abnormal (or multi-class) classifier, e.g. TinyViT. JSON `"classifier"`.
    Classifier,
    /// PatchCore memory bank: nearest-neighbour patch distances, image score = max, anomaly map.
    /// JSON `"patchcore"`.
    Patchcore,
}

impl ModelKind {
    /// True for the kinds whose outputs are a patch-score grid and an image score with an anomaly
    /// map (GLASS, PatchCore).
    pub fn has_map(self) -> bool {
        matches!(self, ModelKind::Glass | ModelKind::Patchcore)
    }

    /// The JSON spelling (`"glass"`, `"classifier"`, `"patchcore"`).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Glass => "glass",
            ModelKind::Classifier => "classifier",
            ModelKind::Patchcore => "patchcore",
        }
    }
}

/// One model output tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// The ONNX output name.
    pub name: String,
    /// Shape, `-1` for dynamic axes (batch).
    #[serde(default)]
    pub shape: Vec<i64>,
    /// What the values mean (`"image_score"`, `"anomaly_map"`, `"logits"`, ...).
    #[serde(default)]
    pub meaning: String,
}

/// How the raw model score is turned into the score compared with [`Threshold::value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreNormKind {
    /// The raw score. JSON `"none"`.
    #[default]
    None,
    /// `(s - lo) / (hi - lo)` (not clamped). JSON `"minmax"`.
    #[serde(rename = "minmax")]
    MinMax,
    /// `1 / (1 + exp(-s))`; `lo`/`hi` unused. JSON `"sigmoid"`.
    Sigmoid,
}

/// Score normalisation (see [`ScoreNormKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreNormalisation {
    /// Which normalisation.
    #[serde(default)]
    pub kind: ScoreNormKind,
    /// Raw score mapped to 0 by `minmax`.
    #[serde(default)]
    pub lo: f32,
    /// Raw score mapped to 1 by `minmax`.
    #[serde(default = "one")]
    pub hi: f32,
}

fn one() -> f32 {
    1.0
}

impl Default for ScoreNormalisation {
    fn default() -> Self {
        ScoreNormalisation { kind: ScoreNormKind::None, lo: 0.0, hi: 1.0 }
    }
}

impl ScoreNormalisation {
    /// Applies the normalisation to a raw model score.
    pub fn apply(&self, raw: f32) -> f32 {
        match self.kind {
            ScoreNormKind::None => raw,
            ScoreNormKind::MinMax => (raw - self.lo) / (self.hi - self.lo),
            ScoreNormKind::Sigmoid => 1.0 / (1.0 + (-raw).exp()),
        }
    }
}

/// The decision threshold on the normalised score: `score >= value` means abnormal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// The threshold.
    pub value: f32,
    /// How it was chosen, e.g. `"best_f1_validation"`.
    #[serde(default)]
    pub method: String,
    /// Free-form details (F1 at the threshold, split used, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// `[lo, hi]`: the thresholds a line-side command may set (export: the span of the validation
    /// scores; outside it a threshold passes or fails every validation part). Absent in older
    /// bundles: see [`Manifest::threshold_range`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f32; 2]>,
}

/// The anomaly map a GLASS model produces (after post-processing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyMapSpec {
    /// Map width (normally the model input width).
    pub width: u32,
    /// Map height (normally the model input height).
    pub height: u32,
    /// Gaussian blur sigma applied after upsampling (GLASS: 4); 0 for none.
    #[serde(default)]
    pub blur_sigma: f32,
    /// Map value shown as 0 in the wire thumbnail.
    #[serde(default)]
    pub lo: f32,
    /// Map value shown as 255 in the wire thumbnail.
    #[serde(default = "one")]
    pub hi: f32,
}

/// A file of the bundle, relative to the bundle directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path relative to the bundle directory (`/`-separated).
    pub path: String,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

impl FileRef {
    /// Describes `dir/path`, hashing it.
    pub fn from_file(dir: &Path, path: &str) -> Result<FileRef> {
        Ok(FileRef { path: path.to_owned(), sha256: sha256_file(&dir.join(path))? })
    }
}

/// The model files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Files {
    /// The fp32 ONNX model.
    pub fp32: FileRef,
    /// The int8 (quantised) ONNX model, if exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<FileRef>,
    /// `golden.npz` and what the self-test at load allows (absent in bundles from before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden: Option<GoldenRef>,
}

/// The golden vectors (`golden.npz`: preprocessed inputs with libtorch's outputs) and the largest
/// absolute difference the station's self-test at load accepts between them and the runtime's outputs
/// (every patch score / logit and the image score), per model file. `host export` measures the
/// difference on the export machine and sets each tolerance with room for other CPUs' kernels
/// (README.md, "Loading a bundle").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenRef {
    /// The file.
    #[serde(flatten)]
    pub file: FileRef,
    /// Tolerance for the fp32 model.
    pub fp32_tolerance: f32,
    /// Tolerance for the int8 model (absent: the int8 model is not self-tested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_tolerance: Option<f32>,
    /// Tolerance for the fp32 model run in half precision (the station's `f16` option; absent: the
    /// export did not measure it, and an f16 engine is not self-tested at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16_tolerance: Option<f32>,
}

/// Measured quality and speed of the exported files.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Validation image AUROC of the fp32 model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32_val_auroc: Option<f64>,
    /// Validation image AUROC of the int8 model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_val_auroc: Option<f64>,
    /// Mean latency of one fp32 inference in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp32_latency_ms: Option<f64>,
    /// Mean latency of one int8 inference in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8_latency_ms: Option<f64>,
    /// Validation image AUROC of the fp32 model run in half precision (`host export --f16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16_val_auroc: Option<f64>,
    /// Share of validation images whose f16 verdict equals the fp32 verdict (`host export --f16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f16_verdict_agreement: Option<f64>,
    /// Where the latency was measured (`"x86_64 host, tract, 1 thread"`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub latency_device: String,
    /// The model the station runs by default: `"int8"` only when it was faster than fp32 where the
    /// latency was measured and lost at most 0.005 validation AUROC; `"fp32"` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred: Option<String>,
}

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Provenance {
    /// Dataset name or root (`"mvtec_ad"`).
    #[serde(default)]
    pub dataset: String,
    /// Category (`"bottle"`).
    #[serde(default)]
    pub category: String,
    /// Seed of the train/valid/test split.
    #[serde(default)]
    pub split_seed: u64,
    /// Epochs trained.
    #[serde(default)]
    pub epochs: u32,
    /// Free-form metrics of the training run.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Git commit of the trainer.
    #[serde(default)]
    pub git_commit: String,
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created: String,
}

/// The model bundle's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Schema version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// GLASS or classifier.
    pub model_kind: ModelKind,
    /// Architecture (`"glass"`, `"tinyvit_21m_512"`, `"efficientnet_lite0"`).
    pub architecture: String,
    /// Backbone (`"wide_resnet50_2"`, `"efficientnet_lite0"`, ...).
    #[serde(default)]
    pub backbone: String,
    /// The input contract.
    pub input: PreprocessConfig,
    /// Class names of a classifier, by output index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Output tensors.
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
    /// Raw score -> normalised score.
    #[serde(default)]
    pub score_normalisation: ScoreNormalisation,
    /// Decision threshold on the normalised score.
    pub threshold: Threshold,
    /// The anomaly map (required for GLASS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_map: Option<AnomalyMapSpec>,
    /// Model files with hashes.
    pub files: Files,
    /// Measured metrics of the exported files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Where the model came from.
    #[serde(default)]
    pub provenance: Provenance,
}

impl Manifest {
    /// Reads `dir/manifest.json`, checks it ([`Manifest::parse`]) and verifies every listed model
    /// file exists with the listed SHA-256.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE_NAME);
        let text = fs::read_to_string(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                Error::MissingFile { path: path.clone() }
            } else {
                Error::Io { path: path.clone(), source }
            }
        })?;
        let manifest = Manifest::parse(&text, &path)?;
        manifest.verify_files(dir)?;
        Ok(manifest)
    }

    /// Parses manifest JSON (`path` is only used in errors) and validates its fields, without
    /// touching the model files. The schema version is checked before the rest is decoded, so a
    /// newer manifest reports [`Error::UnknownSchema`] rather than a decoding error.
    pub fn parse(json: &str, path: &Path) -> Result<Manifest> {
        let json_err = |source| Error::Json { path: path.to_owned(), source };
        let value: serde_json::Value = serde_json::from_str(json).map_err(json_err)?;
        match value.get("schema_version") {
            None => return Err(invalid(path, "schema_version", "missing")),
            Some(v) => match v.as_u64() {
                Some(found) if found == SCHEMA_VERSION as u64 => {}
                Some(found) => {
                    return Err(Error::UnknownSchema {
                        path: path.to_owned(),
                        found,
                        supported: SCHEMA_VERSION,
                    })
                }
                None => return Err(invalid(path, "schema_version", "not a non-negative integer")),
            },
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(json_err)?;
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// Checks field values (`path` is only used in errors): schema version, input config
    /// (positive sizes, channels 1 or 3, positive std, ...), score normalisation, finite
    /// threshold, anomaly map (required for GLASS), file entries (relative paths, 64 lowercase
    /// hex digits).
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(Error::UnknownSchema {
                path: path.to_owned(),
                found: self.schema_version as u64,
                supported: SCHEMA_VERSION,
            });
        }
        if self.architecture.trim().is_empty() {
            return Err(invalid(path, "architecture", "empty"));
        }
        // Upper bounds, checked before anything is sized from these numbers: a hostile or corrupt
        // manifest must be refused, never turned into a huge allocation.
        for (field, v) in [("input.width", self.input.width), ("input.height", self.input.height)] {
            if v > MAX_SIDE {
                return Err(invalid(path, field, "must be <= 8192"));
            }
        }
        if self.input.resize_shorter.is_some_and(|v| v > 2 * MAX_SIDE) {
            return Err(invalid(path, "input.resize_shorter", "must be <= 16384"));
        }
        if self.outputs.len() > MAX_OUTPUTS {
            return Err(invalid(path, "outputs", "at most 16 outputs"));
        }
        if let Err(e) = self.input.validate() {
            let (field, reason) = match e {
                preprocess::Error::InvalidConfig { field, reason } => (field, reason),
                _ => ("", "invalid"),
            };
            return Err(invalid(path, &format!("input.{field}"), reason));
        }
        let norm = &self.score_normalisation;
        if norm.kind == ScoreNormKind::MinMax
            && !(norm.lo.is_finite() && norm.hi.is_finite() && norm.hi > norm.lo)
        {
            return Err(invalid(path, "score_normalisation", "minmax needs finite lo < hi"));
        }
        if !self.threshold.value.is_finite() {
            return Err(invalid(path, "threshold.value", "must be finite"));
        }
        match (&self.anomaly_map, self.model_kind) {
            (None, kind) if kind.has_map() => {
                return Err(invalid(
                    path,
                    "anomaly_map",
                    if kind == ModelKind::Glass {
                        "required for model_kind \"glass\""
                    } else {
                        "required for model_kind \"patchcore\""
                    },
                ))
            }
            (Some(m), _) => {
                if m.width == 0 || m.height == 0 {
                    return Err(invalid(path, "anomaly_map", "width and height must be > 0"));
                }
                if m.width > MAX_SIDE || m.height > MAX_SIDE {
                    return Err(invalid(path, "anomaly_map", "width and height must be <= 8192"));
                }
                if !(m.blur_sigma.is_finite() && (0.0..=MAX_BLUR_SIGMA).contains(&m.blur_sigma)) {
                    return Err(invalid(
                        path,
                        "anomaly_map.blur_sigma",
                        "must be finite, >= 0 and <= 64 (pixels)",
                    ));
                }
                if !(m.lo.is_finite() && m.hi.is_finite() && m.hi > m.lo) {
                    return Err(invalid(path, "anomaly_map", "needs finite lo < hi"));
                }
            }
            (None, _) => {}
        }
        for (s, i) in self.outputs.iter().zip(0..) {
            if s.name.is_empty() {
                return Err(invalid(path, &format!("outputs[{i}].name"), "empty"));
            }
            if s.shape.len() > 8 || s.shape.iter().any(|d| *d > MAX_DIM) {
                return Err(invalid(
                    path,
                    &format!("outputs[{i}].shape"),
                    "at most 8 dimensions, each <= 1048576",
                ));
            }
            if s.shape.iter().any(|d| *d == 0 || *d < -1) {
                return Err(invalid(
                    path,
                    &format!("outputs[{i}].shape"),
                    "dimensions must be > 0 or -1",
                ));
            }
        }
        for (field, file) in self.file_refs() {
            check_file_ref(path, field, file)?;
        }
        if let Some(g) = &self.files.golden {
            let ok = |t: f32| t.is_finite() && t > 0.0 && t <= MAX_GOLDEN_TOLERANCE;
            if !ok(g.fp32_tolerance) {
                return Err(invalid(path, "files.golden.fp32_tolerance", "must be > 0 and <= 1e6"));
            }
            if g.int8_tolerance.is_some_and(|t| !ok(t)) {
                return Err(invalid(path, "files.golden.int8_tolerance", "must be > 0 and <= 1e6"));
            }
            if g.f16_tolerance.is_some_and(|t| !ok(t)) {
                return Err(invalid(path, "files.golden.f16_tolerance", "must be > 0 and <= 1e6"));
            }
        }
        Ok(())
    }

    /// Checks that every listed model file exists under `dir` and has the listed SHA-256.
    pub fn verify_files(&self, dir: &Path) -> Result<()> {
        for (_, file) in self.file_refs() {
            let path = dir.join(&file.path);
            if !path.is_file() {
                return Err(Error::MissingFile { path });
            }
            let actual = sha256_file(&path)?;
            if actual != file.sha256 {
                return Err(Error::ShaMismatch { path, expected: file.sha256.clone(), actual });
            }
        }
        Ok(())
    }

    /// Writes `dir/manifest.json` (pretty JSON; written to a temporary file then renamed, so a
    /// reader never sees half a manifest). Does not validate; call [`Manifest::validate`] first.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE_NAME);
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|source| Error::Json { path: path.clone(), source })?;
        json.push('\n');
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|source| Error::Io { path: tmp.clone(), source })?;
        fs::rename(&tmp, &path).map_err(|source| Error::Io { path: path.clone(), source })
    }

    /// The thresholds a line-side command may set: `threshold.range` when the export wrote one, else
    /// `[0, 1]` for models whose score is a probability (GLASS, classifier) and `[0, f32::MAX]` for
    /// distances (PatchCore).
    pub fn threshold_range(&self) -> [f32; 2] {
        self.threshold.range.unwrap_or(match self.model_kind {
            ModelKind::Patchcore => [0.0, f32::MAX],
            _ => [0.0, 1.0],
        })
    }

    /// The model id: the first 16 hex digits of the fp32 file's SHA-256.
    pub fn model_id(&self) -> String {
        self.files.fp32.sha256.chars().take(16).collect()
    }

    /// The 8-byte model id carried by wire messages: the first 8 bytes of the fp32 SHA-256.
    /// (A manifest that passed [`Manifest::validate`] has a well-formed hash; otherwise invalid hex
    /// digits read as 0.)
    pub fn model_id_bytes(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        let digits = self.files.fp32.sha256.as_bytes();
        for (i, byte) in id.iter_mut().enumerate() {
            let nibble =
                |j: usize| digits.get(j).and_then(|d| (*d as char).to_digit(16)).unwrap_or(0) as u8;
            *byte = (nibble(2 * i) << 4) | nibble(2 * i + 1);
        }
        id
    }

    /// Absolute-or-relative path of the fp32 model under `dir`.
    pub fn fp32_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.files.fp32.path)
    }

    /// Path of the int8 model under `dir`, if there is one.
    pub fn int8_path(&self, dir: &Path) -> Option<PathBuf> {
        self.files.int8.as_ref().map(|f| dir.join(&f.path))
    }

    /// Path of `golden.npz` under `dir`, if the manifest lists it.
    pub fn golden_path(&self, dir: &Path) -> Option<PathBuf> {
        self.files.golden.as_ref().map(|g| dir.join(&g.file.path))
    }

    fn file_refs(&self) -> impl Iterator<Item = (&'static str, &FileRef)> {
        core::iter::once(("files.fp32", &self.files.fp32))
            .chain(self.files.int8.as_ref().map(|f| ("files.int8", f)))
            .chain(self.files.golden.as_ref().map(|g| ("files.golden", &g.file)))
    }
}

fn invalid(path: &Path, field: &str, reason: &str) -> Error {
    Error::Invalid { path: path.to_owned(), field: field.to_owned(), reason: reason.to_owned() }
}

fn check_file_ref(path: &Path, field: &str, file: &FileRef) -> Result<()> {
    let p = Path::new(&file.path);
    if file.path.is_empty() {
        return Err(invalid(path, &format!("{field}.path"), "empty"));
    }
    if p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(invalid(
            path,
            &format!("{field}.path"),
            "must be relative to the bundle directory, without `..`",
        ));
    }
    let sha = &file.sha256;
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(invalid(path, &format!("{field}.sha256"), "must be 64 lowercase hex digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
