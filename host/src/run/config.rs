//! A run's `config.json`: one record per model kind (the resolved settings, the data, the split seed
//! and the input contract), [`RunConfig`] over them, and loading the trained model a run directory
//! holds.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::manifest::ModelKind;
use shared::preprocess::PreprocessConfig;
use tch::Device;

use super::RunDir;
use crate::models::classifier::{Classifier, ClassifierConfig};
use crate::models::glass::distribution::Judgement;
use crate::models::glass::{Distribution, Glass, GlassConfig};
use crate::models::patchcore::{PatchCore, PatchCoreConfig};
use crate::{Error, Result};

/// The resolved configuration a GLASS run writes to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GlassRunConfig {
    /// Always [`ModelKind::Glass`] (`"glass"`).
    pub model: ModelKind,
    /// Hyper-parameters.
    pub glass: GlassConfig,
    /// Category folder.
    pub data: PathBuf,
    /// Category name.
    pub category: String,
    /// Split seed (= `glass.seed`).
    pub split_seed: u64,
    /// Backbone weights used.
    pub backbone_weights: PathBuf,
    /// Texture folder, if any.
    pub textures: Option<PathBuf>,
    /// Foreground-mask folder, if any.
    pub fg_masks: Option<PathBuf>,
    /// Manifold or hypersphere, after `auto` was resolved.
    pub distribution: Distribution,
    /// The spectral judge's numbers when `auto` decided.
    pub judgement: Option<Judgement>,
    /// Whether LAS blended gray textures (`glass.texture_colour` resolved; false in older runs).
    #[serde(default)]
    pub gray_textures: bool,
    /// The model input contract (also the bundle manifest's `input`).
    pub preprocess: PreprocessConfig,
}

/// Size and cost of the memory bank (`config.json` `bank`; the manifest repeats them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BankFacts {
    /// Bank entries kept.
    pub size: usize,
    /// Training patches it was chosen from.
    pub train_patches: usize,
    /// Feature dims.
    pub dims: i64,
    /// Bank size at fp32, bytes.
    pub bytes: usize,
    /// Nearest-neighbour search per frame: 2 * dims * size * patches, GFLOP.
    pub search_gflop: f64,
    /// Seconds spent on backbone features of the training images.
    pub feature_seconds: f64,
    /// Seconds spent choosing the coreset.
    pub coreset_seconds: f64,
}

/// The resolved configuration a PatchCore run writes to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchCoreRunConfig {
    /// Always [`ModelKind::Patchcore`] (`"patchcore"`).
    pub model: ModelKind,
    /// Settings.
    pub patchcore: PatchCoreConfig,
    /// Category folder.
    pub data: PathBuf,
    /// Category name.
    pub category: String,
    /// Split seed (= `patchcore.seed`).
    pub split_seed: u64,
    /// Backbone weights used.
    pub backbone_weights: PathBuf,
    /// The model input contract (also the bundle manifest's `input`).
    pub preprocess: PreprocessConfig,
    /// The bank's size and cost.
    pub bank: BankFacts,
    /// Distances mapped to [0, 1] for pixel metrics, strips and the station's map (`lo`, `hi`): the
    /// smallest and largest patch distance on the validation split.
    pub map_range: [f32; 2],
}

/// `config.json` of a classifier run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierRunConfig {
    /// Always [`ModelKind::Classifier`] (`"classifier"`).
    pub model: ModelKind,
    /// Hyper-parameters.
    pub classifier: ClassifierConfig,
    /// Category folder.
    pub data: PathBuf,
    /// Category name.
    pub category: String,
    /// Split seed.
    pub split_seed: u64,
    /// Defect types allowed in train/valid (`None`: all).
    pub train_defects: Option<Vec<String>>,
    /// Defect types that were in training.
    pub seen_defects: Vec<String>,
    /// Pretrained weights used (`None`: random init).
    pub weights: Option<PathBuf>,
    /// The model input contract.
    pub preprocess: PreprocessConfig,
}

/// A run's configuration, by model kind (`config.json`'s `model` field says which).
#[derive(Debug, Clone)]
pub enum RunConfig {
    /// A GLASS run.
    Glass(GlassRunConfig),
    /// A PatchCore memory bank.
    Patchcore(PatchCoreRunConfig),
    /// A classifier run.
    Classifier(ClassifierRunConfig),
}

/// A run's trained model, ready for scoring.
pub enum Model {
    /// GLASS (boxed, as the classifier: both are large beside PatchCore).
    Glass(Box<Glass>),
    /// PatchCore.
    Patchcore(PatchCore),
    /// A classifier (boxed: its layer table is large beside the others).
    Classifier(Box<Classifier>),
}

impl RunConfig {
    /// Reads a run directory's `config.json`, naming the file and the field when it is not a run
    /// configuration.
    pub fn read(rd: &RunDir) -> Result<Self> {
        let path = rd.config();
        let v: serde_json::Value = super::read_json(&path)?;
        let kind = model_kind(&path, &v)?;
        let bad = |e: serde_json::Error| Error::Dataset {
            path: path.clone(),
            msg: format!("not a {} run configuration: {e}", kind.name()),
        };
        Ok(match kind {
            ModelKind::Glass => RunConfig::Glass(serde_json::from_value(v).map_err(bad)?),
            ModelKind::Patchcore => RunConfig::Patchcore(serde_json::from_value(v).map_err(bad)?),
            ModelKind::Classifier => RunConfig::Classifier(serde_json::from_value(v).map_err(bad)?),
        })
    }

    /// The model kind.
    pub fn kind(&self) -> ModelKind {
        match self {
            RunConfig::Glass(_) => ModelKind::Glass,
            RunConfig::Patchcore(_) => ModelKind::Patchcore,
            RunConfig::Classifier(_) => ModelKind::Classifier,
        }
    }

    /// The model input contract.
    pub fn preprocess(&self) -> &PreprocessConfig {
        match self {
            RunConfig::Glass(c) => &c.preprocess,
            RunConfig::Patchcore(c) => &c.preprocess,
            RunConfig::Classifier(c) => &c.preprocess,
        }
    }

    /// The trained model, its weights read from `ckpt` (a run directory's best or last checkpoint).
    pub fn load_model(&self, ckpt: &Path, device: Device) -> Result<Model> {
        Ok(match self {
            RunConfig::Glass(c) => Model::Glass(Box::new(c.load_model(ckpt, device)?)),
            RunConfig::Patchcore(c) => Model::Patchcore(c.load_model(ckpt, device)?),
            RunConfig::Classifier(c) => Model::Classifier(Box::new(c.load_model(ckpt, device)?)),
        })
    }
}

/// The `model` field of a `config.json` as a [`ModelKind`].
fn model_kind(path: &Path, v: &serde_json::Value) -> Result<ModelKind> {
    let Some(m) = v.get("model") else {
        return Err(Error::Config(format!("{}: no `model` field", path.display())));
    };
    serde_json::from_value(m.clone()).map_err(|_| {
        Error::Config(format!(
            "{}: unknown model `{}` (expected glass, patchcore or classifier)",
            path.display(),
            m.as_str().unwrap_or("?")
        ))
    })
}

/// The model kind of the run directory `dir` (`config.json`'s `model`), or why it has none.
pub fn run_kind(dir: &Path) -> Result<ModelKind> {
    let path = dir.join("config.json");
    let v: serde_json::Value = super::read_json(&path)?;
    model_kind(&path, &v)
}

impl GlassRunConfig {
    /// A model ready for scoring: built, backbone loaded, trainable parts loaded from `ckpt`.
    pub fn load_model(&self, ckpt: &Path, device: Device) -> Result<Glass> {
        let mut g = Glass::new(self.glass.clone(), device)?;
        g.load_backbone(&self.backbone_weights)?;
        g.load(ckpt)?;
        Ok(g)
    }
}

impl PatchCoreRunConfig {
    /// A model ready for scoring: backbone loaded, bank loaded from `ckpt`.
    pub fn load_model(&self, ckpt: &Path, device: Device) -> Result<PatchCore> {
        let mut m = PatchCore::new(self.patchcore.clone(), &self.backbone_weights, device)?;
        m.load(ckpt)?;
        Ok(m)
    }
}

impl ClassifierRunConfig {
    /// Loads a classifier run's model from `ckpt`.
    pub fn load_model(&self, ckpt: &Path, device: Device) -> Result<Classifier> {
        let mut c = Classifier::new(self.classifier.arch, device);
        c.load(ckpt)?;
        Ok(c)
    }
}
