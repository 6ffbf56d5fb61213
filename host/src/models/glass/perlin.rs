//! Perlin masks for Local Anomaly Synthesis (docs/glass.md §3a step 3; DRAEM's `rand_perlin_2d`).
//!
//! Two Perlin noises at image resolution, each with x/y periods drawn from {1,2,4,8,16,32}, rotated by
//! U(-90°, 90°) (bilinear, constant 0 outside), thresholded at > 0.5, then combined: union with p=1/3,
//! intersection with p=1/3, the first noise alone otherwise; multiplied by the foreground mask; redrawn
//! until the max-pooled patch-level mask is non-empty. Image size must be a multiple of 32.
use rand::Rng;

/// A binary mask at image resolution (row-major, 0.0 or 1.0) and its patch-level max-pool.
#[derive(Debug, Clone)]
pub struct PerlinMask {
    /// Image-level mask `[h * w]`.
    pub image: Vec<f32>,
    /// Patch-level mask `[(h / stride) * (w / stride)]`: 1 where any pixel of the patch is set.
    pub patches: Vec<f32>,
}

fn fade(t: f32) -> f32 {
    ((6.0 * t - 15.0) * t + 10.0) * t * t * t
}

/// DRAEM's `rand_perlin_2d`: `h x w` noise with `ry x rx` periods (must divide `h`, `w`), amplitude √2.
pub fn rand_perlin_2d<R: Rng>(rng: &mut R, h: usize, w: usize, ry: usize, rx: usize) -> Vec<f32> {
    let grads: Vec<(f32, f32)> = (0..(ry + 1) * (rx + 1))
        .map(|_| {
            let a = rng.random::<f32>() * std::f32::consts::TAU;
            (a.cos(), a.sin())
        })
        .collect();
    let g = |i: usize, j: usize| grads[i * (rx + 1) + j];
    let (dy, dx) = (h / ry, w / rx);
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        let (ci, u) = (y / dy, (y % dy) as f32 / dy as f32);
        let fu = fade(u);
        for x in 0..w {
            let (cj, v) = (x / dx, (x % dx) as f32 / dx as f32);
            let dot = |gr: (f32, f32), a: f32, b: f32| gr.0 * a + gr.1 * b;
            let n00 = dot(g(ci, cj), u, v);
            let n10 = dot(g(ci + 1, cj), u - 1.0, v);
            let n01 = dot(g(ci, cj + 1), u, v - 1.0);
            let n11 = dot(g(ci + 1, cj + 1), u - 1.0, v - 1.0);
            let fv = fade(v);
            let a = n00 + fu * (n10 - n00);
            let b = n01 + fu * (n11 - n01);
            out[y * w + x] = std::f32::consts::SQRT_2 * (a + fv * (b - a));
        }
    }
    out
}

/// Rotates an image about its centre by `deg` degrees (bilinear, 0 outside).
pub fn rotate(src: &[f32], h: usize, w: usize, deg: f32) -> Vec<f32> {
    let (s, c) = deg.to_radians().sin_cos();
    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            let (yy, xx) = (y as f32 - cy, x as f32 - cx);
            // Inverse mapping: source = R(-deg) * destination.
            let sx = c * xx + s * yy + cx;
            let sy = -s * xx + c * yy + cy;
            if sx < 0.0 || sy < 0.0 || sx > (w - 1) as f32 || sy > (h - 1) as f32 {
                continue;
            }
            let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
            let top = src[y0 * w + x0] * (1.0 - fx) + src[y0 * w + x1] * fx;
            let bot = src[y1 * w + x0] * (1.0 - fx) + src[y1 * w + x1] * fx;
            out[y * w + x] = top * (1.0 - fy) + bot * fy;
        }
    }
    out
}

fn thresholded_noise<R: Rng>(rng: &mut R, h: usize, w: usize) -> Vec<bool> {
    let ry = 1usize << rng.random_range(0..6);
    let rx = 1usize << rng.random_range(0..6);
    let noise = rand_perlin_2d(rng, h, w, ry, rx);
    let deg = rng.random_range(-90.0f32..90.0);
    rotate(&noise, h, w, deg).into_iter().map(|v| v > 0.5).collect()
}

/// Draws a GLASS Perlin mask. `fg` (same size, 0/1) restricts it to the foreground when given.
pub fn perlin_mask<R: Rng>(
    rng: &mut R,
    h: usize,
    w: usize,
    stride: usize,
    fg: Option<&[f32]>,
) -> PerlinMask {
    let (ph, pw) = (h / stride, w / stride);
    // A foreground mask with no pixels would loop forever: fall back to the whole image.
    let fg = fg.filter(|m| m.iter().any(|&v| v > 0.0));
    loop {
        let a = thresholded_noise(rng, h, w);
        let b = thresholded_noise(rng, h, w);
        let u: f32 = rng.random();
        let mut image: Vec<f32> = (0..h * w)
            .map(|i| {
                let on = if u > 2.0 / 3.0 {
                    a[i] || b[i]
                } else if u > 1.0 / 3.0 {
                    a[i] && b[i]
                } else {
                    a[i]
                };
                on as u8 as f32
            })
            .collect();
        if let Some(fg) = fg {
            for (m, f) in image.iter_mut().zip(fg) {
                *m *= f.ceil().min(1.0);
            }
        }
        let mut patches = vec![0f32; ph * pw];
        for y in 0..h {
            for x in 0..w {
                if image[y * w + x] > 0.0 {
                    patches[(y / stride) * pw + x / stride] = 1.0;
                }
            }
        }
        if patches.iter().any(|&v| v > 0.0) {
            return PerlinMask { image, patches };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn noise_is_zero_on_the_lattice_and_bounded() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = rand_perlin_2d(&mut rng, 32, 32, 4, 2);
        // Lattice points (multiples of the period) have zero noise.
        assert!(n[0].abs() < 1e-6 && n[8 * 32 + 16].abs() < 1e-6);
        assert!(n.iter().all(|v| v.abs() <= 1.5));
        assert!(n.iter().any(|v| v.abs() > 0.1));
    }

    #[test]
    fn masks_are_binary_non_empty_and_patch_consistent() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..5 {
            let m = perlin_mask(&mut rng, 64, 64, 8, None);
            assert!(m.image.iter().all(|&v| v == 0.0 || v == 1.0));
            assert!(m.patches.contains(&1.0));
            for py in 0..8 {
                for px in 0..8 {
                    let any = (0..8)
                        .any(|y| (0..8).any(|x| m.image[(py * 8 + y) * 64 + px * 8 + x] > 0.0));
                    assert_eq!(m.patches[py * 8 + px] == 1.0, any);
                }
            }
        }
    }

    #[test]
    fn foreground_restricts_the_mask() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut fg = vec![0f32; 64 * 64];
        for v in fg.iter_mut().take(32 * 64) {
            *v = 1.0; // top half only
        }
        let m = perlin_mask(&mut rng, 64, 64, 8, Some(&fg));
        assert!(m.image[32 * 64..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn rotation_by_zero_is_identity() {
        let src: Vec<f32> = (0..30).map(|v| v as f32).collect();
        assert_eq!(rotate(&src, 5, 6, 0.0), src);
    }
}
