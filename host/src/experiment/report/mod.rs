//! `results.json`, `report.md` and `index.html` of an experiment: the three tables, the figures, the
//! run metadata and a conclusion generated from the numbers.
//!
//! Split by concern: `results` holds the schema of `results.json` (filled from the runs in
//! `rows`, with the machine probe in `machine`), `conclusion` judges the findings from the tables,
//! `tables` turns the rows into cells for both renderers, `markdown` writes `report.md` and `html`
//! writes `index.html`.
use std::path::Path;

use crate::run;
use crate::{Error, Result};

mod conclusion;
mod html;
mod machine;
mod markdown;
mod results;
mod rows;
mod tables;

pub(crate) use conclusion::conclude;
pub use conclusion::{compare, Cmp};
pub use html::html_page;
pub use markdown::{markdown, markdown_summary};
pub use results::{
    CategoryResult, DetectionRow, ExplanationRow, Finding, MatchedRow, Meta, Results, Role, Spread,
    UnseenRow, Verdict,
};
pub use rows::recall_at_fpr;
pub use tables::pct;

/// Writes `results.json`, `report.md` and `index.html` into `dir`.
pub fn write_all(dir: &Path, r: &Results) -> Result<()> {
    run::write_json(&dir.join("results.json"), r)?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(r)).map_err(|e| Error::io(&md, e))?;
    let html = dir.join("index.html");
    std::fs::write(&html, html_page(r)).map_err(|e| Error::io(&html, e))
}
