//! Automatic foreground masks of a category's training images (`host data fg-masks`), for GLASS's
//! Local Anomaly Synthesis: with a mask, synthetic defects are painted on the part only, not on the
//! background around it (docs/glass-edge.md, difference 4; the reference ships such masks for its
//! object categories).
//!
//! The estimate suits a part on a plain background (bottle-like object categories): on a copy of at
//! most [`WORK_SIDE`] px, Gaussian blur, each pixel's colour distance from the border's median
//! colour, Otsu's threshold of that distance (the split must be clean: [`MIN_SEPARABILITY`]); the
//! class the image border mostly belongs to is background; background reached from the border (4-connected) stays background, so
//! holes inside the part become part; the largest 4-connected part region is kept. When the part
//! covers less than [`MIN_FRACTION`] or more than [`MAX_FRACTION`] of the image, or holds less than
//! [`MIN_DOMINANCE`] of the pixels on its side of the threshold (a texture of many blobs), the mask is
//! the whole image, which is what training does without a mask.
//!
//! Hand-written (Otsu, flood fill, one labelling pass: ~100 lines) rather than `imageproc`, which
//! would bring nalgebra and rayon into the trainer's build for these three functions.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, RgbImage};

use crate::error::{Error, Result};

/// Side of the working copy (the longer side; the mask is scaled back to the image's size).
pub const WORK_SIDE: u32 = 256;
/// Blur sigma on the working copy, pixels.
pub const BLUR_SIGMA: f32 = 2.0;
/// Otsu's separability (see [`otsu`]) of the colour-distance image below which there is no plain
/// background to tell a part from. Measured on training images, 2026-12-03: MVTec AD bottle
/// 0.93-0.95 (a part on black); `host synth` object categories 0.87-0.93 (a brown part on a green
/// weave); the magnetic-tile set 0.49-0.81, median 0.68 (shaded texture); a `host synth` texture
/// 0.70.
pub const MIN_SEPARABILITY: f64 = 0.85;
/// The part must hold at least this share of the pixels on the part's side of the threshold (after
/// hole filling); below it the image is many similar blobs (a texture), and the mask is the whole
/// image.
pub const MIN_DOMINANCE: f32 = 0.5;
/// Below this part fraction the mask is the whole image.
pub const MIN_FRACTION: f32 = 0.02;
/// Above this part fraction the mask is the whole image.
pub const MAX_FRACTION: f32 = 0.95;

/// What the estimate found on one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Foreground {
    /// A part covering this fraction of the image.
    Part(f32),
    /// No part told apart from a background (texture-like, or a part filling the frame): the mask is
    /// the whole image. The fraction is what the estimate found before giving up.
    WholeImage(f32),
}

/// Otsu's threshold of an 8-bit histogram: the level `t` maximising the between-class variance of
/// `v <= t` against `v > t`, and that variance's share of the total variance (Otsu's separability,
/// 0..=1: near 1 for two well-separated levels, ~0.64 for one Gaussian; 0 for a constant image).
pub fn otsu(hist: &[u64; 256]) -> (u8, f64) {
    let total: u64 = hist.iter().sum();
    let sum_all: f64 = hist.iter().enumerate().map(|(i, &c)| i as f64 * c as f64).sum();
    let (mut w0, mut sum0, mut best, mut best_t) = (0u64, 0f64, -1f64, 0u8);
    for (t, &c) in hist.iter().enumerate() {
        w0 += c;
        sum0 += t as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0 || w1 == 0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0 as f64, (sum_all - sum0) / w1 as f64);
        let between = w0 as f64 * w1 as f64 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t as u8;
        }
    }
    let mean = sum_all / total.max(1) as f64;
    let spread: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| c as f64 * (i as f64 - mean) * (i as f64 - mean))
        .sum();
    let separability = if spread > 0.0 { (best / (total as f64 * spread)).min(1.0) } else { 0.0 };
    (best_t, separability)
}

/// The foreground mask (0 / 255, the image's size) of one image.
pub fn estimate(img: &RgbImage) -> (GrayImage, Foreground) {
    let (w0, h0) = img.dimensions();
    let scale = (WORK_SIDE as f32 / w0.max(h0) as f32).min(1.0);
    let (w, h) =
        (((w0 as f32 * scale).round() as u32).max(1), ((h0 as f32 * scale).round() as u32).max(1));
    let small = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
    let small = image::imageops::blur(&small, BLUR_SIGMA);
    let (wu, hu) = (w as usize, h as usize);
    let border: Vec<usize> = (0..wu)
        .flat_map(|x| [x, (hu - 1) * wu + x])
        .chain((0..hu).flat_map(|y| [y * wu, y * wu + wu - 1]))
        .collect();
    // The background's colour: the per-channel median of the border. Each pixel's distance from it,
    // scaled to 0..=255, is what the threshold splits (a part may differ from its background in
    // hue only, e.g. brown on green, where grey levels would not tell them apart).
    let rgb = small.as_raw();
    let bg: [f32; 3] = std::array::from_fn(|c| {
        let mut v: Vec<u8> = border.iter().map(|&i| rgb[3 * i + c]).collect();
        v.sort_unstable();
        f32::from(v[v.len() / 2])
    });
    let dist: Vec<f32> = rgb
        .chunks_exact(3)
        .map(|p| (0..3).map(|c| (f32::from(p[c]) - bg[c]).powi(2)).sum::<f32>().sqrt())
        .collect();
    let top = dist.iter().copied().fold(0.0f32, f32::max).max(1e-6);
    let px: Vec<u8> = dist.iter().map(|&d| (d / top * 255.0).round() as u8).collect();
    let mut hist = [0u64; 256];
    for &v in &px {
        hist[v as usize] += 1;
    }
    let (t, separability) = otsu(&hist);
    let mut above: Vec<bool> = px.iter().map(|&v| v > t).collect();
    if border.iter().filter(|&&i| above[i]).count() * 2 > border.len() {
        above.iter_mut().for_each(|a| *a = !*a);
    }
    // Background: not-part pixels reached from the border. Everything else is part (holes filled).
    let mut background = vec![false; px.len()];
    let mut queue: VecDeque<usize> = border.into_iter().filter(|&i| !above[i]).collect();
    queue.iter().for_each(|&i| background[i] = true);
    flood(&mut queue, wu, hu, |i| {
        let take = !above[i] && !background[i];
        background[i] |= take;
        take
    });
    // The largest 4-connected part region.
    let mut label = vec![0u32; px.len()];
    let (mut best, mut best_n, mut next, mut all_n) = (0u32, 0usize, 0u32, 0usize);
    for start in 0..px.len() {
        if background[start] || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        let mut n = 1;
        let mut q = VecDeque::from([start]);
        flood(&mut q, wu, hu, |i| {
            let take = !background[i] && label[i] == 0;
            if take {
                label[i] = next;
                n += 1;
            }
            take
        });
        all_n += n;
        if n > best_n {
            (best, best_n) = (next, n);
        }
    }
    let fraction = best_n as f32 / px.len() as f32;
    let dominant = best_n as f32 >= MIN_DOMINANCE * all_n.max(1) as f32;
    let whole = separability < MIN_SEPARABILITY
        || !dominant
        || !(MIN_FRACTION..=MAX_FRACTION).contains(&fraction);
    let mask = GrayImage::from_fn(w, h, |x, y| {
        let on = whole || label[y as usize * wu + x as usize] == best;
        Luma([if on { 255 } else { 0 }])
    });
    let mask = image::imageops::resize(&mask, w0, h0, image::imageops::FilterType::Nearest);
    (mask, if whole { Foreground::WholeImage(fraction) } else { Foreground::Part(fraction) })
}

/// Breadth-first fill from the queued pixels over 4-neighbours; `claim(j)` says whether pixel `j`
/// joins (and marks it when it does).
fn flood(queue: &mut VecDeque<usize>, w: usize, h: usize, mut claim: impl FnMut(usize) -> bool) {
    while let Some(i) = queue.pop_front() {
        let (x, y) = (i % w, i / w);
        let neighbours = [
            (x > 0).then(|| i - 1),
            (x + 1 < w).then(|| i + 1),
            (y > 0).then(|| i - w),
            (y + 1 < h).then(|| i + w),
        ];
        for j in neighbours.into_iter().flatten() {
            if claim(j) {
                queue.push_back(j);
            }
        }
    }
}

/// What `host data fg-masks` wrote.
#[derive(Debug, Clone)]
pub struct FgSummary {
    /// Where the masks are (one PNG per training image, named like it).
    pub out: PathBuf,
    /// Images with a part found, and their part fractions.
    pub parts: Vec<f32>,
    /// Images whose mask is the whole image.
    pub whole: usize,
}

/// Writes a foreground mask for every `train/good` image of the category at `data` into `out`
/// (created), as `<image stem>.png` (`host train glass --fg-masks OUT`).
pub fn write_masks(data: &Path, out: &Path, progress: bool) -> Result<FgSummary> {
    let category = crate::data::category::Category::open(data)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let pb = crate::run::progress_bar(category.train_good.len(), "fg masks", progress);
    let mut summary = FgSummary { out: out.to_path_buf(), parts: Vec::new(), whole: 0 };
    for img in &category.train_good {
        let rgb =
            image::open(img).map_err(|e| Error::Image { path: img.clone(), source: e })?.to_rgb8();
        let (mask, found) = estimate(&rgb);
        match found {
            Foreground::Part(f) => summary.parts.push(f),
            Foreground::WholeImage(_) => summary.whole += 1,
        }
        // `<image stem>.png`: the trainer looks a mask up by the image's file name, then by its stem
        // with `.png`.
        let stem = img.file_stem().ok_or_else(|| Error::Dataset {
            path: data.to_path_buf(),
            msg: format!("{}: no file name", img.display()),
        })?;
        let dst = out.join(stem).with_extension("png");
        mask.save_with_format(&dst, image::ImageFormat::Png)
            .map_err(|e| Error::Image { path: dst.clone(), source: e })?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_two_levels() {
        let mut h = [0u64; 256];
        h[40] = 100;
        h[200] = 50;
        let (t, sep) = otsu(&h);
        assert!((40..200).contains(&t), "{t}");
        assert!((sep - 1.0).abs() < 1e-9, "two levels separate fully: {sep}");
        assert_eq!(otsu(&[0; 256]).1, 0.0);
    }

    /// A bright ring with a dark centre on a dark background: the part is the ring with its centre
    /// (the hole is filled), the background stays out; a bright square of noise-free texture gives
    /// the whole image.
    #[test]
    fn ring_on_background_and_texture() {
        let img = RgbImage::from_fn(300, 200, |x, y| {
            let (dx, dy) = (x as f32 - 150.0, y as f32 - 100.0);
            let r = (dx * dx + dy * dy).sqrt();
            image::Rgb(if (30.0..70.0).contains(&r) { [220; 3] } else { [20; 3] })
        });
        let (mask, found) = estimate(&img);
        assert_eq!(mask.dimensions(), (300, 200));
        assert_eq!(mask.get_pixel(150, 100)[0], 255, "the centre hole is part of the part");
        assert_eq!(mask.get_pixel(150, 50)[0], 255, "the ring");
        assert_eq!(mask.get_pixel(5, 5)[0], 0, "the background");
        let want = std::f32::consts::PI * 70.0 * 70.0 / (300.0 * 200.0);
        match found {
            Foreground::Part(f) => assert!((f - want).abs() < 0.03, "fraction {f} vs {want}"),
            other => panic!("{other:?}"),
        }
        // Stripes over the whole frame: no part told apart, the whole image.
        let stripes = RgbImage::from_fn(128, 128, |x, _| {
            image::Rgb([if (x / 8) % 2 == 0 { 200 } else { 30 }; 3])
        });
        let (mask, found) = estimate(&stripes);
        assert!(matches!(found, Foreground::WholeImage(_)), "{found:?}");
        assert!(mask.pixels().all(|p| p[0] == 255));
    }
}
