//! Procedural MVTec-AD-layout categories, for tests, demos and smoke runs without the real dataset.
//!
//! [`generate`] writes `<out>/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}`
//! plus `synth.json` (the resolved config and counts). Everything is a deterministic function of the
//! seed (`rand_chacha`): a category-wide *style* (colours, weave period, part geometry, printed
//! marks) is drawn from the seed, and every image from its own stream derived from the seed and its
//! slot, so [`Generator::sample`] can re-render any file, with and without its defect.
//!
//! * **Texture**: a woven surface (plain or twill weave of two thread colours, domain-warped so threads
//!   wander, fibre noise along each thread), per-image phase/angle/period jitter, low-frequency mottling
//!   and a lighting gradient, plus sensor noise.
//! * **Object**: a bottle-cap-like part (knurled metal rim, a groove, a coloured face with a hole pattern,
//!   a printed mark line and a per-image lot code) with its shadow on a conveyor background; per-image
//!   translation, full rotation, scale, light direction and exposure jitter.
//! * **Defects** ([`DefectKind`]): scratch (thin bright curve), crack (dark jagged polyline with a
//!   branch), hole (dark irregular spot), contamination (blob of foreign colour and texture), colour
//!   (tinted region). They are small (about 0.05%-1.5% of the pixels), drawn on an otherwise normal
//!   sample, lie on the part for objects, and the mask marks the pixels with at least half coverage.
use std::collections::BTreeMap;
use std::f32::consts::{PI, TAU};
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the category shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A woven surface filling the image (like MVTec carpet).
    Texture,
    /// A round part on a background, in varying pose (like MVTec bottle).
    Object,
}

/// A defect type; its [`DefectKind::name`] is the folder name under `test/` and `ground_truth/`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum DefectKind {
    /// A thin bright curved line.
    Scratch,
    /// A dark spot with an irregular outline.
    Hole,
    /// A blob of foreign colour and texture.
    Contamination,
    /// A dark jagged polyline with a branch.
    Crack,
    /// A region with a colour tint.
    Color,
}

impl DefectKind {
    /// All defect kinds.
    pub const ALL: [DefectKind; 5] = [
        DefectKind::Scratch,
        DefectKind::Hole,
        DefectKind::Contamination,
        DefectKind::Crack,
        DefectKind::Color,
    ];

    /// The folder name.
    pub fn name(self) -> &'static str {
        match self {
            DefectKind::Scratch => "scratch",
            DefectKind::Hole => "hole",
            DefectKind::Contamination => "contamination",
            DefectKind::Crack => "crack",
            DefectKind::Color => "color",
        }
    }

    fn code(self) -> u64 {
        match self {
            DefectKind::Scratch => 0,
            DefectKind::Hole => 1,
            DefectKind::Contamination => 2,
            DefectKind::Crack => 3,
            DefectKind::Color => 4,
        }
    }
}

/// Default number of `train/good` images.
pub const DEFAULT_TRAIN: usize = 60;
/// Default number of `test/good` images.
pub const DEFAULT_TEST_GOOD: usize = 20;
/// Default number of test images per defect type.
pub const DEFAULT_TEST_DEFECT: usize = 8;
/// Default image side in pixels.
pub const DEFAULT_SIZE: u32 = 512;

/// What [`generate`] writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Dataset root; the category goes to `out/category`.
    pub out: PathBuf,
    /// Category (folder) name.
    pub category: String,
    /// Texture or object.
    pub kind: Kind,
    /// Seed of everything.
    pub seed: u64,
    /// Image side in pixels (square images), 32..=4096.
    pub size: u32,
    /// Number of `train/good` images.
    pub train: usize,
    /// Number of `test/good` images.
    pub test_good: usize,
    /// Number of test images per defect type.
    pub test_defect: usize,
    /// Defect types to generate.
    pub defects: Vec<DefectKind>,
}

impl SynthConfig {
    /// The defaults: seed 0, 512 px, 60 train, 20 test good, 8 per defect type, all defect kinds.
    pub fn new(out: impl Into<PathBuf>, category: impl Into<String>, kind: Kind) -> Self {
        SynthConfig {
            out: out.into(),
            category: category.into(),
            kind,
            seed: 0,
            size: DEFAULT_SIZE,
            train: DEFAULT_TRAIN,
            test_good: DEFAULT_TEST_GOOD,
            test_defect: DEFAULT_TEST_DEFECT,
            defects: DefectKind::ALL.to_vec(),
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthSummary {
    /// The category folder.
    pub root: PathBuf,
    /// `train/good` images written.
    pub train_good: usize,
    /// `test/good` images written.
    pub test_good: usize,
    /// Defect type -> test images written.
    pub test_defect: BTreeMap<String, usize>,
    /// Masks written.
    pub masks: usize,
}

/// Which file of a category a sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `train/good/<i>`.
    Train(usize),
    /// `test/good/<i>`.
    TestGood(usize),
    /// `test/<defect>/<i>`.
    TestDefect(DefectKind, usize),
}

/// One rendered sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image without its defect (equal to `image` for normal slots).
    pub clean: RgbImage,
    /// The image as written.
    pub image: RgbImage,
    /// The defect mask (0 or 255) for defect slots.
    pub mask: Option<GrayImage>,
}

/// Renders the samples of one category (style fixed by kind, size and seed).
#[derive(Debug, Clone)]
pub struct Generator {
    size: u32,
    seed: u64,
    style: Style,
}

#[derive(Debug, Clone)]
enum Style {
    Texture(TextureStyle),
    Object(ObjectStyle),
}

impl Generator {
    /// The generator of a category of `kind` with `size` px images and `seed`.
    pub fn new(kind: Kind, size: u32, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 0x5_7E1E));
        let style = match kind {
            Kind::Texture => Style::Texture(TextureStyle::new(&mut rng)),
            Kind::Object => Style::Object(ObjectStyle::new(&mut rng)),
        };
        Generator { size: size.max(8), seed, style }
    }

    /// Renders the sample of `slot`: the same pixels [`generate`] writes there.
    pub fn sample(&self, slot: Slot) -> Sample {
        let code = match slot {
            Slot::Train(i) => (1 << 40) | i as u64,
            Slot::TestGood(i) => (2 << 40) | i as u64,
            Slot::TestDefect(k, i) => ((16 + k.code()) << 40) | i as u64,
        };
        let s = mix(self.seed, code);
        let mut rng = ChaCha8Rng::seed_from_u64(s);
        let n = self.size as usize;
        let mut canvas = Canvas { n, px: vec![[0.0; 3]; n * n] };
        let region = match &self.style {
            Style::Texture(st) => st.render(&mut canvas, &mut rng, s),
            Style::Object(st) => st.render(&mut canvas, &mut rng, s),
        };
        let clean = canvas.to_rgb();
        match slot {
            Slot::TestDefect(kind, _) => {
                let mut drng = ChaCha8Rng::seed_from_u64(mix(s, 0xDEF3C7));
                let mask = draw_defect(&mut canvas, kind, &region, &self.style, &mut drng);
                Sample { clean, image: canvas.to_rgb(), mask: Some(mask) }
            }
            _ => Sample { image: clean.clone(), clean, mask: None },
        }
    }
}

/// Writes the category described by `cfg` and returns what it wrote. An existing category folder is
/// replaced only when it holds a `synth.json` (i.e. was generated); otherwise a non-empty folder is an
/// error, so a real dataset is never overwritten.
pub fn generate(cfg: &SynthConfig) -> Result<SynthSummary> {
    let root = cfg.out.join(&cfg.category);
    let bad = |msg: String| Err(Error::Dataset { path: root.clone(), msg });
    if cfg.category.is_empty()
        || cfg.category.contains(['/', '\\'])
        || cfg.category == ".."
        || cfg.category == "."
    {
        return bad(format!("invalid category name {:?}", cfg.category));
    }
    if !(32..=4096).contains(&cfg.size) {
        return bad(format!("image size {} out of range 32..=4096", cfg.size));
    }
    let mut defects = cfg.defects.clone();
    defects.sort();
    defects.dedup();
    if cfg.test_defect > 0 && defects.is_empty() {
        return bad("no defect types given".into());
    }
    prepare_root(&root)?;

    let width = |n: usize| n.saturating_sub(1).to_string().len().max(3);
    let mut jobs: Vec<(Slot, PathBuf, Option<PathBuf>)> = Vec::new();
    let train_dir = root.join("train").join("good");
    let good_dir = root.join("test").join("good");
    let w = width(cfg.train);
    jobs.extend(
        (0..cfg.train).map(|i| (Slot::Train(i), train_dir.join(format!("{i:0w$}.png")), None)),
    );
    let w = width(cfg.test_good);
    jobs.extend(
        (0..cfg.test_good)
            .map(|i| (Slot::TestGood(i), good_dir.join(format!("{i:0w$}.png")), None)),
    );
    let mut test_defect = BTreeMap::new();
    let w = width(cfg.test_defect);
    let mut dirs = vec![train_dir, good_dir];
    if cfg.test_defect > 0 {
        for &kind in &defects {
            let img_dir = root.join("test").join(kind.name());
            let gt_dir = root.join("ground_truth").join(kind.name());
            for i in 0..cfg.test_defect {
                let mask = gt_dir.join(format!("{i:0w$}_mask.png"));
                jobs.push((
                    Slot::TestDefect(kind, i),
                    img_dir.join(format!("{i:0w$}.png")),
                    Some(mask),
                ));
            }
            test_defect.insert(kind.name().to_owned(), cfg.test_defect);
            dirs.extend([img_dir, gt_dir]);
        }
    }
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }

    let generator = Generator::new(cfg.kind, cfg.size, cfg.seed);
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len()).max(1);
    tracing::info!(root = %root.display(), images = jobs.len(), threads, "generating synthetic category");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (jobs, generator) = (&jobs, &generator);
                scope.spawn(move || -> Result<()> {
                    for (slot, image_path, mask_path) in jobs.iter().skip(t).step_by(threads) {
                        let sample = generator.sample(*slot);
                        save(&sample.image, image_path)?;
                        if let (Some(mask), Some(path)) = (&sample.mask, mask_path) {
                            save(mask, path)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| Error::Dataset {
                path: root.clone(),
                msg: "generator thread panicked".into(),
            })??;
        }
        Ok::<(), Error>(())
    })?;

    let summary = SynthSummary {
        root: root.clone(),
        train_good: cfg.train,
        test_good: cfg.test_good,
        masks: test_defect.values().sum(),
        test_defect,
    };
    let meta = root.join("synth.json");
    let json =
        serde_json::to_string_pretty(&serde_json::json!({ "config": cfg, "summary": summary }))?;
    std::fs::write(&meta, json).map_err(|e| Error::io(&meta, e))?;
    Ok(summary)
}

fn save<P>(img: &image::ImageBuffer<P, Vec<u8>>, path: &Path) -> Result<()>
where
    P: image::Pixel<Subpixel = u8> + image::PixelWithColorType,
{
    img.save_with_format(path, ImageFormat::Png)
        .map_err(|source| Error::Image { path: path.to_path_buf(), source })
}

/// Makes `root` ready: creates it, or empties a previously generated category.
fn prepare_root(root: &Path) -> Result<()> {
    if root.exists() {
        if !root.is_dir() {
            return Err(Error::Dataset {
                path: root.to_path_buf(),
                msg: "exists and is not a folder".into(),
            });
        }
        let mut entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
        if entries.next().is_some() {
            let meta = root.join("synth.json");
            if !meta.is_file() {
                return Err(Error::Dataset {
                    path: root.to_path_buf(),
                    msg: "exists, is not empty and was not generated (no synth.json); refusing to overwrite".into(),
                });
            }
            tracing::info!(root = %root.display(), "replacing previously generated category");
            for sub in ["train", "test", "ground_truth"] {
                let p = root.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
                }
            }
            std::fs::remove_file(&meta).map_err(|e| Error::io(&meta, e))?;
        }
    }
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))
}

// ---------------------------------------------------------------------------------------------
// Rendering helpers.

/// SplitMix64 finaliser of `a` combined with `b`: independent seeds for independent streams.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cheap per-pixel hash noise in [-0.5, 0.5) (sensor noise; per-pixel RNG calls would be slow in debug).
fn hash_noise(x: usize, y: usize, seed: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x27D4_EB2D) ^ (y as u32).wrapping_mul(0x1656_67B1) ^ seed;
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^= h >> 15;
    (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
}

fn clamp01(x: f32) -> f32 {
    x.clamp(0.0, 1.0)
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = clamp01((x - e0) / (e1 - e0));
    t * t * (3.0 - 2.0 * t)
}

fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

fn scale3(a: [f32; 3], k: f32) -> [f32; 3] {
    [a[0] * k, a[1] * k, a[2] * k]
}

/// HSV (all in 0..1) to RGB.
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
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

/// Value noise on a wrapping `n` x `n` lattice (n a power of two), smooth-step interpolated, in [0, 1].
#[derive(Debug, Clone)]
struct Noise {
    mask: usize,
    n: usize,
    v: Vec<f32>,
}

impl Noise {
    fn new(rng: &mut impl Rng, n: usize) -> Self {
        Noise { mask: n - 1, n, v: (0..n * n).map(|_| rng.random::<f32>()).collect() }
    }

    fn at(&self, x: f32, y: f32) -> f32 {
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
    fn fbm2(&self, x: f32, y: f32) -> f32 {
        (self.at(x, y) * 2.0 + self.at(x * 2.03 + 11.7, y * 2.03 + 5.3)) / 3.0
    }
}

/// Linear RGB in [0, 1], row-major.
struct Canvas {
    n: usize,
    px: Vec<[f32; 3]>,
}

impl Canvas {
    fn to_rgb(&self) -> RgbImage {
        let n = self.n as u32;
        RgbImage::from_fn(n, n, |x, y| {
            let p = self.px[y as usize * self.n + x as usize];
            Rgb(p.map(|c| (clamp01(c) * 255.0 + 0.5) as u8))
        })
    }
}

/// Where defects may go.
enum Region {
    /// Anywhere (textures), keeping a margin of `n/10`.
    Whole,
    /// On the part: centre, outer radius (px) and rotation.
    Disk { cx: f32, cy: f32, r: f32 },
}

// ---------------------------------------------------------------------------------------------
// Texture.

#[derive(Debug, Clone)]
struct TextureStyle {
    warp_col: [f32; 3],
    weft_col: [f32; 3],
    period_frac: f32,
    angle: f32,
    twill: bool,
    relief: f32,
    fiber_amp: f32,
    hue: f32,
}

impl TextureStyle {
    fn new(rng: &mut impl Rng) -> Self {
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

    fn render(&self, c: &mut Canvas, rng: &mut impl Rng, seed: u64) -> Region {
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

// ---------------------------------------------------------------------------------------------
// Object.

#[derive(Debug, Clone)]
struct ObjectStyle {
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
    hue: f32,
}

fn random_glyph(rng: &mut impl Rng) -> u16 {
    loop {
        let g: u16 = rng.random::<u16>() & 0x7FFF;
        if (5..=11).contains(&g.count_ones()) {
            return g;
        }
    }
}

impl ObjectStyle {
    fn new(rng: &mut impl Rng) -> Self {
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

    fn render(&self, c: &mut Canvas, rng: &mut impl Rng, seed: u64) -> Region {
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

/// Whether (u, v) (relative to the top-left of a text line of glyphs `w` x `h`, pitch 1.35 w) is ink.
fn glyph_ink(glyphs: &[u16], u: f32, v: f32, w: f32, h: f32) -> bool {
    if u < 0.0 || v < 0.0 || v >= h {
        return false;
    }
    let pitch = w * 1.35;
    let idx = (u / pitch) as usize;
    let within = u - idx as f32 * pitch;
    if idx >= glyphs.len() || within >= w {
        return false;
    }
    let bx = ((within / w * 3.0) as u32).min(2);
    let by = ((v / h * 5.0) as u32).min(4);
    glyphs[idx] >> (by * 3 + bx) & 1 == 1
}

// ---------------------------------------------------------------------------------------------
// Defects.

/// Max-accumulated coverage of the defect shape, over the whole canvas.
struct Coverage {
    n: usize,
    v: Vec<f32>,
}

impl Coverage {
    fn segment(&mut self, a: (f32, f32), b: (f32, f32), width: f32) {
        let pad = width + 2.0;
        let (x0, x1) = (a.0.min(b.0) - pad, a.0.max(b.0) + pad);
        let (y0, y1) = (a.1.min(b.1) - pad, a.1.max(b.1) + pad);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        for y in self.range(y0, y1) {
            for x in self.range(x0, x1) {
                let (px, py) = (x as f32 + 0.5 - a.0, y as f32 + 0.5 - a.1);
                let t = clamp01((px * dx + py * dy) / len2);
                let (ex, ey) = (px - t * dx, py - t * dy);
                let d = (ex * ex + ey * ey).sqrt();
                let cov = clamp01(width / 2.0 + 0.5 - d);
                let i = y * self.n + x;
                self.v[i] = self.v[i].max(cov);
            }
        }
    }

    fn polyline(&mut self, pts: &[(f32, f32)], width: f32) {
        for w in pts.windows(2) {
            self.segment(w[0], w[1], width);
        }
    }

    /// An irregular disk: radius `r` modulated by harmonics 2..=5 of relative amplitude about `wobble`;
    /// `soft` is the edge width in px.
    fn blob(&mut self, rng: &mut impl Rng, c: (f32, f32), r: f32, wobble: f32, soft: f32) {
        // Harmonic k gets amplitude up to wobble / (k - 1): lumpy, not star-shaped.
        let harm: Vec<(f32, f32)> = (2..=5)
            .map(|k| {
                (
                    (rng.random::<f32>() * 2.0 - 1.0) * wobble / (k - 1) as f32 / 1.5,
                    rng.random_range(0.0..TAU),
                )
            })
            .collect();
        let pad = r * (1.0 + 2.0 * wobble) + soft + 2.0;
        for y in self.range(c.1 - pad, c.1 + pad) {
            for x in self.range(c.0 - pad, c.0 + pad) {
                let (dx, dy) = (x as f32 + 0.5 - c.0, y as f32 + 0.5 - c.1);
                let d = (dx * dx + dy * dy).sqrt();
                let a = dy.atan2(dx);
                let mut rr = 1.0;
                for (k, &(amp, ph)) in harm.iter().enumerate() {
                    rr += amp * ((k as f32 + 2.0) * a + ph).cos();
                }
                let cov = clamp01((r * rr - d) / soft + 0.5);
                let i = y * self.n + x;
                self.v[i] = self.v[i].max(cov);
            }
        }
    }

    fn range(&self, lo: f32, hi: f32) -> std::ops::Range<usize> {
        let lo = lo.floor().max(0.0) as usize;
        let hi = (hi.ceil().max(0.0) as usize).min(self.n);
        lo.min(hi)..hi
    }
}

/// Draws a defect of `kind` into `canvas` and returns its mask (coverage >= 0.5, on the part).
fn draw_defect(
    canvas: &mut Canvas,
    kind: DefectKind,
    region: &Region,
    style: &Style,
    rng: &mut impl Rng,
) -> GrayImage {
    let n = canvas.n;
    let s = n as f32;
    let on_part = |x: usize, y: usize| -> f32 {
        match region {
            Region::Whole => 1.0,
            Region::Disk { cx, cy, r } => {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                clamp01(r - 1.5 - (dx * dx + dy * dy).sqrt())
            }
        }
    };
    // Objects get somewhat smaller defects: the part covers about a third of the image.
    let size_k = match region {
        Region::Whole => 1.0,
        Region::Disk { .. } => 0.8,
    };
    let base_hue = match style {
        Style::Texture(t) => t.hue,
        Style::Object(o) => o.hue,
    };
    for _ in 0..16 {
        let mut cov = Coverage { n, v: vec![0.0; n * n] };
        let center = match region {
            Region::Whole => (rng.random_range(0.12..0.88) * s, rng.random_range(0.12..0.88) * s),
            Region::Disk { cx, cy, r } => {
                let rho = r * 0.75 * rng.random::<f32>().sqrt();
                let a = rng.random_range(0.0..TAU);
                (cx + rho * a.cos(), cy + rho * a.sin())
            }
        };
        match kind {
            DefectKind::Scratch => {
                let len = s * size_k * rng.random_range(0.15..0.3);
                let a = rng.random_range(0.0..TAU);
                let (da, db) = (a.cos() * len / 2.0, a.sin() * len / 2.0);
                let bend = len * rng.random_range(-0.2..0.2);
                let (p0, p2) = ((center.0 - da, center.1 - db), (center.0 + da, center.1 + db));
                let p1 = (center.0 - a.sin() * bend, center.1 + a.cos() * bend);
                let pts: Vec<(f32, f32)> = (0..=16)
                    .map(|i| {
                        let t = i as f32 / 16.0;
                        let (u, w) = ((1.0 - t) * (1.0 - t), t * t);
                        let m = 2.0 * t * (1.0 - t);
                        (u * p0.0 + m * p1.0 + w * p2.0, u * p0.1 + m * p1.1 + w * p2.1)
                    })
                    .collect();
                cov.polyline(&pts, (s * 0.0045).max(1.5));
            }
            DefectKind::Crack => {
                let step = s * size_k * 0.032;
                let mut heading = rng.random_range(0.0..TAU);
                let segs = rng.random_range(7..11);
                let mut p = (
                    center.0 - heading.cos() * step * segs as f32 / 2.0,
                    center.1 - heading.sin() * step * segs as f32 / 2.0,
                );
                let mut pts = vec![p];
                for _ in 0..segs {
                    heading += rng.random_range(-0.8..0.8);
                    let l = step * rng.random_range(0.6..1.3);
                    p = (p.0 + heading.cos() * l, p.1 + heading.sin() * l);
                    pts.push(p);
                }
                let width = (s * 0.0035).max(1.3);
                cov.polyline(&pts, width);
                let from = pts[pts.len() / 2];
                let mut h = heading + if rng.random::<bool>() { 1.0 } else { -1.0 };
                let mut q = vec![from];
                let mut p = from;
                for _ in 0..rng.random_range(2..5) {
                    h += rng.random_range(-0.6..0.6);
                    p = (p.0 + h.cos() * step * 0.8, p.1 + h.sin() * step * 0.8);
                    q.push(p);
                }
                cov.polyline(&q, width * 0.8);
            }
            DefectKind::Hole => {
                let r = s * size_k * rng.random_range(0.018..0.035);
                cov.blob(rng, center, r, 0.3, 1.0);
            }
            DefectKind::Contamination => {
                let r = s * size_k * rng.random_range(0.025..0.05);
                cov.blob(rng, center, r, 0.5, 1.0);
                let a = rng.random_range(0.0..TAU);
                let sat = (center.0 + a.cos() * r * 1.1, center.1 + a.sin() * r * 1.1);
                let sat_r = r * rng.random_range(0.3..0.5);
                cov.blob(rng, sat, sat_r, 0.4, 1.0);
            }
            DefectKind::Color => {
                let r = s * size_k * rng.random_range(0.04..0.07);
                cov.blob(rng, center, r, 0.35, (r * 0.15).max(1.0));
            }
        }
        let (mask, area) = restrict_and_mask(&mut cov, &on_part);
        if area >= 4 {
            apply_effect(canvas, &cov.v, kind, base_hue, rng);
            return mask;
        }
    }
    // Practically unreachable (16 placements all (nearly) off the part): a plain spot in the middle of
    // the region, so a defect slot never has an empty mask.
    let (c, r) = match region {
        Region::Whole => ((s / 2.0, s / 2.0), (s * 0.03).max(3.0)),
        Region::Disk { cx, cy, r } => ((*cx, *cy), (r * 0.1).max(3.0)),
    };
    let mut cov = Coverage { n, v: vec![0.0; n * n] };
    cov.blob(rng, c, r, 0.0, 1.0);
    let (mask, _) = restrict_and_mask(&mut cov, &on_part);
    apply_effect(canvas, &cov.v, DefectKind::Hole, base_hue, rng);
    mask
}

/// Multiplies `cov` by the part coverage and returns the mask (coverage >= 0.5) and its area in px.
fn restrict_and_mask(
    cov: &mut Coverage,
    on_part: &impl Fn(usize, usize) -> f32,
) -> (GrayImage, usize) {
    let n = cov.n;
    let mut mask = GrayImage::new(n as u32, n as u32);
    let mut area = 0usize;
    for y in 0..n {
        for x in 0..n {
            let i = y * n + x;
            if cov.v[i] > 0.0 {
                cov.v[i] *= on_part(x, y);
                if cov.v[i] >= 0.5 {
                    mask.put_pixel(x as u32, y as u32, Luma([255]));
                    area += 1;
                }
            }
        }
    }
    (mask, area)
}

/// Blends the defect's appearance into `canvas` with weights `cov`.
fn apply_effect(
    canvas: &mut Canvas,
    cov: &[f32],
    kind: DefectKind,
    base_hue: f32,
    rng: &mut impl Rng,
) {
    let n = canvas.n;
    let foreign = hsv(
        base_hue + rng.random_range(0.3..0.7),
        rng.random_range(0.5..0.85),
        rng.random_range(0.25..0.55),
    );
    let grain = Noise::new(rng, 32);
    let th = rng.random_range(0.0..TAU);
    let ta = rng.random_range(0.25..0.35);
    let tint = [
        1.0 + ta * th.cos(),
        1.0 + ta * (th + TAU / 3.0).cos(),
        1.0 + ta * (th + 2.0 * TAU / 3.0).cos(),
    ];
    let gscale = 24.0 / n as f32 * 4.0;
    for (i, &w) in cov.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        let p = canvas.px[i];
        let (x, y) = ((i % n) as f32, (i / n) as f32);
        let (target, alpha) = match kind {
            DefectKind::Scratch => (p.map(|c| c + (1.0 - c) * 0.5), 0.85),
            DefectKind::Crack => (scale3(p, 0.3), 0.9),
            DefectKind::Hole => {
                let g = grain.at(x * gscale, y * gscale);
                (scale3(p, 0.25 + 0.15 * g), 1.0)
            }
            DefectKind::Contamination => {
                let g = grain.fbm2(x * gscale, y * gscale);
                (scale3(foreign, 0.7 + 0.6 * g), 0.92)
            }
            DefectKind::Color => ([p[0] * tint[0], p[1] * tint[1], p[2] * tint[2]], 1.0),
        };
        canvas.px[i] = lerp3(p, target, w * alpha);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_pixels() {
        let g = Generator::new(Kind::Object, 48, 7);
        let a = g.sample(Slot::TestDefect(DefectKind::Hole, 1));
        let b = Generator::new(Kind::Object, 48, 7).sample(Slot::TestDefect(DefectKind::Hole, 1));
        assert_eq!(a.image, b.image);
        assert_eq!(a.mask, b.mask);
        assert_ne!(a.image, g.sample(Slot::TestDefect(DefectKind::Hole, 2)).image);
    }

    #[test]
    fn glyph_bits() {
        // Glyph 0b1 lights the top-left cell only.
        assert!(glyph_ink(&[1], 0.1, 0.1, 3.0, 5.0));
        assert!(!glyph_ink(&[1], 2.5, 0.1, 3.0, 5.0));
        assert!(!glyph_ink(&[1], 0.1, 5.5, 3.0, 5.0));
    }
}
