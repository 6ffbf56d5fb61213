//! Table building shared by the Markdown and HTML renderers: number formatting, each table's
//! header and cells, the runs and metadata lines.
use super::results::{Results, Spread};

/// Percent with one decimal.
pub fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", 100.0 * v)
    } else {
        "n/a".into()
    }
}

/// " ± sd" when the value is a mean over several seeds.
pub(super) fn pm(sd: f64) -> String {
    if sd > 0.0 {
        format!(" ± {:.1}", 100.0 * sd)
    } else {
        String::new()
    }
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(pct).unwrap_or_else(|| "".into())
}

/// A percentage with its spread over seeds (`71.2% ± 3.4`).
fn pct_sd(v: f64, spread: &Spread, field: &str) -> String {
    format!("{}{}", pct(v), if v.is_finite() { pm(spread.of(field)) } else { String::new() })
}

/// Table 1 rows as cells.
pub(super) fn detection_cells(r: &Results) -> Vec<Vec<String>> {
    r.detection
        .iter()
        .map(|d| {
            let sp = &d.spread;
            vec![
                d.category.clone(),
                d.model.clone(),
                pct_sd(d.best_f1_test, sp, "best_f1_test"),
                pct_sd(d.accuracy, sp, "accuracy"),
                pct_sd(d.precision, sp, "precision"),
                pct_sd(d.recall, sp, "recall"),
                pct_sd(d.fpr, sp, "fpr"),
                pct_sd(d.f1, sp, "f1"),
                pct_sd(d.auroc, sp, "auroc"),
                match (&d.published_best_f1, &d.published_model) {
                    (Some(v), Some(m)) => format!("{} ({m})", pct(*v)),
                    _ => opt_pct(d.published_best_f1),
                },
            ]
        })
        .collect()
}

pub(super) const DETECTION_HEAD: [&str; 10] = [
    "category",
    "model",
    "best F1 (test, oracle)",
    "accuracy",
    "precision",
    "recall",
    "false alarms (good parts)",
    "F1",
    "AUROC",
    "published best F1",
];

pub(super) fn explanation_cells(r: &Results) -> Vec<Vec<String>> {
    r.explanation
        .iter()
        .map(|e| {
            vec![
                e.category.clone(),
                e.heatmap.clone(),
                pct_sd(e.pixel_auroc, &e.spread, "pixel_auroc"),
                pct_sd(e.aupro, &e.spread, "aupro"),
            ]
        })
        .collect()
}

pub(super) const EXPLANATION_HEAD: [&str; 4] =
    ["category", "heat map", "pixel AUROC", "AUPRO (FPR <= 0.3)"];

pub(super) fn unseen_cells(r: &Results) -> Vec<Vec<String>> {
    r.unseen
        .iter()
        .map(|u| {
            vec![
                u.category.clone(),
                u.defect.clone(),
                if u.seen { "seen" } else { "unseen" }.into(),
                u.n_images.to_string(),
                u.classifier.clone(),
                pct_sd(u.classifier_recall, &u.spread, "classifier_recall"),
                pct_sd(u.classifier_all_types_recall, &u.spread, "classifier_all_types_recall"),
                pct_sd(u.glass_recall, &u.spread, "glass_recall"),
                u.glass_recall_matched
                    .map(|v| pct_sd(v, &u.spread, "glass_recall_matched"))
                    .unwrap_or_else(|| "n/a".into()),
                u.patchcore_recall
                    .map(|v| pct_sd(v, &u.spread, "patchcore_recall"))
                    .unwrap_or_else(|| "n/a".into()),
            ]
        })
        .collect()
}

pub(super) const MATCHED_TEXT: &str =
    "At matched false alarms: each detector's recall at the threshold where \
     it flags no more good test parts than the classifier does at its validation threshold (the \
     comparison the conclusion uses for recall).";

pub(super) const MATCHED_HEAD: [&str; 6] = [
    "category",
    "detector",
    "classifier",
    "classifier false-alarm rate",
    "classifier recall",
    "detector recall at that rate",
];

pub(super) fn matched_cells(r: &Results) -> Vec<Vec<String>> {
    r.matched
        .iter()
        .map(|m| {
            vec![
                m.category.clone(),
                m.model.clone(),
                m.classifier.clone(),
                pct_sd(m.classifier_fpr, &m.spread, "classifier_fpr"),
                pct_sd(m.classifier_recall, &m.spread, "classifier_recall"),
                pct_sd(m.recall, &m.spread, "recall"),
            ]
        })
        .collect()
}

pub(super) const UNSEEN_HEAD: [&str; 10] = [
    "category",
    "defect type",
    "in classifier training",
    "test images",
    "classifier",
    "classifier recall",
    "same arch, all types",
    "GLASS recall",
    "GLASS recall at the classifier's false-alarm rate",
    "PatchCore recall",
];

pub(super) fn runs_cells(r: &Results) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for c in &r.categories {
        for run in &c.runs {
            let m = &run.metrics;
            rows.push(vec![
                c.name.clone(),
                run.name.clone(),
                format!("{}/{}", m.run.best_epoch, m.run.epochs_trained),
                format!("{:.0}", m.run.train_seconds),
                run.eval_seconds.map(|s| format!("{s:.0}")).unwrap_or_else(|| "reused".into()),
                format!("{:.1}", run.parameters as f64 / 1e6),
                format!("{:.1}", run.checkpoint_bytes as f64 / 1e6),
                format!("{} + {}", m.n_test_normal, m.n_test_abnormal),
                m.run.image_size.to_string(),
                run.dir.clone(),
            ]);
        }
    }
    rows
}

pub(super) const RUNS_HEAD: [&str; 10] = [
    "category",
    "run",
    "best / trained epochs",
    "train s",
    "eval s",
    "trained params (M)",
    "checkpoint (MB)",
    "test normal + abnormal",
    "input px",
    "folder",
];

pub(super) fn meta_lines(r: &Results) -> Vec<(String, String)> {
    let m = &r.meta;
    vec![
        ("tool".into(), format!("host {} ({})", m.tool_version, m.git.as_deref().unwrap_or("?"))),
        ("libtorch".into(), m.libtorch.clone().unwrap_or_else(|| "?".into())),
        ("data".into(), m.data.clone()),
        ("seed".into(), m.seed.to_string()),
        ("GLASS".into(), format!("preset {}, {} px", m.glass_preset, m.glass_image_size)),
        (
            "classifiers".into(),
            m.classifier_configs
                .iter()
                .map(|c| {
                    format!(
                        "{} at {} px (max epochs {}, patience {})",
                        c["arch"].as_str().unwrap_or("?"),
                        c["image_size"],
                        c["max_epochs"],
                        c["patience"]
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "experiment 3".into(),
            m.exp3_defects.iter().map(|(c, d)| format!("{c}: {d}")).collect::<Vec<_>>().join(", "),
        ),
        (
            "hardware".into(),
            format!(
                "{} ({} CPUs), {:.0} GiB RAM, {} CUDA device(s)",
                m.cpu, m.cpus, m.memory_gib, m.cuda_devices
            ),
        ),
        ("this call".into(), format!("{:.0} s, written {}", m.wall_seconds, m.written)),
    ]
}

pub(super) fn seeds_text(r: &Results) -> String {
    if r.seeds.is_empty() {
        r.meta.seed.to_string()
    } else {
        r.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// The distinct items, in the order first seen.
pub(super) fn unique<T: PartialEq>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in it {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}
