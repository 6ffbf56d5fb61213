//! Pictures: heat-map colouring, overlays and the image | ground truth | map strips in `maps/`.
use std::path::Path;

use image::{imageops::FilterType, Rgb, RgbImage};

use crate::{Error, Result};

pub use shared::preprocess::heat;

pub use runtime::overlay::overlay;

/// Resizes a `w x h` f32 map (bilinear) to `size x size` for display.
fn resize_map(map: &[f32], w: u32, h: u32, size: u32) -> Vec<f32> {
    if w == size && h == size {
        return map.to_vec();
    }
    shared::preprocess::upsample_bilinear(map, w as usize, h as usize, size as usize, size as usize)
        .unwrap_or_else(|_| vec![0.0; (size * size) as usize])
}

/// Writes `image | ground truth (outlined in red over the image) | map overlay [| more maps]` panels of
/// `panel x panel` pixels to `out`. Maps are `map_w x map_h`, each shown with its `(lo, hi)` range.
pub fn write_strip(
    out: &Path,
    image: &RgbImage,
    mask: Option<&[bool]>,
    maps: &[(&[f32], (f32, f32))],
    map_w: u32,
    map_h: u32,
    panel: u32,
) -> Result<()> {
    let base = image::imageops::resize(image, panel, panel, FilterType::Triangle);
    let n = 2 + maps.len() as u32;
    let mut strip = RgbImage::from_pixel(n * panel + (n - 1) * 4, panel, Rgb([255, 255, 255]));
    image::imageops::replace(&mut strip, &base, 0, 0);
    // Ground truth: the image with the mask tinted red.
    let mut gt = base.clone();
    if let Some(mask) = mask {
        let m: Vec<f32> = mask.iter().map(|&b| b as u8 as f32).collect();
        let m = resize_map(&m, map_w, map_h, panel);
        for (i, p) in gt.pixels_mut().enumerate() {
            if m[i] >= 0.5 {
                p.0 = [
                    (p.0[0] as f32 * 0.4 + 153.0) as u8,
                    (p.0[1] as f32 * 0.4) as u8,
                    (p.0[2] as f32 * 0.4) as u8,
                ];
            }
        }
    }
    image::imageops::replace(&mut strip, &gt, (panel + 4) as i64, 0);
    for (k, (map, (lo, hi))) in maps.iter().enumerate() {
        let m = resize_map(map, map_w, map_h, panel);
        let ov = overlay(&base, &m, *lo, *hi, 0.55);
        image::imageops::replace(&mut strip, &ov, ((k as u32 + 2) * (panel + 4)) as i64, 0);
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    strip.save(out).map_err(|e| Error::Image { path: out.into(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_endpoints_and_strip_size() {
        assert_eq!(heat(0.0), [48, 18, 59]);
        assert_eq!(heat(1.0), [180, 20, 10]);
        let dir = tempfile::tempdir().unwrap();
        let img = RgbImage::from_pixel(40, 30, Rgb([100, 100, 100]));
        let map = vec![0.5f32; 16];
        let mask = vec![true; 16];
        let p = dir.path().join("s.png");
        write_strip(&p, &img, Some(&mask), &[(&map, (0.0, 1.0))], 4, 4, 32).unwrap();
        let back = image::open(&p).unwrap();
        assert_eq!((back.width(), back.height()), (3 * 32 + 8, 32));
    }
}
