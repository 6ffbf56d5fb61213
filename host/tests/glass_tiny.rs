//! Acceptance (GLASS issue): the `tiny` preset on a synthetic category reaches test image AUROC >= 0.95.
//! Trains for real (EfficientNet-Lite0 ImageNet weights from scripts/setup), then evaluates through the
//! same code as `host eval`.
use anyhow::Context;
use host::data::synth::{self, Kind, SynthConfig};
use host::models::glass::GlassConfig;
use host::train::glass::{train, GlassTrainOptions};
use host::train::run::{DeviceChoice, RunDir};

#[test]
fn tiny_preset_detects_synthetic_defects() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut sc = SynthConfig::new(dir.path(), "weave", Kind::Texture);
    sc.size = 192;
    sc.train = 40;
    sc.test_good = 20;
    sc.test_defect = 6;
    synth::generate(&sc).context("generating the synthetic category")?;
    let data = dir.path().join("weave");
    let out = dir.path().join("run");
    let cfg = GlassConfig::tiny();
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
    let state = train(cfg, &opts).context("training")?;
    eprintln!(
        "trained {} epochs in {:.0}s, best val AUROC {:.3}",
        state.epochs_done,
        t0.elapsed().as_secs_f64(),
        state.best_val_auroc
    );
    let rd = RunDir::open(&out)?;
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
