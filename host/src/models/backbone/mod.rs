//! Frozen ImageNet backbones that feed GLASS, PatchCore and the Lite0 classifier: the feature maps at
//! stride 8 and stride 16 of an input `[B, 3, H, W]`.
//!
//! | kind | stride 8 | stride 16 | input scaling |
//! |---|---|---|---|
//! | `wide_resnet50_2` (torchvision, the GLASS paper's backbone) | `layer2` `[B,512,H/8,W/8]` | `layer3` `[B,1024,H/16,W/16]` | ImageNet mean/std |
//! | `efficientnet_lite0` (edge-friendly) | `_blocks.4` `[B,40,H/8,W/8]` | `_blocks.10` `[B,112,H/16,W/16]` | `(x*255-127)/128` |
//!
//! H and W should be multiples of 32 (GLASS's own constraint; the Lite0 SAME padding then also equals the
//! reference's 224-based static padding). Variable paths equal the reference state_dict keys, so the
//! converted checkpoints (`scripts/convert-weights`) load with [`load_weights`] and no rename table.
//!
//! ```no_run
//! use host::models::backbone::{self, BackboneKind};
//! # fn main() -> host::Result<()> {
//! let kind = BackboneKind::WideResnet50_2;
//! let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let net = backbone::build(kind, vs.root());
//! backbone::load_weights(&mut vs, &kind.default_weights_path().expect("GLASS_EDGE_WEIGHTS set"))?;
//! vs.freeze();
//! let x = tch::Tensor::zeros([1, 3, 288, 288], (tch::Kind::Float, tch::Device::Cpu));
//! let (f8, f16) = tch::no_grad(|| net.features(&x));
//! assert_eq!(f8.size(), [1, 512, 36, 36]);
//! assert_eq!(f16.size(), [1, 1024, 18, 18]);
//! # Ok(()) }
//! ```

pub mod efficientnet_lite;
pub mod wide_resnet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub use efficientnet_lite::{BlockArgs, EfficientNetLite0, HEAD_CHANNELS, LITE0_BLOCKS};
pub use wide_resnet::WideResNet50_2;

/// A frozen feature extractor: two feature maps, at stride 8 and stride 16.
///
/// `features` always runs in eval mode (BatchNorm uses its running statistics; nothing is updated).
/// Gradient tracking is the caller's business: wrap the call in [`tch::no_grad`] (and [`nn::VarStore::freeze`]
/// the store) when the backbone is frozen, as GLASS does; leave it on to backpropagate into the input.
pub trait Backbone: Send {
    /// `x`: `[B, 3, H, W]` float, scaled as [`default_mean_std`] says, H and W multiples of 32.
    /// Returns `(stride 8, stride 16)`: `[B, C8, H/8, W/8]` and `[B, C16, H/16, W/16]`.
    fn features(&self, x: &Tensor) -> (Tensor, Tensor);
    /// `(C8, C16)`, the channel counts of the two maps.
    fn channels(&self) -> (i64, i64);
    /// The [`BackboneKind`] name, e.g. `"wide_resnet50_2"`.
    fn name(&self) -> &'static str;
}

/// Which backbone to build. The names are the CLI/config spelling and the weight file stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum BackboneKind {
    /// torchvision `wide_resnet50_2`, IMAGENET1K_V1 (the GLASS paper's backbone).
    #[serde(rename = "wide_resnet50_2")]
    #[value(name = "wide_resnet50_2")]
    WideResnet50_2,
    /// EfficientNet-Lite0 (no SE, ReLU6; quantisation-friendly for the edge device).
    #[serde(rename = "efficientnet_lite0")]
    #[value(name = "efficientnet_lite0")]
    EfficientnetLite0,
}

impl BackboneKind {
    /// The canonical name (`"wide_resnet50_2"`, `"efficientnet_lite0"`).
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::WideResnet50_2 => "wide_resnet50_2",
            BackboneKind::EfficientnetLite0 => "efficientnet_lite0",
        }
    }

    /// `(C8, C16)` without building the network.
    pub fn channels(self) -> (i64, i64) {
        match self {
            BackboneKind::WideResnet50_2 => WideResNet50_2::CHANNELS,
            BackboneKind::EfficientnetLite0 => EfficientNetLite0::CHANNELS,
        }
    }

    /// `$GLASS_EDGE_WEIGHTS/<name>.safetensors` (where `scripts/setup` puts the converted ImageNet
    /// weights), or `None` when `GLASS_EDGE_WEIGHTS` is not set (`source scripts/env.sh` sets it).
    pub fn default_weights_path(self) -> Option<PathBuf> {
        let dir = std::env::var_os("GLASS_EDGE_WEIGHTS")?;
        Some(PathBuf::from(dir).join(format!("{}.safetensors", self.name())))
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds the backbone's variables under `vs_path` (usually `vs.root()`: the keys are then exactly the
/// reference state_dict keys). Only the layers the two feature maps need are created; load them with
/// [`load_weights`].
pub fn build(kind: BackboneKind, vs_path: nn::Path) -> Box<dyn Backbone> {
    match kind {
        BackboneKind::WideResnet50_2 => Box::new(WideResNet50_2::new(vs_path)),
        BackboneKind::EfficientnetLite0 => Box::new(EfficientNetLite0::new(vs_path, false)),
    }
}

/// Per-channel `(mean, std)` the backbone's weights were trained with; inputs are `(x - mean) / std`
/// for `x` in [0, 1]. WRN: ImageNet statistics. EfficientNet-Lite: its native `(x*255 - 127) / 128`,
/// i.e. mean 127/255 and std 128/255 on every channel (the same as `shared`'s
/// `PreprocessConfig::efficientnet_lite`).
pub fn default_mean_std(kind: BackboneKind) -> ([f32; 3], [f32; 3]) {
    match kind {
        BackboneKind::WideResnet50_2 => {
            (shared::preprocess::IMAGENET_MEAN, shared::preprocess::IMAGENET_STD)
        }
        BackboneKind::EfficientnetLite0 => ([127.0 / 255.0; 3], [128.0 / 255.0; 3]),
    }
}

/// How many offending keys an error message lists.
const MAX_LISTED: usize = 5;

/// Loads every variable of `vs` from the safetensors `file`, matching by name.
///
/// Keys in the file that the store does not hold are ignored (e.g. `layer4.*`, `fc.*`, `_conv_head`,
/// `num_batches_tracked`), so full ImageNet checkpoints load into a truncated backbone. Every variable of
/// the store must be present with the same shape; otherwise nothing is guaranteed about the store's values
/// and the error names the file and lists up to five missing keys and shape mismatches. Values are
/// converted to the variable's dtype and device.
///
/// # Errors
/// [`crate::Error::Io`] when `file` does not exist; [`crate::Error::Torch`] when it is not a safetensors
/// file, or (as `TchError::FileFormat`) when keys are missing or shapes differ.
pub fn load_weights(vs: &mut nn::VarStore, file: &Path) -> crate::Result<()> {
    load_weights_where(vs, file, |_| true)
}

/// [`load_weights`] for the store's variables whose name passes `wanted` (the rest keep their values,
/// e.g. a fresh 2-class head on an ImageNet checkpoint).
///
/// # Errors
/// As [`load_weights`].
pub fn load_weights_where(
    vs: &mut nn::VarStore,
    file: &Path,
    wanted: impl Fn(&str) -> bool,
) -> crate::Result<()> {
    if !file.is_file() {
        return Err(crate::Error::io(
            file,
            std::io::Error::new(std::io::ErrorKind::NotFound, "weight file not found"),
        ));
    }
    let named: BTreeMap<String, Tensor> = Tensor::read_safetensors(file)?.into_iter().collect();
    // Sorted so that the error lists the same keys on every run.
    let vars: BTreeMap<String, Tensor> =
        vs.variables().into_iter().filter(|(k, _)| wanted(k)).collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, var) in &vars {
        match named.get(name) {
            None => missing.push(name.as_str()),
            Some(src) if src.size() != var.size() => {
                mismatched.push(format!("{name}: file {:?}, model {:?}", src.size(), var.size()))
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() || !mismatched.is_empty() {
        let mut msg = format!("{}: does not fit the model", file.display());
        if !missing.is_empty() {
            msg += &format!(
                "; {} of {} variables missing: {}",
                missing.len(),
                vars.len(),
                listed(&missing)
            );
        }
        if !mismatched.is_empty() {
            msg += &format!("; {} shape mismatches: {}", mismatched.len(), listed(&mismatched));
        }
        return Err(tch::TchError::FileFormat(msg).into());
    }
    tch::no_grad(|| -> crate::Result<()> {
        for (name, var) in &vars {
            let src = &named[name];
            let mut var = var.shallow_clone();
            var.f_copy_(&src.f_to_kind(var.kind())?.f_to_device(var.device())?).map_err(|e| {
                tch::TchError::FileFormat(format!("{}: copying {name}: {e}", file.display()))
            })?;
        }
        Ok(())
    })
}

fn listed<S: AsRef<str>>(items: &[S]) -> String {
    let mut s = items.iter().take(MAX_LISTED).map(AsRef::as_ref).collect::<Vec<_>>().join(", ");
    if items.len() > MAX_LISTED {
        s += &format!(", ... ({} more)", items.len() - MAX_LISTED);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn kind_names_round_trip_through_serde_and_clap() {
        use clap::ValueEnum;
        for kind in [BackboneKind::WideResnet50_2, BackboneKind::EfficientnetLite0] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<BackboneKind>(&json).unwrap(), kind);
            assert_eq!(BackboneKind::from_str(kind.name(), false).unwrap(), kind);
        }
    }

    #[test]
    fn lite0_shapes_and_channels() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(BackboneKind::EfficientnetLite0, vs.root());
        let x = Tensor::zeros([2, 3, 64, 96], (Kind::Float, Device::Cpu));
        let (f8, f16) = tch::no_grad(|| net.features(&x));
        assert_eq!(f8.size(), [2, 40, 8, 12]);
        assert_eq!(f16.size(), [2, 112, 4, 6]);
        assert_eq!(net.channels(), BackboneKind::EfficientnetLite0.channels());
        assert_eq!(net.name(), "efficientnet_lite0");
    }

    #[test]
    fn load_weights_reports_file_missing_and_mismatched_keys() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _net = EfficientNetLite0::new(vs.root(), false);
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        // Keep everything but 7 keys; give one a wrong shape; add an extra key that must be ignored.
        let mut tensors: Vec<(String, Tensor)> = vars.into_iter().skip(7).collect();
        tensors[0].1 = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let wrong = tensors[0].0.clone();
        tensors.push(("_fc.weight".into(), Tensor::zeros([2, 2], (Kind::Float, Device::Cpu))));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("partial.safetensors");
        Tensor::write_safetensors(&tensors, &file).unwrap();
        let msg = load_weights(&mut vs, &file).unwrap_err().to_string();
        assert!(msg.contains("partial.safetensors"), "{msg}");
        assert!(msg.contains("7 of 165 variables missing"), "{msg}");
        assert!(msg.contains("(2 more)"), "{msg}");
        assert!(msg.contains(&format!("1 shape mismatches: {wrong}: file [3]")), "{msg}");

        let err = load_weights(&mut vs, &dir.path().join("absent.safetensors")).unwrap_err();
        assert!(err.to_string().contains("absent.safetensors"), "{err}");
    }

    #[test]
    fn load_weights_copies_values_and_ignores_extra_keys() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _net = EfficientNetLite0::new(vs.root(), false);
        let mut tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(k, v)| (k, Tensor::full(v.size(), 0.25, (Kind::Double, Device::Cpu))))
            .collect();
        tensors.push(("_bn0.num_batches_tracked".into(), Tensor::from(3i64)));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.safetensors");
        Tensor::write_safetensors(&tensors, &file).unwrap();
        load_weights(&mut vs, &file).unwrap();
        for (name, v) in vs.variables() {
            assert_eq!(v.kind(), Kind::Float, "{name}");
            assert_eq!(v.min().double_value(&[]), 0.25, "{name}");
            assert_eq!(v.max().double_value(&[]), 0.25, "{name}");
        }
    }
}
