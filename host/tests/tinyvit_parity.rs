//! TinyViT-21M-512 against timm's `tiny_vit_21m_512` with fixed-seed random weights (BN statistics and
//! attention-bias tables randomised too): variable names and shapes equal timm's state_dict
//! (`tests/fixtures/tinyvit/keys_tiny_vit_21m_512.json`, committed), and the logits and per-stage maps at
//! 512x512 agree within 1e-4 relative. Fixtures: `scripts/fixtures/make_tinyvit_fixtures.py` (see
//! `common`).
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Result};
use host::models::backbone;
use host::models::classifier::{Arch, Classifier};
use host::models::tinyvit::{attention_bias_index, TinyVit};
use tch::{nn, Device};

const REL_TOL: f64 = 1e-4;

fn fixtures() -> Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let hint =
        "the TinyViT fixtures need the project's Python venv with torch, timm and safetensors: \
                run `bash scripts/setup` then `source scripts/env.sh`";
    match DIR.get_or_init(|| {
        common::generate("make_tinyvit_fixtures.py", "tinyvit", hint).map_err(|e| format!("{e:#}"))
    }) {
        Ok(dir) => Ok(dir),
        Err(e) => bail!("tinyvit fixtures unavailable: {e}"),
    }
}

#[test]
fn tinyvit_keys_and_shapes_equal_timm() -> Result<()> {
    let keys = common::key_list("tinyvit/keys_tiny_vit_21m_512.json")?;
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = TinyVit::new(&vs.root(), 1000);
    let ours = common::our_shapes(&vs);
    common::assert_same_keys(&ours, &common::expected_shapes(&keys, "keys")?, "tiny_vit_21m_512");
    let params: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    assert_eq!(params, 21_268_120, "timm's parameter count");
    Ok(())
}

#[test]
fn two_class_head_has_timm_names_too() {
    let c = Classifier::new(Arch::TinyVit21m512, Device::Cpu);
    let shapes = common::our_shapes(&c.vs);
    assert_eq!(shapes["head.fc.weight"], vec![2, 576]);
    assert_eq!(shapes["head.fc.bias"], vec![2]);
}

#[test]
fn attention_bias_index_is_the_absolute_offset_table() {
    // ws = 2: tokens (0,0) (0,1) (1,0) (1,1).
    assert_eq!(attention_bias_index(2), vec![0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0]);
}

#[test]
fn tinyvit_matches_timm_at_512() -> Result<()> {
    let dir = fixtures()?;
    let cases = common::read(&dir.join("tinyvit_cases.safetensors"))?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let m = TinyVit::new(&vs.root(), 1000);
    backbone::load_weights(&mut vs, &dir.join("tinyvit.safetensors"))?;
    for stage in 0..4 {
        let name = format!("stages.{stage}");
        let (_, tap) = tch::no_grad(|| m.forward_cam(&cases["input"], false, Some(&name)));
        let tap = tap.expect("stage tap");
        common::rel_err(&tap, &cases[&name], &name, REL_TOL)?;
    }
    let (logits, _) = tch::no_grad(|| m.forward_cam(&cases["input"], false, None));
    common::rel_err(&logits, &cases["logits"], "logits", REL_TOL)?;
    Ok(())
}

#[test]
fn classifier_loads_a_timm_checkpoint_and_replaces_the_head() -> Result<()> {
    let dir = fixtures()?;
    let mut c = Classifier::new(Arch::TinyVit21m512, Device::Cpu);
    c.load_pretrained(&dir.join("tinyvit.safetensors"))?;
    let vars = c.vs.variables();
    // Loaded trunk, zero head.
    let reference = common::read(&dir.join("tinyvit.safetensors"))?;
    let key = "stages.2.blocks.3.attn.attention_biases";
    assert!(vars[key].equal(&reference[key]));
    assert_eq!(vars["head.fc.weight"].abs().sum(tch::Kind::Float).double_value(&[]), 0.0);
    Ok(())
}
