//! Texture sources for Local Anomaly Synthesis (docs/glass.md §3a step 1).
//!
//! GLASS blends a random DTD image into the Perlin region. `--textures DIR` gives such a folder (any
//! images below it, e.g. `dtd/images/*/*.jpg`); without one we draw built-in procedural textures (value
//! noise, stripes, checkers, blobs and speckle in random colours), which need no download. Each texture is
//! resized (shorter side) and centre-cropped to the model input, then gets 3 distinct random ops out of
//! GLASS's 9 (contrast, brightness, saturation + hue, h-flip, v-flip, grayscale, autocontrast, equalize,
//! affine ±45° nearest). Deviation: the ops run after the crop, not before, which only changes which
//! pixels a rotation brings in at the corners.
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::{Error, Result};

/// An RGB8 texture of `size x size`, row-major interleaved.
pub type Rgb = Vec<u8>;

/// Where textures come from.
#[derive(Debug, Clone)]
pub enum TextureSource {
    /// Image files found below a folder (DTD-style).
    Folder(Vec<PathBuf>),
    /// Procedural textures drawn on the fly.
    Procedural,
}

impl TextureSource {
    /// Lists the images below `dir` (recursively); an empty or unreadable folder is an error.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let rd = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
            for entry in rd {
                let p = entry.map_err(|e| Error::io(&d, e))?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if is_image(&p) {
                    files.push(p);
                }
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(Error::Dataset {
                path: dir.into(),
                msg: "no texture images found below it".into(),
            });
        }
        Ok(TextureSource::Folder(files))
    }

    /// Draws one augmented texture at `size x size`.
    pub fn draw<R: Rng>(&self, rng: &mut R, size: usize) -> Result<Rgb> {
        let mut tex = match self {
            TextureSource::Folder(files) => {
                let path = files.choose(rng).ok_or_else(|| Error::Dataset {
                    path: PathBuf::new(),
                    msg: "empty texture list".into(),
                })?;
                load_crop(path, size)?
            }
            TextureSource::Procedural => procedural(rng, size),
        };
        random_ops(rng, &mut tex, size);
        Ok(tex)
    }
}

fn is_image(p: &Path) -> bool {
    let ext = p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "bmp" | "tif" | "tiff"))
}

fn load_crop(path: &Path, size: usize) -> Result<Rgb> {
    let img =
        image::open(path).map_err(|e| Error::Image { path: path.into(), source: e })?.to_rgb8();
    let (w, h) = img.dimensions();
    let s = size as u32;
    let (nw, nh) = if w < h {
        (s, (h as u64 * s as u64 / w as u64) as u32)
    } else {
        ((w as u64 * s as u64 / h as u64) as u32, s)
    };
    let r = image::imageops::resize(&img, nw.max(s), nh.max(s), FilterType::Triangle);
    let (x0, y0) = ((r.width() - s) / 2, (r.height() - s) / 2);
    Ok(image::imageops::crop_imm(&r, x0, y0, s, s).to_image().into_raw())
}

fn random_colour<R: Rng>(rng: &mut R) -> [f32; 3] {
    [rng.random::<f32>() * 255.0, rng.random::<f32>() * 255.0, rng.random::<f32>() * 255.0]
}

/// Smooth value noise in [0, 1] with `cells` lattice cells across.
fn value_noise<R: Rng>(rng: &mut R, size: usize, cells: usize) -> Vec<f32> {
    let n = cells + 2;
    let lattice: Vec<f32> = (0..n * n).map(|_| rng.random()).collect();
    let mut out = vec![0f32; size * size];
    for y in 0..size {
        let fy = y as f32 * cells as f32 / size as f32;
        let (iy, ty) = (fy as usize, fy.fract());
        let sy = ty * ty * (3.0 - 2.0 * ty);
        for x in 0..size {
            let fx = x as f32 * cells as f32 / size as f32;
            let (ix, tx) = (fx as usize, fx.fract());
            let sx = tx * tx * (3.0 - 2.0 * tx);
            let l = |a: usize, b: usize| lattice[a * n + b];
            let top = l(iy, ix) + sx * (l(iy, ix + 1) - l(iy, ix));
            let bot = l(iy + 1, ix) + sx * (l(iy + 1, ix + 1) - l(iy + 1, ix));
            out[y * size + x] = top + sy * (bot - top);
        }
    }
    out
}

/// A procedural texture: one of several families, in random colours.
pub fn procedural<R: Rng>(rng: &mut R, size: usize) -> Rgb {
    let (c0, c1) = (random_colour(rng), random_colour(rng));
    let family = rng.random_range(0..5);
    let t: Vec<f32> = match family {
        0 => {
            // multi-octave value noise
            let mut acc = vec![0f32; size * size];
            let mut amp = 0.5;
            let mut cells = rng.random_range(2..8);
            for _ in 0..4 {
                for (a, v) in acc.iter_mut().zip(value_noise(rng, size, cells)) {
                    *a += amp * v;
                }
                amp *= 0.5;
                cells *= 2;
            }
            acc.iter().map(|v| (v / 0.9375).clamp(0.0, 1.0)).collect()
        }
        1 => {
            // stripes at a random angle and period
            let a: f32 = rng.random_range(0.0..std::f32::consts::PI);
            let period = rng.random_range(4.0..40.0f32);
            let (s, c) = a.sin_cos();
            (0..size * size)
                .map(|i| {
                    let (y, x) = ((i / size) as f32, (i % size) as f32);
                    0.5 + 0.5 * ((x * c + y * s) * std::f32::consts::TAU / period).sin()
                })
                .collect()
        }
        2 => {
            // checkers
            let cell = rng.random_range(4..48usize);
            (0..size * size).map(|i| (((i / size) / cell + (i % size) / cell) % 2) as f32).collect()
        }
        3 => {
            // blobs: thresholded smooth noise
            let th = rng.random_range(0.35..0.65f32);
            let cells = rng.random_range(3..16);
            value_noise(rng, size, cells).into_iter().map(|v| (v > th) as u8 as f32).collect()
        }
        _ => {
            // speckle over a gradient
            (0..size * size)
                .map(|i| {
                    let g = (i % size) as f32 / size as f32;
                    (0.6 * g + 0.4 * rng.random::<f32>()).clamp(0.0, 1.0)
                })
                .collect()
        }
    };
    let mut out = Vec::with_capacity(size * size * 3);
    for v in t {
        for ch in 0..3 {
            out.push((c0[ch] + v * (c1[ch] - c0[ch])).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

fn map_pixels(tex: &mut [u8], f: impl Fn([f32; 3]) -> [f32; 3]) {
    for px in tex.chunks_exact_mut(3) {
        let o = f([px[0] as f32, px[1] as f32, px[2] as f32]);
        for c in 0..3 {
            px[c] = o[c].round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Turns a texture gray (ITU-R BT.601 luma in all three channels), in place: the texture colour of
/// `TextureColour::Gray`.
pub fn to_gray(tex: &mut [u8]) {
    map_pixels(tex, |p| [luma(p); 3]);
}

fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Applies 3 distinct random ops of GLASS's 9 in random order.
pub fn random_ops<R: Rng>(rng: &mut R, tex: &mut [u8], size: usize) {
    let mut ops: Vec<u8> = (0..9).collect();
    ops.shuffle(rng);
    for &op in &ops[..3] {
        match op {
            0 => {
                let k = rng.random_range(0.8..1.2f32);
                let mean = tex
                    .chunks_exact(3)
                    .map(|p| luma([p[0] as f32, p[1] as f32, p[2] as f32]))
                    .sum::<f32>()
                    / (size * size) as f32;
                map_pixels(tex, |p| p.map(|v| mean + k * (v - mean)));
            }
            1 => {
                let k = rng.random_range(0.8..1.2f32);
                map_pixels(tex, |p| p.map(|v| v * k));
            }
            2 => {
                let k = rng.random_range(0.8..1.2f32);
                let hue = rng.random_range(-0.2..0.2f32) * std::f32::consts::TAU;
                let (s, c) = hue.sin_cos();
                map_pixels(tex, |p| {
                    let l = luma(p);
                    let q = p.map(|v| l + k * (v - l));
                    // Hue rotation in YIQ space.
                    let (y, i, qq) = (
                        0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2],
                        0.596 * q[0] - 0.274 * q[1] - 0.322 * q[2],
                        0.211 * q[0] - 0.523 * q[1] + 0.312 * q[2],
                    );
                    let (i2, q2) = (i * c - qq * s, i * s + qq * c);
                    [
                        y + 0.956 * i2 + 0.621 * q2,
                        y - 0.272 * i2 - 0.647 * q2,
                        y - 1.106 * i2 + 1.703 * q2,
                    ]
                });
            }
            3 => {
                for row in tex.chunks_exact_mut(size * 3) {
                    let px: Vec<[u8; 3]> =
                        row.chunks_exact(3).rev().map(|p| [p[0], p[1], p[2]]).collect();
                    for (d, s) in row.chunks_exact_mut(3).zip(px) {
                        d.copy_from_slice(&s);
                    }
                }
            }
            4 => {
                let rows: Vec<Vec<u8>> =
                    tex.chunks_exact(size * 3).rev().map(|r| r.to_vec()).collect();
                for (d, s) in tex.chunks_exact_mut(size * 3).zip(rows) {
                    d.copy_from_slice(&s);
                }
            }
            5 => to_gray(tex),
            6 => {
                for c in 0..3 {
                    let (lo, hi) = tex
                        .iter()
                        .skip(c)
                        .step_by(3)
                        .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
                    if hi > lo {
                        let k = 255.0 / (hi - lo) as f32;
                        for v in tex.iter_mut().skip(c).step_by(3) {
                            *v = ((*v - lo) as f32 * k).round() as u8;
                        }
                    }
                }
            }
            7 => {
                for c in 0..3 {
                    let mut hist = [0usize; 256];
                    for &v in tex.iter().skip(c).step_by(3) {
                        hist[v as usize] += 1;
                    }
                    let n = size * size;
                    let mut cdf = [0usize; 256];
                    let mut acc = 0;
                    for (i, h) in hist.iter().enumerate() {
                        acc += h;
                        cdf[i] = acc;
                    }
                    let first = cdf.iter().copied().find(|&v| v > 0).unwrap_or(0);
                    if n > first {
                        for v in tex.iter_mut().skip(c).step_by(3) {
                            *v = (((cdf[*v as usize] - first) as f32 / (n - first) as f32) * 255.0)
                                .round() as u8;
                        }
                    }
                }
            }
            _ => {
                let deg = rng.random_range(-45.0..45.0f32);
                let (s, c) = deg.to_radians().sin_cos();
                let ctr = (size as f32 - 1.0) / 2.0;
                let src = tex.to_vec();
                for y in 0..size {
                    for x in 0..size {
                        let (yy, xx) = (y as f32 - ctr, x as f32 - ctr);
                        let sx = (c * xx + s * yy + ctr).round();
                        let sy = (-s * xx + c * yy + ctr).round();
                        let d = (y * size + x) * 3;
                        if sx < 0.0 || sy < 0.0 || sx >= size as f32 || sy >= size as f32 {
                            tex[d..d + 3].fill(0);
                        } else {
                            let si = (sy as usize * size + sx as usize) * 3;
                            tex[d..d + 3].copy_from_slice(&src[si..si + 3]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn procedural_textures_have_the_right_size_and_vary() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let a = TextureSource::Procedural.draw(&mut rng, 32).unwrap();
        let b = TextureSource::Procedural.draw(&mut rng, 32).unwrap();
        assert_eq!(a.len(), 32 * 32 * 3);
        assert_ne!(a, b);
    }

    #[test]
    fn gray_textures_have_equal_channels_and_keep_their_pattern() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let colour = TextureSource::Procedural.draw(&mut rng, 32).unwrap();
        let mut gray = colour.clone();
        to_gray(&mut gray);
        assert!(gray.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        // The pattern survives: the gray texture is not flat.
        let (lo, hi) = gray.iter().fold((255u8, 0u8), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(hi > lo + 10, "flat gray texture: {lo}..{hi}");
        // Luma weights: pure red, green and blue turn into 76, 150 and 29.
        let mut rgb = vec![255, 0, 0, 0, 255, 0, 0, 0, 255];
        to_gray(&mut rgb);
        assert_eq!(rgb, vec![76, 76, 76, 150, 150, 150, 29, 29, 29]);
    }

    #[test]
    fn empty_texture_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = TextureSource::from_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
