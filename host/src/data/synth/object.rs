//! The object category: a bottle-cap-like part (knurled rim, groove, face with holes, printed mark
//! and lot code) with its shadow on a conveyor background, in a per-image pose and lighting.

use std::f32::consts::{PI, TAU};

use rand::Rng;

use super::canvas::{clamp01, hsv, lerp3, scale3, smoothstep, Canvas, Region};
use super::glyphs::{glyph_ink, random_glyph};
use super::noise::{hash_noise, Noise};

#[derive(Debug, Clone)]
pub(super) struct ObjectStyle {
    bg: [f32; 3],
    face: [f32; 3],
    rim: [f32; 3],
    ink: [f32; 3],
    r_frac: f32,
    rim_frac: f32,
    knurls: f32,
    holes: usize,
    hole_pos: f32,
    hole_r: f32,
    light: f32,
    /// Fixed printed mark: 3x5 bit glyphs.
    mark: Vec<u16>,
    /// Glyphs of the per-image lot code ("digits").
    digits: Vec<u16>,
    pub(super) hue: f32,
}

impl ObjectStyle {
    pub(super) fn new(rng: &mut impl Rng) -> Self {
        let hue = rng.random::<f32>();
        let dark_bg = rng.random::<bool>();
        let bg_v = if dark_bg { rng.random_range(0.12..0.25) } else { rng.random_range(0.6..0.75) };
        let bg = hsv(rng.random(), rng.random_range(0.03..0.12), bg_v);
        let face = hsv(hue, rng.random_range(0.35..0.75), rng.random_range(0.5..0.8));
        let rim = lerp3(hsv(hue, 0.15, 0.85), [0.75, 0.75, 0.75], 0.5);
        let ink = if rng.random::<bool>() { [0.08, 0.08, 0.1] } else { [0.95, 0.95, 0.92] };
        let mark_len = rng.random_range(4..7);
        ObjectStyle {
            bg,
            face,
            rim,
            ink,
            r_frac: rng.random_range(0.3..0.35),
            rim_frac: rng.random_range(0.78..0.85),
            knurls: rng.random_range(40..80) as f32,
            holes: rng.random_range(3..7),
            hole_pos: rng.random_range(0.58..0.68),
            hole_r: rng.random_range(0.06..0.09),
            light: rng.random_range(0.0..TAU),
            mark: (0..mark_len).map(|_| random_glyph(rng)).collect(),
            digits: (0..10).map(|_| random_glyph(rng)).collect(),
            hue,
        }
    }

    pub(super) fn render(&self, c: &mut Canvas, rng: &mut impl Rng, seed: u64) -> Region {
        let n = c.n;
        let s = n as f32;
        let cx = s * (0.5 + rng.random_range(-0.04..0.04));
        let cy = s * (0.5 + rng.random_range(-0.04..0.04));
        let rot = rng.random_range(0.0..TAU);
        let scale = rng.random_range(0.96..1.04);
        let r_out = s * self.r_frac * scale;
        let r_in = r_out * self.rim_frac;
        let groove = (0.03 * r_in).max(1.0);
        let light = self.light + rng.random_range(-0.3..0.3);
        let (sl, cl) = light.sin_cos();
        let exposure = rng.random_range(0.9..1.1);
        let (gx, gy) = (rng.random_range(-0.12..0.12), rng.random_range(-0.12..0.12));
        let face = scale3(self.face, rng.random_range(0.96..1.04));
        let bg_noise = Noise::new(rng, 64);
        let face_noise = Noise::new(rng, 16);
        let lot: Vec<u16> =
            (0..4).map(|_| self.digits[rng.random_range(0..self.digits.len())]).collect();
        // Shadow falls away from the light.
        let (shx, shy) = (-cl * 0.04 * s, -sl * 0.04 * s);
        let (sr, cr) = rot.sin_cos();
        let holes: Vec<(f32, f32)> = (0..self.holes)
            .map(|k| {
                let a = TAU * k as f32 / self.holes as f32 + PI / self.holes as f32;
                (a.cos() * self.hole_pos * r_in, a.sin() * self.hole_pos * r_in)
            })
            .collect();
        let hole_r = self.hole_r * r_in;
        let (gh, gw) = (0.16 * r_in, 0.1 * r_in);
        let mark_w = self.mark.len() as f32 * gw * 1.35;
        let (lh, lw) = (0.1 * r_in, 0.065 * r_in);
        let lot_w = lot.len() as f32 * lw * 1.35;
        let noise_seed = seed as u32;
        let bg_fine = 12.0 / s * 8.0;
        for y in 0..n {
            let fy = y as f32 + 0.5;
            let ny = fy / s;
            for x in 0..n {
                let fx = x as f32 + 0.5;
                let nx = fx / s;
                let (dx, dy) = (fx - cx, fy - cy);
                let r = (dx * dx + dy * dy).sqrt();
                let mut col =
                    scale3(self.bg, 0.85 + 0.3 * bg_noise.fbm2(fx * bg_fine, fy * bg_fine));
                let (sdx, sdy) = (dx - shx, dy - shy);
                let rs = (sdx * sdx + sdy * sdy).sqrt();
                col = scale3(col, 1.0 - 0.5 * smoothstep(r_out + 0.06 * s, r_out - 0.02 * s, rs));
                if r < r_out + 1.0 {
                    let (lx, ly) = (dx * cr + dy * sr, dy * cr - dx * sr);
                    let lightdot = if r > 0.0 { (dx * cl + dy * sl) / r } else { 0.0 };
                    let part = if r > r_in {
                        let t = (r - r_in) / (r_out - r_in);
                        let knurl = 1.0 + 0.1 * (self.knurls * ly.atan2(lx)).cos();
                        let shade = 0.72 + 0.28 * (PI * t).cos() * lightdot;
                        let spec =
                            0.3 * (-(t - 0.5) * (t - 0.5) / 0.03).exp() * lightdot.max(0.0).powi(4);
                        let k = shade * knurl;
                        [self.rim[0] * k + spec, self.rim[1] * k + spec, self.rim[2] * k + spec]
                    } else {
                        let g = 1.0 - 0.55 * smoothstep(r_in - groove * 2.0, r_in, r);
                        let shade = 0.84 + 0.12 * (dx * cl + dy * sl) / r_in;
                        let (hx, hy) = (dx - cl * 0.35 * r_in, dy - sl * 0.35 * r_in);
                        let hl = 0.12 * (-(hx * hx + hy * hy) / (0.1 * r_in * r_in)).exp();
                        let fnz = 0.96
                            + 0.08 * face_noise.at(lx / r_in * 6.0 + 8.0, ly / r_in * 6.0 + 8.0);
                        let k = shade * g * fnz;
                        let mut p = [face[0] * k + hl, face[1] * k + hl, face[2] * k + hl];
                        for &(hx, hy) in &holes {
                            let d = ((lx - hx) * (lx - hx) + (ly - hy) * (ly - hy)).sqrt();
                            if d < hole_r + 2.0 {
                                let cov = clamp01(hole_r - d + 0.5);
                                let rim_hl = clamp01(1.0 - (d - hole_r - 0.8).abs()) * 0.15;
                                p = lerp3(p, scale3(self.bg, 0.25), cov);
                                p = [p[0] + rim_hl, p[1] + rim_hl, p[2] + rim_hl];
                            }
                        }
                        if glyph_ink(
                            &self.mark,
                            lx + mark_w / 2.0,
                            ly + 0.1 * r_in + gh / 2.0,
                            gw,
                            gh,
                        ) {
                            p = lerp3(p, self.ink, 0.9);
                        }
                        if glyph_ink(&lot, lx + lot_w / 2.0, ly - 0.2 * r_in + lh / 2.0, lw, lh) {
                            p = lerp3(p, self.ink, 0.8);
                        }
                        p
                    };
                    col = lerp3(col, part, clamp01(r_out - r + 0.5));
                }
                let gain = exposure * (1.0 + gx * (nx - 0.5) + gy * (ny - 0.5));
                let sn = 0.02 * hash_noise(x, y, noise_seed);
                c.px[y * n + x] = [col[0] * gain + sn, col[1] * gain + sn, col[2] * gain + sn];
            }
        }
        Region::Disk { cx, cy, r: r_out }
    }
}
