//! Synthetic categories: MVTec layout on disk, small but visible defects, and no trivial solution.
//!
//! The naive baselines are the two obvious "compare with the average good image" detectors:
//! * `mean`: score = mean over pixels and channels of |image - mean training image|;
//! * `max-blur`: score = max over pixels of the 5x5 box-blurred per-pixel mean-over-channels
//!   |image - mean training image| (the stronger one: it localises).
//!
//! Both must stay below 0.9 image AUROC on every kind, or the generator is too easy to be a useful
//! stand-in for MVTec AD.
use std::path::Path;

use anyhow::Context;
use host::data::synth::{self, DefectKind, Generator, Kind, Slot, SynthConfig};
use host::data::Category;
use image::RgbImage;

/// Image AUROC by Mann-Whitney U (ties count one half). Positive = abnormal.
fn auroc(normal: &[f64], abnormal: &[f64]) -> f64 {
    let mut wins = 0.0;
    for &a in abnormal {
        for &n in normal {
            wins += if a > n {
                1.0
            } else if a == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (normal.len() * abnormal.len()) as f64
}

#[test]
fn auroc_helper() {
    assert_eq!(auroc(&[0.0, 1.0], &[2.0, 3.0]), 1.0);
    assert_eq!(auroc(&[2.0, 3.0], &[0.0, 1.0]), 0.0);
    assert_eq!(auroc(&[1.0], &[1.0]), 0.5);
}

fn to_f32(img: &RgbImage) -> Vec<f32> {
    img.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect()
}

/// Per-pixel mean-over-channels |a - b|.
fn abs_diff_map(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.chunks(3)
        .zip(b.chunks(3))
        .map(|(p, q)| p.iter().zip(q).map(|(x, y)| (x - y).abs()).sum::<f32>() / 3.0)
        .collect()
}

/// Max over pixels of the (2r+1)^2 box blur of `map` (valid region only).
fn max_box_blur(map: &[f32], n: usize, r: usize) -> f32 {
    let mut integral = vec![0f64; (n + 1) * (n + 1)];
    for y in 0..n {
        for x in 0..n {
            integral[(y + 1) * (n + 1) + x + 1] = f64::from(map[y * n + x])
                + integral[y * (n + 1) + x + 1]
                + integral[(y + 1) * (n + 1) + x]
                - integral[y * (n + 1) + x];
        }
    }
    let k = 2 * r + 1;
    let mut best = 0f64;
    for y in 0..=n - k {
        for x in 0..=n - k {
            let s = integral[(y + k) * (n + 1) + x + k]
                - integral[y * (n + 1) + x + k]
                - integral[(y + k) * (n + 1) + x]
                + integral[y * (n + 1) + x];
            best = best.max(s / (k * k) as f64);
        }
    }
    best as f32
}

struct Baselines {
    mean: f64,
    max_blur: f64,
}

fn naive_baselines(
    kind: Kind,
    size: u32,
    seed: u64,
    train: usize,
    good: usize,
    per_defect: usize,
) -> Baselines {
    let g = Generator::new(kind, size, seed);
    let n = size as usize;
    let mut mean = vec![0f32; n * n * 3];
    for i in 0..train {
        for (m, v) in mean.iter_mut().zip(to_f32(&g.sample(Slot::Train(i)).image)) {
            *m += v / train as f32;
        }
    }
    let score = |img: &RgbImage| {
        let d = abs_diff_map(&to_f32(img), &mean);
        (f64::from(d.iter().sum::<f32>()) / d.len() as f64, f64::from(max_box_blur(&d, n, 2)))
    };
    let goods: Vec<(f64, f64)> =
        (0..good).map(|i| score(&g.sample(Slot::TestGood(i)).image)).collect();
    let mut bads = Vec::new();
    for kind in DefectKind::ALL {
        bads.extend((0..per_defect).map(|i| score(&g.sample(Slot::TestDefect(kind, i)).image)));
    }
    let pick = |f: fn(&(f64, f64)) -> f64| {
        (goods.iter().map(f).collect::<Vec<_>>(), bads.iter().map(f).collect::<Vec<_>>())
    };
    let (gm, bm) = pick(|s| s.0);
    let (gb, bb) = pick(|s| s.1);
    Baselines { mean: auroc(&gm, &bm), max_blur: auroc(&gb, &bb) }
}

#[test]
fn naive_baselines_stay_below_0_9_auroc() {
    for kind in [Kind::Texture, Kind::Object] {
        let b = naive_baselines(kind, 128, 0, 16, 16, 4);
        eprintln!(
            "{kind:?}: naive AUROC mean-abs-diff {:.3}, max-blurred-abs-diff {:.3}",
            b.mean, b.max_blur
        );
        assert!(b.mean < 0.9, "{kind:?}: mean-abs-diff baseline reaches AUROC {:.3}", b.mean);
        assert!(b.max_blur < 0.9, "{kind:?}: max-blur baseline reaches AUROC {:.3}", b.max_blur);
    }
}

#[test]
fn defects_are_small_visible_and_deterministic() {
    let n = 128usize;
    for kind in [Kind::Texture, Kind::Object] {
        let g = Generator::new(kind, n as u32, 3);
        for defect in DefectKind::ALL {
            for i in 0..4 {
                let s = g.sample(Slot::TestDefect(defect, i));
                let mask = s.mask.as_ref().expect("defect slots have a mask");
                assert_eq!(mask.dimensions(), s.image.dimensions());
                assert!(mask.as_raw().iter().all(|&v| v == 0 || v == 255), "mask is 0/255");
                let area = mask.as_raw().iter().filter(|&&v| v == 255).count();
                let frac = area as f64 / (n * n) as f64;
                assert!(area >= 4, "{kind:?}/{defect:?}/{i}: mask has {area} px");
                assert!(
                    frac <= 0.025,
                    "{kind:?}/{defect:?}/{i}: defect covers {:.2}% of the image",
                    frac * 100.0
                );
                // Mean over the mask of the largest channel change, against the same sample without defect.
                let (a, b) = (s.image.as_raw(), s.clean.as_raw());
                let mut change = 0.0;
                for (p, &m) in mask.as_raw().iter().enumerate() {
                    if m == 255 {
                        change += (0..3)
                            .map(|c| (i32::from(a[3 * p + c]) - i32::from(b[3 * p + c])).abs())
                            .max()
                            .unwrap_or(0) as f64;
                    }
                }
                let change = change / area as f64;
                assert!(
                    change >= 15.0,
                    "{kind:?}/{defect:?}/{i}: mean change inside the mask is only {change:.1}/255"
                );
                // The clean version is the same picture as a normal sample would be: only the defect differs.
                let outside = mask
                    .as_raw()
                    .iter()
                    .enumerate()
                    .filter(|&(p, &m)| m == 0 && a[3 * p..3 * p + 3] != b[3 * p..3 * p + 3])
                    .count();
                assert!(
                    outside <= area * 2 + 8 * n,
                    "{kind:?}/{defect:?}/{i}: {outside} px changed outside the mask"
                );
            }
        }
        let a = g.sample(Slot::TestDefect(DefectKind::Crack, 1));
        let b = Generator::new(kind, n as u32, 3).sample(Slot::TestDefect(DefectKind::Crack, 1));
        assert_eq!(a.image, b.image, "same seed, same pixels");
        let c = Generator::new(kind, n as u32, 4).sample(Slot::TestDefect(DefectKind::Crack, 1));
        assert_ne!(a.image, c.image, "another seed, another image");
        assert_ne!(g.sample(Slot::Train(0)).image, g.sample(Slot::Train(1)).image, "images vary");
    }
}

fn count_png(dir: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?.count())
}

#[test]
fn generate_writes_mvtec_layout() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cfg = SynthConfig::new(tmp.path(), "tex", Kind::Texture);
    cfg.size = 64;
    cfg.train = 3;
    cfg.test_good = 2;
    cfg.test_defect = 2;
    cfg.defects = vec![DefectKind::Hole, DefectKind::Scratch, DefectKind::Color];
    let summary = synth::generate(&cfg)?;
    let root = tmp.path().join("tex");
    assert_eq!(summary.root, root);
    assert_eq!((summary.train_good, summary.test_good, summary.masks), (3, 2, 6));
    assert_eq!(count_png(&root.join("train/good"))?, 3);
    assert_eq!(count_png(&root.join("test/good"))?, 2);
    for d in ["hole", "scratch", "color"] {
        assert_eq!(summary.test_defect.get(d), Some(&2));
        assert!(root.join(format!("test/{d}/001.png")).is_file());
        assert!(root.join(format!("ground_truth/{d}/001_mask.png")).is_file());
    }
    assert!(root.join("synth.json").is_file());

    let cat = Category::open(&root)?;
    assert_eq!(cat.train_good.len(), 3);
    assert_eq!(cat.defect_count(), 6);
    assert_eq!(cat.mask_count(), 6);
    assert!(cat.orphan_masks.is_empty() && cat.missing.is_empty());

    // Files are exactly what the generator renders for their slot.
    let g = Generator::new(Kind::Texture, 64, 0);
    let on_disk = image::open(root.join("test/hole/001.png"))?.to_rgb8();
    let sample = g.sample(Slot::TestDefect(DefectKind::Hole, 1));
    assert_eq!(on_disk, sample.image);
    let mask = image::open(root.join("ground_truth/hole/001_mask.png"))?.to_luma8();
    assert_eq!(Some(mask), sample.mask);

    // A generated category is replaced (no stale files); anything else is never overwritten.
    cfg.train = 2;
    synth::generate(&cfg)?;
    assert_eq!(count_png(&root.join("train/good"))?, 2);
    let foreign = tmp.path().join("real");
    std::fs::create_dir_all(&foreign)?;
    std::fs::write(foreign.join("keep.txt"), "x")?;
    cfg.category = "real".into();
    assert!(synth::generate(&cfg).is_err());
    assert!(foreign.join("keep.txt").is_file());
    Ok(())
}

#[test]
fn object_category_generates() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cfg = SynthConfig::new(tmp.path(), "cap", Kind::Object);
    cfg.size = 48;
    cfg.train = 2;
    cfg.test_good = 1;
    cfg.test_defect = 1;
    let summary = synth::generate(&cfg)?;
    assert_eq!(summary.test_defect.len(), DefectKind::ALL.len());
    let img = image::open(summary.root.join("test/crack/000.png"))?;
    assert_eq!((img.width(), img.height()), (48, 48));
    Ok(())
}

/// `host data fg-masks` on generated categories: a mask per training image named by its stem, the size
/// of the image; the round part of an object category is found on every image (and is neither a
/// sliver nor the whole frame), a woven texture gets whole-image masks.
#[test]
fn foreground_masks_find_object_parts_not_textures() -> anyhow::Result<()> {
    use host::data::foreground::write_masks;
    let tmp = tempfile::tempdir()?;
    for (name, kind) in [("part", Kind::Object), ("weave", Kind::Texture)] {
        let mut cfg = SynthConfig::new(tmp.path(), name, kind);
        cfg.size = 128;
        cfg.train = 4;
        cfg.test_good = 1;
        cfg.test_defect = 1;
        cfg.defects = vec![DefectKind::Hole];
        synth::generate(&cfg)?;
        let out = tmp.path().join("fg").join(name);
        let s = write_masks(&tmp.path().join(name), &out, false)?;
        assert_eq!(count_png(&out)?, 4);
        for f in std::fs::read_dir(tmp.path().join(name).join("train/good"))? {
            let f = f?.path();
            let stem = f.file_stem().context("stem")?;
            let mask = image::open(out.join(stem).with_extension("png"))?.to_luma8();
            assert_eq!(mask.dimensions(), image::image_dimensions(&f)?);
        }
        match kind {
            Kind::Object => {
                assert!(s.objects, "{name}: {s:?}");
                assert_eq!((s.parts.len(), s.whole), (4, 0), "{name}: {s:?}");
                assert!(s.parts.iter().all(|&f| (0.05..0.9).contains(&f)), "{name}: {s:?}");
            }
            Kind::Texture => {
                assert!(!s.objects, "{name}: {s:?}");
                assert_eq!(s.whole, 4, "{name}: {s:?}");
                let any = std::fs::read_dir(&out)?.next().context("a mask")??.path();
                let mask = image::open(any)?.to_luma8();
                assert!(mask.pixels().all(|p| p[0] == 255), "{name}: whole-image masks");
            }
        }
    }
    Ok(())
}
