//! Filling the results from the runs: per-category rows of Tables 1-3 and of the matched
//! false-alarm comparison, recall at a false-alarm rate, mean rows over categories.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::conclusion::conclude;
use super::machine::now_utc;
use super::results::{
    CategoryResult, DetectionRow, ExplanationRow, MatchedRow, Results, Role, Spread, UnseenRow,
};
use super::tables::unique;
use crate::eval::ScoresFile;
use crate::experiment::{CategoryOutcome, PUBLISHED_BEST_F1};

/// Recall on `abnormal` at the strictest cut that flags at most a share `fpr` of `normal` (flagged:
/// score strictly above the cut, so ties at the cut stay unflagged and the rate is never exceeded).
/// `None` without scores on either side or without a rate.
pub fn recall_at_fpr(normal: &[f32], abnormal: &[f32], fpr: f64) -> Option<f64> {
    if normal.is_empty() || abnormal.is_empty() || !fpr.is_finite() {
        return None;
    }
    let mut n = normal.to_vec();
    n.sort_by(|a, b| b.total_cmp(a));
    let k = (fpr.clamp(0.0, 1.0) * n.len() as f64 + 1e-9).floor() as usize;
    let cut = n.get(k).copied().unwrap_or(f32::NEG_INFINITY);
    Some(abnormal.iter().filter(|&&s| s > cut).count() as f64 / abnormal.len() as f64)
}

/// False-alarm rate on good test parts at the run's validation threshold, FP / (FP + TN) from its
/// confusion matrix (NaN without good parts): the one definition every table and finding uses.
fn false_alarm_rate(m: &crate::eval::Metrics) -> f64 {
    let c = &m.confusion;
    if c.fp + c.tn > 0 {
        c.fp as f64 / (c.fp + c.tn) as f64
    } else {
        f64::NAN
    }
}

impl Results {
    /// Adds one category's runs and figures.
    pub fn add_category(&mut self, name: &str, outcome: CategoryOutcome) {
        let exp3 = outcome.exp3.as_str();
        let scores: &[ScoresFile] = &outcome.scores;
        self.meta.exp3_defects.insert(name.into(), exp3.into());
        self.meta.train_normals.insert(name.into(), outcome.train_normals);
        let runs = &outcome.runs;
        for r in runs.iter().filter(|r| r.role != Role::Unseen) {
            let m = &r.metrics;
            let published =
                PUBLISHED_BEST_F1.iter().find(|p| p.0 == name).and_then(|p| match r.role {
                    Role::Glass => Some((p.1, "GLASS (published)".to_string())),
                    Role::Classifier => Some((p.2, "TinyViT-21M-512 (published)".to_string())),
                    Role::Patchcore | Role::Unseen => None,
                });
            self.detection.push(DetectionRow {
                category: name.into(),
                model: r.name.clone(),
                role: r.role,
                best_f1_test: m.best_f1_test,
                accuracy: m.accuracy,
                precision: m.precision,
                recall: m.recall,
                fpr: false_alarm_rate(m),
                f1: m.f1,
                auroc: m.image_auroc.unwrap_or(f64::NAN),
                published_best_f1: published.as_ref().map(|p| p.0),
                published_model: published.map(|p| p.1),
                spread: Spread::default(),
            });
            let heatmap = if r.role == Role::Classifier {
                format!("{} Grad-CAM", r.name)
            } else {
                format!("{} map", r.name)
            };
            self.explanation.push(ExplanationRow {
                category: name.into(),
                heatmap,
                role: r.role,
                pixel_auroc: m.pixel_auroc.unwrap_or(f64::NAN),
                aupro: m.aupro.unwrap_or(f64::NAN),
                spread: Spread::default(),
            });
            if let Some((px, pro)) = r.gradcampp {
                self.explanation.push(ExplanationRow {
                    category: name.into(),
                    heatmap: format!("{} Grad-CAM++", r.name),
                    role: r.role,
                    pixel_auroc: px.unwrap_or(f64::NAN),
                    aupro: pro.unwrap_or(f64::NAN),
                    spread: Spread::default(),
                });
            }
        }
        // Detectors against classifiers at the classifier's false-alarm rate.
        let split_scores = |i: usize| -> (Vec<f32>, Vec<f32>) {
            let t = &scores[i].test;
            (
                t.iter().filter(|r| !r.abnormal).map(|r| r.score).collect(),
                t.iter().filter(|r| r.abnormal).map(|r| r.score).collect(),
            )
        };
        for c in runs.iter().filter(|r| r.role == Role::Classifier) {
            let c_fpr = false_alarm_rate(&c.metrics);
            for (di, d) in runs.iter().enumerate().filter(|(_, r)| r.role.is_detector()) {
                let (d_normal, d_abnormal) = split_scores(di);
                self.matched.push(MatchedRow {
                    category: name.into(),
                    model: d.name.clone(),
                    role: d.role,
                    classifier: c.name.clone(),
                    classifier_fpr: c_fpr,
                    classifier_recall: c.metrics.recall,
                    recall: recall_at_fpr(&d_normal, &d_abnormal, c_fpr).unwrap_or(f64::NAN),
                    spread: Spread::default(),
                });
            }
        }
        // Table 3: recall per defect type on the experiment-3 classifier's test images.
        let glass_idx = runs.iter().position(|r| r.role == Role::Glass);
        let glass_thr = glass_idx.map(|i| runs[i].metrics.threshold).unwrap_or(f32::INFINITY);
        let glass_scores: HashMap<&Path, f32> = glass_idx
            .map(|i| scores[i].test.iter().map(|r| (r.file.as_path(), r.score)).collect())
            .unwrap_or_default();
        let pc_idx = runs.iter().position(|r| r.role == Role::Patchcore);
        let pc_thr = pc_idx.map(|i| runs[i].metrics.threshold).unwrap_or(f32::INFINITY);
        let pc_scores: HashMap<&Path, f32> = pc_idx
            .map(|i| scores[i].test.iter().map(|r| (r.file.as_path(), r.score)).collect())
            .unwrap_or_default();
        for (i, r) in runs.iter().enumerate().filter(|(_, r)| r.role == Role::Unseen) {
            let full = runs.iter().position(|f| {
                f.role == Role::Classifier && f.metrics.run.arch == r.metrics.run.arch
            });
            let seen = r.metrics.run.seen_defects.clone().unwrap_or_default();
            let c_fpr = Some(false_alarm_rate(&r.metrics)).filter(|f| f.is_finite());
            let g_normal: Vec<f32> = glass_idx.map(|g| split_scores(g).0).unwrap_or_default();
            // Per type: GLASS scores of its images.
            let mut g_type: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
            // Per type: (GLASS hits, PatchCore hits, images).
            let mut per_type: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
            for rec in scores[i].test.iter() {
                if let Some(d) = rec.defect.as_deref() {
                    if let Some(&s) = glass_scores.get(rec.file.as_path()) {
                        g_type.entry(d).or_default().push(s);
                    }
                    let e = per_type.entry(d).or_default();
                    e.2 += 1;
                    if glass_scores.get(rec.file.as_path()).is_some_and(|&s| s >= glass_thr) {
                        e.0 += 1;
                    }
                    if pc_scores.get(rec.file.as_path()).is_some_and(|&s| s >= pc_thr) {
                        e.1 += 1;
                    }
                }
            }
            for (d, (glass_hits, pc_hits, n)) in per_type {
                self.unseen.push(UnseenRow {
                    category: name.into(),
                    defect: d.into(),
                    classifier: r.name.clone(),
                    seen: seen.iter().any(|s| s == d),
                    n_images: n,
                    classifier_recall: r.metrics.per_defect_recall.get(d).copied().unwrap_or(0.0),
                    classifier_all_types_recall: full
                        .and_then(|f| runs[f].metrics.per_defect_recall.get(d).copied())
                        .unwrap_or(f64::NAN),
                    glass_recall: glass_hits as f64 / n.max(1) as f64,
                    classifier_fpr: c_fpr,
                    glass_recall_matched: c_fpr.and_then(|f| {
                        recall_at_fpr(&g_normal, g_type.get(d).map_or(&[][..], |v| &v[..]), f)
                    }),
                    patchcore_recall: pc_idx.map(|_| pc_hits as f64 / n.max(1) as f64),
                    spread: Spread::default(),
                });
            }
        }
        let exp3_defect = exp3.to_string();
        self.categories.push(CategoryResult {
            name: name.into(),
            exp3_defect,
            runs: outcome.runs,
            figures: outcome.figures,
        });
    }

    /// Mean rows and the conclusion (recomputed from the per-category rows).
    pub fn finish(&mut self) {
        self.meta.written = now_utc();
        self.detection.retain(|r| r.category != "mean");
        self.explanation.retain(|r| r.category != "mean");
        let n_cat = self.categories.len();
        if n_cat > 1 {
            let models = unique(self.detection.iter().map(|r| (r.model.clone(), r.role)));
            for (model, role) in models {
                let rows: Vec<&DetectionRow> =
                    self.detection.iter().filter(|r| r.model == model).collect();
                let mean = |f: fn(&DetectionRow) -> f64| {
                    rows.iter().map(|r| f(r)).sum::<f64>() / rows.len() as f64
                };
                let published: Vec<f64> = rows.iter().filter_map(|r| r.published_best_f1).collect();
                let all_published = published.len() == rows.len();
                self.detection.push(DetectionRow {
                    category: "mean".into(),
                    model,
                    role,
                    best_f1_test: mean(|r| r.best_f1_test),
                    accuracy: mean(|r| r.accuracy),
                    precision: mean(|r| r.precision),
                    recall: mean(|r| r.recall),
                    fpr: mean(|r| r.fpr),
                    f1: mean(|r| r.f1),
                    auroc: mean(|r| r.auroc),
                    published_best_f1: all_published
                        .then(|| published.iter().sum::<f64>() / published.len() as f64),
                    published_model: rows.first().and_then(|r| r.published_model.clone()),
                    spread: Spread::default(),
                });
            }
            let maps = unique(self.explanation.iter().map(|r| (r.heatmap.clone(), r.role)));
            for (heatmap, role) in maps {
                let rows: Vec<&ExplanationRow> =
                    self.explanation.iter().filter(|r| r.heatmap == heatmap).collect();
                let n = rows.len() as f64;
                self.explanation.push(ExplanationRow {
                    category: "mean".into(),
                    heatmap,
                    role,
                    pixel_auroc: rows.iter().map(|r| r.pixel_auroc).sum::<f64>() / n,
                    aupro: rows.iter().map(|r| r.aupro).sum::<f64>() / n,
                    spread: Spread::default(),
                });
            }
        }
        self.conclusion = conclude(self);
    }
}
