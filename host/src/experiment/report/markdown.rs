//! `report.md` and the terminal summary, as Markdown.
use std::fmt::Write;

use super::results::Results;
use super::tables::{
    detection_cells, explanation_cells, matched_cells, meta_lines, runs_cells, seeds_text,
    unseen_cells, DETECTION_HEAD, EXPLANATION_HEAD, MATCHED_HEAD, MATCHED_TEXT, RUNS_HEAD,
    UNSEEN_HEAD,
};

fn md_table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

/// The conclusion and Table 1 as plain text for the terminal.
pub fn markdown_summary(r: &Results) -> String {
    let mut s = String::new();
    for f in &r.conclusion {
        let _ =
            writeln!(s, "finding {} {}: {}", f.id, f.verdict.as_str().to_uppercase(), f.evidence);
    }
    s.push('\n');
    s.push_str(&md_table(&DETECTION_HEAD, &detection_cells(r)));
    s
}

/// `report.md`.
pub fn markdown(r: &Results) -> String {
    let mut s = String::from("# Anomaly detection vs classification\n\n");
    s.push_str("## Conclusion\n\n");
    for f in &r.conclusion {
        let _ = writeln!(s, "{}. **{}**: {} {}\n", f.id, f.verdict, f.claim, f.evidence);
    }
    if r.seeds.len() > 1 {
        let _ = writeln!(
            s,
            "Every number is the mean over split seeds {} with its standard deviation (± points); \
             the single-seed tables are in results.json (`per_seed`). A difference counts in the \
             conclusion only when it exceeds the larger standard deviation.\n",
            seeds_text(r)
        );
    }
    s.push_str("## Table 1: detection (test split; positive = abnormal)\n\n");
    s.push_str(
        "Best F1 is the oracle threshold on test, as published; accuracy, precision, \
         recall and F1 are at the threshold chosen on validation.\n\n",
    );
    s.push_str(&md_table(&DETECTION_HEAD, &detection_cells(r)));
    if !r.matched.is_empty() {
        s.push_str(&format!("\n{MATCHED_TEXT}\n\n"));
        s.push_str(&md_table(&MATCHED_HEAD, &matched_cells(r)));
    }
    s.push_str("\n## Table 2: explanation (heat maps vs ground-truth masks, test split)\n\n");
    s.push_str(&md_table(&EXPLANATION_HEAD, &explanation_cells(r)));
    s.push_str("\n## Table 3: unseen defect types (classifier trained on one type)\n\n");
    s.push_str(&md_table(&UNSEEN_HEAD, &unseen_cells(r)));
    for c in &r.categories {
        let _ = writeln!(s, "\n## {}\n", c.name);
        let f = &c.figures;
        let _ = writeln!(s, "![ROC]({})\n![PR]({})\n![training]({})\n", f.roc, f.pr, f.training);
        if !f.strips.is_empty() {
            let _ = writeln!(s, "Strips: image | ground truth | {}\n", f.strip_columns.join(" | "));
            for st in &f.strips {
                let _ = writeln!(s, "![{}]({})  \n{}: {}\n", st.defect, st.file, st.defect, st.why);
            }
        }
    }
    s.push_str("\n## Runs\n\n");
    s.push_str(&md_table(&RUNS_HEAD, &runs_cells(r)));
    s.push_str("\n## Metadata\n\n");
    for (k, v) in meta_lines(r) {
        let _ = writeln!(s, "- {k}: {v}");
    }
    s
}
