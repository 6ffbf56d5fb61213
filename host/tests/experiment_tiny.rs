//! `host experiment` end to end on two synthetic categories with the tiny GLASS preset and a small
//! EfficientNet-Lite0 classifier (the experiment issue's CI acceptance): `results.json` holds all three
//! tables with finite numbers, every file `index.html` references exists, a second call reuses every
//! run, and changed settings on an existing run are refused with the differing keys named.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use host::data::synth::{self, Kind, SynthConfig};
use host::experiment::report::{Role, Verdict};
use host::experiment::{self, ClassifierSpec, ExperimentOptions};
use host::models::classifier::{Arch, ClassifierConfig};
use host::models::glass::GlassConfig;
use host::run::ComputeDevice;

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
        device: ComputeDevice::Cpu,
        threads: 1,
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

/// Every table row of a category equals what its run wrote to `metrics.json` (read back from disk, not
/// from the in-memory results), and every "mean" row is the mean of its category rows.
fn assert_tables_follow_the_runs(
    out: &Path,
    r: &experiment::report::Results,
) -> anyhow::Result<()> {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9 || (a.is_nan() && b.is_nan());
    let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let mut checked = 0;
    for c in &r.categories {
        for run in c.runs.iter().filter(|run| run.role != Role::Unseen) {
            let file = out.join(&run.dir).join("metrics.json");
            let m: host::eval::Metrics = serde_json::from_str(
                &std::fs::read_to_string(&file).with_context(|| file.display().to_string())?,
            )?;
            let d = r
                .detection
                .iter()
                .find(|d| d.category == c.name && d.model == run.name)
                .with_context(|| format!("no detection row for {} {}", c.name, run.name))?;
            let fpr = m.confusion.fp as f64 / (m.confusion.fp + m.confusion.tn) as f64;
            for (what, table, run_value) in [
                ("auroc", d.auroc, opt(m.image_auroc)),
                ("best_f1_test", d.best_f1_test, m.best_f1_test),
                ("f1", d.f1, m.f1),
                ("recall", d.recall, m.recall),
                ("precision", d.precision, m.precision),
                ("accuracy", d.accuracy, m.accuracy),
                ("fpr", d.fpr, fpr),
            ] {
                assert!(
                    close(table, run_value),
                    "{} {}: table {what} {table} vs metrics.json {run_value}",
                    c.name,
                    run.name
                );
            }
            let e = r
                .explanation
                .iter()
                .find(|e| e.category == c.name && e.role == run.role && !e.heatmap.contains("++"))
                .with_context(|| format!("no explanation row for {} {}", c.name, run.name))?;
            assert!(close(e.pixel_auroc, opt(m.pixel_auroc)), "{}: pixel AUROC {e:?}", run.dir);
            assert!(close(e.aupro, opt(m.aupro)), "{}: AUPRO {e:?}", run.dir);
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        3 * r.categories.len(),
        "one GLASS, PatchCore and classifier run per category"
    );
    for mean in r.detection.iter().filter(|d| d.category == "mean") {
        let rows: Vec<_> =
            r.detection.iter().filter(|d| d.category != "mean" && d.model == mean.model).collect();
        let avg = rows.iter().map(|d| d.auroc).sum::<f64>() / rows.len() as f64;
        assert!(close(mean.auroc, avg), "mean row {mean:?} vs {avg}");
    }
    Ok(())
}

/// Finding 1 quotes the mean best-F1 of GLASS and of the classifier from Table 1, and its verdict
/// follows from them where the numbers leave no doubt (one seed: any difference counts).
fn assert_finding_1_follows_from_table_1(r: &experiment::report::Results) {
    use experiment::report::pct;
    let mean = |role: Role, f: fn(&experiment::report::DetectionRow) -> f64| {
        let rows: Vec<_> =
            r.detection.iter().filter(|d| d.category != "mean" && d.role == role).collect();
        rows.iter().map(|d| f(d)).sum::<f64>() / rows.len() as f64
    };
    let (gf, cf) =
        (mean(Role::Glass, |d| d.best_f1_test), mean(Role::Classifier, |d| d.best_f1_test));
    let (gr, cr) = (mean(Role::Glass, |d| d.recall), mean(Role::Classifier, |d| d.recall));
    let f = &r.conclusion[0];
    assert!(f.evidence.contains(&format!("GLASS mean best-F1 {}", pct(gf))), "{f:?} vs {gf}");
    assert!(f.evidence.contains(&pct(cf)), "{f:?} vs classifier {cf}");
    if gf > cf && gr >= cr {
        assert_eq!(f.verdict, Verdict::Holds, "GLASS F1 {gf} > {cf}, recall {gr} >= {cr}: {f:?}");
    } else if gf < cf && gr <= cr {
        assert_eq!(
            f.verdict,
            Verdict::DoesNotHold,
            "GLASS F1 {gf} < {cf}, recall {gr} <= {cr}: {f:?}"
        );
    }
    eprintln!("finding 1: {} ({})", f.verdict, f.evidence);
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
    // results.json is what the run returned, and its tables are the runs' own metrics.
    let back: experiment::report::Results = serde_json::from_value(json.clone())?;
    assert_eq!(back.detection.len(), r.detection.len());
    assert_tables_follow_the_runs(&out, &back)?;
    // Two categories x (GLASS + PatchCore + classifier) + mean rows; GLASS map, PatchCore map,
    // Grad-CAM, Grad-CAM++ per category + mean rows.
    assert_eq!(r.detection.len(), 9, "{:#?}", r.detection);
    assert_eq!(r.explanation.len(), 12);
    assert_eq!(r.detection.iter().filter(|d| d.role == Role::Patchcore).count(), 3);
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
    assert_finding_1_follows_from_table_1(&r);

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
    for role in [Role::Glass, Role::Patchcore, Role::Classifier] {
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
