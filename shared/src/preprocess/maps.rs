//! Map post-processing: bilinear upsample (PyTorch `align_corners=False`), Gaussian blur (scipy
//! `gaussian_filter`, `mode="reflect"`, `truncate=4`), the inverse of the preprocessing geometry, and
//! the `u8` thumbnail sent on the wire.

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use super::{check_len, Error, Geometry};

/// Largest side of a wire thumbnail ([`downsample_u8_into`]).
pub const MAX_GRID: usize = 64;

// `core` has no `floor`/`ceil`/`round`/`exp` for floats (they live in std/libm); these small
// versions cover the non-negative (resp. non-positive) arguments used here, identically on every
// target.

/// `x.round()` for `x >= 0` (halves away from zero, as `f64::round`).
#[inline]
fn round_nonneg(x: f64) -> usize {
    (x + 0.5) as usize
}

/// `x.ceil()` for `x >= 0`.
#[inline]
fn ceil_nonneg(x: f64) -> usize {
    let t = x as usize;
    if (t as f64) < x {
        t + 1
    } else {
        t
    }
}

/// `x.exp()` for `x <= 0`, to within a few ulp: `2^k * e^r` with `|r| <= ln2 / 2` and a
/// degree-16 Taylor polynomial for `e^r`.
#[cfg(feature = "alloc")]
fn exp_nonpositive(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -700.0 {
        return 0.0;
    }
    let k = -((-x / core::f64::consts::LN_2 + 0.5) as i64);
    // Cody-Waite: ln 2 split so `k * LN2_HI` is exact (fdlibm constants).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let r = (x - k as f64 * LN2_HI) - k as f64 * LN2_LO;
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    for n in 1..=16 {
        term *= r / n as f64;
        sum += term;
    }
    sum * f64::from_bits(((1023 + k) as u64) << 52)
}

fn check_map(what: &'static str, map: &[f32], width: usize, height: usize) -> Result<(), Error> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidConfig { field: what, reason: "map dimensions must be > 0" });
    }
    check_len(what, width.saturating_mul(height), map.len())
}

/// PyTorch `area_pixel_compute_source_index` + `compute_source_index_and_lambda` for
/// `align_corners=False`: `(i0, i1, lambda0, lambda1)`.
#[inline]
fn linear_index(scale: f32, dst: usize, in_size: usize) -> (usize, usize, f32, f32) {
    let src = scale * (dst as f32 + 0.5) - 0.5;
    let src = if src < 0.0 { 0.0 } else { src };
    let i0 = (src as usize).min(in_size - 1);
    let i1 = if i0 + 1 < in_size { i0 + 1 } else { i0 };
    let l1 = (src - i0 as f32).clamp(0.0, 1.0);
    (i0, i1, 1.0 - l1, l1)
}

/// Bilinear resize of a row-major `src_width` x `src_height` map into `out` (`width` x `height`),
/// PyTorch `F.interpolate(mode="bilinear", align_corners=False)` semantics (no antialiasing; the
/// map is normally upsampled, e.g. GLASS's patch grid to the input size).
pub fn upsample_bilinear_into(
    src: &[f32],
    src_width: usize,
    src_height: usize,
    out: &mut [f32],
    width: usize,
    height: usize,
) -> Result<(), Error> {
    check_map("source map", src, src_width, src_height)?;
    check_map("output map", out, width, height)?;
    let sx = src_width as f32 / width as f32;
    let sy = src_height as f32 / height as f32;
    for oy in 0..height {
        let (y0, y1, ly0, ly1) = linear_index(sy, oy, src_height);
        let (r0, r1) = (&src[y0 * src_width..], &src[y1 * src_width..]);
        for ox in 0..width {
            let (x0, x1, lx0, lx1) = linear_index(sx, ox, src_width);
            out[oy * width + ox] =
                ly0 * (lx0 * r0[x0] + lx1 * r0[x1]) + ly1 * (lx0 * r1[x0] + lx1 * r1[x1]);
        }
    }
    Ok(())
}

/// [`upsample_bilinear_into`] into a new `Vec` of `width * height` values.
#[cfg(feature = "alloc")]
pub fn upsample_bilinear(
    src: &[f32],
    src_width: usize,
    src_height: usize,
    width: usize,
    height: usize,
) -> Result<Vec<f32>, Error> {
    let mut out = alloc::vec![0.0; width.saturating_mul(height)];
    upsample_bilinear_into(src, src_width, src_height, &mut out, width, height)?;
    Ok(out)
}

/// scipy's kernel radius for `truncate = 4`: `int(4 * sigma + 0.5)`.
pub fn gaussian_radius(sigma: f32) -> usize {
    (4.0 * sigma as f64 + 0.5) as usize
}

/// scipy `reflect` extension (`d c b a | a b c d | d c b a`), any distance from the edge.
#[cfg(feature = "alloc")]
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * n as isize;
    let m = i.rem_euclid(period) as usize;
    if m >= n {
        2 * n - 1 - m
    } else {
        m
    }
}

/// In-place Gaussian blur of a row-major `width` x `height` map, as
/// `scipy.ndimage.gaussian_filter(map, sigma, mode="reflect", truncate=4.0)`: separable, radius
/// [`gaussian_radius`], rows (axis 0) first. `sigma == 0` leaves the map unchanged.
#[cfg(feature = "alloc")]
pub fn gaussian_blur(
    map: &mut [f32],
    width: usize,
    height: usize,
    sigma: f32,
) -> Result<(), Error> {
    check_map("map", map, width, height)?;
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::InvalidConfig { field: "sigma", reason: "must be finite and >= 0" });
    }
    let r = gaussian_radius(sigma);
    if r == 0 {
        return Ok(());
    }
    // scipy `_gaussian_kernel1d`, in double, normalised.
    let s2 = sigma as f64 * sigma as f64;
    let raw: Vec<f64> = (0..=2 * r)
        .map(|k| {
            let x = k as f64 - r as f64;
            exp_nonpositive(-0.5 / s2 * x * x)
        })
        .collect();
    let sum: f64 = raw.iter().sum();
    let kernel: Vec<f32> = raw.iter().map(|v| (v / sum) as f32).collect();

    // Axis 0 (vertical), whole rows at a time.
    let mut tmp = alloc::vec![0.0f32; map.len()];
    for y in 0..height {
        let dst = &mut tmp[y * width..(y + 1) * width];
        for (k, w) in kernel.iter().enumerate() {
            let sy = reflect(y as isize + k as isize - r as isize, height);
            let src = &map[sy * width..(sy + 1) * width];
            for (d, s) in dst.iter_mut().zip(src) {
                *d += w * s;
            }
        }
    }
    // Axis 1 (horizontal), through a reflect-padded row.
    let mut padded = alloc::vec![0.0f32; width + 2 * r];
    for y in 0..height {
        let row = &tmp[y * width..(y + 1) * width];
        for (i, p) in padded.iter_mut().enumerate() {
            *p = row[reflect(i as isize - r as isize, width)];
        }
        let dst = &mut map[y * width..(y + 1) * width];
        for (x, d) in dst.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for (w, p) in kernel.iter().zip(&padded[x..x + 2 * r + 1]) {
                acc += w * p;
            }
            *d = acc;
        }
    }
    Ok(())
}

/// GLASS's map post-processing: bilinear upsample (`align_corners=False`) of the patch-score grid
/// to `width` x `height` (the model input size), then [`gaussian_blur`] with `sigma` (GLASS: 4).
#[cfg(feature = "alloc")]
pub fn glass_postprocess(
    patch_scores: &[f32],
    grid_width: usize,
    grid_height: usize,
    width: usize,
    height: usize,
    sigma: f32,
) -> Result<Vec<f32>, Error> {
    let mut out = upsample_bilinear(patch_scores, grid_width, grid_height, width, height)?;
    gaussian_blur(&mut out, width, height, sigma)?;
    Ok(out)
}

/// Continuous map coordinate of source pixel `i` along one axis, or `None` when the pixel centre
/// lies outside the crop.
#[inline]
fn source_to_map(
    i: usize,
    src: usize,
    resized: usize,
    crop0: usize,
    crop: usize,
    map: usize,
) -> Option<f64> {
    let r = (i as f64 + 0.5) * resized as f64 / src as f64; // resized-image coordinate
    if r < crop0 as f64 || r >= (crop0 + crop) as f64 {
        return None;
    }
    Some((r - crop0 as f64) * map as f64 / crop as f64 - 0.5)
}

#[inline]
fn lerp_index(m: f64, n: usize) -> (usize, usize, f32) {
    let m = if m < 0.0 { 0.0 } else { m };
    let i0 = (m as usize).min(n - 1);
    let i1 = if i0 + 1 < n { i0 + 1 } else { i0 };
    let l = (m - i0 as f64).clamp(0.0, 1.0) as f32;
    (i0, i1, l)
}

/// Maps a model-space map (`map_width` x `map_height`, covering the whole model input, e.g. the
/// anomaly map or a Grad-CAM) back onto the source frame described by `geometry`
/// (`geometry.src_width` x `geometry.src_height` values into `out`), inverting the resize mode:
/// squash is a bilinear resize (`align_corners=False`); for shorter-side + centre crop the map is
/// placed bilinearly over the crop's footprint and source pixels whose centre lies outside it get
/// `fill` (e.g. 0 or the map minimum).
pub fn map_to_original_into(
    map: &[f32],
    map_width: usize,
    map_height: usize,
    geometry: &Geometry,
    fill: f32,
    out: &mut [f32],
) -> Result<(), Error> {
    check_map("model-space map", map, map_width, map_height)?;
    let g = geometry;
    check_map("output map", out, g.src_width, g.src_height)?;
    for y in 0..g.src_height {
        let my = source_to_map(y, g.src_height, g.resized_height, g.crop_top, g.height, map_height);
        let row = &mut out[y * g.src_width..(y + 1) * g.src_width];
        let Some(my) = my else {
            row.fill(fill);
            continue;
        };
        let (y0, y1, ly) = lerp_index(my, map_height);
        let (r0, r1) = (&map[y0 * map_width..], &map[y1 * map_width..]);
        for (x, o) in row.iter_mut().enumerate() {
            *o = match source_to_map(
                x,
                g.src_width,
                g.resized_width,
                g.crop_left,
                g.width,
                map_width,
            ) {
                None => fill,
                Some(mx) => {
                    let (x0, x1, lx) = lerp_index(mx, map_width);
                    let top = (1.0 - lx) * r0[x0] + lx * r0[x1];
                    let bottom = (1.0 - lx) * r1[x0] + lx * r1[x1];
                    (1.0 - ly) * top + ly * bottom
                }
            };
        }
    }
    Ok(())
}

/// [`map_to_original_into`] into a new `Vec` of `src_width * src_height` values.
#[cfg(feature = "alloc")]
pub fn map_to_original(
    map: &[f32],
    map_width: usize,
    map_height: usize,
    geometry: &Geometry,
    fill: f32,
) -> Result<Vec<f32>, Error> {
    let mut out = alloc::vec![0.0; geometry.src_width * geometry.src_height];
    map_to_original_into(map, map_width, map_height, geometry, fill, &mut out)?;
    Ok(out)
}

/// Thumbnail grid for a `width` x `height` map: the longer side becomes `min(longer, max_side)`,
/// the other keeps the aspect ratio (rounded, at least 1). Use `max_side = MAX_GRID` for the wire.
pub fn grid_size(width: usize, height: usize, max_side: usize) -> (usize, usize) {
    let max_side = max_side.max(1);
    let (w, h) = (width.max(1), height.max(1));
    let scaled = |short: usize, long: usize, side: usize| {
        round_nonneg(short as f64 * side as f64 / long as f64).clamp(1, side)
    };
    if w >= h {
        let gw = w.min(max_side);
        (gw, scaled(h, w, gw))
    } else {
        let gh = h.min(max_side);
        (scaled(w, h, gh), gh)
    }
}

/// Overlap of source pixel `i..i+1` with the cell `[c0, c1)`.
#[inline]
fn overlap(i: usize, c0: f64, c1: f64) -> f64 {
    let lo = if (i as f64) > c0 { i as f64 } else { c0 };
    let hi = if ((i + 1) as f64) < c1 { (i + 1) as f64 } else { c1 };
    (hi - lo).max(0.0)
}

/// Area-average a `width` x `height` map down to a `grid_width` x `grid_height` `u8` grid (each at
/// most [`MAX_GRID`]), linearly scaling the value range `(lo, hi)` to `0..255` (clamped, rounded;
/// NaN cells give 0).
/// Cells cover fractional source pixels exactly (like PIL's `BOX` filter), so any sizes work.
pub fn downsample_u8_into(
    map: &[f32],
    width: usize,
    height: usize,
    grid_width: usize,
    grid_height: usize,
    (lo, hi): (f32, f32),
    out: &mut [u8],
) -> Result<(), Error> {
    check_map("map", map, width, height)?;
    if grid_width == 0 || grid_height == 0 || grid_width > MAX_GRID || grid_height > MAX_GRID {
        return Err(Error::InvalidConfig {
            field: "grid size",
            reason: "each side must be 1..=64",
        });
    }
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return Err(Error::InvalidConfig { field: "lo/hi", reason: "must be finite with hi > lo" });
    }
    check_len("grid", grid_width * grid_height, out.len())?;
    let (cw, ch) = (width as f64 / grid_width as f64, height as f64 / grid_height as f64);
    for gy in 0..grid_height {
        let (y0, y1) = (gy as f64 * ch, (gy + 1) as f64 * ch);
        for gx in 0..grid_width {
            let (x0, x1) = (gx as f64 * cw, (gx + 1) as f64 * cw);
            let mut sum = 0.0f64;
            let mut area = 0.0f64;
            for y in (y0 as usize)..ceil_nonneg(y1).min(height) {
                let wy = overlap(y, y0, y1);
                for x in (x0 as usize)..ceil_nonneg(x1).min(width) {
                    let w = wy * overlap(x, x0, x1);
                    sum += w * map[y * width + x] as f64;
                    area += w;
                }
            }
            let t = (sum / area - lo as f64) / (hi as f64 - lo as f64);
            out[gy * grid_width + gx] =
                if t.is_nan() { 0 } else { round_nonneg(t.clamp(0.0, 1.0) * 255.0) as u8 };
        }
    }
    Ok(())
}

/// [`downsample_u8_into`] into a new `Vec` of `grid_width * grid_height` bytes.
#[cfg(feature = "alloc")]
pub fn downsample_u8(
    map: &[f32],
    width: usize,
    height: usize,
    grid_width: usize,
    grid_height: usize,
    range: (f32, f32),
) -> Result<Vec<u8>, Error> {
    let mut out = alloc::vec![0u8; grid_width.saturating_mul(grid_height)];
    downsample_u8_into(map, width, height, grid_width, grid_height, range, &mut out)?;
    Ok(out)
}

/// Turbo-like colour map for t in [0, 1] (blue -> cyan -> green -> yellow -> red).
pub fn heat(t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let stops: [(f32, [f32; 3]); 5] = [
        (0.0, [48.0, 18.0, 59.0]),
        (0.25, [40.0, 150.0, 230.0]),
        (0.5, [60.0, 220.0, 100.0]),
        (0.75, [250.0, 190.0, 40.0]),
        (1.0, [180.0, 20.0, 10.0]),
    ];
    for w in stops.windows(2) {
        let ((t0, c0), (t1, c1)) = (w[0], w[1]);
        if t <= t1 {
            let u = (t - t0) / (t1 - t0);
            return [0, 1, 2].map(|i| round_nonneg((c0[i] + u * (c1[i] - c0[i])) as f64) as u8);
        }
    }
    [180, 20, 10]
}

#[cfg(test)]
mod tests {
    use super::super::{PreprocessConfig, ResizeMode};
    use super::*;

    #[test]
    fn blur_and_upsample_of_constant_are_constant() {
        let mut m = alloc::vec![0.25f32; 9 * 7];
        gaussian_blur(&mut m, 9, 7, 4.0).expect("blur");
        assert!(m.iter().all(|v| (v - 0.25).abs() < 1e-6));
        let up = upsample_bilinear(&m, 9, 7, 40, 33).expect("up");
        assert_eq!(up.len(), 40 * 33);
        assert!(up.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn blur_radius_sum_and_symmetry() {
        assert_eq!(gaussian_radius(4.0), 16);
        assert_eq!(gaussian_radius(1.5), 6);
        assert_eq!(gaussian_radius(0.1), 0);
        // An impulse spreads symmetrically and (away from edges) keeps its mass.
        let mut m = alloc::vec![0.0f32; 41 * 41];
        m[20 * 41 + 20] = 1.0;
        gaussian_blur(&mut m, 41, 41, 2.0).expect("blur");
        let sum: f32 = m.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!((m[20 * 41 + 18] - m[20 * 41 + 22]).abs() < 1e-9);
        assert!((m[18 * 41 + 20] - m[20 * 41 + 18]).abs() < 1e-9);
        assert!(gaussian_blur(&mut m, 41, 41, -1.0).is_err());
        assert!(gaussian_blur(&mut m, 40, 41, 1.0).is_err());
    }

    #[cfg(feature = "std")]
    #[test]
    fn float_helpers_match_std() {
        for i in 0..1800 {
            let x = -(i as f64) * 0.37;
            let (a, b) = (exp_nonpositive(x), x.exp());
            assert!((a - b).abs() <= 8.0 * f64::EPSILON * b, "exp({x}): {a} vs {b}");
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1e9), 0.0);
        for x in [0.0, 0.2, 0.5, 1.0, 1.49, 2.5, 7.999, 8.0] {
            assert_eq!(ceil_nonneg(x), x.ceil() as usize, "{x}");
            assert_eq!(round_nonneg(x), x.round() as usize, "{x}");
        }
    }

    #[test]
    fn reflect_is_scipy_symmetric() {
        // n = 3: ... c b a | a b c | c b a | a b c ...
        let got: Vec<usize> = (-7..10).map(|i| reflect(i, 3)).collect();
        assert_eq!(got, [0, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1, 2, 2]);
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn upsample_pins_pytorch_values() {
        // torch: F.interpolate([[0, 1], [2, 3]], size=(4, 4), bilinear, align_corners=False)
        let up = upsample_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4).expect("up");
        let row0 = [0.0, 0.25, 0.75, 1.0];
        for (x, e) in row0.iter().enumerate() {
            assert!((up[x] - e).abs() < 1e-6);
            assert!((up[12 + x] - (e + 2.0)).abs() < 1e-6);
        }
        assert!((up[4 + 1] - 0.75).abs() < 1e-6); // row 1 = row0 + 0.5
    }

    #[test]
    fn map_back_squash_is_plain_upsample() {
        let cfg = PreprocessConfig::imagenet(4, 4, ResizeMode::Squash);
        let g = cfg.geometry(10, 6).expect("geo");
        let map: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let back = map_to_original(&map, 4, 4, &g, -1.0).expect("back");
        let up = upsample_bilinear(&map, 4, 4, 10, 6).expect("up");
        for (a, b) in back.iter().zip(&up) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn map_back_crop_fills_outside() {
        // 40x20 frame, shorter side 20 -> 10 (resized 20x10), crop 10x10 at left 5 -> source x 10..30.
        let cfg = PreprocessConfig::imagenet(10, 10, ResizeMode::ShorterSideThenCenterCrop);
        let g = cfg.geometry(40, 20).expect("geo");
        assert_eq!((g.resized_width, g.resized_height, g.crop_left, g.crop_top), (20, 10, 5, 0));
        assert_eq!(g.crop_in_source(), (10.0, 0.0, 30.0, 20.0));
        let map = alloc::vec![3.0f32; 5 * 5];
        let back = map_to_original(&map, 5, 5, &g, -7.0).expect("back");
        for y in 0..20 {
            for x in 0..40 {
                let e = if (10..30).contains(&x) { 3.0 } else { -7.0 };
                assert_eq!(back[y * 40 + x], e, "({x},{y})");
            }
        }
        // A horizontal ramp keeps its order inside the crop.
        let ramp: Vec<f32> = (0..25).map(|i| (i % 5) as f32).collect();
        let back = map_to_original(&ramp, 5, 5, &g, 0.0).expect("back");
        assert!((back[10] - 0.0).abs() < 1e-6 && (back[29] - 4.0).abs() < 1e-6);
        assert!(back[10..30].windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn downsample_area_average_and_scaling() {
        // 4x2 -> 2x1: averages of 2x2 blocks.
        let m = [0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0];
        let g = downsample_u8(&m, 4, 2, 2, 1, (0.0, 4.0)).expect("ds");
        assert_eq!(g, [32, 159]); // 0.5/4*255 = 31.9, 2.5/4*255 = 159.4
                                  // fractional cells: 3 -> 2 gives [(a + b/2) / 1.5, (b/2 + c) / 1.5]
        let g = downsample_u8(&[0.0, 1.0, 0.5], 3, 1, 2, 1, (0.0, 1.0)).expect("ds");
        assert_eq!(g, [85, 170]);
        assert!(downsample_u8(&m, 4, 2, 65, 1, (0.0, 1.0)).is_err());
        assert!(downsample_u8(&m, 4, 2, 2, 1, (1.0, 1.0)).is_err());
        assert_eq!(grid_size(512, 512, MAX_GRID), (64, 64));
        assert_eq!(grid_size(640, 480, MAX_GRID), (64, 48));
        assert_eq!(grid_size(30, 100, MAX_GRID), (19, 64));
        assert_eq!(grid_size(20, 10, MAX_GRID), (20, 10));
    }
}
