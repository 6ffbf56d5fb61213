//! `host experiment` end to end on two synthetic categories with the tiny GLASS preset and a small
//! EfficientNet-Lite0 classifier (the experiment issue's CI acceptance): `results.json` holds all three
//! tables with finite numbers, every file `index.html` references exists, a second call reuses every
//! run, and changed settings on an existing run are refused with the differing keys named.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use host::data::synth::{self, Kind, SynthConfig};
use host::experiment::{self, ClassifierSpec, ExperimentOptions};
use host::models::classifier::Arch;
use host::models::glass::GlassConfig;
use host::train::classifier::ClassifierConfig;
use host::train::run::DeviceChoice;

fn options(root: &Path, out: &Path) -> ExperimentOptions {
    let mut glass = GlassConfig::tiny();
    glass.max_epochs = 8;
    glass.patience = 8;
    let mut cls = ClassifierConfig::for_arch(Arch::EfficientnetLite0);
    cls.image_size = 160;
    cls.max_epochs = Some(3);
    cls.patience = 3;
    ExperimentOptions {
        data: root.to_path_buf(),
        categories: vec!["weave".into(), "widget".into()],
        out: out.to_path_buf(),
        glass,
        classifiers: vec![ClassifierSpec { config: cls, weights: None }],
        exp3: BTreeMap::new(),
        device: DeviceChoice::Cpu,
        threads: 0,
        max_strips: 3,
        progress: false,
        seeds: vec![],
        patchcore_coreset: host::models::patchcore::CoresetSize::Station,
        textures: None,
        fg_masks: None,
    }
}

/// Every `src="..."` of an HTML page.
fn sources(html: &str) -> Vec<String> {
    html.split("src=\"").skip(1).filter_map(|s| s.split('"').next()).map(str::to_owned).collect()
}

fn assert_numbers(rows: &serde_json::Value, table: &str, keys: &[&str]) {
    let rows = rows.as_array().unwrap_or_else(|| panic!("{table} is not a list"));
    assert!(!rows.is_empty(), "{table} is empty");
    for row in rows {
        for k in keys {
            let v = row.get(*k).and_then(|v| v.as_f64());
            assert!(
                v.is_some_and(|v| v.is_finite() && (0.0..=1.0).contains(&v)),
                "{table}: {k} = {:?} in {row}",
                row.get(*k)
            );
        }
    }
}

#[test]
fn experiment_on_two_synthetic_categories_writes_a_complete_report() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, kind) in [("weave", Kind::Texture), ("widget", Kind::Object)] {
        let mut sc = SynthConfig::new(dir.path(), name, kind);
        sc.size = 160;
        sc.train = 24;
        sc.test_good = 12;
        sc.test_defect = 8;
        synth::generate(&sc).context("generating a synthetic category")?;
    }
    let out = dir.path().join("report");
    let opts = options(dir.path(), &out);
    let t0 = std::time::Instant::now();
    let r = experiment::run(&opts).context("first run")?;
    eprintln!("experiment in {:.0}s", t0.elapsed().as_secs_f64());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json"))?)?;
    let metric_keys = ["best_f1_test", "accuracy", "precision", "recall", "f1", "auroc"];
    assert_numbers(&json["detection"], "detection", &metric_keys);
    assert_numbers(&json["explanation"], "explanation", &["pixel_auroc", "aupro"]);
    assert_numbers(
        &json["unseen"],
        "unseen",
        &["classifier_recall", "classifier_all_types_recall", "glass_recall"],
    );
    // Two categories x (GLASS + PatchCore + classifier) + mean rows; GLASS map, PatchCore map,
    // Grad-CAM, Grad-CAM++ per category + mean rows.
    assert_eq!(r.detection.len(), 9, "{:#?}", r.detection);
    assert_eq!(r.explanation.len(), 12);
    assert_eq!(r.detection.iter().filter(|d| d.role == "patchcore").count(), 3);
    assert!(r.unseen.iter().all(|u| u.patchcore_recall.is_some()));
    // Experiment 3 defaults to the type with the most images; every other type is unseen.
    for c in &r.categories {
        let rows: Vec<_> = r.unseen.iter().filter(|u| u.category == c.name).collect();
        assert_eq!(rows.iter().filter(|u| u.seen).count(), 1, "{rows:#?}");
        assert!(rows.iter().filter(|u| !u.seen).count() >= 2);
        assert!(rows.iter().all(|u| u.n_images > 0));
        assert_eq!(c.runs.len(), 4);
        assert_eq!(c.figures.strip_columns.len(), 3, "{:?}", c.figures.strip_columns);
        assert!(!c.figures.strips.is_empty() && c.figures.strips.len() <= 3);
    }
    // The three findings, and GLASS against the memory-bank baseline.
    assert_eq!(r.conclusion.len(), 4);
    assert_eq!(r.conclusion[3].id, 4);
    for f in &r.conclusion {
        assert!(
            ["holds", "does not hold", "mixed", "inconclusive"].contains(&f.verdict.as_str()),
            "{f:?}"
        );
        assert!(f.evidence.contains('%'), "{f:?}");
    }

    let html = std::fs::read_to_string(out.join("index.html"))?;
    let srcs = sources(&html);
    assert!(srcs.len() >= 2 * 3 + 2, "too few pictures: {srcs:?}");
    for s in &srcs {
        assert!(!s.starts_with("http"), "network reference {s}");
        assert!(out.join(s).is_file(), "index.html references missing {s}");
    }
    let md = std::fs::read_to_string(out.join("report.md"))?;
    assert!(md.contains("Table 3"));

    // Resume: everything is reused.
    let r2 = experiment::run(&opts).context("second run")?;
    for c in &r2.categories {
        for run in &c.runs {
            assert!(run.reused, "{} was not reused", run.dir);
        }
    }
    assert_eq!(r2.detection.len(), r.detection.len());

    // Other settings on an existing run: refused, naming the key.
    let mut changed = options(dir.path(), &out);
    changed.classifiers[0].config.patience = 5;
    let err = experiment::run(&changed).err().context("changed settings were accepted")?;
    let msg = format!("{err:#}");
    assert!(msg.contains("patience") && msg.contains("efficientnet_lite0"), "{msg}");
    Ok(())
}

/// `--seeds 0,1`: every run per seed, results.json with per-seed tables and mean/sd rows for GLASS,
/// PatchCore and the classifier; the mean rows equal the mean of the per-seed rows.
#[test]
fn experiment_over_two_seeds_reports_mean_sd_and_per_seed_values() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut sc = SynthConfig::new(dir.path(), "weave", Kind::Texture);
    sc.size = 160;
    sc.train = 20;
    sc.test_good = 12;
    sc.test_defect = 6;
    sc.seed = 3;
    synth::generate(&sc).context("generating a synthetic category")?;
    let out = dir.path().join("report");
    let mut opts = options(dir.path(), &out);
    opts.categories = vec!["weave".into()];
    opts.seeds = vec![0, 1];
    opts.glass.max_epochs = 4;
    opts.glass.patience = 4;
    opts.classifiers[0].config.max_epochs = Some(2);
    opts.max_strips = 1;
    let r = experiment::run(&opts).context("two-seed run")?;
    assert_eq!(r.seeds, vec![0, 1]);
    assert_eq!(r.per_seed.len(), 2);
    for seed in [0, 1] {
        assert!(out.join(format!("runs/weave/seed-{seed}/glass/metrics.json")).is_file());
        assert!(out.join(format!("runs/weave/seed-{seed}/patchcore/metrics.json")).is_file());
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json"))?)?;
    assert_eq!(json["per_seed"].as_array().map(Vec::len), Some(2));
    for role in ["glass", "patchcore", "classifier"] {
        let row = r.detection.iter().find(|d| d.role == role).with_context(|| role.to_string())?;
        assert_eq!(row.spread.n_seeds, 2, "{row:?}");
        let per: Vec<f64> = r
            .per_seed
            .iter()
            .map(|t| t.detection.iter().find(|d| d.model == row.model).map(|d| d.auroc))
            .collect::<Option<Vec<_>>>()
            .context("a seed lacks the row")?;
        let mean = (per[0] + per[1]) / 2.0;
        assert!((row.auroc - mean).abs() < 1e-9, "{role}: {} vs mean of {per:?}", row.auroc);
        let sd = (per[0] - per[1]).abs() / 2f64.sqrt();
        assert!((row.spread.of("auroc") - sd).abs() < 1e-9, "{role}: sd {:?}", row.spread);
    }
    let md = std::fs::read_to_string(out.join("report.md"))?;
    assert!(md.contains("mean over split seeds 0, 1"), "{md}");
    Ok(())
}
