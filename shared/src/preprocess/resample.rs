//! PIL-compatible bilinear (triangle filter) resampling, crop, channel mapping and normalisation.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use super::{check_len, Error, Geometry, ImageView, PreprocessConfig};

/// PIL `bilinear_filter`: the triangle `max(0, 1 - |x|)`, support 1.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// The filter taps of one output index along one axis, as PIL's `precompute_coeffs` computes them
/// (same double arithmetic, same truncating casts), for an axis of `in_size` source pixels resized
/// to `out_size` (the full resized size; `index` may address any pixel of it, so a crop only
/// computes its own pixels).
#[derive(Debug, Clone, Copy)]
struct Taps {
    /// First source pixel.
    start: usize,
    /// Number of source pixels.
    count: usize,
    center: f64,
    /// `1 / filterscale`.
    ss: f64,
    /// Sum of the unnormalised weights.
    ww: f64,
}

impl Taps {
    fn new(in_size: usize, out_size: usize, index: usize) -> Taps {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = filterscale; // triangle support 1.0, stretched when downscaling
        let center = (index as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C `(int)` truncates toward zero; negative values are clamped to 0 right after anyway.
        let xmin = (center - support + 0.5) as i64;
        let xmin = if xmin < 0 { 0 } else { xmin as usize };
        let xmax = (center + support + 0.5) as i64;
        let xmax = if xmax < 0 { 0 } else { (xmax as usize).min(in_size) };
        let count = xmax.saturating_sub(xmin);
        let mut taps = Taps { start: xmin, count, center, ss, ww: 0.0 };
        let mut ww = 0.0;
        for k in 0..count {
            ww += taps.raw(k);
        }
        taps.ww = ww;
        taps
    }

    fn raw(&self, k: usize) -> f64 {
        triangle(((k + self.start) as f64 - self.center + 0.5) * self.ss)
    }

    /// Normalised weight of tap `k` (PIL divides by the sum in double precision).
    fn weight(&self, k: usize) -> f32 {
        if self.ww == 0.0 {
            0.0
        } else {
            (self.raw(k) / self.ww) as f32
        }
    }
}

/// How source bytes become working channels: RGB into a 1-channel model goes through PIL's
/// `convert("L")` luma (ITU-R 601-2, PIL's fixed-point rounding), so it equals convert-then-resize.
#[derive(Debug, Clone, Copy)]
struct Channels {
    /// Bytes per source pixel.
    src: usize,
    /// Channels resampled (1 or 3).
    work: usize,
    /// RGB -> luma.
    luma: bool,
    /// Channels written (the model's).
    model: usize,
}

impl Channels {
    fn new(src: usize, model: usize) -> Channels {
        let luma = src == 3 && model == 1;
        Channels { src, work: if luma { 1 } else { src }, luma, model }
    }
}

#[inline]
fn luma(p: &[u8]) -> f32 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as f32
}

/// Horizontal pass for one output column and one working channel of one source row: the
/// `u8`-scaled (0..255) weighted sum. Both code paths call this, in the same order, so they agree
/// bit for bit.
#[inline]
fn horizontal(
    row: &[u8],
    ch: Channels,
    start: usize,
    weights: impl Iterator<Item = f32>,
    c: usize,
) -> f32 {
    let mut acc = 0.0f32;
    if ch.luma {
        for (k, w) in weights.enumerate() {
            let i = (start + k) * 3;
            acc += w * luma(&row[i..i + 3]);
        }
    } else {
        for (k, w) in weights.enumerate() {
            acc += w * row[(start + k) * ch.src + c] as f32;
        }
    }
    acc
}

/// Per-model-channel `(a, b)` with `out = acc * a - b` == `(acc / 255 - mean) / std`.
fn affine(cfg: &PreprocessConfig) -> [(f32, f32); 3] {
    let mut ab = [(0.0, 0.0); 3];
    for (c, slot) in ab.iter_mut().enumerate() {
        let (m, s) = (cfg.mean[c] as f64, cfg.std[c] as f64);
        *slot = ((1.0 / (255.0 * s)) as f32, (m / s) as f32);
    }
    ab
}

/// Writes one model pixel from its working-channel values.
#[inline]
fn store(
    out: &mut [f32],
    plane: usize,
    idx: usize,
    vals: &[f32; 3],
    ch: Channels,
    ab: &[(f32, f32); 3],
) {
    for oc in 0..ch.model {
        let v = if ch.work == 1 { vals[0] } else { vals[oc] };
        out[oc * plane + idx] = v * ab[oc].0 - ab[oc].1;
    }
}

// Only the heap-free path needs these; with `alloc` they are exercised by the unit tests.
#[cfg_attr(feature = "alloc", allow(dead_code))]
fn check_inputs(
    img: &ImageView<'_>,
    cfg: &PreprocessConfig,
    out: &[f32],
) -> Result<Geometry, Error> {
    img.validate()?;
    let g = cfg.geometry(img.width, img.height)?;
    check_len("output tensor", cfg.output_len(), out.len())?;
    Ok(g)
}

/// Preprocesses one image into `out` (CHW, `cfg.output_len()` values): resize as
/// `cfg.resize_mode` says, map channels, scale to 0..1, subtract `mean`, divide by `std`.
///
/// With `alloc` this builds a [`Preprocessor`] for the call; without, it computes the filter taps
/// per pixel (slower, no heap). Both give bit-identical results. For a stream of frames of one
/// size, keep a [`Preprocessor`].
pub fn preprocess_into(
    img: &ImageView<'_>,
    cfg: &PreprocessConfig,
    out: &mut [f32],
) -> Result<(), Error> {
    #[cfg(feature = "alloc")]
    {
        Preprocessor::new(img.width, img.height, cfg)?.run(img, out)
    }
    #[cfg(not(feature = "alloc"))]
    {
        preprocess_direct(img, cfg, out)
    }
}

/// Heap-free path: taps recomputed for every output pixel.
#[cfg_attr(feature = "alloc", allow(dead_code))]
pub(super) fn preprocess_direct(
    img: &ImageView<'_>,
    cfg: &PreprocessConfig,
    out: &mut [f32],
) -> Result<(), Error> {
    let g = check_inputs(img, cfg, out)?;
    let ch = Channels::new(img.channels, cfg.channels as usize);
    let ab = affine(cfg);
    let plane = g.width * g.height;
    for oy in 0..g.height {
        let ty = Taps::new(img.height, g.resized_height, g.crop_top + oy);
        for ox in 0..g.width {
            let tx = Taps::new(img.width, g.resized_width, g.crop_left + ox);
            let mut vals = [0.0f32; 3];
            for (c, val) in vals.iter_mut().enumerate().take(ch.work) {
                let mut acc = 0.0f32;
                for ky in 0..ty.count {
                    let y = ty.start + ky;
                    let row = &img.data[y * img.stride..];
                    let h = horizontal(row, ch, tx.start, (0..tx.count).map(|k| tx.weight(k)), c);
                    acc += ty.weight(ky) * h;
                }
                *val = acc;
            }
            store(out, plane, oy * g.width + ox, &vals, ch, &ab);
        }
    }
    Ok(())
}

/// Filter taps of every output index of one axis, flattened (`ksize` weights per index).
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
struct AxisPlan {
    bounds: Vec<(usize, usize)>,
    weights: Vec<f32>,
    ksize: usize,
}

#[cfg(feature = "alloc")]
impl AxisPlan {
    fn new(in_size: usize, out_size: usize, first: usize, n: usize) -> AxisPlan {
        let taps: Vec<Taps> = (first..first + n).map(|i| Taps::new(in_size, out_size, i)).collect();
        let ksize = taps.iter().map(|t| t.count).max().unwrap_or(0);
        let mut weights = Vec::with_capacity(ksize * n);
        let mut bounds = Vec::with_capacity(n);
        for t in &taps {
            bounds.push((t.start, t.count));
            weights.extend((0..ksize).map(|k| if k < t.count { t.weight(k) } else { 0.0 }));
        }
        AxisPlan { bounds, weights, ksize }
    }

    fn taps(&self, i: usize) -> (usize, &[f32]) {
        let (start, count) = self.bounds[i];
        (start, &self.weights[i * self.ksize..i * self.ksize + count])
    }
}

/// Precomputed preprocessing for frames of one size: the filter taps of both axes (only for the
/// pixels inside the crop) and a scratch buffer for the horizontal pass, so a station pays the
/// setup once per camera size. Results are bit-identical to the heap-free [`preprocess_into`] path.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone)]
pub struct Preprocessor {
    cfg: PreprocessConfig,
    geometry: Geometry,
    x: AxisPlan,
    y: AxisPlan,
    /// Source rows `row0..row1` feed the vertical pass.
    row0: usize,
    row1: usize,
    scratch: Vec<f32>,
}

#[cfg(feature = "alloc")]
impl Preprocessor {
    /// Plans preprocessing of `src_width` x `src_height` frames for `cfg`.
    pub fn new(src_width: usize, src_height: usize, cfg: &PreprocessConfig) -> Result<Self, Error> {
        let g = cfg.geometry(src_width, src_height)?;
        let x = AxisPlan::new(src_width, g.resized_width, g.crop_left, g.width);
        let y = AxisPlan::new(src_height, g.resized_height, g.crop_top, g.height);
        let row0 = y.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let row1 = y.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        let scratch = Vec::with_capacity(row1.saturating_sub(row0) * g.width * 3);
        Ok(Preprocessor { cfg: cfg.clone(), geometry: g, x, y, row0, row1, scratch })
    }

    /// The config this plan was built for.
    pub fn config(&self) -> &PreprocessConfig {
        &self.cfg
    }

    /// The resize/crop geometry (for mapping model-space maps back, see
    /// [`map_to_original_into`](super::map_to_original_into)).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Number of `f32` values [`run`](Self::run) writes.
    pub fn output_len(&self) -> usize {
        self.cfg.output_len()
    }

    /// Preprocesses one frame into `out` (CHW, [`output_len`](Self::output_len) values). The frame
    /// must have the size the plan was built for; 1 or 3 channels.
    pub fn run(&mut self, img: &ImageView<'_>, out: &mut [f32]) -> Result<(), Error> {
        img.validate()?;
        let g = self.geometry;
        if (img.width, img.height) != (g.src_width, g.src_height) {
            return Err(Error::SizeMismatch {
                expected: (g.src_width, g.src_height),
                found: (img.width, img.height),
            });
        }
        check_len("output tensor", self.cfg.output_len(), out.len())?;
        let ch = Channels::new(img.channels, self.cfg.channels as usize);
        let ab = affine(&self.cfg);
        let (w, wc) = (g.width, ch.work);
        let row_len = w * wc;

        // Horizontal pass over the source rows the vertical pass needs.
        self.scratch.clear();
        self.scratch.resize((self.row1 - self.row0) * row_len, 0.0);
        for y in self.row0..self.row1 {
            let row = &img.data[y * img.stride..];
            let dst = &mut self.scratch[(y - self.row0) * row_len..(y - self.row0 + 1) * row_len];
            for ox in 0..w {
                let (start, weights) = self.x.taps(ox);
                for c in 0..wc {
                    dst[ox * wc + c] = horizontal(row, ch, start, weights.iter().copied(), c);
                }
            }
        }

        // Vertical pass, channel mapping, normalisation, HWC -> CHW.
        let plane = w * g.height;
        for oy in 0..g.height {
            let (start, weights) = self.y.taps(oy);
            for ox in 0..w {
                let mut vals = [0.0f32; 3];
                for (c, val) in vals.iter_mut().enumerate().take(wc) {
                    let mut acc = 0.0f32;
                    for (ky, wy) in weights.iter().enumerate() {
                        acc += wy * self.scratch[(start + ky - self.row0) * row_len + ox * wc + c];
                    }
                    *val = acc;
                }
                store(out, plane, oy * w + ox, &vals, ch, &ab);
            }
        }
        Ok(())
    }

    /// [`run`](Self::run) into a new `Vec`.
    pub fn run_vec(&mut self, img: &ImageView<'_>) -> Result<Vec<f32>, Error> {
        let mut out = alloc::vec![0.0; self.output_len()];
        self.run(img, &mut out)?;
        Ok(out)
    }
}

/// One-shot [`preprocess_into`] returning a new `Vec` of `cfg.output_len()` values.
#[cfg(feature = "alloc")]
pub fn preprocess(img: &ImageView<'_>, cfg: &PreprocessConfig) -> Result<Vec<f32>, Error> {
    Preprocessor::new(img.width, img.height, cfg)?.run_vec(img)
}

#[cfg(test)]
mod tests {
    use super::super::ResizeMode;
    use super::*;

    fn direct(img: &ImageView<'_>, cfg: &PreprocessConfig) -> [f32; 4096] {
        let mut out = [0.0f32; 4096];
        preprocess_direct(img, cfg, &mut out[..cfg.output_len()]).expect("direct");
        out
    }

    fn raw_cfg(w: u32, h: u32, c: u8, mode: ResizeMode) -> PreprocessConfig {
        // mean 0, std 1/255: outputs are in 0..255 units, easy to pin.
        PreprocessConfig {
            width: w,
            height: h,
            channels: c,
            resize_mode: mode,
            resize_shorter: None,
            mean: [0.0; 3],
            std: [1.0 / 255.0; 3],
        }
    }

    #[test]
    fn pil_taps_downscale_by_two() {
        // 4 -> 2: support 2, center 1.0, taps x=0..3 with 0.75, 0.75, 0.25 (normalised by 1.75).
        let t = Taps::new(4, 2, 0);
        assert_eq!((t.start, t.count), (0, 3));
        assert!((t.weight(0) - 0.75 / 1.75).abs() < 1e-7);
        assert!((t.weight(2) - 0.25 / 1.75).abs() < 1e-7);
        // upscale 2 -> 4: plain bilinear, index 1 centre 0.75 -> taps 0 (0.75), 1 (0.25)
        let t = Taps::new(2, 4, 1);
        assert_eq!((t.start, t.count), (0, 2));
        assert!((t.weight(0) - 0.75).abs() < 1e-7 && (t.weight(1) - 0.25).abs() < 1e-7);
    }

    #[test]
    fn pinned_pixels_gray_4x1_to_2x1() {
        let data = [0u8, 100, 200, 40];
        let img = ImageView::gray(&data, 4, 1).expect("img");
        let cfg = raw_cfg(2, 1, 1, ResizeMode::Squash);
        let out = preprocess(&img, &cfg).expect("pre");
        let e0 = (0.75 * 0.0 + 0.75 * 100.0 + 0.25 * 200.0) / 1.75;
        let e1 = (0.25 * 100.0 + 0.75 * 200.0 + 0.75 * 40.0) / 1.75;
        assert!((out[0] - e0).abs() < 1e-3, "{} vs {e0}", out[0]);
        assert!((out[1] - e1).abs() < 1e-3, "{} vs {e1}", out[1]);
        assert_eq!(&out[..2], &direct(&img, &cfg)[..2]);
    }

    #[test]
    fn identity_resize_is_exact_and_normalises() {
        let data: [u8; 12] = [0, 51, 102, 153, 204, 255, 10, 20, 30, 40, 50, 60];
        let img = ImageView::rgb(&data, 2, 2).expect("img");
        let cfg = PreprocessConfig::imagenet(2, 2, ResizeMode::Squash);
        let out = preprocess(&img, &cfg).expect("pre");
        assert_eq!(out.len(), 12);
        for y in 0..2 {
            for x in 0..2 {
                for c in 0..3 {
                    let v = data[(y * 2 + x) * 3 + c] as f32 / 255.0;
                    let e = (v - cfg.mean[c]) / cfg.std[c];
                    let got = out[c * 4 + y * 2 + x];
                    assert!((got - e).abs() < 1e-5, "({x},{y},{c}) {got} vs {e}");
                }
            }
        }
        // pinned: pixel (0,0) R = 0 -> -0.485/0.229
        assert!((out[0] + 0.485 / 0.229).abs() < 1e-5);
    }

    #[test]
    fn gray_replicates_and_rgb_becomes_luma() {
        let g = [10u8, 20, 30, 40, 50, 60];
        let img = ImageView::gray(&g, 3, 2).expect("img");
        let cfg = raw_cfg(3, 2, 3, ResizeMode::Squash);
        let out = preprocess(&img, &cfg).expect("pre");
        for c in 0..3 {
            for i in 0..6 {
                assert!((out[c * 6 + i] - g[i] as f32).abs() < 1e-3);
            }
        }
        let rgb = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 200, 100, 50];
        let img = ImageView::rgb(&rgb, 2, 2).expect("img");
        let out = preprocess(&img, &raw_cfg(2, 2, 1, ResizeMode::Squash)).expect("pre");
        // PIL convert("L"): 76, 150, 29, (200*19595 + 100*38470 + 50*7471 + 32768) >> 16 = 124
        let expect = [76.0, 150.0, 29.0, 124.0];
        for (o, e) in out.iter().zip(expect) {
            assert!((o - e).abs() < 1e-3, "{o} vs {e}");
        }
    }

    #[test]
    fn constant_image_stays_constant_and_paths_agree() {
        let data = [77u8; 7 * 5 * 3];
        let img = ImageView::rgb(&data, 7, 5).expect("img");
        for mode in [ResizeMode::Squash, ResizeMode::ShorterSideThenCenterCrop] {
            for (w, h) in [(3, 2), (4, 4), (16, 9), (11, 30)] {
                let cfg = raw_cfg(w, h, 3, mode);
                let out = preprocess(&img, &cfg).expect("pre");
                assert_eq!(out.len(), (3 * w * h) as usize);
                assert!(out.iter().all(|v| (v - 77.0).abs() < 1e-3), "{mode:?} {w}x{h}");
                assert_eq!(&out[..], &direct(&img, &cfg)[..out.len()]);
            }
        }
    }

    #[test]
    fn strided_rows_and_errors() {
        // 2x2 gray with 2 bytes of padding per row.
        let data = [1u8, 2, 99, 99, 3, 4];
        let img = ImageView::with_stride(&data, 2, 2, 1, 4).expect("img");
        let out = preprocess(&img, &raw_cfg(2, 2, 1, ResizeMode::Squash)).expect("pre");
        assert!(out.iter().zip([1.0, 2.0, 3.0, 4.0]).all(|(o, e)| (o - e).abs() < 1e-4));
        let mut p = Preprocessor::new(3, 3, &raw_cfg(2, 2, 1, ResizeMode::Squash)).expect("plan");
        let mut buf = [0.0; 4];
        assert!(matches!(p.run(&img, &mut buf), Err(Error::SizeMismatch { .. })));
        let mut short = [0.0; 3];
        assert!(matches!(
            preprocess_into(&img, &raw_cfg(2, 2, 1, ResizeMode::Squash), &mut short),
            Err(Error::BufferLength { expected: 4, found: 3, .. })
        ));
    }

    #[test]
    fn crop_equals_resize_then_crop() {
        // Pseudo-random 13x9 RGB; crop mode must equal squash to the full resized size + crop.
        let mut data = [0u8; 13 * 9 * 3];
        let mut s = 12345u32;
        for v in data.iter_mut() {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *v = (s >> 16) as u8;
        }
        let img = ImageView::rgb(&data, 13, 9).expect("img");
        let crop = raw_cfg(6, 5, 3, ResizeMode::ShorterSideThenCenterCrop).with_resize_shorter(7);
        let g = crop.geometry(13, 9).expect("geo");
        assert_eq!((g.resized_width, g.resized_height), (10, 7));
        let full = preprocess(&img, &raw_cfg(10, 7, 3, ResizeMode::Squash)).expect("full");
        let got = preprocess(&img, &crop).expect("crop");
        for c in 0..3 {
            for y in 0..5 {
                for x in 0..6 {
                    let a = got[c * 30 + y * 6 + x];
                    let b = full[c * 70 + (y + g.crop_top) * 10 + x + g.crop_left];
                    assert_eq!(a, b);
                }
            }
        }
    }
}
