//! GLASS end to end on a synthetic category, trained once and shared by the tests of this file:
//! - the GLASS issue's acceptance: the `tiny` preset reaches test image AUROC >= 0.95 (trained for real
//!   on EfficientNet-Lite0 ImageNet weights from scripts/setup, evaluated by `host eval`'s code);
//! - the export issue's: the exported bundle (fp32 + int8) passes `onnx.checker`, and libtorch (golden
//!   vectors), tract (the device engine) and onnxruntime agree; int8 keeps the verdicts and AUROC;
//!   damaged bundles give clear errors.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context;
use common::check_onnx;
use device::engine::{Engine, EngineError, Precision};
use host::data::synth::{self, Kind, SynthConfig};
use host::export::{self, ExportOptions};
use host::models::glass::GlassConfig;
use host::train::glass::{train, GlassTrainOptions};
use host::train::run::{DeviceChoice, RunDir};

struct Trained {
    _dir: tempfile::TempDir,
    run: PathBuf,
    bundle: PathBuf,
    data: PathBuf,
}

fn setup() -> anyhow::Result<Trained> {
    let dir = tempfile::tempdir()?;
    let mut sc = SynthConfig::new(dir.path(), "weave", Kind::Texture);
    sc.size = 192;
    sc.train = 40;
    sc.test_good = 20;
    sc.test_defect = 6;
    synth::generate(&sc).context("generating the synthetic category")?;
    let data = dir.path().join("weave");
    let out = dir.path().join("run");
    let opts = GlassTrainOptions {
        data: data.clone(),
        out: out.clone(),
        device: DeviceChoice::Cpu,
        backbone_weights: None,
        textures: None,
        fg_masks: None,
        threads: 0,
        progress: false,
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
    let m = host::eval::glass::evaluate(&rd, DeviceChoice::Cpu, 0, false).context("evaluating")?;
    eprintln!("{}", serde_json::to_string_pretty(&m)?);
    let auroc = m.image_auroc.context("no image AUROC")?;
    assert!(auroc >= 0.95, "test image AUROC {auroc:.3} < 0.95");
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
    assert!(!ops.contains(&"Conv") || ops.iter().filter(|o| **o == "QLinearConv").count() > 0);
    Ok(())
}

#[test]
fn int8_keeps_verdicts_and_auroc() -> anyhow::Result<()> {
    let t = trained();
    let m = shared::manifest::Manifest::load(&t.bundle)?;
    let mm = m.metrics.clone().context("manifest metrics")?;
    let (f, q) =
        (mm.fp32_val_auroc.context("fp32 auroc")?, mm.int8_val_auroc.context("int8 auroc")?);
    eprintln!(
        "val AUROC fp32 {f:.4} int8 {q:.4}; latency {:?} / {:?} ms",
        mm.fp32_latency_ms, mm.int8_latency_ms
    );
    assert!(f - q <= 0.005, "int8 validation AUROC drop {:.4} > 0.005", f - q);
    // Verdicts on every validation image, through the engine.
    let cat = host::data::category::Category::open(&t.data)?;
    let split = host::data::split::Split::anomaly_detection(&cat, 0);
    let ef = Engine::load(&t.bundle, Precision::Fp32)?;
    let eq = Engine::load(&t.bundle, Precision::Int8)?;
    let mut same = 0;
    for item in &split.valid {
        let (rgb, w, h) = device::engine::decode_file(&item.image).map_err(anyhow::Error::msg)?;
        let a = ef.infer_rgb(&rgb, w, h, false)?;
        let b = eq.infer_rgb(&rgb, w, h, false)?;
        same += (a.fail == b.fail) as usize;
    }
    let share = same as f64 / split.valid.len() as f64;
    eprintln!("int8 verdict agreement {same}/{}", split.valid.len());
    // The station threshold sits mid-gap between validation scores (best_f1_margin), so a small
    // int8 error does not flip the image that defines the best-F1 cut.
    assert!(share >= 0.99, "int8 agrees with fp32 on {share:.3} of validation images");
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
    let line = device::inspect::inspect_file(&engine, &bad, None);
    assert_eq!(line.verdict, "error");
    assert!(line.error.as_deref().unwrap_or("").contains("bad.png"), "{line:?}");
    Ok(())
}
