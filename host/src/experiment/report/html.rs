//! `index.html`: the report as one HTML page with its CSS (no scripts, no network).
use std::fmt::Write;
use std::path::Path;

use super::results::Results;
use super::tables::{
    detection_cells, explanation_cells, matched_cells, meta_lines, runs_cells, seeds_text,
    unseen_cells, DETECTION_HEAD, EXPLANATION_HEAD, MATCHED_HEAD, MATCHED_TEXT, RUNS_HEAD,
    UNSEEN_HEAD,
};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html_table(head: &[&str], rows: &[Vec<String>], mean_col0: bool) -> String {
    let mut s = String::from("<table><thead><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        let cls = if mean_col0 && r.first().is_some_and(|c| c == "mean") {
            " class=\"mean\""
        } else {
            ""
        };
        let _ = write!(s, "<tr{cls}>");
        for c in r {
            let numeric = c.ends_with('%') || c.parse::<f64>().is_ok() || c == "reused";
            let cls = if numeric { " class=\"num\"" } else { "" };
            let _ = write!(s, "<td{cls}>{}</td>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>\n");
    s
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;\
color:#222}h1{margin-bottom:.2em}table{border-collapse:collapse;margin:1em 0;font-size:14px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}\
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.mean{font-weight:bold;background:#fafafa}\
.finding{border-left:6px solid #999;padding:.4em 1em;margin:.6em 0;background:#fafafa}\
.holds{border-color:#27ae60}.does-not-hold{border-color:#c0392b}.mixed{border-color:#d68910}\
.verdict{font-weight:bold;text-transform:uppercase}.charts img{margin:4px;border:1px solid #ddd}\
figure{margin:1em 0}figcaption{font-size:13px;color:#444}.strip{max-width:100%}\
.meta td{text-align:left}";

/// `index.html` (no scripts, no network; figures are files next to it).
pub fn html_page(r: &Results) -> String {
    let mut s = String::from("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(
        s,
        "<title>Anomaly detection vs classification</title><style>{CSS}</style></head><body>"
    );
    let cats: Vec<&str> = r.categories.iter().map(|c| c.name.as_str()).collect();
    let _ = write!(
        s,
        "<h1>Anomaly detection vs classification</h1><p>{} on {} &middot; split seed(s) {} \
         &middot; GLASS preset {}</p>",
        esc(&cats.join(", ")),
        esc(&r.meta.data),
        seeds_text(r),
        esc(&r.meta.glass_preset)
    );
    s.push_str("<h2>Conclusion</h2>");
    for f in &r.conclusion {
        let _ = write!(
            s,
            "<div class=\"finding {}\"><span class=\"verdict\">Finding {}: {}</span><br>{}<br><small>{}</small></div>",
            f.verdict.as_str().replace(' ', "-"),
            f.id,
            esc(f.verdict.as_str()),
            esc(&f.claim),
            esc(&f.evidence)
        );
    }
    if r.seeds.len() > 1 {
        let _ = write!(
            s,
            "<p>Every number is the mean over split seeds {} with its standard deviation (± \
             points); the single-seed tables are in results.json (<code>per_seed</code>). A \
             difference counts in the conclusion only when it exceeds the larger standard \
             deviation. Figures and strips show seed {}.</p>",
            seeds_text(r),
            r.seeds.first().copied().unwrap_or(0)
        );
    }
    s.push_str("<h2>Table 1: detection</h2><p>Test split, positive = abnormal. Best F1 is the \
                oracle threshold on test (as published); the other columns are at the \
                threshold chosen on validation. Recall is the one that matters: a missed defect ships.</p>");
    s.push_str(&html_table(&DETECTION_HEAD, &detection_cells(r), true));
    if !r.matched.is_empty() {
        s.push_str(&format!("<p>{}</p>", esc(MATCHED_TEXT)));
        s.push_str(&html_table(&MATCHED_HEAD, &matched_cells(r), false));
    }
    s.push_str(
        "<h2>Table 2: explanation</h2><p>Heat maps scored against the ground-truth masks \
                of the test split.</p>",
    );
    s.push_str(&html_table(&EXPLANATION_HEAD, &explanation_cells(r), true));
    s.push_str("<h2>Table 3: unseen defect types</h2><p>The classifier is trained on normal images \
                plus one defect type; recall per type at its validation threshold, on the \
                classifier split's test images, next to GLASS (which saw no defect) on the same images.</p>");
    s.push_str(&html_table(&UNSEEN_HEAD, &unseen_cells(r), false));
    for c in &r.categories {
        let f = &c.figures;
        let _ = write!(s, "<h2>{}</h2><div class=\"charts\">", esc(&c.name));
        for (p, alt) in [(&f.roc, "ROC"), (&f.pr, "precision-recall"), (&f.training, "training")] {
            let _ = write!(s, "<img src=\"{}\" alt=\"{alt}\" width=\"390\">", esc(p));
        }
        s.push_str("</div>");
        if !f.strips.is_empty() {
            let _ = write!(
                s,
                "<p>Abnormal test images both models are scored on: image | ground truth | {}.</p>",
                esc(&f.strip_columns.join(" | "))
            );
        }
        for st in &f.strips {
            let verdicts: Vec<String> = std::iter::once(("GLASS", st.glass))
                .chain(st.patchcore.map(|v| ("PatchCore", v)))
                .chain(st.classifiers.iter().map(|v| ("classifier", *v)))
                .map(|(who, (score, fail))| {
                    format!("{who} {score:.3} ({})", if fail { "fail" } else { "pass" })
                })
                .collect();
            let _ = write!(
                s,
                "<figure><img class=\"strip\" src=\"{}\" alt=\"{}\"><figcaption>{} &middot; {} \
                 &middot; {} &middot; {}</figcaption></figure>",
                esc(&st.file),
                esc(&st.defect),
                esc(&st.defect),
                esc(Path::new(&st.image).file_name().and_then(|n| n.to_str()).unwrap_or("")),
                esc(&st.why),
                esc(&verdicts.join(", "))
            );
        }
    }
    s.push_str("<h2>Runs</h2>");
    s.push_str(&html_table(&RUNS_HEAD, &runs_cells(r), false));
    s.push_str("<h2>Metadata</h2><table class=\"meta\">");
    for (k, v) in meta_lines(r) {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
    }
    s.push_str(
        "</table><p><small>results.json holds every number of this page; report.md is the \
                same report as Markdown.</small></p></body></html>\n",
    );
    s
}
