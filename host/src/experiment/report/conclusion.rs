//! The conclusion builder: the findings judged from the tables, a difference counting only beyond
//! the spread over seeds.
use super::results::{
    DetectionRow, ExplanationRow, Finding, MatchedRow, Results, Role, Spread, UnseenRow, Verdict,
};
use super::tables::{pct, pm, unique};

/// How one comparison came out, after the spread over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// GLASS ahead by more than the spread.
    Ahead,
    /// Within the spread (or equal).
    Level,
    /// GLASS behind by more than the spread.
    Behind,
}

/// Compares GLASS's `g` with the other model's `c`: a difference counts only when it exceeds the
/// larger of the two standard deviations over seeds (0 with one seed: any difference counts).
pub fn compare(g: f64, g_sd: f64, c: f64, c_sd: f64) -> Cmp {
    let spread = g_sd.max(c_sd).max(0.0);
    if g - c > spread {
        Cmp::Ahead
    } else if c - g > spread {
        Cmp::Behind
    } else {
        Cmp::Level
    }
}

/// "holds" when GLASS is ahead in all `total` comparisons, "does not hold" when it is behind in at
/// least one and ahead in none, "inconclusive" when every comparison is within the spread, "mixed"
/// otherwise.
fn verdict(better: usize, worse: usize, total: usize) -> Verdict {
    if total > 0 && better == total {
        Verdict::Holds
    } else if total > 0 && better == 0 && worse > 0 {
        Verdict::DoesNotHold
    } else if better == 0 && worse == 0 {
        Verdict::Inconclusive // also: nothing to compare
    } else {
        Verdict::Mixed
    }
}

/// Mean over rows of each row's sd of `field` (the spread of a per-category mean).
fn sd_of<T: HasSpread>(rows: &[&T], field: &str) -> f64 {
    rows.iter().map(|r| r.spread().of(field)).sum::<f64>() / rows.len().max(1) as f64
}

/// Rows that carry a [`Spread`].
trait HasSpread {
    fn spread(&self) -> &Spread;
}
impl HasSpread for DetectionRow {
    fn spread(&self) -> &Spread {
        &self.spread
    }
}
impl HasSpread for MatchedRow {
    fn spread(&self) -> &Spread {
        &self.spread
    }
}
impl HasSpread for ExplanationRow {
    fn spread(&self) -> &Spread {
        &self.spread
    }
}

fn mean_of<T>(rows: &[&T], f: impl Fn(&T) -> f64) -> f64 {
    rows.iter().map(|r| f(r)).sum::<f64>() / rows.len().max(1) as f64
}

/// The three findings from the tables: each compares GLASS with every classifier; a finding holds
/// when GLASS is ahead in every comparison, does not hold when it is behind or level in all of them.
pub(crate) fn conclude(r: &Results) -> Vec<Finding> {
    let cats: Vec<&str> = r.categories.iter().map(|c| c.name.as_str()).collect();
    let per_cat = |role: Role, model: Option<&str>| -> Vec<&DetectionRow> {
        r.detection
            .iter()
            .filter(|d| {
                d.category != "mean" && d.role == role && model.is_none_or(|m| d.model == m)
            })
            .collect()
    };
    let glass = per_cat(Role::Glass, None);
    let normals: Vec<String> =
        r.meta.train_normals.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let mut out = Vec::new();

    // 1. Detection.
    let (mut better, mut worse) = (0, 0);
    let mut ev = Vec::new();
    let classifiers = unique(
        r.detection
            .iter()
            .filter(|d| d.role == Role::Classifier)
            .map(|d| (d.model.clone(), String::new())),
    );
    for (model, _) in &classifiers {
        let c = per_cat(Role::Classifier, Some(model));
        let (gf, cf) = (mean_of(&glass, |d| d.best_f1_test), mean_of(&c, |d| d.best_f1_test));
        let (gr, cr) = (mean_of(&glass, |d| d.recall), mean_of(&c, |d| d.recall));
        let (gfa, cfa) = (mean_of(&glass, |d| d.fpr), mean_of(&c, |d| d.fpr));
        // GLASS at the classifier's false-alarm rate, where the runs' scores were available.
        let m: Vec<&MatchedRow> = r
            .matched
            .iter()
            .filter(|m| m.role == Role::Glass && m.classifier == *model && m.recall.is_finite())
            .collect();
        let matched = (m.len() == cats.len() && !m.is_empty()).then(|| {
            let mean = |f: fn(&MatchedRow) -> f64| mean_of(&m, f);
            (mean(|m| m.recall), mean(|m| m.classifier_recall), mean(|m| m.classifier_fpr))
        });
        let msd = |f: &str| sd_of(&m, f);
        let wins = cats
            .iter()
            .filter(|cat| {
                let g = glass.iter().find(|d| d.category == **cat).map(|d| d.best_f1_test);
                let k = c.iter().find(|d| d.category == **cat).map(|d| d.best_f1_test);
                matches!((g, k), (Some(g), Some(k)) if g > k)
            })
            .count();
        let (gfs, cfs) = (sd_of(&glass, "best_f1_test"), sd_of(&c, "best_f1_test"));
        let (grs, crs) = (sd_of(&glass, "recall"), sd_of(&c, "recall"));
        // Recall is compared at matched false alarms when possible: recall at each model's own
        // threshold rewards the one that flags more good parts.
        let recall_cmp = match matched {
            Some((gm, cm, _)) => compare(gm, msd("recall"), cm, msd("classifier_recall")),
            None => compare(gr, grs, cr, crs),
        };
        match (compare(gf, gfs, cf, cfs), recall_cmp) {
            (Cmp::Ahead, r) if r != Cmp::Behind => better += 1,
            (Cmp::Behind, r) if r != Cmp::Ahead => worse += 1,
            (Cmp::Level, Cmp::Behind) => worse += 1,
            _ => {}
        }
        ev.push(format!(
            "GLASS mean best-F1 {}{} vs {model} {}{} (GLASS ahead on {wins} of {} categories); \
             recall at the validation threshold {}{} vs {}{} (false alarms on good parts {} vs {})",
            pct(gf),
            pm(gfs),
            pct(cf),
            pm(cfs),
            cats.len(),
            pct(gr),
            pm(grs),
            pct(cr),
            pm(crs),
            pct(gfa),
            pct(cfa)
        ));
        if let Some((gm, cm, fa)) = matched {
            ev.push(format!(
                "at the same false-alarm rate as {model} ({}), GLASS recalls {}{} vs {}",
                pct(fa),
                pct(gm),
                pm(msd("recall")),
                pct(cm)
            ));
        }
    }
    out.push(Finding {
        id: 1,
        claim: format!(
            "The anomaly detector beats the classifier on detection, trained on normal images only \
             (train/good: {}).",
            normals.join(", ")
        ),
        verdict: verdict(better, worse, classifiers.len()),
        evidence: ev.join("; ") + ".",
    });

    // 2. Explanation.
    let ex = |pred: &dyn Fn(&ExplanationRow) -> bool| -> Vec<&ExplanationRow> {
        r.explanation.iter().filter(|e| e.category != "mean" && pred(e)).collect()
    };
    let gmaps = ex(&|e| e.role == Role::Glass);
    let (gpx, gpro) = (mean_of(&gmaps, |e| e.pixel_auroc), mean_of(&gmaps, |e| e.aupro));
    let (mut better, mut worse) = (0, 0);
    let mut ev = Vec::new();
    let cams = unique(
        r.explanation
            .iter()
            .filter(|e| e.role == Role::Classifier)
            .map(|e| (e.heatmap.clone(), String::new())),
    );
    for (cam, _) in &cams {
        let rows = ex(&|e| e.heatmap == *cam);
        let (px, pro) = (mean_of(&rows, |e| e.pixel_auroc), mean_of(&rows, |e| e.aupro));
        let a = compare(gpx, sd_of(&gmaps, "pixel_auroc"), px, sd_of(&rows, "pixel_auroc"));
        let b = compare(gpro, sd_of(&gmaps, "aupro"), pro, sd_of(&rows, "aupro"));
        match (a, b) {
            (Cmp::Ahead, Cmp::Ahead) => better += 1,
            (Cmp::Behind, _) | (_, Cmp::Behind) => worse += 1,
            _ => {}
        }
        ev.push(format!(
            "GLASS map pixel AUROC {} / AUPRO {} vs {cam} {} / {}",
            pct(gpx),
            pct(gpro),
            pct(px),
            pct(pro)
        ));
    }
    out.push(Finding {
        id: 2,
        claim: "The anomaly map shows where the defect is better than Grad-CAM of the classifier."
            .into(),
        verdict: verdict(better, worse, cams.len()),
        evidence: ev.join("; ") + ".",
    });

    // 3. Unseen defect types.
    let unseen: Vec<&UnseenRow> = r.unseen.iter().filter(|u| !u.seen).collect();
    let (mut better, mut worse) = (0, 0);
    let mut ev = Vec::new();
    let unseen_classifiers = unique(unseen.iter().map(|u| (u.classifier.clone(), String::new())));
    for (cls, _) in &unseen_classifiers {
        let rows: Vec<&&UnseenRow> = unseen.iter().filter(|u| u.classifier == *cls).collect();
        let n: usize = rows.iter().map(|u| u.n_images).sum();
        let w = |f: fn(&UnseenRow) -> f64| {
            rows.iter().map(|u| f(u) * u.n_images as f64).sum::<f64>() / n.max(1) as f64
        };
        let (c, g, all) = (
            w(|u| u.classifier_recall),
            w(|u| u.glass_recall),
            w(|u| u.classifier_all_types_recall),
        );
        // GLASS at the classifier's false-alarm rate, when every row has it.
        let g_matched = rows
            .iter()
            .all(|u| u.glass_recall_matched.is_some_and(f64::is_finite))
            .then(|| w(|u| u.glass_recall_matched.unwrap_or(f64::NAN)));
        let c_fpr = rows
            .iter()
            .all(|u| u.classifier_fpr.is_some())
            .then(|| w(|u| u.classifier_fpr.unwrap_or(f64::NAN)));
        let sd = |field: &str| {
            rows.iter().map(|u| u.spread.of(field)).sum::<f64>() / rows.len().max(1) as f64
        };
        // Recall alone flatters a detector that flags everything: with GLASS near chance on these
        // categories (test image AUROC < 0.6) a higher recall is no evidence; the comparison is
        // left undecided.
        let ucats: Vec<&str> = rows.iter().map(|u| u.category.as_str()).collect();
        let g_rows: Vec<&&DetectionRow> =
            glass.iter().filter(|d| ucats.contains(&d.category.as_str())).collect();
        let g_auroc = g_rows.iter().map(|d| d.auroc).sum::<f64>() / g_rows.len().max(1) as f64;
        let g_fpr = g_rows.iter().map(|d| d.fpr).sum::<f64>() / g_rows.len().max(1) as f64;
        let near_chance = g_auroc < 0.6;
        let cmp = match g_matched {
            Some(gm) => compare(gm, sd("glass_recall_matched"), c, sd("classifier_recall")),
            None => compare(g, sd("glass_recall"), c, sd("classifier_recall")),
        };
        match cmp {
            Cmp::Ahead if !near_chance => better += 1,
            Cmp::Behind => worse += 1,
            _ => {}
        }
        ev.push(format!(
            "on {n} test images of defect types it never saw, {cls} recalls {} (the same \
             architecture trained on every type: {}); GLASS recalls {} of the same images, \
             flagging {} of good test parts at that threshold (test image AUROC {}){}",
            pct(c),
            pct(all),
            pct(g),
            pct(g_fpr),
            pct(g_auroc),
            if near_chance { ": near chance, so its recall is no evidence" } else { "" }
        ));
        if let (Some(gm), Some(fa)) = (g_matched, c_fpr) {
            ev.push(format!(
                "at {cls}'s false-alarm rate on good parts ({}), GLASS recalls {} of those images",
                pct(fa),
                pct(gm)
            ));
        }
    }
    out.push(Finding {
        id: 3,
        claim: "A classifier trained on one defect type misses defect types it did not see; the \
                anomaly detector, which saw none, does not."
            .into(),
        verdict: verdict(better, worse, unseen_classifiers.len()),
        evidence: if ev.is_empty() {
            "no unseen defect types (the categories have one defect type each).".into()
        } else {
            ev.join("; ") + "."
        },
    });

    // 4. The training-free baseline on the same features, per category.
    let pcs = per_cat(Role::Patchcore, None);
    if !pcs.is_empty() {
        let mut worse = 0;
        let mut ev = Vec::new();
        let mut behind = Vec::new();
        for cat in &cats {
            let (Some(g), Some(p)) = (
                glass.iter().find(|d| d.category == *cat),
                pcs.iter().find(|d| d.category == *cat),
            ) else {
                continue;
            };
            let sd = |d: &DetectionRow, f: &str| d.spread.of(f);
            let a = compare(g.auroc, sd(g, "auroc"), p.auroc, sd(p, "auroc"));
            let f = compare(g.f1, sd(g, "f1"), p.f1, sd(p, "f1"));
            if a == Cmp::Behind || f == Cmp::Behind {
                worse += 1;
                behind.push(*cat);
            }
            ev.push(format!(
                "{cat}: image AUROC {}{} vs {}{}, F1 at the validation threshold {}{} vs {}{}",
                pct(g.auroc),
                pm(sd(g, "auroc")),
                pct(p.auroc),
                pm(sd(p, "auroc")),
                pct(g.f1),
                pm(sd(g, "f1")),
                pct(p.f1),
                pm(sd(p, "f1"))
            ));
        }
        let n = ev.len();
        out.push(Finding {
            id: 4,
            claim:
                "GLASS detects at least as well as the training-free memory bank (PatchCore) on \
                    the same backbone features."
                    .into(),
            // "At least as well": no category behind beyond the spread.
            verdict: match (n, worse) {
                (0, _) => Verdict::Inconclusive,
                (_, 0) => Verdict::Holds,
                _ => Verdict::DoesNotHold,
            },
            evidence: if behind.is_empty() {
                ev.join("; ") + "."
            } else {
                format!(
                    "GLASS is behind the memory bank on {}: {}.",
                    behind.join(", "),
                    ev.join("; ")
                )
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_counts_only_beyond_the_spread() {
        assert_eq!(compare(0.95, 0.0, 0.90, 0.0), Cmp::Ahead);
        assert_eq!(compare(0.90, 0.0, 0.95, 0.0), Cmp::Behind);
        assert_eq!(compare(0.95, 0.03, 0.90, 0.06), Cmp::Level); // 0.05 < 0.06
        assert_eq!(compare(0.95, 0.03, 0.90, 0.04), Cmp::Ahead); // 0.05 > 0.04
        assert_eq!(compare(0.90, 0.0, 0.90, 0.0), Cmp::Level);
    }

    #[test]
    fn verdicts_follow_the_counts() {
        assert_eq!(verdict(2, 0, 2), Verdict::Holds);
        assert_eq!(verdict(0, 1, 2), Verdict::DoesNotHold);
        assert_eq!(verdict(0, 0, 2), Verdict::Inconclusive);
        assert_eq!(verdict(1, 1, 2), Verdict::Mixed);
        assert_eq!(verdict(0, 0, 0), Verdict::Inconclusive);
    }
}
