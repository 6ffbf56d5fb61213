//! The defect painter: places a scratch, crack, hole, contamination or colour defect on the part,
//! blends it into the canvas and returns its mask.

use std::f32::consts::TAU;

use image::{GrayImage, Luma};
use rand::Rng;

use super::canvas::{clamp01, hsv, lerp3, scale3, Canvas, Region};
use super::noise::Noise;
use super::{DefectKind, Style};

/// Max-accumulated coverage of the defect shape, over the whole canvas.
struct Coverage {
    n: usize,
    v: Vec<f32>,
}

impl Coverage {
    fn segment(&mut self, a: (f32, f32), b: (f32, f32), width: f32) {
        let pad = width + 2.0;
        let (x0, x1) = (a.0.min(b.0) - pad, a.0.max(b.0) + pad);
        let (y0, y1) = (a.1.min(b.1) - pad, a.1.max(b.1) + pad);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        for y in self.range(y0, y1) {
            for x in self.range(x0, x1) {
                let (px, py) = (x as f32 + 0.5 - a.0, y as f32 + 0.5 - a.1);
                let t = clamp01((px * dx + py * dy) / len2);
                let (ex, ey) = (px - t * dx, py - t * dy);
                let d = (ex * ex + ey * ey).sqrt();
                let cov = clamp01(width / 2.0 + 0.5 - d);
                let i = y * self.n + x;
                self.v[i] = self.v[i].max(cov);
            }
        }
    }

    fn polyline(&mut self, pts: &[(f32, f32)], width: f32) {
        for w in pts.windows(2) {
            self.segment(w[0], w[1], width);
        }
    }

    /// An irregular disk: radius `r` modulated by harmonics 2..=5 of relative amplitude about `wobble`;
    /// `soft` is the edge width in px.
    fn blob(&mut self, rng: &mut impl Rng, c: (f32, f32), r: f32, wobble: f32, soft: f32) {
        // Harmonic k gets amplitude up to wobble / (k - 1): lumpy, not star-shaped.
        let harm: Vec<(f32, f32)> = (2..=5)
            .map(|k| {
                (
                    (rng.random::<f32>() * 2.0 - 1.0) * wobble / (k - 1) as f32 / 1.5,
                    rng.random_range(0.0..TAU),
                )
            })
            .collect();
        let pad = r * (1.0 + 2.0 * wobble) + soft + 2.0;
        for y in self.range(c.1 - pad, c.1 + pad) {
            for x in self.range(c.0 - pad, c.0 + pad) {
                let (dx, dy) = (x as f32 + 0.5 - c.0, y as f32 + 0.5 - c.1);
                let d = (dx * dx + dy * dy).sqrt();
                let a = dy.atan2(dx);
                let mut rr = 1.0;
                for (k, &(amp, ph)) in harm.iter().enumerate() {
                    rr += amp * ((k as f32 + 2.0) * a + ph).cos();
                }
                let cov = clamp01((r * rr - d) / soft + 0.5);
                let i = y * self.n + x;
                self.v[i] = self.v[i].max(cov);
            }
        }
    }

    fn range(&self, lo: f32, hi: f32) -> std::ops::Range<usize> {
        let lo = lo.floor().max(0.0) as usize;
        let hi = (hi.ceil().max(0.0) as usize).min(self.n);
        lo.min(hi)..hi
    }
}

/// Draws a defect of `kind` into `canvas` and returns its mask (coverage >= 0.5, on the part).
pub(super) fn draw_defect(
    canvas: &mut Canvas,
    kind: DefectKind,
    region: &Region,
    style: &Style,
    rng: &mut impl Rng,
) -> GrayImage {
    let n = canvas.n;
    let s = n as f32;
    let on_part = |x: usize, y: usize| -> f32 {
        match region {
            Region::Whole => 1.0,
            Region::Disk { cx, cy, r } => {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                clamp01(r - 1.5 - (dx * dx + dy * dy).sqrt())
            }
        }
    };
    // Objects get somewhat smaller defects: the part covers about a third of the image.
    let size_k = match region {
        Region::Whole => 1.0,
        Region::Disk { .. } => 0.8,
    };
    let base_hue = match style {
        Style::Texture(t) => t.hue,
        Style::Object(o) => o.hue,
    };
    for _ in 0..16 {
        let mut cov = Coverage { n, v: vec![0.0; n * n] };
        let center = match region {
            Region::Whole => (rng.random_range(0.12..0.88) * s, rng.random_range(0.12..0.88) * s),
            Region::Disk { cx, cy, r } => {
                let rho = r * 0.75 * rng.random::<f32>().sqrt();
                let a = rng.random_range(0.0..TAU);
                (cx + rho * a.cos(), cy + rho * a.sin())
            }
        };
        match kind {
            DefectKind::Scratch => {
                let len = s * size_k * rng.random_range(0.15..0.3);
                let a = rng.random_range(0.0..TAU);
                let (da, db) = (a.cos() * len / 2.0, a.sin() * len / 2.0);
                let bend = len * rng.random_range(-0.2..0.2);
                let (p0, p2) = ((center.0 - da, center.1 - db), (center.0 + da, center.1 + db));
                let p1 = (center.0 - a.sin() * bend, center.1 + a.cos() * bend);
                let pts: Vec<(f32, f32)> = (0..=16)
                    .map(|i| {
                        let t = i as f32 / 16.0;
                        let (u, w) = ((1.0 - t) * (1.0 - t), t * t);
                        let m = 2.0 * t * (1.0 - t);
                        (u * p0.0 + m * p1.0 + w * p2.0, u * p0.1 + m * p1.1 + w * p2.1)
                    })
                    .collect();
                cov.polyline(&pts, (s * 0.0045).max(1.5));
            }
            DefectKind::Crack => {
                let step = s * size_k * 0.032;
                let mut heading = rng.random_range(0.0..TAU);
                let segs = rng.random_range(7..11);
                let mut p = (
                    center.0 - heading.cos() * step * segs as f32 / 2.0,
                    center.1 - heading.sin() * step * segs as f32 / 2.0,
                );
                let mut pts = vec![p];
                for _ in 0..segs {
                    heading += rng.random_range(-0.8..0.8);
                    let l = step * rng.random_range(0.6..1.3);
                    p = (p.0 + heading.cos() * l, p.1 + heading.sin() * l);
                    pts.push(p);
                }
                let width = (s * 0.0035).max(1.3);
                cov.polyline(&pts, width);
                let from = pts[pts.len() / 2];
                let mut h = heading + if rng.random::<bool>() { 1.0 } else { -1.0 };
                let mut q = vec![from];
                let mut p = from;
                for _ in 0..rng.random_range(2..5) {
                    h += rng.random_range(-0.6..0.6);
                    p = (p.0 + h.cos() * step * 0.8, p.1 + h.sin() * step * 0.8);
                    q.push(p);
                }
                cov.polyline(&q, width * 0.8);
            }
            DefectKind::Hole => {
                let r = s * size_k * rng.random_range(0.018..0.035);
                cov.blob(rng, center, r, 0.3, 1.0);
            }
            DefectKind::Contamination => {
                let r = s * size_k * rng.random_range(0.025..0.05);
                cov.blob(rng, center, r, 0.5, 1.0);
                let a = rng.random_range(0.0..TAU);
                let sat = (center.0 + a.cos() * r * 1.1, center.1 + a.sin() * r * 1.1);
                let sat_r = r * rng.random_range(0.3..0.5);
                cov.blob(rng, sat, sat_r, 0.4, 1.0);
            }
            DefectKind::Color => {
                let r = s * size_k * rng.random_range(0.04..0.07);
                cov.blob(rng, center, r, 0.35, (r * 0.15).max(1.0));
            }
        }
        let (mask, area) = restrict_and_mask(&mut cov, &on_part);
        if area >= 4 {
            apply_effect(canvas, &cov.v, kind, base_hue, rng);
            return mask;
        }
    }
    // Practically unreachable (16 placements all (nearly) off the part): a plain spot in the middle of
    // the region, so a defect slot never has an empty mask.
    let (c, r) = match region {
        Region::Whole => ((s / 2.0, s / 2.0), (s * 0.03).max(3.0)),
        Region::Disk { cx, cy, r } => ((*cx, *cy), (r * 0.1).max(3.0)),
    };
    let mut cov = Coverage { n, v: vec![0.0; n * n] };
    cov.blob(rng, c, r, 0.0, 1.0);
    let (mask, _) = restrict_and_mask(&mut cov, &on_part);
    apply_effect(canvas, &cov.v, DefectKind::Hole, base_hue, rng);
    mask
}

/// Multiplies `cov` by the part coverage and returns the mask (coverage >= 0.5) and its area in px.
fn restrict_and_mask(
    cov: &mut Coverage,
    on_part: &impl Fn(usize, usize) -> f32,
) -> (GrayImage, usize) {
    let n = cov.n;
    let mut mask = GrayImage::new(n as u32, n as u32);
    let mut area = 0usize;
    for y in 0..n {
        for x in 0..n {
            let i = y * n + x;
            if cov.v[i] > 0.0 {
                cov.v[i] *= on_part(x, y);
                if cov.v[i] >= 0.5 {
                    mask.put_pixel(x as u32, y as u32, Luma([255]));
                    area += 1;
                }
            }
        }
    }
    (mask, area)
}

/// Blends the defect's appearance into `canvas` with weights `cov`.
fn apply_effect(
    canvas: &mut Canvas,
    cov: &[f32],
    kind: DefectKind,
    base_hue: f32,
    rng: &mut impl Rng,
) {
    let n = canvas.n;
    let foreign = hsv(
        base_hue + rng.random_range(0.3..0.7),
        rng.random_range(0.5..0.85),
        rng.random_range(0.25..0.55),
    );
    let grain = Noise::new(rng, 32);
    let th = rng.random_range(0.0..TAU);
    let ta = rng.random_range(0.25..0.35);
    let tint = [
        1.0 + ta * th.cos(),
        1.0 + ta * (th + TAU / 3.0).cos(),
        1.0 + ta * (th + 2.0 * TAU / 3.0).cos(),
    ];
    let gscale = 24.0 / n as f32 * 4.0;
    for (i, &w) in cov.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        let p = canvas.px[i];
        let (x, y) = ((i % n) as f32, (i / n) as f32);
        let (target, alpha) = match kind {
            DefectKind::Scratch => (p.map(|c| c + (1.0 - c) * 0.5), 0.85),
            DefectKind::Crack => (scale3(p, 0.3), 0.9),
            DefectKind::Hole => {
                let g = grain.at(x * gscale, y * gscale);
                (scale3(p, 0.25 + 0.15 * g), 1.0)
            }
            DefectKind::Contamination => {
                let g = grain.fbm2(x * gscale, y * gscale);
                (scale3(foreign, 0.7 + 0.6 * g), 0.92)
            }
            DefectKind::Color => ([p[0] * tint[0], p[1] * tint[1], p[2] * tint[2]], 1.0),
        };
        canvas.px[i] = lerp3(p, target, w * alpha);
    }
}
