//! The float canvas the renderers paint on, the region defects may go on, and the small colour and
//! interpolation helpers they share.

use image::{Rgb, RgbImage};

pub(super) fn clamp01(x: f32) -> f32 {
    x.clamp(0.0, 1.0)
}

pub(super) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = clamp01((x - e0) / (e1 - e0));
    t * t * (3.0 - 2.0 * t)
}

pub(super) fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

pub(super) fn scale3(a: [f32; 3], k: f32) -> [f32; 3] {
    [a[0] * k, a[1] * k, a[2] * k]
}

/// HSV (all in 0..1) to RGB.
pub(super) fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r, g, b) = match h6 as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// Linear RGB in [0, 1], row-major.
pub(super) struct Canvas {
    pub(super) n: usize,
    pub(super) px: Vec<[f32; 3]>,
}

impl Canvas {
    pub(super) fn to_rgb(&self) -> RgbImage {
        let n = self.n as u32;
        RgbImage::from_fn(n, n, |x, y| {
            let p = self.px[y as usize * self.n + x as usize];
            Rgb(p.map(|c| (clamp01(c) * 255.0 + 0.5) as u8))
        })
    }
}

/// Where defects may go.
pub(super) enum Region {
    /// Anywhere (textures), keeping a margin of `n/10`.
    Whole,
    /// On the part: centre, outer radius (px) and rotation.
    Disk { cx: f32, cy: f32, r: f32 },
}
