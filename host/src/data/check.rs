//! `host data check`: decodes every image and mask of a category, lists what is wrong with paths, and
//! shows the counts of both split protocols.
//!
//! Errors (each string starts with the offending file or folder): missing `train/good`, `test` or
//! `test/good` folders, an empty `train/good`, images or masks that do not decode, masks without a
//! defect image, defect images without a mask in a defect type that has masks, and masks whose size
//! differs from their image's. Warnings: empty masks, more than one image size, no defect types, a
//! category or defect type without any mask (image labels only: the warning says which pixel metrics
//! will be absent). Problems never abort the scan.
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::category::Category;
use crate::data::split::{Split, SplitCounts};
use crate::Result;

/// Split counts of both protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// Anomaly-detection protocol.
    pub ad: SplitCounts,
    /// Classifier protocol (train abnormals counted after the x4 rotation).
    pub classifier: SplitCounts,
}

/// Result of [`check`]; serialises to the `host data check --json` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Category name.
    pub category: String,
    /// Category folder.
    pub root: PathBuf,
    /// Seed of the splits.
    pub seed: u64,
    /// `train/good` images.
    pub train_good: usize,
    /// `test/good` images.
    pub test_good: usize,
    /// Defect type -> number of test images.
    pub test_defect: BTreeMap<String, usize>,
    /// Defect images over all types.
    pub defect_images: usize,
    /// Mask files found (matched or not).
    pub masks: usize,
    /// `"WxH"` -> number of images (masks not included) of that size.
    pub image_sizes: BTreeMap<String, usize>,
    /// Problems that make the category unusable as is, each naming its file.
    pub errors: Vec<String>,
    /// Suspicious things that do not block use.
    pub warnings: Vec<String>,
    /// Split counts for `seed`.
    pub splits: Splits,
}

impl CheckReport {
    /// No errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What decoding one file found.
#[derive(Debug, Clone, Copy)]
struct Decoded {
    width: u32,
    height: u32,
    any_nonzero: bool,
}

fn decode(path: &Path, want_pixels: bool) -> std::result::Result<Decoded, String> {
    let reader = image::ImageReader::open(path).map_err(|e| e.to_string())?;
    let reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    let any_nonzero = want_pixels && img.to_luma8().as_raw().iter().any(|&v| v > 0);
    Ok(Decoded { width: img.width(), height: img.height(), any_nonzero })
}

/// Decodes `files` (path, is-mask) on all cores.
fn decode_all(files: &[(PathBuf, bool)]) -> HashMap<PathBuf, std::result::Result<Decoded, String>> {
    let threads =
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
    let mut out = HashMap::with_capacity(files.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    files
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|(p, is_mask)| (p.clone(), decode(p, *is_mask)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            match h.join() {
                Ok(results) => out.extend(results),
                Err(_) => {
                    for (p, _) in files.iter().skip(t).step_by(threads) {
                        out.insert(p.clone(), Err("decoder panicked".into()));
                    }
                }
            }
        }
    });
    out
}

/// Scans and validates the category at `root` and computes both splits with `seed`. Fails only when
/// `root` is not a readable folder; everything else ends up in [`CheckReport::errors`] or
/// [`CheckReport::warnings`].
pub fn check(root: &Path, seed: u64) -> Result<CheckReport> {
    let cat = Category::open(root)?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for m in &cat.missing {
        errors.push(format!("{}: missing folder", m.display()));
    }
    let train_dir = cat.root.join("train").join("good");
    if cat.train_good.is_empty() && train_dir.is_dir() {
        errors.push(format!("{}: no images", train_dir.display()));
    }
    if cat.defects.is_empty() {
        warnings.push(format!(
            "{}: no defect types (no folders besides test/good)",
            cat.root.join("test").display()
        ));
    }

    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    files.extend(cat.train_good.iter().chain(&cat.test_good).map(|p| (p.clone(), false)));
    for d in cat.defects.values().flatten() {
        files.push((d.image.clone(), false));
        if let Some(m) = &d.mask {
            files.push((m.clone(), true));
        }
    }
    files.extend(cat.orphan_masks.iter().map(|p| (p.clone(), true)));
    let decoded = decode_all(&files);

    let mut image_sizes: BTreeMap<String, usize> = BTreeMap::new();
    for (path, is_mask) in &files {
        match decoded.get(path) {
            Some(Ok(d)) => {
                if *is_mask {
                    if !d.any_nonzero {
                        warnings.push(format!("{}: mask is empty (all zero)", path.display()));
                    }
                } else {
                    *image_sizes.entry(format!("{}x{}", d.width, d.height)).or_default() += 1;
                }
            }
            Some(Err(e)) => errors.push(format!("{}: cannot decode: {e}", path.display())),
            None => errors.push(format!("{}: not decoded", path.display())),
        }
    }
    if image_sizes.len() > 1 {
        warnings.push(format!(
            "{}: images have different sizes: {}",
            cat.root.display(),
            size_summary(&image_sizes)
        ));
    }

    // Image-level labels only (no masks at all, or none for a defect type) are common on real lines:
    // a warning that says which pixel metrics will be absent, not an error. A type with some masks
    // but not all is an error per missing mask (most likely a misnamed file).
    let masked_types: Vec<&String> = cat
        .defects
        .iter()
        .filter(|(_, l)| l.iter().any(|d| d.mask.is_some()))
        .map(|(t, _)| t)
        .collect();
    if !cat.defects.is_empty() && masked_types.is_empty() {
        warnings.push(format!(
            "{}: no defect image has a mask: pixel AUROC and AUPRO will be null (image metrics only)",
            cat.root.display()
        ));
    } else {
        for (ty, list) in &cat.defects {
            if !list.is_empty() && list.iter().all(|d| d.mask.is_none()) {
                warnings.push(format!(
                    "{}: defect type `{ty}` has no masks: its {} images are left out of pixel AUROC \
                     and AUPRO (image metrics include them)",
                    cat.root.join("test").join(ty).display(),
                    list.len()
                ));
            }
        }
    }
    for (ty, list) in &cat.defects {
        if !masked_types.contains(&ty) {
            continue;
        }
        for d in list {
            let Some(mask) = &d.mask else {
                let stem = d
                    .image
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let expected =
                    cat.root.join("ground_truth").join(ty).join(format!("{stem}_mask.png"));
                errors.push(format!(
                    "{}: defect image without a mask (expected {})",
                    d.image.display(),
                    expected.display()
                ));
                continue;
            };
            if let (Some(Ok(i)), Some(Ok(m))) = (decoded.get(&d.image), decoded.get(mask)) {
                if (i.width, i.height) != (m.width, m.height) {
                    errors.push(format!(
                        "{}: mask is {}x{} but its image {} is {}x{}",
                        mask.display(),
                        m.width,
                        m.height,
                        d.image.display(),
                        i.width,
                        i.height
                    ));
                }
            }
        }
    }
    for m in &cat.orphan_masks {
        errors.push(format!("{}: mask without a defect image", m.display()));
    }

    let splits = Splits {
        ad: Split::anomaly_detection(&cat, seed).counts(),
        classifier: Split::classifier(&cat, seed, None)?.counts(),
    };
    Ok(CheckReport {
        category: cat.name.clone(),
        root: cat.root.clone(),
        seed,
        train_good: cat.train_good.len(),
        test_good: cat.test_good.len(),
        test_defect: cat.defects.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        defect_images: cat.defect_count(),
        masks: cat.mask_count(),
        image_sizes,
        errors,
        warnings,
        splits,
    })
}

/// Image sizes for a person: each size with its count when there are a few, otherwise the range of
/// widths and heights and the most common sizes (a real line's category can have one size per
/// image; `image_sizes` in the JSON report keeps them all).
fn size_summary(sizes: &BTreeMap<String, usize>) -> String {
    const LIST_ALL: usize = 6;
    if sizes.is_empty() {
        return "-".into();
    }
    if sizes.len() <= LIST_ALL {
        return sizes.iter().map(|(s, n)| format!("{s} ({n})")).collect::<Vec<_>>().join(", ");
    }
    let dims: Vec<(u32, u32)> = sizes
        .keys()
        .filter_map(|k| k.split_once('x'))
        .filter_map(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .collect();
    let range = |f: fn(&(u32, u32)) -> u32| {
        let lo = dims.iter().map(f).min().unwrap_or(0);
        let hi = dims.iter().map(f).max().unwrap_or(0);
        format!("{lo}-{hi}")
    };
    let mut common: Vec<(&String, &usize)> = sizes.iter().collect();
    common.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = common.iter().take(3).map(|(s, n)| format!("{s} ({n})")).collect();
    format!(
        "{} images in {} sizes, widths {} px, heights {} px; most common {}",
        sizes.values().sum::<usize>(),
        sizes.len(),
        range(|d| d.0),
        range(|d| d.1),
        top.join(", ")
    )
}

impl fmt::Display for CheckReport {
    /// The human-readable report of `host data check`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "category   {} ({})", self.category, self.root.display())?;
        writeln!(f, "train/good {:>5}", self.train_good)?;
        writeln!(f, "test/good  {:>5}", self.test_good)?;
        writeln!(
            f,
            "defects    {:>5} in {} types, {} masks",
            self.defect_images,
            self.test_defect.len(),
            self.masks
        )?;
        for (ty, n) in &self.test_defect {
            writeln!(f, "  {ty:<24} {n:>5}")?;
        }
        writeln!(f, "sizes      {}", size_summary(&self.image_sizes))?;
        writeln!(f)?;
        writeln!(f, "splits (seed {})          train           valid           test", self.seed)?;
        writeln!(f, "                      normal abnormal  normal abnormal  normal abnormal")?;
        for (name, c) in [
            ("anomaly detection", &self.splits.ad),
            ("classifier (x4 rot)", &self.splits.classifier),
        ] {
            writeln!(
                f,
                "{name:<20} {:>7} {:>8} {:>7} {:>8} {:>7} {:>8}",
                c.train_normal,
                c.train_abnormal,
                c.valid_normal,
                c.valid_abnormal,
                c.test_normal,
                c.test_abnormal
            )?;
        }
        writeln!(f)?;
        writeln!(f, "warnings   {}", self.warnings.len())?;
        for w in &self.warnings {
            writeln!(f, "  {w}")?;
        }
        writeln!(f, "errors     {}", self.errors.len())?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_sizes_are_listed_and_many_are_summarised() {
        let few: BTreeMap<String, usize> =
            [("100x200".to_string(), 3), ("512x512".to_string(), 1)].into_iter().collect();
        assert_eq!(size_summary(&few), "100x200 (3), 512x512 (1)");
        let many: BTreeMap<String, usize> = (0..40u32)
            .map(|i| (format!("{}x{}", 100 + i, 900 - i), 1 + (i == 7) as usize))
            .collect();
        let s = size_summary(&many);
        assert_eq!(
            s,
            "41 images in 40 sizes, widths 100-139 px, heights 861-900 px; most common 107x893 (2), \
             100x900 (1), 101x899 (1)"
        );
        assert_eq!(size_summary(&BTreeMap::new()), "-");
    }
}
