//! Several split seeds in one report: every seed's tables are kept (`per_seed`), and the report's
//! tables become their mean with the standard deviation in each row's `spread`.
//!
//! Rows are matched across seeds by their identity fields (category + model for Table 1, category +
//! heat map for Table 2, category + defect type + classifier for Table 3); a row missing from some
//! seed is averaged over the seeds that have it (`spread.n_seeds` says how many).
use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::report::{DetectionRow, ExplanationRow, Finding, MatchedRow, Results, UnseenRow};

/// One seed's tables, as a single-seed report would have them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedTables {
    /// Split seed.
    pub seed: u64,
    /// Table 1.
    pub detection: Vec<DetectionRow>,
    /// Table 2.
    pub explanation: Vec<ExplanationRow>,
    /// Table 3.
    pub unseen: Vec<UnseenRow>,
    /// Detectors against classifiers at matched false-alarm rates.
    #[serde(default)]
    pub matched: Vec<MatchedRow>,
    /// That seed's conclusion.
    pub conclusion: Vec<Finding>,
}

impl SeedTables {
    /// The tables of a finished single-seed `Results`.
    pub fn of(seed: u64, r: &Results) -> Self {
        SeedTables {
            seed,
            detection: r.detection.clone(),
            explanation: r.explanation.clone(),
            unseen: r.unseen.clone(),
            matched: r.matched.clone(),
            conclusion: r.conclusion.clone(),
        }
    }
}

/// Mean and sample standard deviation (n - 1; 0 for one value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, 0.0);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// Averages rows that share the `key` fields: numeric fields become their mean over the rows that
/// have a number there (NaN / null ones are skipped), with the sd of each field that varied in
/// `spread.sd`; every other field comes from the first row. Order: first appearance.
fn aggregate<T: Serialize + DeserializeOwned>(
    seeds: &[Vec<T>],
    key: &[&str],
) -> serde_json::Result<Vec<T>> {
    let mut groups: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for rows in seeds {
        for row in rows {
            let v = serde_json::to_value(row)?;
            let k: Vec<String> = key.iter().map(|f| v[*f].to_string()).collect();
            let k = k.join("\u{1f}");
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, list)) => list.push(v),
                None => groups.push((k, vec![v])),
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (_, rows) in groups {
        let mut merged = rows[0].clone();
        let mut sd: BTreeMap<String, f64> = BTreeMap::new();
        if let Some(obj) = merged.as_object_mut() {
            let fields: Vec<String> = obj.keys().cloned().collect();
            for f in fields {
                if f == "spread" {
                    continue;
                }
                let nums: Vec<f64> = rows.iter().filter_map(|r| r[&f].as_f64()).collect();
                if nums.is_empty() || nums.iter().all(|x| *x == nums[0]) {
                    continue; // not numeric, or the same on every seed: keep as is
                }
                let (m, s) = mean_sd(&nums);
                obj.insert(f.clone(), serde_json::json!(m));
                sd.insert(f, s);
            }
            obj.insert("spread".into(), serde_json::json!({ "n_seeds": rows.len(), "sd": sd }));
        }
        out.push(serde_json::from_value(merged)?);
    }
    Ok(out)
}

/// The report of several seeds: `first` (the first seed's results: runs, figures, metadata) with
/// its tables replaced by the mean over `per_seed`, the conclusion recomputed from those means and
/// spreads, and every seed's own tables kept in `per_seed`.
pub fn combine(first: &Results, per_seed: Vec<SeedTables>) -> serde_json::Result<Results> {
    let mut r = first.clone();
    let det: Vec<Vec<DetectionRow>> = per_seed.iter().map(|s| s.detection.clone()).collect();
    let exp: Vec<Vec<ExplanationRow>> = per_seed.iter().map(|s| s.explanation.clone()).collect();
    let uns: Vec<Vec<UnseenRow>> = per_seed.iter().map(|s| s.unseen.clone()).collect();
    r.detection = aggregate(&det, &["category", "model"])?;
    r.explanation = aggregate(&exp, &["category", "heatmap"])?;
    r.unseen = aggregate(&uns, &["category", "defect", "classifier"])?;
    let mat: Vec<Vec<MatchedRow>> = per_seed.iter().map(|s| s.matched.clone()).collect();
    r.matched = aggregate(&mat, &["category", "model", "classifier"])?;
    r.seeds = per_seed.iter().map(|s| s.seed).collect();
    r.per_seed = per_seed;
    r.conclusion = super::report::conclude(&r);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let (m, s) = mean_sd(&[0.9, 1.0, 0.8]);
        assert!((m - 0.9).abs() < 1e-12);
        assert!((s - 0.1).abs() < 1e-12, "{s}");
        assert_eq!(mean_sd(&[0.5]), (0.5, 0.0));
    }

    #[test]
    fn rows_are_matched_by_key_and_averaged() {
        let row = |cat: &str, auroc: f64, recall: f64| -> DetectionRow {
            serde_json::from_value(serde_json::json!({
                "category": cat, "model": "m", "role": "glass", "best_f1_test": 1.0,
                "accuracy": 1.0, "precision": 1.0, "recall": recall, "f1": 1.0, "auroc": auroc,
                "published_best_f1": null, "published_model": null
            }))
            .unwrap()
        };
        let seeds = vec![vec![row("a", 0.8, 0.5), row("b", 0.7, 1.0)], vec![row("a", 1.0, 0.5)]];
        let out = aggregate(&seeds, &["category", "model"]).unwrap();
        assert_eq!(out.len(), 2);
        assert!((out[0].auroc - 0.9).abs() < 1e-12);
        assert!((out[0].spread.of("auroc") - 0.02f64.sqrt()).abs() < 1e-12);
        assert_eq!(out[0].spread.n_seeds, 2);
        assert_eq!(out[0].spread.of("recall"), 0.0); // equal on both seeds
        assert_eq!((out[1].spread.n_seeds, out[1].auroc), (1, 0.7));
    }
}
