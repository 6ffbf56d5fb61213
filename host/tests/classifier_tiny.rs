//! The classifier baseline end to end on a synthetic category (the classifier issue's CI acceptance):
//! EfficientNet-Lite0 (ImageNet weights from scripts/setup) fine-tuned at 192 px on the classifier split,
//! evaluated by `host eval`'s code: test AUROC, Grad-CAM and Grad-CAM++ pixel AUROC above measured
//! floors, strips written, every defect type reported, int8 verdicts agreeing with fp32 on the test
//! split; and experiment 3 (`train_defects`) marks unseen types.
//!
//! The category is generated with seed [`GATE_SEED`], not the seed 0 the recipe (size, epochs,
//! patience) was first tried on. Its defect types were chosen on validation AUROC over generator seeds
//! 1-3: with hole, contamination and colour (24 each) the best validation AUROC was 0.866 / 0.921 /
//! 0.736 (lr 3e-4; 0.880 / 0.787 / 0.856 at lr 1e-4) and one seed in three did not learn, which makes
//! no gate; with contamination and colour (32 each) it was 0.990 / 1.000 / 0.964. The floors come
//! from generator seeds 1, 2, 3, measured once with
//! `GLASS_EDGE_GATE_SEED=S cargo test --workspace --test classifier_tiny -- --nocapture` (the test
//! prints every number), and are written next to each assertion.
mod common;

use std::path::PathBuf;

use anyhow::Context;
use host::data::synth::{self, DefectKind, Kind, SynthConfig};
use host::eval::cam::CamMethod;
use host::models::classifier::Arch;
use host::models::classifier::ClassifierConfig;
use host::run::{ComputeDevice, RunDir};
use host::train::classifier::{train, ClassifierTrainOptions};

/// The synthetic generator seed of the gate category (overridable to re-measure the spread).
const GATE_SEED: u64 = 1;

fn category(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let mut sc = SynthConfig::new(dir, "tiles", Kind::Object);
    sc.seed = std::env::var("GLASS_EDGE_GATE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(GATE_SEED);
    eprintln!("gate category: tiles, generator seed {}", sc.seed);
    sc.size = 192;
    sc.train = 40;
    sc.test_good = 24;
    sc.test_defect = 32;
    sc.defects = vec![DefectKind::Contamination, DefectKind::Color];
    synth::generate(&sc).context("generating the synthetic category")?;
    Ok(dir.join("tiles"))
}

fn config() -> ClassifierConfig {
    let mut cfg = ClassifierConfig::for_arch(Arch::EfficientnetLite0);
    cfg.image_size = 192;
    cfg.max_epochs = Some(15);
    cfg.patience = 6;
    cfg
}

fn options(
    data: PathBuf,
    out: PathBuf,
    train_defects: Option<Vec<String>>,
) -> ClassifierTrainOptions {
    ClassifierTrainOptions {
        data,
        out,
        device: ComputeDevice::Cpu,
        weights: None,
        allow_random: false,
        train_defects,
        threads: 1,
        progress: false,
        pause_after: None,
    }
}

// The gates, from generator seeds 1, 2, 3 (28 test images each; 2026-12-02, x86_64, 1 thread):
//   test image AUROC            1.000, 0.953, 0.932   mean 0.962, sd 0.035
//   Grad-CAM pixel AUROC        0.948, 0.950, 0.914   (AUPRO 0.869, 0.868, 0.790)
//   Grad-CAM++ pixel AUROC      0.971, 0.944, 0.899   sd 0.036
//   int8 verdict agreement      0.679, 0.857, 0.857   (19, 24, 24 of 28; largest |prob diff| 0.62-0.95:
//                               the validation threshold sits at a probability near 0, where int8's
//                               error in the softmax flips verdicts; the station defaults to fp32)
// Floors: the minimum less about two standard deviations (AUROC, CAM); agreement one image below the
// minimum.
/// Test image AUROC floor.
const CLS_AUROC_FLOOR: f64 = 0.85;
/// Grad-CAM / Grad-CAM++ pixel AUROC floor.
const CAM_FLOOR: f64 = 0.8;
/// int8/fp32 verdict agreement floor on the test split.
const CLS_INT8_FLOOR: f64 = 0.64;

#[test]
fn efficientnet_lite0_classifier_separates_synthetic_defects() -> anyhow::Result<()> {
    common::report_crashes();
    let dir = tempfile::tempdir()?;
    let data = category(dir.path())?;
    let out = dir.path().join("run");
    let t0 = std::time::Instant::now();
    let state = train(config(), &options(data.clone(), out.clone(), None)).context("training")?;
    eprintln!(
        "trained {} epochs in {:.0}s, best val AUROC {:.3} @{}",
        state.epochs_done,
        t0.elapsed().as_secs_f64(),
        state.best_val_auroc,
        state.best_epoch
    );
    let rd = RunDir::open(&out)?;
    let m = host::eval::classifier::evaluate(
        &rd,
        ComputeDevice::Cpu,
        1,
        CamMethod::GradCam,
        None,
        false,
    )?;
    eprintln!("{}", serde_json::to_string_pretty(&m)?);
    assert_eq!(m.run.model, shared::manifest::ModelKind::Classifier);
    assert_eq!(m.run.arch, "efficientnet_lite0");
    let auroc = m.image_auroc.context("no image AUROC")?;
    // Seeds 1, 2, 3: 1.000, 0.953, 0.932 (see CLS_AUROC_FLOOR).
    assert!(auroc >= CLS_AUROC_FLOOR, "test image AUROC {auroc:.3} < {CLS_AUROC_FLOOR}");
    // Grad-CAM localises: its pixel AUROC against the defect masks is well above chance (0.5).
    // Seeds 1, 2, 3: Grad-CAM 0.948, 0.950, 0.914; Grad-CAM++ 0.971, 0.944, 0.899 (see CAM_FLOOR).
    let px = m.pixel_auroc.context("no pixel AUROC")?;
    let pro = m.aupro.context("no AUPRO")?;
    eprintln!("Grad-CAM pixel AUROC {px:.3}, AUPRO {pro:.3}");
    assert!(px >= CAM_FLOOR, "Grad-CAM pixel AUROC {px:.3} < {CAM_FLOOR}");
    // Validation is scored without CAMs (a backward pass each): no validation pixel AUROC.
    assert_eq!(m.val_pixel_auroc, None);
    let seen = m.run.seen_defects.clone().context("seen_defects missing")?;
    assert_eq!(seen, vec!["color", "contamination"]);
    assert_eq!(m.per_defect_recall.len(), 2);
    let strips = std::fs::read_dir(rd.maps())?.count();
    assert_eq!(strips, m.n_test_abnormal, "one CAM strip per abnormal test image");

    // Grad-CAM++ through the same path.
    let mpp = host::eval::classifier::evaluate(
        &rd,
        ComputeDevice::Cpu,
        1,
        CamMethod::GradCamPlusPlus,
        None,
        false,
    )?;
    let pxpp = mpp.pixel_auroc.context("no Grad-CAM++ pixel AUROC")?;
    eprintln!("Grad-CAM++ pixel AUROC {pxpp:.3}");
    assert!(pxpp >= CAM_FLOOR, "Grad-CAM++ pixel AUROC {pxpp:.3} < {CAM_FLOOR}");
    assert_eq!(mpp.image_auroc, m.image_auroc, "the CAM method does not change the scores");

    // A second call on a finished run is a no-op (resume).
    let again = train(config(), &options(data.clone(), out.clone(), None))?;
    assert_eq!(again.epochs_done, state.epochs_done);

    exported_classifier_matches_libtorch(&out, &dir.path().join("bundle"), &data)
}

/// The export issue for classifiers: ONNX written from Rust; tract and onnxruntime reproduce
/// libtorch's logits and abnormal probability on golden.npz; the int8 model runs; `device inspect`'s
/// engine gives verdicts at the manifest's validation threshold.
fn exported_classifier_matches_libtorch(
    run: &std::path::Path,
    bundle: &std::path::Path,
    data: &std::path::Path,
) -> anyhow::Result<()> {
    use host::export::{self, classifier as xc, ExportOptions};
    use runtime::engine::{Engine, Precision};
    let r = export::export(&ExportOptions {
        run: run.to_path_buf(),
        out: bundle.to_path_buf(),
        int8: true,
        calib: 8,
        f16: false,
        golden: 4,
        threads: 1,
        progress: false,
    })
    .context("exporting the classifier")?;
    eprintln!("classifier export: {}", serde_json::to_string(&r)?);
    assert_eq!(r.manifest.model_kind, shared::manifest::ModelKind::Classifier);
    assert!(r.manifest.anomaly_map.is_none());
    let g = tch::Tensor::read_npz(bundle.join(export::GOLDEN_FILE))?;
    let get = |n: &str| g.iter().find(|(k, _)| k == n).map(|(_, t)| t.shallow_clone());
    let (x, logits, prob) = (
        get("input").context("golden input")?,
        get(xc::LOGITS).context("golden logits")?,
        get(xc::ABNORMAL_PROB).context("golden prob")?,
    );
    let engine = Engine::load(bundle, Precision::Fp32)?;
    let (mut d_logit, mut d_prob) = (0f32, 0f32);
    for i in 0..x.size()[0] {
        let xi: Vec<f32> = Vec::<f32>::try_from(x.get(i).reshape([-1]))?;
        let out = engine.run_preprocessed(&xi)?;
        let want: Vec<f32> = Vec::<f32>::try_from(logits.get(i).reshape([-1]))?;
        for (a, b) in out.patch_scores.iter().zip(&want) {
            d_logit = d_logit.max((a - b).abs());
        }
        d_prob = d_prob.max((out.image_score - prob.get(i).double_value(&[]) as f32).abs());
    }
    eprintln!("tract vs libtorch: logits {d_logit:.2e}, prob {d_prob:.2e}");
    assert!(d_logit <= 1e-4 && d_prob <= 1e-4, "tract vs libtorch {d_logit} / {d_prob}");
    let o = common::check_onnx(bundle, export::FP32_FILE)?;
    eprintln!("onnxruntime fp32: {o}");
    assert_eq!(o["checker"], "ok");
    for k in [xc::LOGITS, xc::ABNORMAL_PROB] {
        let d = o["max_abs_diff"][k].as_f64().context("missing diff")?;
        assert!(d <= 1e-4, "onnxruntime vs libtorch {k}: {d}");
    }
    let q = common::check_onnx(bundle, export::INT8_FILE)?;
    assert_eq!(q["checker"], "ok");
    // int8 against fp32 on the test split (the validation images placed the threshold): verdicts
    // through the engines as the station runs them.
    let eq = Engine::load(bundle, Precision::Int8)?;
    let cat = host::data::category::Category::open(data)?;
    let split = host::data::split::Split::classifier(&cat, 0, None)?;
    let (mut same, mut max_d) = (0usize, 0f32);
    for item in &split.test {
        let (rgb, w, h) = runtime::engine::decode_file(&item.image).map_err(anyhow::Error::msg)?;
        let a = engine.infer_rgb(&rgb, w, h, false)?;
        let b = eq.infer_rgb(&rgb, w, h, false)?;
        same += usize::from(a.fail == b.fail);
        max_d = max_d.max((a.score - b.score).abs());
    }
    let share = same as f64 / split.test.len() as f64;
    let mm = r.manifest.metrics.context("manifest metrics")?;
    eprintln!(
        "int8 verdict agreement on test {same}/{} ({share:.3}), max |prob diff| {max_d:.4}; \
         val AUROC fp32 {:?} int8 {:?}",
        split.test.len(),
        mm.fp32_val_auroc,
        mm.int8_val_auroc
    );
    // Seeds 1, 2, 3: 19, 24, 24 of 28 (see CLS_INT8_FLOOR).
    assert!(share >= CLS_INT8_FLOOR, "int8 agrees with fp32 on {share:.3} of test images");
    Ok(())
}

#[test]
fn train_defects_leaves_the_other_types_unseen() -> anyhow::Result<()> {
    common::report_crashes();
    let dir = tempfile::tempdir()?;
    let data = category(dir.path())?;
    let out = dir.path().join("run");
    let mut cfg = config();
    cfg.max_epochs = Some(2);
    train(cfg, &options(data.clone(), out.clone(), Some(vec!["color".into()])))?;
    let m = host::eval::classifier::evaluate(
        &RunDir::open(&out)?,
        ComputeDevice::Cpu,
        1,
        CamMethod::GradCam,
        None,
        false,
    )?;
    assert_eq!(m.run.seen_defects.as_deref(), Some(&["color".to_string()][..]));
    let types: Vec<_> = m.per_defect_recall.keys().cloned().collect();
    assert_eq!(types, vec!["color", "contamination"], "every type is reported");
    // An unknown type is a clear error naming it.
    let err = train(config(), &options(data, dir.path().join("bad"), Some(vec!["dent".into()])))
        .err()
        .context("unknown defect type accepted")?;
    assert!(format!("{err}").contains("dent"), "{err}");
    Ok(())
}
