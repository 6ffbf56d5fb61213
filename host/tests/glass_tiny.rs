//! GLASS end to end on a synthetic category, trained once and shared by the tests of this file:
//! - the GLASS issue's acceptance: the `tiny` preset reaches a test image AUROC floor (trained for real
//!   on EfficientNet-Lite0 ImageNet weights from scripts/setup, evaluated by `host eval`'s code);
//! - the export issue's: the exported bundle (fp32 + int8) passes `onnx.checker`, and libtorch (golden
//!   vectors), tract (the `runtime` engine the station runs) and onnxruntime agree; int8 keeps the verdicts (on the test
//!   split) and the validation AUROC; damaged bundles give clear errors;
//! - resume: a run paused after one epoch and resumed ends bit-identical to an uninterrupted one.
//!
//! The gate category is not the one the `tiny` preset was tuned on: the preset's feature std was
//! picked on synthetic weave with generator seed 0 (see `GlassConfig::tiny`); the gates run on weave
//! generated with seed [`GATE_SEED`] (other images, same kind). Their floors come from the spread over
//! generator seeds 1, 2, 3, measured once with
//! `GLASS_EDGE_GATE_SEED=S cargo test --workspace --test glass_tiny -- --nocapture` (the test prints
//! every number), and are written next to each assertion.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use common::check_onnx;
use host::data::synth::{self, Kind, SynthConfig};
use host::export::{self, ExportOptions};
use host::models::glass::GlassConfig;
use host::run::{ComputeDevice, RunDir};
use host::train::glass::{train, GlassTrainOptions};
use runtime::engine::{Engine, EngineError, Precision};

/// The synthetic generator seed of the gate category (overridable to re-measure the spread).
const GATE_SEED: u64 = 1;

// The gates, from generator seeds 1, 2, 3 (25 test images each; 2026-12-02, x86_64, 1 thread):
//   test image AUROC           0.980, 1.000, 0.967   mean 0.982, sd 0.017, min 0.967
//   int8 verdict agreement     0.96,  0.96,  1.00    (24, 24, 25 of 25 test images)
//   int8 test AUROC drop       0.000, 0.007, 0.020
// Floors: AUROC min − 2 sd; agreement one image below the minimum; AUROC drop twice the largest.
/// Test image AUROC floor of the `tiny` preset on the gate category.
const AUROC_FLOOR: f64 = 0.93;
/// int8/fp32 verdict agreement floor on the test split.
const INT8_FLOOR: f64 = 0.92;
/// Largest int8 test AUROC drop.
const INT8_AUROC_DROP: f64 = 0.04;

fn gate_seed() -> u64 {
    std::env::var("GLASS_EDGE_GATE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(GATE_SEED)
}

struct Trained {
    _dir: tempfile::TempDir,
    run: PathBuf,
    bundle: PathBuf,
    data: PathBuf,
}

fn setup() -> anyhow::Result<Trained> {
    common::report_crashes();
    let dir = tempfile::tempdir()?;
    let mut sc = SynthConfig::new(dir.path(), "weave", Kind::Texture);
    sc.size = 192;
    sc.train = 40;
    sc.test_good = 20;
    sc.test_defect = 6;
    sc.seed = gate_seed();
    eprintln!("gate category: weave, generator seed {}", sc.seed);
    synth::generate(&sc).context("generating the synthetic category")?;
    let data = dir.path().join("weave");
    let out = dir.path().join("run");
    let opts = GlassTrainOptions {
        data: data.clone(),
        out: out.clone(),
        device: ComputeDevice::Cpu,
        backbone_weights: None,
        textures: None,
        fg_masks: None,
        threads: 1,
        progress: false,
        pause_after: None,
    };
    let t0 = std::time::Instant::now();
    let state = train(GlassConfig::tiny(), &opts).context("training")?;
    eprintln!(
        "trained {} epochs in {:.0}s, best val AUROC {:.3}",
        state.epochs_done,
        t0.elapsed().as_secs_f64(),
        state.best_val_auroc
    );
    let bundle = dir.path().join("bundle");
    let t1 = std::time::Instant::now();
    let r = export::export(&ExportOptions {
        run: out.clone(),
        out: bundle.clone(),
        int8: true,
        calib: export::DEFAULT_CALIB,
        f16: true,
        golden: 4,
        threads: 1,
        progress: false,
    })
    .context("exporting")?;
    eprintln!("exported in {:.0}s: {}", t1.elapsed().as_secs_f64(), serde_json::to_string(&r)?);
    Ok(Trained { _dir: dir, run: out, bundle, data })
}

fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| match setup() {
        Ok(t) => t,
        Err(e) => panic!("training/export failed: {e:#}"),
    })
}

#[test]
fn tiny_preset_detects_synthetic_defects() -> anyhow::Result<()> {
    let t = trained();
    let rd = RunDir::open(&t.run)?;
    let m = host::eval::glass::evaluate(&rd, ComputeDevice::Cpu, 1, false).context("evaluating")?;
    eprintln!("{}", serde_json::to_string_pretty(&m)?);
    let auroc = m.image_auroc.context("no image AUROC")?;
    // Seeds 1, 2, 3: 0.980, 1.000, 0.967 (floor: min − 2 sd, see AUROC_FLOOR).
    assert!(auroc >= AUROC_FLOOR, "test image AUROC {auroc:.3} < {AUROC_FLOOR}");
    assert!(rd.metrics().is_file() && rd.best().is_file() && rd.epochs().is_file());
    // One strip per abnormal test image.
    let strips = std::fs::read_dir(rd.maps())?.count();
    assert_eq!(strips, m.n_test_abnormal);
    Ok(())
}

/// Reads golden.npz: (input [N,3,S,S], patch_scores [N,h,w], image_score [N], map [N,S,S]).
fn golden(bundle: &Path) -> anyhow::Result<Vec<(String, tch::Tensor)>> {
    Ok(tch::Tensor::read_npz(bundle.join(export::GOLDEN_FILE))?)
}

fn get<'a>(g: &'a [(String, tch::Tensor)], name: &str) -> &'a tch::Tensor {
    &g.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("golden has no {name}")).1
}

#[test]
fn tract_matches_libtorch_on_golden() -> anyhow::Result<()> {
    let t = trained();
    let g = golden(&t.bundle)?;
    let (x, ps, img, maps) =
        (get(&g, "input"), get(&g, "patch_scores"), get(&g, "image_score"), get(&g, "map"));
    let engine = Engine::load(&t.bundle, Precision::Fp32)?;
    let spec = engine.manifest().anomaly_map.clone().context("no map spec")?;
    let n = x.size()[0];
    let (mut d_score, mut d_ps, mut d_map) = (0f32, 0f32, 0f32);
    for i in 0..n {
        let xi: Vec<f32> = Vec::<f32>::try_from(x.get(i).reshape([-1]))?;
        let out = engine.run_preprocessed(&xi)?;
        let want_ps: Vec<f32> = Vec::<f32>::try_from(ps.get(i).reshape([-1]))?;
        let want_img = img.get(i).double_value(&[]) as f32;
        d_score = d_score.max((out.image_score - want_img).abs());
        for (a, b) in out.patch_scores.iter().zip(&want_ps) {
            d_ps = d_ps.max((a - b).abs());
        }
        let (gh, gw) = (out.shape[0], out.shape[1]);
        let map = shared::preprocess::glass_postprocess(
            &out.patch_scores,
            gw,
            gh,
            spec.width as usize,
            spec.height as usize,
            spec.blur_sigma,
        )?;
        let want_map: Vec<f32> = Vec::<f32>::try_from(maps.get(i).reshape([-1]))?;
        for (a, b) in map.iter().zip(&want_map) {
            d_map = d_map.max((a - b).abs());
        }
    }
    eprintln!("tract vs libtorch: score {d_score:.2e}, patch scores {d_ps:.2e}, map {d_map:.2e}");
    assert!(d_score <= 1e-4 && d_ps <= 1e-4 && d_map <= 1e-4);
    Ok(())
}

#[test]
fn onnx_checker_and_onnxruntime_agree() -> anyhow::Result<()> {
    let t = trained();
    let r = check_onnx(&t.bundle, export::FP32_FILE)?;
    eprintln!("fp32: {r}");
    assert_eq!(r["checker"], "ok");
    assert_eq!(r["ir_version"], 8);
    assert_eq!(r["opset"][0], 17);
    for k in ["patch_scores", "image_score"] {
        let d = r["max_abs_diff"][k].as_f64().context("missing diff")?;
        assert!(d <= 1e-4, "onnxruntime vs libtorch {k}: {d}");
    }
    // The int8 model is valid ONNX in QOperator form (no QDQ weights) and runs in onnxruntime.
    let q = check_onnx(&t.bundle, export::INT8_FILE)?;
    eprintln!("int8: {q}");
    assert_eq!(q["checker"], "ok");
    let ops: Vec<&str> =
        q["ops"].as_array().context("ops")?.iter().filter_map(|v| v.as_str()).collect();
    assert!(ops.contains(&"QLinearConv") && ops.contains(&"QuantizeLinear"), "{ops:?}");
    // Weights are stored as int8: the file is well under half the fp32 one (a bug that keeps float
    // weights beside the quantized ones, or skips quantizing the pointwise convs, would not be).
    let size = |f: &str| std::fs::metadata(t.bundle.join(f)).map(|m| m.len());
    let (fb, qb) = (size(export::FP32_FILE)?, size(export::INT8_FILE)?);
    eprintln!("fp32 {fb} bytes, int8 {qb} bytes");
    assert!(qb * 2 < fb, "int8 file {qb} bytes vs fp32 {fb}");
    Ok(())
}

#[test]
fn int8_keeps_verdicts_and_auroc() -> anyhow::Result<()> {
    let t = trained();
    let m = shared::manifest::Manifest::load(&t.bundle)?;
    let mm = m.metrics.clone().context("manifest metrics")?;
    eprintln!(
        "manifest: val AUROC fp32 {:?} int8 {:?}; latency {:?} / {:?} ms",
        mm.fp32_val_auroc, mm.int8_val_auroc, mm.fp32_latency_ms, mm.int8_latency_ms
    );
    // Scores and verdicts of every *test* image through both engines, as the station runs them: the
    // validation images placed the threshold and the export measured itself on them, so they would
    // flatter int8.
    let cat = host::data::category::Category::open(&t.data)?;
    let split = host::data::split::Split::anomaly_detection(&cat, 0);
    let ef = Engine::load(&t.bundle, Precision::Fp32)?;
    let eq = Engine::load(&t.bundle, Precision::Int8)?;
    let (mut same, mut max_d) = (0, 0f32);
    let (mut sf, mut sq, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for item in &split.test {
        let (rgb, w, h) = runtime::engine::decode_file(&item.image).map_err(anyhow::Error::msg)?;
        let a = ef.infer_rgb(&rgb, w, h, false)?;
        let b = eq.infer_rgb(&rgb, w, h, false)?;
        same += (a.fail == b.fail) as usize;
        max_d = max_d.max((a.score - b.score).abs());
        sf.push(a.score);
        sq.push(b.score);
        labels.push(item.label == host::data::split::Label::Abnormal);
    }
    let share = same as f64 / split.test.len() as f64;
    let auroc = |s: &[f32]| host::metrics::auroc(s, &labels).context("test AUROC");
    let (af, aq) = (auroc(&sf)?, auroc(&sq)?);
    eprintln!(
        "int8 on test: verdict agreement {same}/{} ({share:.3}), max |score diff| {max_d:.4}, \
         AUROC fp32 {af:.4} int8 {aq:.4} (drop {:.4})",
        split.test.len(),
        af - aq
    );
    // Seeds 1, 2, 3: drop 0.000 / 0.007 / 0.020, agreement 24 / 24 / 25 of 25 (see the constants).
    assert!(af - aq <= INT8_AUROC_DROP, "int8 test AUROC drop {:.4} > {INT8_AUROC_DROP}", af - aq);
    assert!(share >= INT8_FLOOR, "int8 agrees with fp32 on {share:.3} of test images");
    Ok(())
}

/// `host export --f16` records the half-precision run of the fp32 model (self-test tolerance, validation
/// AUROC and verdict agreement) and the station's load path self-tests an f16 engine against it.
#[test]
fn f16_is_measured_recorded_and_self_tested() -> anyhow::Result<()> {
    let t = trained();
    let m = shared::manifest::Manifest::load(&t.bundle)?;
    let g = m.files.golden.clone().context("golden entry")?;
    let mm = m.metrics.clone().context("manifest metrics")?;
    let tol = g.f16_tolerance.context("no f16 tolerance recorded")?;
    let agree = mm.f16_verdict_agreement.context("no f16 agreement recorded")?;
    let (fa, ha) = (
        mm.fp32_val_auroc.context("fp32 AUROC")?,
        mm.f16_val_auroc.context("no f16 AUROC recorded")?,
    );
    let e = Engine::load(&t.bundle, Precision::F16)?;
    let st = e.self_test().context("the f16 engine was not self-tested")?;
    eprintln!(
        "f16: tolerance {tol:.2e}, self-test difference {:.2e}; validation AUROC fp32 {fa:.4} f16 \
         {ha:.4}, verdict agreement {agree:.3}",
        st.max_difference
    );
    assert_eq!(st.tolerance, tol);
    // Half precision keeps about three significant digits: the same ranking (measured: AUROC
    // 0.9867 both, generator seed 1). The validation threshold sits in the middle of the narrowest
    // useful gap between validation scores, so a validation score a few 1e-3 from it can flip:
    // measured 24 of 25 verdicts as fp32; the floor is one image below that.
    assert!((fa - ha).abs() <= 0.005, "f16 validation AUROC {ha} vs fp32 {fa}");
    assert!(agree >= 0.92, "f16 verdict agreement {agree}");
    Ok(())
}

fn copy_bundle(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        std::fs::copy(e.path(), dst.join(e.file_name()))?;
    }
    Ok(())
}

#[test]
fn damaged_bundles_give_clear_errors() -> anyhow::Result<()> {
    let t = trained();
    let tmp = tempfile::tempdir()?;
    let msg = |e: EngineError| e.to_string();

    // Truncated ONNX, with the manifest's sha256 updated to match: tract must refuse it by name.
    let b1 = tmp.path().join("truncated");
    copy_bundle(&t.bundle, &b1)?;
    let onnx = b1.join(export::FP32_FILE);
    let bytes = std::fs::read(&onnx)?;
    std::fs::write(&onnx, &bytes[..bytes.len() / 3])?;
    let mut m = shared::manifest::Manifest::load(&t.bundle)?;
    m.files.fp32.sha256 = shared::manifest::sha256_file(&onnx)?;
    m.save(&b1)?;
    let e = msg(Engine::load(&b1, Precision::Fp32).expect_err("truncated model loaded"));
    assert!(e.contains("model_fp32.onnx") && e.contains("cannot load"), "{e}");

    // Truncated ONNX without touching the manifest: the sha256 check catches it first.
    let b2 = tmp.path().join("sha");
    copy_bundle(&t.bundle, &b2)?;
    std::fs::write(b2.join(export::FP32_FILE), &bytes[..bytes.len() - 10])?;
    let e = msg(Engine::load(&b2, Precision::Fp32).expect_err("sha mismatch loaded"));
    assert!(e.contains("sha256 mismatch") && e.contains("model_fp32.onnx"), "{e}");

    // Unknown schema.
    let b3 = tmp.path().join("schema");
    copy_bundle(&t.bundle, &b3)?;
    let text = std::fs::read_to_string(b3.join("manifest.json"))?;
    std::fs::write(
        b3.join("manifest.json"),
        text.replacen("\"schema_version\": 1", "\"schema_version\": 99", 1),
    )?;
    let e = msg(Engine::load(&b3, Precision::Fp32).expect_err("unknown schema loaded"));
    assert!(e.contains("schema_version 99") && e.contains("manifest.json"), "{e}");

    // Wrong input size: the manifest promises another size than the graph was exported for.
    let b4 = tmp.path().join("size");
    copy_bundle(&t.bundle, &b4)?;
    let mut m = shared::manifest::Manifest::load(&t.bundle)?;
    m.input.width += 32;
    m.input.height += 32;
    m.save(&b4)?;
    let e = msg(Engine::load(&b4, Precision::Fp32).expect_err("wrong input size loaded"));
    assert!(e.contains("model_fp32.onnx"), "{e}");

    // A frame of the wrong byte count and a corrupt image file: errors, not panics.
    let engine = Engine::load(&t.bundle, Precision::Fp32)?;
    assert!(engine.infer_rgb(&[0u8; 10], 4, 4, false).is_err());
    let bad = tmp.path().join("bad.png");
    std::fs::write(&bad, b"not a png")?;
    let line = runtime::inspect::inspect_file(&engine, &bad, None);
    assert_eq!(line.verdict, shared::wire::Verdict::Error);
    assert!(line.error.as_deref().unwrap_or("").contains("bad.png"), "{line:?}");
    Ok(())
}
