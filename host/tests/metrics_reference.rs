//! The evaluation metrics against independent references (`scripts/fixtures/metrics_reference.py`):
//! image AUROC and pixel AUROC against scikit-learn's exact `roc_auc_score`, AUPRO against the MVTec
//! AD definition of the per-region overlap curve (re-implemented in that script from the published
//! definition, exact over every distinct score), on random, tied and heat-map-like maps.
//!
//! Pixel AUROC and AUPRO here are streamed through 4096-bin histograms (`eval::metrics::
//! PixelMetrics`); the stated bound for the binning is 5e-4 absolute (scores are quantised to 1/4095,
//! so only pixels whose scores fall within one bin of each other can be ordered differently; measured
//! here: at most 1e-5 on all three cases). Image AUROC is exact and must match to 1e-9.
mod common;

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use host::metrics::{auroc, PixelMetrics};
use tch::Tensor;

/// Stated bound of the binned pixel metrics against the exact ones.
const BINNED_BOUND: f64 = 5e-4;

fn load() -> Result<(BTreeMap<String, Tensor>, serde_json::Value)> {
    // Generated once per process (the tests of this file run in parallel threads).
    static DIR: std::sync::OnceLock<std::result::Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            common::generate(
                "metrics_reference.py",
                "metrics-ref",
                "needs numpy, scipy and scikit-learn (scripts/setup installs them)",
            )
            .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)?;
    let arrays: BTreeMap<String, Tensor> = Tensor::read_npz(dir.join("cases.npz"))?
        .into_iter()
        .map(|(k, v)| (k.trim_end_matches(".npy").to_string(), v))
        .collect();
    let text = std::fs::read_to_string(dir.join("reference.json"))?;
    Ok((arrays, serde_json::from_str(&text)?))
}

fn floats(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).reshape([-1]))?)
}

#[test]
fn image_auroc_equals_scikit_learn_with_ties() -> Result<()> {
    let (a, r) = load()?;
    let scores = floats(a.get("image_scores").context("image_scores")?)?;
    let labels: Vec<bool> =
        floats(a.get("image_labels").context("image_labels")?)?.iter().map(|&v| v > 0.5).collect();
    let ours = auroc(&scores, &labels).context("no AUROC")?;
    let want = r["image_auroc"].as_f64().context("reference")?;
    eprintln!("image AUROC ours {ours:.6} sklearn {want:.6}");
    ensure!((ours - want).abs() < 1e-9, "image AUROC {ours} vs scikit-learn {want}");
    Ok(())
}

#[test]
fn pixel_auroc_and_aupro_match_the_exact_references() -> Result<()> {
    let (a, r) = load()?;
    let masks = a.get("masks").context("masks")?;
    let (n, h, w) = masks.size3()?;
    for case in ["random", "tied", "maplike"] {
        let maps = a.get(case).with_context(|| case.to_string())?;
        let mut pm = PixelMetrics::default();
        for i in 0..n {
            let map = floats(&maps.get(i))?;
            let mask: Vec<bool> = floats(&masks.get(i))?.iter().map(|&v| v > 0.5).collect();
            pm.add(&map, &mask, w as usize, h as usize);
        }
        let (px, pro) = (pm.auroc().context("pixel AUROC")?, pm.aupro().context("AUPRO")?);
        let (want_px, want_pro) = (
            r[case]["pixel_auroc"].as_f64().context("ref pixel")?,
            r[case]["aupro"].as_f64().context("ref aupro")?,
        );
        eprintln!(
            "{case}: pixel AUROC {px:.5} vs {want_px:.5} (sklearn), AUPRO {pro:.5} vs {want_pro:.5} \
             (MVTec definition)"
        );
        ensure!(
            (px - want_px).abs() <= BINNED_BOUND,
            "{case}: pixel AUROC {px} vs {want_px} beyond {BINNED_BOUND}"
        );
        ensure!(
            (pro - want_pro).abs() <= BINNED_BOUND,
            "{case}: AUPRO {pro} vs {want_pro} beyond {BINNED_BOUND}"
        );
    }
    Ok(())
}
