//! The texture category: a domain-warped plain or twill weave with fibre noise, slubs, mottling, a
//! lighting gradient and sensor noise.

use std::f32::consts::PI;

use rand::Rng;

use super::canvas::{hsv, Canvas, Region};
use super::noise::{hash_noise, Noise};

#[derive(Debug, Clone)]
pub(super) struct TextureStyle {
    warp_col: [f32; 3],
    weft_col: [f32; 3],
    period_frac: f32,
    angle: f32,
    twill: bool,
    relief: f32,
    fiber_amp: f32,
    pub(super) hue: f32,
}

impl TextureStyle {
    pub(super) fn new(rng: &mut impl Rng) -> Self {
        let hue = rng.random::<f32>();
        let sat = rng.random_range(0.25..0.6);
        let val = rng.random_range(0.5..0.72);
        let base = hsv(hue, sat, val);
        let jitter = |rng: &mut dyn rand::RngCore| -> [f32; 3] {
            let mut c = base;
            for ch in &mut c {
                *ch *= 1.0 + (rng.next_u32() as f32 / u32::MAX as f32 - 0.5) * 0.16;
            }
            c
        };
        TextureStyle {
            warp_col: jitter(rng),
            weft_col: jitter(rng),
            period_frac: 1.0 / rng.random_range(30.0..42.0),
            angle: rng.random_range(-0.4..0.4),
            twill: rng.random::<bool>(),
            relief: rng.random_range(0.35..0.5),
            fiber_amp: rng.random_range(0.15..0.3),
            hue,
        }
    }

    pub(super) fn render(&self, c: &mut Canvas, rng: &mut impl Rng, seed: u64) -> Region {
        let n = c.n;
        let s = n as f32;
        let warp = Noise::new(rng, 8);
        let fiber = Noise::new(rng, 64);
        let mottle = Noise::new(rng, 8);
        let period = s * self.period_frac * rng.random_range(0.97..1.03);
        let inv_p = 1.0 / period;
        let angle = self.angle + rng.random_range(-0.03..0.03);
        let (sa, ca) = angle.sin_cos();
        let (phu, phv) = (rng.random_range(0.0..64.0), rng.random_range(0.0..64.0));
        let warp_amp = rng.random_range(0.35..0.6);
        let exposure = rng.random_range(0.9..1.1);
        let (gx, gy) = (rng.random_range(-0.25..0.25), rng.random_range(-0.25..0.25));
        let mottle_amp = rng.random_range(0.1..0.2);
        let noise_seed = seed as u32;
        // Slubs: natural irregularities of the yarn, thicker/denser (darker or brighter) stretches of a
        // thread. They make "any local deviation from the average" a poor defect detector, as in real
        // fabrics.
        let mut slub = vec![1.0f32; n * n];
        for _ in 0..rng.random_range(4..12) {
            let (x0, y0) = (rng.random_range(0.0..s), rng.random_range(0.0..s));
            let along_warp = rng.random::<bool>();
            let (dx, dy) = if along_warp { (-sa, ca) } else { (ca, sa) };
            let len = s * rng.random_range(0.02..0.06);
            let wid = period * rng.random_range(0.4..0.7);
            let amp = rng.random_range(0.2..0.4) * if rng.random::<bool>() { 1.0 } else { -1.0 };
            let ext = len * 2.0;
            let (xa, xb) = ((x0 - ext).max(0.0) as usize, ((x0 + ext).max(0.0) as usize).min(n));
            let (ya, yb) = ((y0 - ext).max(0.0) as usize, ((y0 + ext).max(0.0) as usize).min(n));
            for y in ya..yb {
                for x in xa..xb {
                    let (px, py) = (x as f32 + 0.5 - x0, y as f32 + 0.5 - y0);
                    let (a, b) = ((px * dx + py * dy) / len, (py * dx - px * dy) / wid);
                    slub[y * n + x] *= 1.0 + amp * (-(a * a + b * b)).exp();
                }
            }
        }
        let (relief, fa) = (self.relief, self.fiber_amp);
        for y in 0..n {
            let fy = y as f32 + 0.5;
            let ny = fy / s;
            for x in 0..n {
                let fx = x as f32 + 0.5;
                let nx = fx / s;
                let w1 = warp.at(nx * 3.0, ny * 3.0) - 0.5;
                let w2 = warp.at(nx * 3.0 + 3.7, ny * 3.0 + 5.1) - 0.5;
                let u = (fx * ca + fy * sa) * inv_p + phu + warp_amp * w1;
                let v = (fy * ca - fx * sa) * inv_p + phv + warp_amp * w2;
                let (iu, iv) = (u.floor(), v.floor());
                let (fu, fv) = (u - iu, v - iv);
                let cell = iu as i64 + iv as i64;
                let top_warp =
                    if self.twill { cell.rem_euclid(4) < 2 } else { cell.rem_euclid(2) == 0 };
                let (across, along, col) =
                    if top_warp { (fu, fv, self.warp_col) } else { (fv, fu, self.weft_col) };
                let prof = (PI * across).sin();
                let bump = prof * (2.0 - prof) * (0.8 + 0.2 * (PI * along).sin());
                let fib = if top_warp {
                    fiber.at(u * 6.0, v * 0.7)
                } else {
                    fiber.at(u * 0.7 + 31.0, v * 6.0)
                };
                let h = bump * (1.0 - fa + 2.0 * fa * fib);
                let val = (1.0 - relief + relief * h) * slub[y * n + x];
                let gain = exposure
                    * (1.0 + gx * (nx - 0.5) + gy * (ny - 0.5))
                    * (1.0 + mottle_amp * (mottle.fbm2(nx * 4.0, ny * 4.0) - 0.5) * 2.0);
                let sn = 0.02 * hash_noise(x, y, noise_seed);
                c.px[y * n + x] =
                    [col[0] * val * gain + sn, col[1] * val * gain + sn, col[2] * val * gain + sn];
            }
        }
        Region::Whole
    }
}
