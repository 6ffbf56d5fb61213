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
    // Two categories x (GLASS + classifier) + mean rows; GLASS map, Grad-CAM, Grad-CAM++ per category.
    assert_eq!(r.detection.len(), 6, "{:#?}", r.detection);
    assert_eq!(r.explanation.len(), 9);
    // Experiment 3 defaults to the type with the most images; every other type is unseen.
    for c in &r.categories {
        let rows: Vec<_> = r.unseen.iter().filter(|u| u.category == c.name).collect();
        assert_eq!(rows.iter().filter(|u| u.seen).count(), 1, "{rows:#?}");
        assert!(rows.iter().filter(|u| !u.seen).count() >= 2);
        assert!(rows.iter().all(|u| u.n_images > 0));
        assert_eq!(c.runs.len(), 3);
        assert!(!c.figures.strips.is_empty() && c.figures.strips.len() <= 3);
    }
    assert_eq!(r.conclusion.len(), 3);
    for f in &r.conclusion {
        assert!(["holds", "does not hold", "mixed"].contains(&f.verdict.as_str()), "{f:?}");
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
