//! Detection and localisation metrics. Positive = abnormal everywhere.
//!
//! - [`auroc`]: exact ROC AUC with ties counted half (sklearn `roc_auc_score`).
//! - [`best_f1`]: the threshold that maximises F1 (the experiment protocol's "best F1").
//! - [`Confusion`]: accuracy / precision / recall / F1 at a given threshold.
//! - [`PixelMetrics`]: streaming pixel AUROC and AUPRO. Maps are added one at a time and binned into
//!   fixed histograms over scores in [0, 1] (GLASS maps are sigmoid outputs; Grad-CAM maps are min-max
//!   normalised), so memory does not grow with the number of test images. AUPRO is the standard one
//!   (MVTec AD, Bergmann et al.): per-region overlap averaged over all ground-truth regions
//!   (8-connected), integrated over FPR in [0, 0.3] and divided by 0.3 — not GLASS's dilated variant.

/// Exact ROC AUC of `scores` against `labels` (true = positive). `None` when a class is missing.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann-Whitney U with average ranks for ties.
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Counts at one threshold: predicted positive iff `score >= threshold`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Confusion {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    pub fn_: usize,
}

impl Confusion {
    /// Counts for `scores` against `labels` at `threshold`.
    pub fn at(scores: &[f32], labels: &[bool], threshold: f32) -> Self {
        let mut c = Confusion::default();
        for (&s, &l) in scores.iter().zip(labels) {
            match (s >= threshold, l) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }
    /// (tp + tn) / all.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
    /// tp / (tp + fp); 0 when nothing is predicted positive.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// tp / (tp + fn); 0 without positives.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// Harmonic mean of precision and recall (2tp / (2tp + fp + fn)).
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The threshold that maximises F1 over all distinct scores, and that F1. Among equal F1s the highest
/// threshold wins (fewest false alarms). `None` for empty input.
pub fn best_f1(scores: &[f32], labels: &[bool]) -> Option<(f32, f64)> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let mut best: Option<(f32, f64)> = None;
    for (t, tp, fp) in sweep(scores, labels) {
        let f1 = ratio(2 * tp, tp + fp + n_pos);
        if best.is_none_or(|(_, b)| f1 > b) {
            best = Some((t, f1));
        }
    }
    best
}

/// Every distinct score from the highest down, with the true and false positives of the cut
/// `score >= threshold` at it: `(threshold, tp, fp)`. The basis of best F1 and of ROC / PR curves.
pub fn sweep(scores: &[f32], labels: &[bool]) -> Vec<(f32, usize, usize)> {
    let mut idx: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a])); // descending
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let t = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == t {
            if labels[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push((t, tp, fp));
    }
    out
}

/// [`best_f1`] with the threshold moved to the middle of the gap between the best cut's score and
/// the next lower score, so that no validation image sits exactly on it: the same F1 on these scores,
/// and an image whose score moves a little (int8 vs fp32, another runtime) keeps its verdict. A
/// station threshold should be chosen this way.
pub fn best_f1_margin(scores: &[f32], labels: &[bool]) -> Option<(f32, f64)> {
    let (t, f1) = best_f1(scores, labels)?;
    let below = scores.iter().copied().filter(|&s| s < t).fold(f32::NEG_INFINITY, f32::max);
    let mid = if below.is_finite() { below + (t - below) / 2.0 } else { t };
    // Rounding can land back on `below`; then the cut stays at `t`.
    Some((if mid > below { mid } else { t }, f1))
}

/// Number of histogram bins of [`PixelMetrics`] (scores are quantised to 1/BINS).
pub const BINS: usize = 4096;

fn bin(v: f32) -> usize {
    if v.is_nan() {
        return 0;
    }
    ((v.clamp(0.0, 1.0) * (BINS - 1) as f32).round() as usize).min(BINS - 1)
}

/// Streaming pixel AUROC + AUPRO over maps with values in [0, 1].
#[derive(Debug, Clone)]
pub struct PixelMetrics {
    neg: Vec<u64>,
    pos: Vec<u64>,
    /// Per ground-truth region: histogram of its pixels' scores.
    regions: Vec<Vec<u32>>,
}

impl Default for PixelMetrics {
    fn default() -> Self {
        PixelMetrics { neg: vec![0; BINS], pos: vec![0; BINS], regions: Vec::new() }
    }
}

impl PixelMetrics {
    /// Adds one map and its binary mask (same length `w * h`, row-major).
    pub fn add(&mut self, map: &[f32], mask: &[bool], w: usize, h: usize) {
        debug_assert_eq!(map.len(), w * h);
        for (&v, &m) in map.iter().zip(mask) {
            if m {
                self.pos[bin(v)] += 1;
            } else {
                self.neg[bin(v)] += 1;
            }
        }
        let (labels, n) = label_regions(mask, w, h);
        let start = self.regions.len();
        self.regions.extend((0..n).map(|_| vec![0u32; BINS]));
        for (i, &l) in labels.iter().enumerate() {
            if l > 0 {
                self.regions[start + l as usize - 1][bin(map[i])] += 1;
            }
        }
    }

    /// Pixel AUROC; `None` without both defect and good pixels.
    pub fn auroc(&self) -> Option<f64> {
        let (np, nn): (u64, u64) = (self.pos.iter().sum(), self.neg.iter().sum());
        if np == 0 || nn == 0 {
            return None;
        }
        // Sum over bins of P(pos in bin) * (neg below + half neg in bin).
        let mut neg_below = 0u64;
        let mut acc = 0.0f64;
        for b in 0..BINS {
            acc += self.pos[b] as f64 * (neg_below as f64 + 0.5 * self.neg[b] as f64);
            neg_below += self.neg[b];
        }
        Some(acc / (np as f64 * nn as f64))
    }

    /// Standard AUPRO up to FPR 0.3, normalised to [0, 1]; `None` without regions or good pixels.
    pub fn aupro(&self) -> Option<f64> {
        self.aupro_limit(0.3)
    }

    /// AUPRO integrated up to `fpr_limit` and divided by it.
    pub fn aupro_limit(&self, fpr_limit: f64) -> Option<f64> {
        let nn: u64 = self.neg.iter().sum();
        if self.regions.is_empty() || nn == 0 {
            return None;
        }
        let sizes: Vec<f64> =
            self.regions.iter().map(|r| r.iter().map(|&c| c as f64).sum()).collect();
        // Sweep thresholds from high to low: predicted = score bin >= b.
        let mut neg_above = 0u64;
        let mut reg_above = vec![0f64; self.regions.len()];
        let mut pts: Vec<(f64, f64)> = vec![(0.0, 0.0)];
        for b in (0..BINS).rev() {
            neg_above += self.neg[b];
            for (k, r) in self.regions.iter().enumerate() {
                reg_above[k] += r[b] as f64;
            }
            let fpr = neg_above as f64 / nn as f64;
            let pro =
                reg_above.iter().zip(&sizes).map(|(a, s)| a / s).sum::<f64>() / sizes.len() as f64;
            pts.push((fpr, pro));
        }
        // Trapezoid up to fpr_limit, interpolating the last segment.
        let mut area = 0.0;
        for win in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (win[0], win[1]);
            if x0 >= fpr_limit {
                break;
            }
            if x1 > fpr_limit {
                let t = (fpr_limit - x0) / (x1 - x0);
                area += (fpr_limit - x0) * (y0 + (y0 + t * (y1 - y0))) / 2.0;
                break;
            }
            area += (x1 - x0) * (y0 + y1) / 2.0;
        }
        Some(area / fpr_limit)
    }
}

/// 8-connected component labels of a binary mask: (labels 1..=n, 0 = background; n).
pub fn label_regions(mask: &[bool], w: usize, h: usize) -> (Vec<u32>, u32) {
    let mut labels = vec![0u32; w * h];
    let mut n = 0u32;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        n += 1;
        labels[start] = n;
        stack.push(start);
        while let Some(p) = stack.pop() {
            let (x, y) = ((p % w) as i64, (p / w) as i64);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (nx, ny) = (x + dx, y + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let q = ny as usize * w + nx as usize;
                    if mask[q] && labels[q] == 0 {
                        labels[q] = n;
                        stack.push(q);
                    }
                }
            }
        }
    }
    (labels, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_perfect_random_and_ties() {
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        assert_eq!(auroc(&[0.5, 0.5], &[false, true]), Some(0.5));
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
        assert_eq!(auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn best_f1_margin_cuts_between_scores() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        let (t, f1) = best_f1(&s, &l).unwrap();
        let (tm, f1m) = best_f1_margin(&s, &l).unwrap();
        assert_eq!(f1, f1m);
        assert!(tm < t && tm > 0.1, "{tm}");
        assert_eq!(Confusion::at(&s, &l, tm), Confusion::at(&s, &l, t));
        // The lowest score as the cut: nothing below, the threshold stays.
        assert_eq!(best_f1_margin(&[0.5, 0.6], &[true, true]).unwrap().0, 0.5);
    }

    #[test]
    fn best_f1_and_confusion() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        let (t, f1) = best_f1(&s, &l).unwrap();
        // threshold 0.35 -> tp 2, fp 1 -> f1 = 4/5; threshold 0.8 -> tp 1 -> 2/3.
        assert!((f1 - 0.8).abs() < 1e-12 && t == 0.35, "{t} {f1}");
        let c = Confusion::at(&s, &l, t);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 1, 0));
        assert!(
            (c.precision() - 2.0 / 3.0).abs() < 1e-12 && c.recall() == 1.0 && c.accuracy() == 0.75
        );
        assert_eq!(Confusion::default().f1(), 0.0);
    }

    #[test]
    fn regions_are_eight_connected() {
        // Two diagonal pixels form one region; a far pixel is another.
        let mut m = vec![false; 25];
        m[0] = true;
        m[6] = true;
        m[24] = true;
        let (_, n) = label_regions(&m, 5, 5);
        assert_eq!(n, 2);
    }

    #[test]
    fn pixel_metrics_perfect_and_inverted() {
        let (w, h) = (8, 8);
        let mask: Vec<bool> = (0..64).map(|i| (i % 8) < 2 && (i / 8) < 2).collect();
        let good: Vec<f32> = mask.iter().map(|&m| if m { 0.9 } else { 0.1 }).collect();
        let mut pm = PixelMetrics::default();
        pm.add(&good, &mask, w, h);
        assert!((pm.auroc().unwrap() - 1.0).abs() < 1e-12);
        assert!((pm.aupro().unwrap() - 1.0).abs() < 1e-9, "{:?}", pm.aupro());
        let bad: Vec<f32> = mask.iter().map(|&m| if m { 0.1 } else { 0.9 }).collect();
        let mut pm = PixelMetrics::default();
        pm.add(&bad, &mask, w, h);
        assert!(pm.auroc().unwrap() < 1e-12);
        assert!(pm.aupro().unwrap() < 1e-9);
    }

    #[test]
    fn pixel_auroc_matches_exact_on_coarse_values() {
        let map = [0.0f32, 0.25, 0.5, 0.75, 1.0, 0.5];
        let mask = [false, false, true, true, true, false];
        let mut pm = PixelMetrics::default();
        pm.add(&map, &mask, 6, 1);
        let exact = auroc(&map, &mask).unwrap();
        assert!((pm.auroc().unwrap() - exact).abs() < 1e-12);
    }
}
