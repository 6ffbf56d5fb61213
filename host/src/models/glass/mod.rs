//! GLASS: "A Unified Anomaly Synthesis Strategy with Gradient Ascent for Industrial Anomaly Detection and
//! Localization", Chen et al., ECCV 2024 (arXiv 2407.09359). Reference: github.com/cqylunlun/GLASS
//! (`glass.py`, `model.py`, `common.py`), described step by step in `docs/glass.md`.
//!
//! Inference path: image `[B,3,H,W]` -> frozen backbone (stride 8 and 16) -> 3x3 aggregation
//! ([`aggregator`]) `[B,d,H/8,W/8]` -> [`projection::Projection`] -> [`discriminator::Discriminator`] ->
//! patch scores `[B,H/8,W/8]` in (0,1); image score = max patch score; pixel map = bilinear upsample to
//! `H x W` + Gaussian blur σ = 4 (done by `shared::preprocess` so host and device agree).
//!
//! Deviations from the official code (each is a documented choice, not an accident):
//! - Model selection early-stops on the **validation** split's image AUROC (the experiment protocol,
//!   docs/experiment-protocol.md) instead of picking the best epoch on the test set (official code,
//!   issue #40). See docs/glass.md §10 for every deviation.
//! - Presets other than `paper` change dimensions and cost (see [`GlassConfig::edge`]).
//! - Without `--textures` the LAS texture source is procedural ([`textures`]).
//!
//! `cargo run -p host -- train glass --data DIR/CATEGORY --out RUN --preset edge`
pub mod aggregator;
pub mod discriminator;
pub mod distribution;
mod init;
pub mod loss;
pub mod perlin;
pub mod projection;
pub mod textures;

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::models::backbone::{self, Backbone, BackboneKind};
pub use discriminator::Discriminator;
pub use projection::Projection;

/// How GAS truncates the synthetic features (docs/glass.md §3b/§4; the official flag is `svd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// `svd = 0`: keep `‖G − T‖` within [0.5, 1.0]; for texture-like classes.
    Manifold,
    /// `svd = 1`: push features out to [r, 2r] from the per-position centre; LAS rows to [2r, 4r].
    Hypersphere,
    /// Decide per category with the spectral judge on the mean training image (official `distribution=1`).
    Auto,
}

/// The colour space of the textures Local Anomaly Synthesis blends into training images
/// (docs/glass-edge.md, ablation 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TextureColour {
    /// The textures as drawn (random colours; GLASS's own ops turn a third of them gray).
    Colour,
    /// Every texture turned gray (luma) before blending.
    Gray,
    /// Gray when every training image is gray (R = G = B), colour otherwise: a synthetic defect in a
    /// colour a gray camera cannot produce is one the discriminator learns from colour alone.
    Auto,
}

/// Resolved hyper-parameters of a GLASS run. Every field has a serde default so older configs load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GlassConfig {
    /// Preset this config started from.
    #[serde(default = "d_preset")]
    pub preset: String,
    /// Feature extractor.
    #[serde(default = "d_backbone")]
    pub backbone: BackboneKind,
    /// Square input size in pixels (multiple of 32).
    #[serde(default = "d_image_size")]
    pub image_size: i64,
    /// Dims each backbone level contributes to the patch feature (stride 8, stride 16).
    #[serde(default = "d_embed_dims")]
    pub embed_dims: [i64; 2],
    /// Hidden width of the discriminator.
    #[serde(default = "d_dsc_hidden")]
    pub dsc_hidden: i64,
    /// Std of the Gaussian noise that starts GAS.
    #[serde(default = "d_noise")]
    pub noise: f64,
    /// Gradient-ascent steps per iteration (`step`).
    #[serde(default = "d_ascent_steps")]
    pub ascent_steps: usize,
    /// Size of one normalised ascent step (hard-coded 0.001 upstream).
    #[serde(default = "d_ascent_lr")]
    pub ascent_lr: f64,
    /// Truncate every this many ascent steps (hard-coded 5 upstream).
    #[serde(default = "d_truncate_every")]
    pub truncate_every: usize,
    /// Quantile of distances to the centre that defines r_t (`radius`).
    #[serde(default = "d_radius")]
    pub radius: f64,
    /// Hard-mining quantile of the LAS focal loss (`p`).
    #[serde(default = "d_mining")]
    pub mining: f64,
    /// Manifold, hypersphere, or decide with the spectral judge.
    #[serde(default = "d_distribution")]
    pub distribution: Distribution,
    /// Projection optimiser: Adam lr and (coupled) weight decay.
    #[serde(default = "d_lr_proj")]
    pub lr_proj: f64,
    /// Projection weight decay.
    #[serde(default = "d_wd_proj")]
    pub wd_proj: f64,
    /// Discriminator optimiser: AdamW lr.
    #[serde(default = "d_lr_dsc")]
    pub lr_dsc: f64,
    /// Discriminator AdamW weight decay.
    #[serde(default = "d_wd_dsc")]
    pub wd_dsc: f64,
    /// Images per iteration.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Stop an epoch once more than this many samples were seen (`limit`).
    #[serde(default = "d_limit")]
    pub limit: usize,
    /// Fraction of patch positions used per iteration (1 = all, as upstream). Positions inside LAS masks
    /// are always kept.
    #[serde(default = "d_one")]
    pub patch_fraction: f64,
    /// Keep the clean training images' backbone features in memory (the backbone is frozen, so they
    /// never change). Off for `paper` (25 MB per 512 px image), on for `edge`/`tiny`.
    #[serde(default)]
    pub cache_features: bool,
    /// At most this many epochs.
    #[serde(default = "d_max_epochs")]
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation image AUROC.
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Gaussian sigma of the pixel map, in input pixels.
    #[serde(default = "d_blur")]
    pub blur_sigma: f32,
    /// Colour of the LAS textures (runs written before this field existed used `colour`).
    #[serde(default = "d_texture_colour")]
    pub texture_colour: TextureColour,
    /// Target mean per-dimension std of the aggregated features, measured on training normals at the
    /// start of training; `None` (paper) keeps the backbone's own scale. GAS noise (σ) and the manifold
    /// radii [0.5, 1.0] are absolute lengths, so they only mean "just outside the normal features" at
    /// one feature scale (see [`GlassConfig::edge`]).
    #[serde(default)]
    pub feature_std: Option<f64>,
    /// Aggregated features are divided by this before the projection (resolved from `feature_std` at
    /// training start; 1 = unchanged). Export folds it into the projection weights.
    #[serde(default = "d_one")]
    pub feature_scale: f64,
    /// Input normalisation mean (RGB).
    #[serde(default = "d_mean")]
    pub mean: [f32; 3],
    /// Input normalisation std (RGB).
    #[serde(default = "d_std")]
    pub std: [f32; 3],
    /// Split seed and training seed.
    #[serde(default)]
    pub seed: u64,
}

fn d_preset() -> String {
    "paper".into()
}
fn d_backbone() -> BackboneKind {
    BackboneKind::WideResnet50_2
}
fn d_image_size() -> i64 {
    512
}
fn d_embed_dims() -> [i64; 2] {
    [768, 768]
}
fn d_dsc_hidden() -> i64 {
    1024
}
fn d_noise() -> f64 {
    0.015
}
fn d_ascent_steps() -> usize {
    20
}
fn d_ascent_lr() -> f64 {
    0.001
}
fn d_truncate_every() -> usize {
    5
}
fn d_radius() -> f64 {
    0.75
}
fn d_mining() -> f64 {
    0.5
}
fn d_distribution() -> Distribution {
    Distribution::Auto
}
fn d_lr_proj() -> f64 {
    1e-4
}
fn d_wd_proj() -> f64 {
    1e-5
}
fn d_lr_dsc() -> f64 {
    2e-4
}
fn d_wd_dsc() -> f64 {
    0.01
}
fn d_batch() -> usize {
    8
}
fn d_limit() -> usize {
    392
}
fn d_one() -> f64 {
    1.0
}
fn d_max_epochs() -> usize {
    200
}
fn d_patience() -> usize {
    30
}
fn d_texture_colour() -> TextureColour {
    TextureColour::Colour
}
fn d_blur() -> f32 {
    4.0
}
fn d_mean() -> [f32; 3] {
    [0.485, 0.456, 0.406]
}
fn d_std() -> [f32; 3] {
    [0.229, 0.224, 0.225]
}

impl GlassConfig {
    /// The paper's setting (docs/glass.md): WRN50-2 layer2+layer3, embed 1536 (768 per level), 20 ascent
    /// steps, batch 8, at the experiment protocol's 512 px; early stopping on validation (patience 30,
    /// <= 200 epochs).
    pub fn paper() -> Self {
        let (mean, std) = backbone::default_mean_std(BackboneKind::WideResnet50_2);
        GlassConfig {
            preset: "paper".into(),
            backbone: BackboneKind::WideResnet50_2,
            image_size: 512,
            embed_dims: [768, 768],
            dsc_hidden: 1024,
            noise: 0.015,
            ascent_steps: 20,
            ascent_lr: 0.001,
            truncate_every: 5,
            radius: 0.75,
            mining: 0.5,
            distribution: Distribution::Auto,
            lr_proj: 1e-4,
            wd_proj: 1e-5,
            lr_dsc: 2e-4,
            wd_dsc: 0.01,
            batch_size: 8,
            limit: 392,
            patch_fraction: 1.0,
            cache_features: false,
            feature_std: None,
            feature_scale: 1.0,
            max_epochs: 200,
            patience: 30,
            blur_sigma: 4.0,
            texture_colour: TextureColour::Colour,
            mean,
            std,
            seed: 0,
        }
    }

    /// The edge preset: trains one MVTec category at 512 px on a 2-core CPU within an hour, and runs on
    /// a Raspberry Pi. Deviations from the paper, and why:
    /// - backbone EfficientNet-Lite0 (stride 8: 40 ch, stride 16: 112 ch) with its native input scaling
    ///   (x·255 − 127)/128, instead of WRN50-2: ~20x cheaper and int8-friendly (ReLU6, no SE);
    /// - embed dims = one group per channel's 3x3 window (40 + 112 = 152; the same aggregation rule);
    /// - discriminator hidden 256 instead of 1024;
    /// - 5 ascent steps (one truncation, after the last) instead of 20, and a quarter of the patch positions per
    ///   iteration (all LAS-anomalous ones kept), which cuts the dominant GAS cost ~16x;
    /// - features rescaled to a mean per-dimension std of 0.05 (`feature_std`; the scale is measured on
    ///   training normals and folded into the exported projection). GAS works with absolute lengths (noise
    ///   σ = 0.015, manifold radii [0.5, 1]); Lite0's raw features have per-dimension std 3.6 and a
    ///   normal patch lies ~10 from its nearest training patch (defect patches ~35-40, measured on
    ///   bottle), so a 0.5 perturbation stayed inside the normal cloud: the discriminator could not tell
    ///   GAS features from true ones (BCE stuck at 2·ln 2) and only LAS trained it. At std 0.05 the
    ///   radius is ~4 nearest-neighbour distances, about where real defects sit. Measured on bottle
    ///   (4 epochs each): validation pixel AUROC 0.894 / 0.923 / 0.937 / 0.956 vs 0.877 / 0.898 / 0.904 /
    ///   0.912 unscaled (which reached 0.923 only at epoch 19); std 0.2 gave 0.880 / 0.904 (too close);
    /// - its own epoch budget: at most 30 epochs, patience 10 (~86 s per MVTec epoch on 2 cores);
    /// - `distribution` manifold instead of the spectral judge (`auto`): the hypersphere truncation
    ///   pushes rows out from a *per-position* centre, which a position-blind discriminator can only
    ///   follow when the features encode position (WRN's 1536 dims do, Lite0's 152 barely). Measured on
    ///   bottle (judge: hypersphere): validation image AUROC 0.990 -> 0.974 and pixel AUROC 0.849 ->
    ///   0.772 over five epochs with hypersphere, while manifold stays at 0.990-0.994 and improves the
    ///   maps. `--distribution auto|hypersphere` still selects the paper's behaviour;
    /// - map blur σ 7.1 px at 512 px: the reference's 4 px at 288 px, scaled to the input. It raised the
    ///   validation pixel AUROC on all six full-setting runs measured (bottle and magnetic tile, seeds
    ///   0-2; ablation 5 in docs/glass-edge.md) and leaves the image score alone (that is the max of the
    ///   raw patch scores). At another `--image-size` it stays 7.1 px unless `--blur-sigma` says
    ///   otherwise (4 × S / 288 keeps the reference's proportion).
    pub fn edge() -> Self {
        let (mean, std) = backbone::default_mean_std(BackboneKind::EfficientnetLite0);
        GlassConfig {
            preset: "edge".into(),
            backbone: BackboneKind::EfficientnetLite0,
            embed_dims: [40, 112],
            dsc_hidden: 256,
            ascent_steps: 5,
            truncate_every: 5,
            patch_fraction: 0.25,
            cache_features: true,
            max_epochs: 30,
            patience: 10,
            distribution: Distribution::Manifold,
            feature_std: Some(0.05),
            blur_sigma: 7.1,
            mean,
            std,
            ..Self::paper()
        }
    }

    /// The test preset: the edge model at 160 px with a short budget (minutes on 2 cores). Learning
    /// rates are 3x the paper's so that it converges within 40 short epochs. Feature std 0.1 instead of
    /// edge's 0.05: on the CI category (synthetic weave, 192 px, seed 0; validation AUROC 1.0 for both)
    /// test image AUROC was 0.920 at 0.05, 0.987 at 0.1, 0.967 at 0.2 and 0.993 unscaled. That choice
    /// was made after seeing those test numbers, so that category judges nothing: the CI gate
    /// (`host/tests/glass_tiny.rs`) runs on weave generated with other seeds, its floor set from their
    /// spread. Single tiny runs on a 26-image test split move by several points with this knob.
    pub fn tiny() -> Self {
        GlassConfig {
            preset: "tiny".into(),
            image_size: 160,
            dsc_hidden: 128,
            lr_proj: 3e-4,
            lr_dsc: 6e-4,
            max_epochs: 40,
            patience: 20,
            patch_fraction: 1.0,
            feature_std: Some(0.1),
            // The CI gates' floors were measured with the 4 px blur; 7.1 is edge's 512 px setting.
            blur_sigma: 4.0,
            ..Self::edge()
        }
    }

    /// Named preset.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "paper" => Some(Self::paper()),
            "edge" => Some(Self::edge()),
            "tiny" => Some(Self::tiny()),
            _ => None,
        }
    }

    /// Total patch-feature dims.
    pub fn embed_dim(&self) -> i64 {
        self.embed_dims[0] + self.embed_dims[1]
    }

    /// Side of the patch grid (stride 8).
    pub fn grid(&self) -> i64 {
        self.image_size / 8
    }

    /// Checks that the configuration can run, saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.image_size <= 0 || self.image_size % 32 != 0 {
            return Err(format!(
                "image size {} must be a positive multiple of 32",
                self.image_size
            ));
        }
        if self.batch_size == 0 {
            return Err("batch size must be at least 1".into());
        }
        if !(self.patch_fraction > 0.0 && self.patch_fraction <= 1.0) {
            return Err(format!("patch fraction {} must be in (0, 1]", self.patch_fraction));
        }
        if self.truncate_every == 0 {
            return Err("truncate_every must be at least 1".into());
        }
        aggregator::check_dims(self.backbone.channels(), self.embed_dims)?;
        if !(self.blur_sigma.is_finite() && self.blur_sigma >= 0.0) {
            return Err(format!("map blur sigma {} must be >= 0", self.blur_sigma));
        }
        if self.std.iter().any(|s| *s <= 0.0) {
            return Err("std must be positive".into());
        }
        if !(self.feature_scale.is_finite() && self.feature_scale > 0.0) {
            return Err(format!("feature scale {} must be positive", self.feature_scale));
        }
        if let Some(t) = self.feature_std {
            if !(t.is_finite() && t > 0.0) {
                return Err(format!("feature std {t} must be positive"));
            }
        }
        Ok(())
    }
}

/// The GLASS model: frozen backbone + trainable projection and discriminator, each in its own VarStore
/// (one optimiser each, as upstream).
pub struct Glass {
    /// Resolved configuration.
    pub cfg: GlassConfig,
    /// Frozen feature extractor's variables.
    pub backbone_vs: nn::VarStore,
    backbone: Box<dyn Backbone>,
    /// Projection variables (root `pre_projection`).
    pub proj_vs: nn::VarStore,
    /// The projection.
    pub proj: Projection,
    /// Discriminator variables (root `discriminator`).
    pub dsc_vs: nn::VarStore,
    /// The discriminator.
    pub dsc: Discriminator,
}

impl Glass {
    /// Builds the model on `device` with freshly initialised trainable parts. Backbone weights are
    /// loaded separately ([`Glass::load_backbone`]).
    pub fn new(cfg: GlassConfig, device: Device) -> crate::Result<Self> {
        cfg.validate().map_err(crate::Error::Config)?;
        let backbone_vs = nn::VarStore::new(device);
        let backbone = backbone::build(cfg.backbone, backbone_vs.root());
        aggregator::check_dims(backbone.channels(), cfg.embed_dims)
            .map_err(crate::Error::Config)?;
        let d = cfg.embed_dim();
        let proj_vs = nn::VarStore::new(device);
        let proj = Projection::new(proj_vs.root() / "pre_projection", d);
        let dsc_vs = nn::VarStore::new(device);
        let dsc = Discriminator::new(dsc_vs.root() / "discriminator", d, cfg.dsc_hidden);
        Ok(Glass { cfg, backbone_vs, backbone, proj_vs, proj, dsc_vs, dsc })
    }

    /// Loads backbone weights from a safetensors file and freezes them.
    pub fn load_backbone(&mut self, file: &std::path::Path) -> crate::Result<()> {
        backbone::load_weights(&mut self.backbone_vs, file)?;
        self.backbone_vs.freeze();
        Ok(())
    }

    /// The device the model lives on.
    pub fn device(&self) -> Device {
        self.proj_vs.device()
    }

    /// Aggregated patch features `[B, d, h, w]` of a preprocessed batch (no grad through the backbone).
    pub fn embed(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let (l2, l3) = self.backbone.features(x);
            let f = aggregator::aggregate(&l2, &l3, self.cfg.embed_dims);
            if self.cfg.feature_scale == 1.0 {
                f
            } else {
                f / self.cfg.feature_scale
            }
        })
    }

    /// Mean per-dimension std of the aggregated features of a preprocessed batch, at the backbone's
    /// own scale (`feature_scale` undone).
    pub fn raw_feature_std(&self, x: &Tensor) -> f64 {
        let f = Self::rows(&self.embed(x)) * self.cfg.feature_scale;
        f.std_dim(0, true, false).mean(Kind::Double).double_value(&[])
    }

    /// `[B, d, h, w]` -> `[B*h*w, d]` rows in batch, row, column order.
    pub fn rows(feat: &Tensor) -> Tensor {
        let d = feat.size()[1];
        feat.permute([0, 2, 3, 1]).reshape([-1, d])
    }

    /// Patch scores `[B, h, w]` in eval mode from aggregated features.
    pub fn score_features(&self, feat: &Tensor) -> Tensor {
        let (b, _, h, w) = feat.size4().expect("4-D features (invariant of embed)");
        tch::no_grad(|| {
            let p = self.proj.forward(&Self::rows(feat));
            self.dsc.forward_t(&p, false).view([b, h, w])
        })
    }

    /// Patch scores `[B, h, w]` of a preprocessed image batch.
    pub fn patch_scores(&self, x: &Tensor) -> Tensor {
        self.score_features(&self.embed(x))
    }

    /// Image scores `[B]`: max over the raw patch scores (docs/glass.md §5).
    pub fn image_scores(patch_scores: &Tensor) -> Tensor {
        let b = patch_scores.size()[0];
        patch_scores.view([b, -1]).amax([1], false)
    }

    /// Saves projection + discriminator into one safetensors file (flat keys as the official checkpoint).
    pub fn save(&self, file: &std::path::Path) -> crate::Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for vs in [&self.proj_vs, &self.dsc_vs] {
            for (k, v) in vs.variables() {
                named.push((k, v));
            }
        }
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(k, v)| (k.as_str(), v)).collect();
        Tensor::write_safetensors(&refs, file).map_err(crate::Error::Torch)
    }

    /// Loads projection + discriminator from a file written by [`Glass::save`].
    pub fn load(&mut self, file: &std::path::Path) -> crate::Result<()> {
        backbone::load_weights(&mut self.proj_vs, file)?;
        backbone::load_weights(&mut self.dsc_vs, file)?;
        Ok(())
    }

    /// Running-mean of BN and other buffers are included in [`Glass::save`]; this lists the trainable
    /// parameter count (projection + discriminator).
    pub fn trainable_params(&self) -> i64 {
        [&self.proj_vs, &self.dsc_vs]
            .iter()
            .flat_map(|vs| vs.trainable_variables())
            .map(|t| t.size().iter().product::<i64>())
            .sum()
    }
}

/// Converts patch rows back to maps: `[B*h*w]` -> `[B, h, w]`.
pub fn rows_to_map(rows: &Tensor, b: i64, h: i64, w: i64) -> Tensor {
    rows.view([b, h, w]).to_kind(Kind::Float)
}

/// The GLASS pixel map of one patch-score grid (`gw x gh`): bilinear upsample to the input size and
/// Gaussian blur through `shared::preprocess::glass_postprocess`, the station's own code.
pub fn postprocess(
    cfg: &GlassConfig,
    grid: &[f32],
    gw: usize,
    gh: usize,
) -> crate::Result<Vec<f32>> {
    let s = cfg.image_size as usize;
    shared::preprocess::glass_postprocess(grid, gw, gh, s, s, cfg.blur_sigma)
        .map_err(|e| crate::Error::Config(format!("map post-processing: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip_through_json() {
        for name in ["paper", "edge", "tiny"] {
            let c = GlassConfig::preset(name).unwrap();
            c.validate().unwrap();
            let back: GlassConfig =
                serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back.embed_dims, c.embed_dims);
            assert_eq!(back.preset, name);
        }
        // An old/partial config gets defaults.
        let c: GlassConfig = serde_json::from_str(r#"{"preset":"paper"}"#).unwrap();
        assert_eq!(c.ascent_steps, 20);
    }

    #[test]
    fn trainable_parameter_count_matches_the_paper() {
        let g = Glass::new(GlassConfig::paper(), Device::Cpu).unwrap();
        // projection 2,360,832 + discriminator 1,576,960 - BN running stats are buffers, not params.
        assert_eq!(g.trainable_params(), 2_360_832 + 1_576_960);
    }

    #[test]
    fn rejects_bad_image_size() {
        let c = GlassConfig { image_size: 500, ..GlassConfig::tiny() };
        assert!(Glass::new(c, Device::Cpu).is_err());
    }
}
