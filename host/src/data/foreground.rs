//! Automatic foreground masks of a category's training images (`host data fg-masks`), for GLASS's
//! Local Anomaly Synthesis: with a mask, synthetic defects are painted on the part only, not on the
//! background around it (docs/glass-edge.md, difference 4; the reference ships such masks for its
//! object categories).
//!
//! The estimate suits a part on a plain background (bottle-like object categories). On a copy of at
//! most [`WORK_SIDE`] px, blurred: the background's colour is the median colour of the image border,
//! and a pixel is part when its colour distance from it exceeds [`NOISE_FACTOR`] x the border's own
//! spread (its 90th-percentile distance) + [`NOISE_FLOOR`]. Not-part pixels reached from the border
//! (4-connected) are background, so holes inside the part become part; the largest 4-connected part
//! region is kept. The mask is the whole image, which is what training does without a mask, when
//! that region covers less than [`MIN_FRACTION`] or more than [`MAX_FRACTION`] of the image, holds
//! less than [`MIN_DOMINANCE`] of all part pixels (a texture of many blobs), or covers more than
//! [`MAX_BORDER_CONTACT`] of the border (no background around it).
//!
//! A category is judged as a whole ([`write_masks`]): unless a part is found on at least
//! [`MIN_PART_SHARE`] of its images, every mask is the whole image.
//!
//! Measured on training images (2026-12-03): MVTec AD bottle, a part on every one of 209 images
//! (67-68% of the image); the magnetic-tile set, a part on 11 of 762 images only (shaded texture),
//! so whole-image masks for all; `host synth` object categories, a part on every image (25-46%); a
//! `host synth` texture, none.
//!
//! Hand-written (a percentile, a flood fill, one labelling pass) rather than `imageproc`, which would
//! bring nalgebra and rayon into the trainer's build for these.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, RgbImage};

use crate::error::{Error, Result};

/// Side of the working copy (the longer side; the mask is scaled back to the image's size).
pub const WORK_SIDE: u32 = 256;
/// Blur sigma on the working copy, pixels.
pub const BLUR_SIGMA: f32 = 2.0;
/// A part pixel is farther from the background colour than this many times the border's spread.
pub const NOISE_FACTOR: f32 = 3.0;
/// ... plus this (RGB distance, 0..=441), so a perfectly flat background still needs a visible step.
pub const NOISE_FLOOR: f32 = 8.0;
/// The part must hold at least this share of all part pixels (after hole filling).
pub const MIN_DOMINANCE: f32 = 0.5;
/// Below this part fraction the mask is the whole image.
pub const MIN_FRACTION: f32 = 0.02;
/// Above this part fraction the mask is the whole image.
pub const MAX_FRACTION: f32 = 0.95;
/// A part touching more than this share of the border pixels has no background around it.
pub const MAX_BORDER_CONTACT: f32 = 0.05;

/// What the estimate found on one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Foreground {
    /// A part covering this fraction of the image.
    Part(f32),
    /// No part told apart from a background (texture-like, or a part filling the frame): the mask is
    /// the whole image. The fraction is what the estimate found before giving up.
    WholeImage(f32),
}

/// The foreground mask (0 / 255, the image's size) of one image.
pub fn estimate(img: &RgbImage) -> (GrayImage, Foreground) {
    let (small, found) = estimate_small(img);
    let (w0, h0) = img.dimensions();
    (image::imageops::resize(&small, w0, h0, image::imageops::FilterType::Nearest), found)
}

/// [`estimate`] at the working copy's size (at most [`WORK_SIDE`] px).
fn estimate_small(img: &RgbImage) -> (GrayImage, Foreground) {
    let (w0, h0) = img.dimensions();
    let scale = (WORK_SIDE as f32 / w0.max(h0) as f32).min(1.0);
    let (w, h) =
        (((w0 as f32 * scale).round() as u32).max(1), ((h0 as f32 * scale).round() as u32).max(1));
    let small = image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
    let small = image::imageops::blur(&small, BLUR_SIGMA);
    let (wu, hu) = (w as usize, h as usize);
    let mut border: Vec<usize> = (0..wu)
        .flat_map(|x| [x, (hu - 1) * wu + x])
        .chain((0..hu).flat_map(|y| [y * wu, y * wu + wu - 1]))
        .collect();
    border.sort_unstable();
    border.dedup();
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
    let mut edge: Vec<f32> = border.iter().map(|&i| dist[i]).collect();
    edge.sort_by(f32::total_cmp);
    let spread = edge[(edge.len() * 9 / 10).min(edge.len() - 1)];
    let threshold = NOISE_FACTOR * spread + NOISE_FLOOR;
    let part: Vec<bool> = dist.iter().map(|&d| d > threshold).collect();
    // Background: not-part pixels reached from the border. Everything else is part (holes filled).
    let mut background = vec![false; part.len()];
    let mut queue: VecDeque<usize> = border.iter().copied().filter(|&i| !part[i]).collect();
    queue.iter().for_each(|&i| background[i] = true);
    flood(&mut queue, wu, hu, |i| {
        let take = !part[i] && !background[i];
        background[i] |= take;
        take
    });
    // The largest 4-connected part region.
    let mut label = vec![0u32; part.len()];
    let (mut best, mut best_n, mut next, mut all_n) = (0u32, 0usize, 0u32, 0usize);
    for start in 0..part.len() {
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
    let fraction = best_n as f32 / part.len() as f32;
    let dominant = best_n as f32 >= MIN_DOMINANCE * all_n.max(1) as f32;
    let contact = border.iter().filter(|&&i| best_n > 0 && label[i] == best).count() as f32
        / border.len() as f32;
    let whole = best_n == 0
        || !dominant
        || contact > MAX_BORDER_CONTACT
        || !(MIN_FRACTION..=MAX_FRACTION).contains(&fraction);
    let mask = GrayImage::from_fn(w, h, |x, y| {
        let on = whole || label[y as usize * wu + x as usize] == best;
        Luma([if on { 255 } else { 0 }])
    });
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
    /// Where the masks are (one PNG per training image, named by its stem).
    pub out: PathBuf,
    /// Whether the category reads as parts on a background: a part was found on at least
    /// [`MIN_PART_SHARE`] of its images. When not, every mask is the whole image.
    pub objects: bool,
    /// The part fractions of the images a part was found on (before the category's decision).
    pub parts: Vec<f32>,
    /// Images whose mask is the whole image (after the category's decision).
    pub whole: usize,
}

/// A category is "parts on a background" when a part is found on at least this share of its
/// training images; otherwise every mask is the whole image (a texture category does not get a few
/// stray part masks from images where shading happened to look like a part).
pub const MIN_PART_SHARE: f32 = 0.5;

/// Writes a foreground mask for every `train/good` image of the category at `data` into `out`
/// (created), as `<image stem>.png` (`host train glass --fg-masks OUT`). The estimate runs once per
/// image, its working-size masks kept (<= 64 KB each); they are written, scaled to each image's size,
/// once the category is judged ([`MIN_PART_SHARE`]): all whole-image unless it is one of parts on a
/// background.
pub fn write_masks(data: &Path, out: &Path, progress: bool) -> Result<FgSummary> {
    let category = crate::data::category::Category::open(data)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let n = category.train_good.len();
    let pb = crate::run::progress_bar(2 * n, "fg masks", progress);
    let mut estimates = Vec::with_capacity(n);
    for img in &category.train_good {
        let rgb =
            image::open(img).map_err(|e| Error::Image { path: img.clone(), source: e })?.to_rgb8();
        let (small, found) = estimate_small(&rgb);
        estimates.push((small, rgb.dimensions(), found));
        pb.inc(1);
    }
    let parts: Vec<f32> = estimates
        .iter()
        .filter_map(|(_, _, f)| if let Foreground::Part(f) = f { Some(*f) } else { None })
        .collect();
    let objects = n > 0 && parts.len() as f32 >= MIN_PART_SHARE * n as f32;
    let mut summary = FgSummary { out: out.to_path_buf(), objects, parts, whole: 0 };
    for (img, (small, (w, h), found)) in category.train_good.iter().zip(estimates) {
        let mask = match found {
            Foreground::Part(_) if objects => {
                image::imageops::resize(&small, w, h, image::imageops::FilterType::Nearest)
            }
            _ => {
                summary.whole += 1;
                GrayImage::from_pixel(w, h, Luma([255]))
            }
        };
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

    /// A bright ring with a dark centre on a dark background: the part is the ring with its centre
    /// (the hole is filled), the background stays out; stripes over the whole frame give the whole
    /// image, and so does a flat image.
    #[test]
    fn ring_on_background_stripes_and_flat() {
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
            // The blur widens the part by a few pixels: a mask a little loose, never tight.
            Foreground::Part(f) => {
                assert!((want..want + 0.05).contains(&f), "fraction {f} vs {want}")
            }
            other => panic!("{other:?}"),
        }
        let stripes = RgbImage::from_fn(128, 128, |x, _| {
            image::Rgb([if (x / 8) % 2 == 0 { 200 } else { 30 }; 3])
        });
        let (mask, found) = estimate(&stripes);
        assert!(matches!(found, Foreground::WholeImage(_)), "{found:?}");
        assert!(mask.pixels().all(|p| p[0] == 255));
        let (_, found) = estimate(&RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90])));
        assert!(matches!(found, Foreground::WholeImage(_)), "{found:?}");
    }
}
