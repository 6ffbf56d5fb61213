//! PatchCore (the memory-bank baseline) end to end on small synthetic categories, each built once and
//! shared by the tests of this file:
//! - the bank detects synthetic defects (test image AUROC >= 0.95 through `host eval`'s code) and its
//!   bundle runs in the station engine with tract = libtorch (golden vectors and every test image's
//!   score in `scores.json`, <= 1e-4 relative) and onnxruntime as a second client;
//! - image-level labels only: a category without any mask trains and evaluates with null pixel
//!   metrics, and one whose defect type lost its masks reports `pixel_metric_images` below its test
//!   image count; `data check` warns instead of failing;
//! - images as real lines produce them: 8-bit grayscale PNGs of different, non-square sizes (100 to
//!   900 px sides) go through train, eval, export and the station engine.
//!
//! The bank takes seconds to build on the tiny preset's 160 px features, which is why these
//! format tests use it rather than GLASS.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{ensure, Context};
use host::data::synth::{self, Kind, SynthConfig};
use host::eval::{Metrics, ScoresFile};
use host::export::{self, ExportOptions};
use host::models::glass::GlassConfig;
use host::models::patchcore::PatchCoreConfig;
use host::run::{read_json, ComputeDevice, RunDir};
use host::train::patchcore::{train, PatchCoreTrainOptions};
use runtime::engine::{Engine, Precision};

/// Synthetic category seed. The 0.95 AUROC gate below was measured on seeds 11, 12, 13 of this
/// generator (not this one): see the note at `bank_detects_synthetic_defects`.
const SYNTH_SEED: u64 = 5;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sc = SynthConfig::new(dir.path(), "weave", Kind::Texture);
        sc.seed = SYNTH_SEED;
        sc.size = 192;
        sc.train = 40;
        sc.test_good = 20;
        sc.test_defect = 6;
        synth::generate(&sc).expect("generating the synthetic category");
        let root = dir.path().to_path_buf();
        Fixture { _dir: dir, root }
    })
}

/// Builds a bank on `data` into `out` with the tiny preset's features, then evaluates it.
fn bank_and_eval(data: &Path, out: &Path) -> anyhow::Result<Metrics> {
    let cfg = PatchCoreConfig::from_glass(&GlassConfig::tiny());
    let opts = PatchCoreTrainOptions {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        device: ComputeDevice::Cpu,
        backbone_weights: None,
        threads: 1,
        progress: false,
    };
    let t0 = std::time::Instant::now();
    let state = train(cfg, &opts).context("building the bank")?;
    eprintln!(
        "bank built in {:.1}s, val AUROC {:.3}",
        t0.elapsed().as_secs_f64(),
        state.best_val_auroc
    );
    let rd = RunDir::open(out)?;
    let m =
        host::eval::patchcore::evaluate(&rd, ComputeDevice::Cpu, 1, false).context("evaluating")?;
    eprintln!("{}", serde_json::to_string(&m)?);
    Ok(m)
}

struct Trained {
    run: PathBuf,
    bundle: PathBuf,
    metrics: Metrics,
}

fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let f = fixture();
        let run = f.root.join("run-pc");
        let metrics = bank_and_eval(&f.root.join("weave"), &run).expect("bank + eval");
        let bundle = f.root.join("bundle-pc");
        export::export(&ExportOptions {
            run: run.clone(),
            out: bundle.clone(),
            int8: false,
            calib: export::DEFAULT_CALIB,
            f16: false,
            golden: 4,
            threads: 1,
            progress: false,
        })
        .expect("export");
        Trained { run, bundle, metrics }
    })
}

/// Gate: test image AUROC >= 0.95 (the number). Measured once on other generator seeds
/// (`host synth --seed S --size 192 --train 40 --test-good 20 --test-defect 6`, bank on the tiny
/// preset's features, station coreset; `host eval`): seeds 11 / 12 / 13 gave test image AUROC
/// 1.000 / 0.993 / 0.980 (mean 0.991, min 0.980) and pixel AUROC 0.983 / 0.994 / 0.989; the gates
/// (0.95 image, 0.8 pixel) sit below the minimum by a margin for a harder draw.
#[test]
fn bank_detects_synthetic_defects() -> anyhow::Result<()> {
    let t = trained();
    let m = &t.metrics;
    let auroc = m.image_auroc.context("no image AUROC")?;
    assert!(auroc >= 0.95, "test image AUROC {auroc:.3} < 0.95");
    // Localisation is scored on every test image (all defects have masks here).
    assert_eq!(m.pixel_metric_images, m.n_test_normal + m.n_test_abnormal);
    let pixel = m.pixel_auroc.context("no pixel AUROC")?;
    assert!(pixel >= 0.8, "pixel AUROC {pixel:.3} < 0.8");
    // Validation maps are scored too (map settings are compared on them, never on test); the same
    // floor as test, since the two halves are drawn alike.
    let val_pixel = m.val_pixel_auroc.context("no validation pixel AUROC")?;
    assert!(val_pixel >= 0.8, "validation pixel AUROC {val_pixel:.3} < 0.8");
    let cfg: host::run::PatchCoreRunConfig = read_json(&t.run.join("config.json"))?;
    // The station default: FLOP budget of the backbone, far below 64 MB.
    let want = host::models::patchcore::station_bank_size(cfg.patchcore.embed_dim())
        .min(cfg.bank.train_patches);
    assert_eq!(cfg.bank.size, want);
    assert!(cfg.bank.bytes <= 64 << 20);
    Ok(())
}

fn golden(bundle: &Path) -> anyhow::Result<Vec<(String, tch::Tensor)>> {
    Ok(tch::Tensor::read_npz(bundle.join(export::GOLDEN_FILE))?)
}

fn get<'a>(g: &'a [(String, tch::Tensor)], name: &str) -> anyhow::Result<&'a tch::Tensor> {
    Ok(&g.iter().find(|(n, _)| n == name).with_context(|| format!("golden has no {name}"))?.1)
}

#[test]
fn tract_matches_libtorch_on_golden_and_every_test_image() -> anyhow::Result<()> {
    let t = trained();
    let g = golden(&t.bundle)?;
    let (x, ps, img) = (get(&g, "input")?, get(&g, "patch_scores")?, get(&g, "image_score")?);
    let engine = Engine::load(&t.bundle, Precision::Fp32)?;
    assert_eq!(engine.manifest().model_kind, shared::manifest::ModelKind::Patchcore);
    let (mut worst_img, mut worst_ps) = (0f64, 0f64);
    for i in 0..x.size()[0] {
        let xi: Vec<f32> = Vec::<f32>::try_from(x.get(i).reshape([-1]))?;
        let out = engine.run_preprocessed(&xi)?;
        let want_img = img.get(i).double_value(&[]);
        worst_img = worst_img.max((out.image_score as f64 - want_img).abs() / want_img.abs());
        let want: Vec<f32> = Vec::<f32>::try_from(ps.get(i).reshape([-1]))?;
        let scale = want.iter().fold(0f32, |a, b| a.max(b.abs())) as f64;
        for (a, b) in out.patch_scores.iter().zip(&want) {
            worst_ps = worst_ps.max((a - b).abs() as f64 / scale);
        }
    }
    eprintln!("golden: image score rel {worst_img:.2e}, patch scores rel {worst_ps:.2e}");
    ensure!(worst_img <= 1e-4 && worst_ps <= 1e-4, "tract vs libtorch beyond 1e-4 relative");

    // What `device inspect` does with a file, on every test image, against host eval's scores.json.
    let scores: ScoresFile = read_json(&t.run.join("scores.json"))?;
    let mut worst = 0f64;
    for r in &scores.test {
        let (rgb, w, h) = runtime::engine::decode_file(&r.file).map_err(anyhow::Error::msg)?;
        let inf = engine.infer_rgb(&rgb, w, h, true)?;
        worst = worst.max((inf.score - r.score).abs() as f64 / r.score.abs() as f64);
        assert!(inf.map.is_some(), "no map for {}", r.file.display());
    }
    eprintln!("{} test images: tract vs libtorch score rel {worst:.2e}", scores.test.len());
    ensure!(worst <= 1e-4, "station score differs from host eval by {worst:.2e} relative");
    Ok(())
}

#[test]
fn onnxruntime_agrees_with_libtorch() -> anyhow::Result<()> {
    let t = trained();
    let r = common::check_onnx(&t.bundle, export::FP32_FILE)?;
    eprintln!("{r}");
    assert_eq!(r["checker"], "ok");
    let g = golden(&t.bundle)?;
    let scale = get(&g, "image_score")?.abs().max().double_value(&[]);
    for k in ["patch_scores", "image_score"] {
        let d = r["max_abs_diff"][k].as_f64().context("missing diff")?;
        assert!(d / scale <= 1e-4, "onnxruntime vs libtorch {k}: {d} (scale {scale})");
    }
    Ok(())
}

/// Copies a category folder.
fn copy_dir(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

#[test]
fn categories_without_masks_report_null_or_partial_pixel_metrics() -> anyhow::Result<()> {
    let f = fixture();
    let src = f.root.join("weave");

    // No masks at all: `data check` warns (exit 0 material), evaluation has no pixel metrics.
    let none = f.root.join("nomask/weave");
    copy_dir(&src, &none)?;
    std::fs::remove_dir_all(none.join("ground_truth"))?;
    let report = host::data::check(&none, 0)?;
    assert!(report.is_ok(), "errors: {:#?}", report.errors);
    assert!(
        report.warnings.iter().any(|w| w.contains("no defect image has a mask")),
        "{:#?}",
        report.warnings
    );
    let m = bank_and_eval(&none, &f.root.join("run-nomask"))?;
    assert_eq!((m.pixel_auroc, m.aupro, m.pixel_metric_images), (None, None, 0));
    assert_eq!(m.val_pixel_auroc, None);
    assert!(m.image_auroc.is_some());
    let json: serde_json::Value = read_json(&f.root.join("run-nomask/metrics.json"))?;
    assert!(json["pixel_auroc"].is_null() && json["aupro"].is_null(), "{json}");

    // One defect type without masks: a warning naming it; its images leave the pixel metrics.
    let part = f.root.join("partial/weave");
    copy_dir(&src, &part)?;
    let ty = std::fs::read_dir(part.join("ground_truth"))?
        .next()
        .context("no ground_truth types")??
        .file_name()
        .to_string_lossy()
        .into_owned();
    std::fs::remove_dir_all(part.join("ground_truth").join(&ty))?;
    let report = host::data::check(&part, 0)?;
    assert!(report.is_ok(), "errors: {:#?}", report.errors);
    assert!(
        report.warnings.iter().any(|w| w.contains(&format!("`{ty}` has no masks"))),
        "{:#?}",
        report.warnings
    );
    let m = bank_and_eval(&part, &f.root.join("run-partial"))?;
    let n_test = m.n_test_normal + m.n_test_abnormal;
    let cat = host::data::category::Category::open(&part)?;
    let split = host::data::split::Split::anomaly_detection(&cat, 0);
    let unmasked = split.test.iter().filter(|i| i.defect.as_deref() == Some(ty.as_str())).count();
    assert!(unmasked > 0);
    assert_eq!(m.pixel_metric_images, n_test - unmasked, "test images {n_test}");
    assert!(m.pixel_auroc.is_some() && m.aupro.is_some());
    Ok(())
}

/// Rewrites every image of a category as 8-bit grayscale at a size of its own (sides 100..=900 px,
/// never square), masks resized with their image (nearest neighbour).
fn to_gray_mixed_sizes(cat: &Path) -> anyhow::Result<Vec<(u32, u32)>> {
    let mut sizes = Vec::new();
    let mut k = 0u32;
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["train", "test"] {
        for ty in std::fs::read_dir(cat.join(sub))? {
            for e in std::fs::read_dir(ty?.path())? {
                files.push(e?.path());
            }
        }
    }
    files.sort();
    for img_path in files {
        // A fixed pseudo-random size per file: w and h in 100..=900, w != h.
        k += 1;
        let w = 100 + (k * 397) % 801;
        let mut h = 100 + (k * 211 + 55) % 801;
        if h == w {
            h = if w > 100 { w - 1 } else { w + 1 };
        }
        let img = image::open(&img_path)?;
        let gray =
            image::imageops::resize(&img.to_luma8(), w, h, image::imageops::FilterType::Triangle);
        gray.save(&img_path)?;
        sizes.push((w, h));
        let ty = img_path.parent().and_then(|p| p.file_name()).context("type")?;
        let stem = img_path.file_stem().context("stem")?.to_string_lossy().into_owned();
        let mask = cat.join("ground_truth").join(ty).join(format!("{stem}_mask.png"));
        if mask.is_file() {
            let m = image::open(&mask)?.to_luma8();
            image::imageops::resize(&m, w, h, image::imageops::FilterType::Nearest).save(&mask)?;
        }
    }
    Ok(sizes)
}

#[test]
fn grayscale_images_of_mixed_non_square_sizes_run_end_to_end() -> anyhow::Result<()> {
    let f = fixture();
    let cat = f.root.join("gray/weave");
    copy_dir(&f.root.join("weave"), &cat)?;
    let sizes = to_gray_mixed_sizes(&cat)?;
    assert!(sizes
        .iter()
        .all(|&(w, h)| w != h && (100..=900).contains(&w) && (100..=900).contains(&h)));
    let first = cat.join("train/good").read_dir()?.next().context("no train image")??.path();
    assert_eq!(image::open(&first)?.color(), image::ColorType::L8, "{}", first.display());
    let report = host::data::check(&cat, 0)?;
    assert!(report.is_ok(), "errors: {:#?}", report.errors);

    let run = f.root.join("run-gray");
    let m = bank_and_eval(&cat, &run)?;
    // Grayscale squashed to 160 px is harder than the RGB original; the gate only asks that
    // detection still works (well above chance) and that every image went through.
    let auroc = m.image_auroc.context("no image AUROC")?;
    assert!(auroc >= 0.8, "grayscale mixed-size test image AUROC {auroc:.3}");
    assert_eq!(m.pixel_metric_images, m.n_test_normal + m.n_test_abnormal);

    let bundle = f.root.join("bundle-gray");
    export::export(&ExportOptions {
        run: run.clone(),
        out: bundle.clone(),
        int8: false,
        calib: export::DEFAULT_CALIB,
        f16: false,
        golden: 2,
        threads: 1,
        progress: false,
    })?;
    let engine = Engine::load(&bundle, Precision::Fp32)?;
    let scores: ScoresFile = read_json(&run.join("scores.json"))?;
    let mut worst = 0f64;
    for r in &scores.test {
        let line = runtime::inspect::inspect_file(&engine, &r.file, None);
        assert!(line.error.is_none(), "{line:?}");
        let s = line.score.context("no score")?;
        worst = worst.max((s - r.score).abs() as f64 / r.score.abs() as f64);
    }
    eprintln!("grayscale mixed sizes: station vs host eval score rel {worst:.2e}");
    ensure!(worst <= 1e-4, "station score differs from host eval by {worst:.2e} relative");
    Ok(())
}
