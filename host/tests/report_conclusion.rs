//! The report's conclusion rules, case by case, on hand-made tables (no training): each finding's
//! verdict must follow from the numbers, a difference must exceed the spread over seeds to count, a
//! recall bought by flagging every part is no evidence, and GLASS trailing the memory bank is said
//! plainly.
use std::collections::BTreeMap;

use host::experiment::report::{
    recall_at_fpr, CategoryResult, DetectionRow, ExplanationRow, MatchedRow, Results, Role, Spread,
    UnseenRow,
};
use host::experiment::{ClassifierSpec, ExperimentOptions};
use host::models::classifier::{Arch, ClassifierConfig};
use host::models::glass::GlassConfig;

fn empty(categories: &[&str]) -> Results {
    let opts = ExperimentOptions {
        data: "/data".into(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        out: "/report".into(),
        glass: GlassConfig::tiny(),
        classifiers: vec![ClassifierSpec {
            config: ClassifierConfig::for_arch(Arch::EfficientnetLite0),
            weights: None,
        }],
        exp3: BTreeMap::new(),
        device: host::run::ComputeDevice::Cpu,
        threads: 1,
        max_strips: 0,
        progress: false,
        seeds: vec![],
        patchcore_coreset: host::models::patchcore::CoresetSize::Station,
        textures: None,
        fg_masks: None,
    };
    let mut r = Results::new(&opts);
    for c in categories {
        r.categories.push(CategoryResult {
            name: c.to_string(),
            exp3_defect: "a".into(),
            runs: vec![],
            figures: Default::default(),
        });
        r.meta.train_normals.insert(c.to_string(), 100);
    }
    r
}

/// A Table 1 row: (best F1, recall, false-alarm rate, AUROC, F1 at the threshold), sds by field.
fn det(cat: &str, model: &str, role: Role, v: [f64; 5], sd: &[(&str, f64)]) -> DetectionRow {
    let [best_f1, recall, fpr, auroc, f1] = v;
    DetectionRow {
        category: cat.into(),
        model: model.into(),
        role,
        best_f1_test: best_f1,
        accuracy: 0.9,
        precision: 0.9,
        recall,
        fpr,
        f1,
        auroc,
        published_best_f1: None,
        published_model: None,
        spread: Spread {
            n_seeds: if sd.is_empty() { 1 } else { 3 },
            sd: sd.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        },
    }
}

fn map(cat: &str, heatmap: &str, role: Role, px: f64, pro: f64) -> ExplanationRow {
    ExplanationRow {
        category: cat.into(),
        heatmap: heatmap.into(),
        role,
        pixel_auroc: px,
        aupro: pro,
        spread: Spread::default(),
    }
}

fn unseen(cat: &str, classifier_recall: f64, glass_recall: f64) -> UnseenRow {
    UnseenRow {
        category: cat.into(),
        defect: "b".into(),
        classifier: "lite0 (trained on a only)".into(),
        seen: false,
        n_images: 10,
        classifier_recall,
        classifier_all_types_recall: 1.0,
        glass_recall,
        classifier_fpr: None,
        glass_recall_matched: None,
        patchcore_recall: None,
        spread: Spread::default(),
    }
}

fn matched(cat: &str, classifier_fpr: f64, classifier_recall: f64, recall: f64) -> MatchedRow {
    MatchedRow {
        category: cat.into(),
        model: "GLASS".into(),
        role: Role::Glass,
        classifier: "lite0".into(),
        classifier_fpr,
        classifier_recall,
        recall,
        spread: Spread::default(),
    }
}

#[test]
fn recall_at_a_false_alarm_rate_never_exceeds_that_rate() {
    let normal = [0.1f32, 0.2, 0.3, 0.4];
    let abnormal = [0.25f32, 0.35, 0.5];
    // 0%: the cut is the highest good score (0.4): only 0.5 is above it.
    assert_eq!(recall_at_fpr(&normal, &abnormal, 0.0), Some(1.0 / 3.0));
    // 25% (one of four good parts may be flagged): cut 0.3.
    assert_eq!(recall_at_fpr(&normal, &abnormal, 0.25), Some(2.0 / 3.0));
    // 30% still allows only one: the rate is never exceeded.
    assert_eq!(recall_at_fpr(&normal, &abnormal, 0.3), Some(2.0 / 3.0));
    assert_eq!(recall_at_fpr(&normal, &abnormal, 1.0), Some(1.0));
    // Ties at the cut stay unflagged: three good parts at 0.5 and a 1/4 rate flag none of them.
    assert_eq!(recall_at_fpr(&[0.5, 0.5, 0.5, 0.1], &[0.5, 0.6], 0.25), Some(0.5));
    assert_eq!(recall_at_fpr(&[], &abnormal, 0.1), None);
    assert_eq!(recall_at_fpr(&normal, &abnormal, f64::NAN), None);
}

/// GLASS's recall at its own threshold beats the classifier's only because that threshold flags
/// more good parts; at the classifier's false-alarm rate it recalls less. Judged at matched false
/// alarms, the finding does not hold, and the evidence says so.
#[test]
fn recall_is_compared_at_matched_false_alarms() {
    let mut r = empty(&["part"]);
    r.detection.push(det("part", "GLASS", Role::Glass, [0.80, 0.95, 0.40, 0.85, 0.8], &[]));
    r.detection.push(det("part", "lite0", Role::Classifier, [0.80, 0.85, 0.05, 0.9, 0.85], &[]));
    r.matched.push(matched("part", 0.05, 0.85, 0.60));
    r.finish();
    let (v, ev) = verdict(&r, 1);
    assert_eq!(v, "does not hold", "{ev}");
    assert!(
        ev.contains("at the same false-alarm rate as lite0 (5.0%), GLASS recalls 60.0%"),
        "{ev}"
    );

    // Unseen types: 100% at GLASS's own threshold, 40% at the classifier's false-alarm rate.
    let mut r = empty(&["part"]);
    r.detection.push(det("part", "GLASS", Role::Glass, [0.95, 1.0, 0.3, 0.9, 0.95], &[]));
    r.detection.push(det("part", "lite0", Role::Classifier, [0.9, 0.8, 0.1, 0.9, 0.85], &[]));
    let mut u = unseen("part", 0.5, 1.0);
    u.classifier_fpr = Some(0.1);
    u.glass_recall_matched = Some(0.4);
    r.unseen.push(u);
    r.finish();
    let (v, ev) = verdict(&r, 3);
    assert_eq!(v, "does not hold", "{ev}");
    assert!(ev.contains("false-alarm rate on good parts (10.0%), GLASS recalls 40.0%"), "{ev}");
}

fn verdict(r: &Results, id: u8) -> (&'static str, String) {
    let f = r.conclusion.iter().find(|f| f.id == id).expect("finding present");
    (f.verdict.as_str(), f.evidence.clone())
}

#[test]
fn detection_holds_when_glass_is_ahead_and_not_when_behind() {
    let mut r = empty(&["bottle"]);
    r.detection.push(det("bottle", "GLASS", Role::Glass, [0.98, 0.97, 0.1, 0.99, 0.97], &[]));
    r.detection.push(det("bottle", "lite0", Role::Classifier, [0.90, 0.85, 0.1, 0.93, 0.88], &[]));
    r.finish();
    assert_eq!(verdict(&r, 1).0, "holds");

    let mut r = empty(&["bottle"]);
    r.detection.push(det("bottle", "GLASS", Role::Glass, [0.90, 0.85, 0.1, 0.93, 0.88], &[]));
    r.detection.push(det("bottle", "lite0", Role::Classifier, [0.98, 0.97, 0.1, 0.99, 0.97], &[]));
    r.finish();
    let (v, ev) = verdict(&r, 1);
    assert_eq!(v, "does not hold");
    assert!(ev.contains("false alarms on good parts"), "{ev}");
}

#[test]
fn a_difference_inside_the_spread_over_seeds_is_inconclusive() {
    let mut r = empty(&["bottle"]);
    // GLASS 0.95 ± 0.04 against 0.92 ± 0.05: 0.03 apart, inside the spread, on both numbers.
    let sd = [("best_f1_test", 0.04), ("recall", 0.05)];
    r.detection.push(det("bottle", "GLASS", Role::Glass, [0.95, 0.90, 0.1, 0.97, 0.93], &sd));
    r.detection.push(det("bottle", "lite0", Role::Classifier, [0.92, 0.88, 0.1, 0.96, 0.9], &sd));
    r.finish();
    let (v, ev) = verdict(&r, 1);
    assert_eq!(v, "inconclusive", "{ev}");
    assert!(ev.contains("±"), "the evidence shows the spread: {ev}");
}

#[test]
fn explanation_follows_pixel_auroc_and_aupro() {
    let mut r = empty(&["bottle"]);
    r.explanation.push(map("bottle", "GLASS map", Role::Glass, 0.98, 0.93));
    r.explanation.push(map("bottle", "lite0 Grad-CAM", Role::Classifier, 0.95, 0.88));
    r.finish();
    assert_eq!(verdict(&r, 2).0, "holds");
    let mut r = empty(&["bottle"]);
    r.explanation.push(map("bottle", "GLASS map", Role::Glass, 0.90, 0.80));
    r.explanation.push(map("bottle", "lite0 Grad-CAM", Role::Classifier, 0.95, 0.88));
    r.finish();
    assert_eq!(verdict(&r, 2).0, "does not hold");
}

/// The case from a real category kept out of the repository: GLASS near chance (test image AUROC
/// 0.465) whose validation threshold flags 12 of 13 good parts "recalls 100%" of unseen defects.
/// That recall is no evidence: the finding must not hold.
#[test]
fn recall_of_a_detector_near_chance_with_a_permissive_threshold_is_no_evidence() {
    let mut r = empty(&["part"]);
    r.detection.push(det(
        "part",
        "GLASS",
        Role::Glass,
        [0.874, 1.0, 12.0 / 13.0, 0.465, 0.87],
        &[],
    ));
    r.detection.push(det("part", "lite0", Role::Classifier, [0.9, 0.8, 0.1, 0.9, 0.85], &[]));
    r.unseen.push(unseen("part", 0.5, 1.0));
    r.finish();
    let (v, ev) = verdict(&r, 3);
    assert!(v == "inconclusive" || v == "does not hold", "{v}: {ev}");
    assert!(ev.contains("near chance") && ev.contains("92.3%"), "{ev}");

    // The same recall from a detector that separates the parts does count.
    let mut r = empty(&["part"]);
    r.detection.push(det("part", "GLASS", Role::Glass, [0.95, 1.0, 0.1, 0.97, 0.95], &[]));
    r.detection.push(det("part", "lite0", Role::Classifier, [0.9, 0.8, 0.1, 0.9, 0.85], &[]));
    r.unseen.push(unseen("part", 0.5, 1.0));
    r.finish();
    assert_eq!(verdict(&r, 3).0, "holds");
}

#[test]
fn glass_behind_the_memory_bank_is_said_plainly() {
    let mut r = empty(&["bottle", "tile"]);
    for (cat, g_auroc, g_f1) in [("bottle", 0.994, 0.963), ("tile", 0.95, 0.90)] {
        r.detection.push(det(cat, "GLASS", Role::Glass, [0.98, 0.94, 0.1, g_auroc, g_f1], &[]));
        r.detection.push(det(cat, "lite0", Role::Classifier, [0.9, 0.8, 0.1, 0.9, 0.85], &[]));
    }
    r.detection.push(det(
        "bottle",
        "PatchCore",
        Role::Patchcore,
        [1.0, 0.96, 0.1, 1.0, 0.979],
        &[],
    ));
    r.detection.push(det("tile", "PatchCore", Role::Patchcore, [0.9, 0.85, 0.1, 0.93, 0.89], &[]));
    r.finish();
    let (v, ev) = verdict(&r, 4);
    assert_eq!(v, "does not hold", "{ev}");
    assert!(ev.starts_with("GLASS is behind the memory bank on bottle:"), "{ev}");
    assert!(!ev.contains("behind the memory bank on bottle, tile"), "{ev}");
}
