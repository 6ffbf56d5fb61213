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

mod canvas;
mod defects;
mod glyphs;
mod noise;
mod object;
mod texture;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageFormat, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

use canvas::Canvas;
use defects::draw_defect;
use noise::mix;
use object::ObjectStyle;
use texture::TextureStyle;

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
}
