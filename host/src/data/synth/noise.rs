//! Seeded randomness for the renderers: stream-seed mixing, per-pixel hash noise and smooth value
//! noise.

use rand::Rng;

/// SplitMix64 finaliser of `a` combined with `b`: independent seeds for independent streams.
pub(super) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cheap per-pixel hash noise in [-0.5, 0.5) (sensor noise; per-pixel RNG calls would be slow in debug).
pub(super) fn hash_noise(x: usize, y: usize, seed: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x27D4_EB2D) ^ (y as u32).wrapping_mul(0x1656_67B1) ^ seed;
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
}

/// Value noise on a wrapping `n` x `n` lattice (n a power of two), smooth-step interpolated, in [0, 1].
#[derive(Debug, Clone)]
pub(super) struct Noise {
    mask: usize,
    n: usize,
    v: Vec<f32>,
}

impl Noise {
    pub(super) fn new(rng: &mut impl Rng, n: usize) -> Self {
        Noise { mask: n - 1, n, v: (0..n * n).map(|_| rng.random::<f32>()).collect() }
    }

    pub(super) fn at(&self, x: f32, y: f32) -> f32 {
        let (xf, yf) = (x.floor(), y.floor());
        let (tx, ty) = (x - xf, y - yf);
        let (xi, yi) = ((xf as i64) as usize & self.mask, (yf as i64) as usize & self.mask);
        let (xj, yj) = ((xi + 1) & self.mask, (yi + 1) & self.mask);
        let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let r0 = yi * self.n;
        let r1 = yj * self.n;
        let a = self.v[r0 + xi] + (self.v[r0 + xj] - self.v[r0 + xi]) * sx;
        let b = self.v[r1 + xi] + (self.v[r1 + xj] - self.v[r1 + xi]) * sx;
        a + (b - a) * sy
    }

    /// Two-octave fractal noise in [0, 1].
    pub(super) fn fbm2(&self, x: f32, y: f32) -> f32 {
        (self.at(x, y) * 2.0 + self.at(x * 2.03 + 11.7, y * 2.03 + 5.3)) / 3.0
    }
}
