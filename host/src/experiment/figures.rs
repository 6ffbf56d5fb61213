//! The report's pictures for one category: side-by-side strips (image | ground truth | GLASS map |
//! Grad-CAM of each classifier) on abnormal test images both models are scored on, ROC and
//! precision-recall curves of every run, and training curves from `epochs.jsonl`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::Role;
use super::svg::{self, Series};
use super::{ExperimentOptions, RunResult, RunScores};
use crate::data::category::Category;
use crate::data::loader;
use crate::data::split::Item;
use crate::eval::cam::CamMethod;
use crate::eval::{self, visual};
use crate::metrics::sweep;
use crate::run::{self, ClassifierRunConfig, GlassRunConfig, RunDir};
use crate::{Error, Result};

/// One side-by-side strip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Strip {
    /// PNG path relative to the report.
    pub file: String,
    /// Defect type.
    pub defect: String,
    /// Source image.
    pub image: String,
    /// Why it was chosen ("GLASS lowest score", "even pick", ...).
    pub why: String,
    /// GLASS image score and whether it fails the part at GLASS's validation threshold.
    pub glass: (f32, bool),
    /// Per classifier: abnormal probability and verdict at its validation threshold.
    pub classifiers: Vec<(f32, bool)>,
    /// PatchCore image score and verdict at its validation threshold (when it ran).
    #[serde(default)]
    pub patchcore: Option<(f32, bool)>,
}

/// Figures of one category (paths relative to the report).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CategoryFigures {
    /// Column titles of the strips after image and ground truth.
    pub strip_columns: Vec<String>,
    /// Strips.
    pub strips: Vec<Strip>,
    /// ROC curves (SVG).
    pub roc: String,
    /// Precision-recall curves (SVG).
    pub pr: String,
    /// Validation AUROC per epoch (SVG).
    pub training: String,
}

/// Colours of the curves, in run order.
const COLORS: [&str; 6] = ["#c0392b", "#2471a3", "#27ae60", "#8e44ad", "#d68910", "#17a589"];

/// Draws everything for one category into `dir`.
pub fn draw(
    opts: &ExperimentOptions,
    category: &Category,
    runs: &[RunResult],
    scores: &[RunScores],
    dir: &Path,
) -> Result<CategoryFigures> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let rel = |p: &Path| p.strip_prefix(&opts.out).unwrap_or(p).to_string_lossy().into_owned();
    let mut figs = CategoryFigures::default();

    // Curves.
    let mut roc = Vec::new();
    let mut pr = Vec::new();
    for (i, s) in scores.iter().enumerate() {
        let (sc, lab): (Vec<f32>, Vec<bool>) =
            s.scores.test.iter().map(|r| (r.score, r.abnormal)).unzip();
        let color = COLORS[i % COLORS.len()];
        let dashed = runs[i].role == Role::Unseen;
        roc.push(Series::new(&s.name, color, dashed, roc_points(&sc, &lab)));
        pr.push(Series::new(&s.name, color, dashed, pr_points(&sc, &lab)));
    }
    roc.push(Series::new("chance", "#999999", true, vec![(0.0, 0.0), (1.0, 1.0)]));
    let roc_path = dir.join("roc.svg");
    write(
        &roc_path,
        &svg::line_chart(
            &format!("{}: ROC (test)", category.name),
            "false positive rate",
            "true positive rate",
            &roc,
        ),
    )?;
    let pr_path = dir.join("pr.svg");
    write(
        &pr_path,
        &svg::line_chart(
            &format!("{}: precision-recall (test)", category.name),
            "recall",
            "precision",
            &pr,
        ),
    )?;
    figs.roc = rel(&roc_path);
    figs.pr = rel(&pr_path);

    // Training curves.
    let mut curves = Vec::new();
    let mut max_epoch = 1.0f64;
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let lines = epoch_lines(&opts.out.join(&r.dir).join("epochs.jsonl"));
        let pts = |key: &str| -> Vec<(f64, f64)> {
            lines
                .iter()
                .filter_map(|l| Some((l.get("epoch")?.as_f64()?, l.get(key)?.as_f64()?)))
                .collect()
        };
        let img = pts("val_image_auroc");
        max_epoch = img.iter().map(|p| p.0).fold(max_epoch, f64::max);
        curves.push(Series::new(
            &format!("{}: val image AUROC", r.name),
            color,
            r.role == Role::Unseen,
            img,
        ));
        let px = pts("val_pixel_auroc");
        if !px.is_empty() {
            curves.push(Series::new(&format!("{}: val pixel AUROC", r.name), color, true, px));
        }
    }
    let tr_path = dir.join("training.svg");
    write(
        &tr_path,
        &svg::chart(
            &format!("{}: validation AUROC per epoch", category.name),
            "epoch",
            "AUROC",
            (1.0, max_epoch.max(2.0)),
            (0.0, 1.0),
            &curves,
        ),
    )?;
    figs.training = rel(&tr_path);

    // Strips.
    if opts.max_strips > 0 {
        draw_strips(opts, category, runs, scores, dir, &mut figs)?;
    }
    Ok(figs)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn epoch_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

/// ROC points (FPR, TPR) over every distinct threshold, from (0,0) to (1,1).
pub fn roc_points(scores: &[f32], labels: &[bool]) -> Vec<(f64, f64)> {
    let (pos, neg) = counts(labels);
    let mut pts = vec![(0.0, 0.0)];
    for (_, tp, fp) in sweep(scores, labels) {
        pts.push((fp as f64 / neg.max(1) as f64, tp as f64 / pos.max(1) as f64));
    }
    pts
}

/// Precision-recall points (recall, precision) over every distinct threshold.
pub fn pr_points(scores: &[f32], labels: &[bool]) -> Vec<(f64, f64)> {
    let (pos, _) = counts(labels);
    let mut pts = Vec::new();
    for (_, tp, fp) in sweep(scores, labels) {
        if tp + fp > 0 {
            if pts.is_empty() {
                pts.push((0.0, tp as f64 / (tp + fp) as f64));
            }
            pts.push((tp as f64 / pos.max(1) as f64, tp as f64 / (tp + fp) as f64));
        }
    }
    pts
}

fn counts(labels: &[bool]) -> (usize, usize) {
    let pos = labels.iter().filter(|&&l| l).count();
    (pos, labels.len() - pos)
}

/// Deterministic choice of at most `n` images: each model's lowest- and highest-scored image (its
/// worst and best case), then one per defect type in turn, in split order.
pub fn choose_strips(
    items: &[Item],
    glass: &HashMap<PathBuf, f32>,
    cls: &HashMap<PathBuf, f32>,
    n: usize,
) -> Vec<(usize, String)> {
    let mut picks: Vec<(usize, String)> = Vec::new();
    let add = |i: Option<usize>, why: &str, picks: &mut Vec<(usize, String)>| {
        if let Some(i) = i {
            if picks.len() < n && !picks.iter().any(|p| p.0 == i) {
                picks.push((i, why.to_string()));
            }
        }
    };
    let by = |m: &HashMap<PathBuf, f32>, lowest: bool| -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for (i, it) in items.iter().enumerate() {
            if let Some(&s) = m.get(&it.image) {
                let better = match best {
                    None => true,
                    Some((_, b)) => (lowest && s < b) || (!lowest && s > b),
                };
                if better {
                    best = Some((i, s));
                }
            }
        }
        best.map(|b| b.0)
    };
    add(by(glass, true), "GLASS's lowest score (its worst case)", &mut picks);
    add(by(cls, true), "classifier's lowest probability (its worst case)", &mut picks);
    add(by(glass, false), "GLASS's highest score", &mut picks);
    add(by(cls, false), "classifier's highest probability", &mut picks);
    let mut types: Vec<&str> = items.iter().filter_map(|i| i.defect.as_deref()).collect();
    types.dedup();
    let mut round = 0;
    while picks.len() < n {
        let before = picks.len();
        for t in &types {
            let nth = items
                .iter()
                .enumerate()
                .filter(|(_, it)| it.defect.as_deref() == Some(*t))
                .nth(round)
                .map(|(i, _)| i);
            add(nth, "one per defect type", &mut picks);
        }
        round += 1;
        if picks.len() == before && round > items.len() {
            break;
        }
    }
    picks
}

fn draw_strips(
    opts: &ExperimentOptions,
    category: &Category,
    runs: &[RunResult],
    scores: &[RunScores],
    dir: &Path,
    figs: &mut CategoryFigures,
) -> Result<()> {
    let device = opts.device.resolve()?;
    let items = super::shared_abnormal_items(category, opts.glass.seed)?;
    let score_map = |s: &RunScores| -> HashMap<PathBuf, f32> {
        s.scores
            .test
            .iter()
            .filter(|r| r.rotation == 0)
            .map(|r| (r.file.clone(), r.score))
            .collect()
    };
    let glass_scores = score_map(&scores[0]);
    let cls_idx: Vec<usize> =
        (0..runs.len()).filter(|&i| runs[i].role == Role::Classifier).collect();
    let first_cls = cls_idx.first().map(|&i| score_map(&scores[i])).unwrap_or_default();
    let picks = choose_strips(&items, &glass_scores, &first_cls, opts.max_strips);

    let grd = RunDir::open(&opts.out.join(&runs[0].dir))?;
    let gcfg: GlassRunConfig = run::read_json(&grd.config())?;
    let glass = gcfg.load_model(&grd.best(), device)?;
    let pc = match runs.iter().position(|r| r.role == Role::Patchcore) {
        Some(i) => {
            let rd = RunDir::open(&opts.out.join(&runs[i].dir))?;
            let cfg: crate::run::PatchCoreRunConfig = run::read_json(&rd.config())?;
            let model = cfg.load_model(&rd.best(), device)?;
            Some((i, cfg, model))
        }
        None => None,
    };
    let mut classifiers = Vec::new();
    for &i in &cls_idx {
        let rd = RunDir::open(&opts.out.join(&runs[i].dir))?;
        let cfg: ClassifierRunConfig = run::read_json(&rd.config())?;
        let model = cfg.load_model(&rd.best(), device)?;
        classifiers.push((i, cfg, model));
    }
    figs.strip_columns =
        std::iter::once(format!("{} map", runs[0].name))
            .chain(pc.iter().map(|(i, _, _)| format!("{} map", runs[*i].name)))
            .chain(classifiers.iter().map(|(i, c, _)| {
                format!("{} Grad-CAM ({})", runs[*i].name, c.classifier.cam_layer)
            }))
            .collect();
    let pp = &gcfg.preprocess;
    let (w, h) = (pp.width as usize, pp.height as usize);
    let pb = run::progress_bar(picks.len(), "strips", opts.progress);
    for (k, (idx, why)) in picks.iter().enumerate() {
        let item = &items[*idx];
        let g = eval::glass::score_item(&glass, &gcfg, item)?;
        let mut maps = vec![g.map];
        let mut pc_verdict = None;
        if let Some((i, cfg, model)) = &pc {
            let p = eval::patchcore::score_item(model, cfg, item)?;
            let (pw, ph) = (cfg.preprocess.width as usize, cfg.preprocess.height as usize);
            maps.push(if (pw, ph) == (w, h) {
                p.map
            } else {
                shared::preprocess::upsample_bilinear(&p.map, pw, ph, w, h)
                    .map_err(|e| Error::Config(format!("resizing a PatchCore map: {e}")))?
            });
            pc_verdict = Some((p.score, p.score >= runs[*i].metrics.threshold));
        }
        let mut verdicts = Vec::new();
        for (i, cfg, model) in &classifiers {
            let x = loader::image_tensor(item, &cfg.preprocess)?;
            let s = eval::classifier::score_tensor(
                model,
                &x,
                &cfg.classifier.cam_layer,
                CamMethod::GradCam,
                true,
            )?;
            let (cw, ch) = (cfg.preprocess.width as usize, cfg.preprocess.height as usize);
            let m = if (cw, ch) == (w, h) {
                s.map
            } else {
                shared::preprocess::upsample_bilinear(&s.map, cw, ch, w, h)
                    .map_err(|e| Error::Config(format!("resizing a Grad-CAM map: {e}")))?
            };
            maps.push(m);
            verdicts.push((s.score, s.score >= runs[*i].metrics.threshold));
        }
        let mask = loader::mask_pixels(item, pp)?;
        let img = loader::load_rgb(&item.image, item.rotation)?;
        let refs: Vec<(&[f32], (f32, f32))> = maps.iter().map(|m| (&m[..], (0.0, 1.0))).collect();
        let path = dir.join(format!("strip_{k:02}_{}", eval::strip_name(item)));
        visual::write_strip(&path, &img, Some(&mask), &refs, w as u32, h as u32, 224)?;
        figs.strips.push(Strip {
            file: path.strip_prefix(&opts.out).unwrap_or(&path).to_string_lossy().into_owned(),
            defect: item.defect.clone().unwrap_or_default(),
            image: item.image.to_string_lossy().into_owned(),
            why: why.clone(),
            glass: (g.score, g.score >= runs[0].metrics.threshold),
            classifiers: verdicts,
            patchcore: pc_verdict,
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_and_pr_points_of_a_perfect_and_a_reversed_ranking() {
        let s = [0.9f32, 0.8, 0.2, 0.1];
        let l = [true, true, false, false];
        let roc = roc_points(&s, &l);
        assert_eq!(roc.first(), Some(&(0.0, 0.0)));
        assert!(roc.contains(&(0.0, 1.0)));
        assert_eq!(roc.last(), Some(&(1.0, 1.0)));
        let pr = pr_points(&s, &l);
        assert!(pr.contains(&(1.0, 1.0)));
        let rev = [false, false, true, true];
        let roc = roc_points(&s, &rev);
        assert!(roc.contains(&(1.0, 0.0)));
        let pr = pr_points(&s, &rev);
        assert_eq!(pr.last(), Some(&(1.0, 0.5)));
    }
}
