//! One category of an MVTec-AD-layout dataset, as found on disk.
//!
//! ```text
//! <category>/train/good/*.png                  normal training images
//! <category>/test/good/*.png                   normal test images
//! <category>/test/<defect>/NNN.png             defect images, one folder per defect type
//! <category>/ground_truth/<defect>/NNN_mask.png  their masks (0 = normal, >0 = defect)
//! ```
//!
//! Images are files with one of [`IMAGE_EXTENSIONS`] (any case), hidden files are skipped, and every
//! list is sorted by file name. Scanning only lists files; it decodes nothing (see
//! [`crate::data::check`] for that).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// File extensions (lower case, without the dot) that count as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// The suffix of a mask's file stem: `000.png` has the mask `000_mask.png`.
pub const MASK_SUFFIX: &str = "_mask";

/// Whether `path` has an image extension (case-insensitive).
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A defect image and its ground-truth mask, if one was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefectImage {
    /// `test/<defect>/NNN.png`.
    pub image: PathBuf,
    /// `ground_truth/<defect>/NNN_mask.*`, or `None` when it is missing.
    pub mask: Option<PathBuf>,
}

/// The files of one category. Paths are `root` joined with the relative path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// The category folder.
    pub root: PathBuf,
    /// Its name (the folder's name).
    pub name: String,
    /// `train/good` images, sorted by file name.
    pub train_good: Vec<PathBuf>,
    /// `test/good` images, sorted by file name.
    pub test_good: Vec<PathBuf>,
    /// Defect type (folder under `test/`, except `good`) -> its images sorted by file name.
    pub defects: BTreeMap<String, Vec<DefectImage>>,
    /// Mask files that belong to no defect image (no image with that stem, or a second mask for the
    /// same image), sorted.
    pub orphan_masks: Vec<PathBuf>,
    /// Expected folders (`train/good`, `test`, `test/good`) that do not exist.
    pub missing: Vec<PathBuf>,
}

impl Category {
    /// Scans the category folder `root`. Fails only when `root` is not a readable folder; missing
    /// sub-folders end up in [`Category::missing`] and missing masks as `mask: None`.
    pub fn open(root: impl AsRef<Path>) -> Result<Category> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::Dataset { path: root, msg: "not a folder".into() });
        }
        let name = root
            .canonicalize()
            .ok()
            .as_deref()
            .and_then(Path::file_name)
            .or_else(|| root.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        let mut missing = Vec::new();
        let mut list_or_missing = |dir: PathBuf| -> Result<Vec<PathBuf>> {
            if dir.is_dir() {
                list_images(&dir)
            } else {
                missing.push(dir);
                Ok(Vec::new())
            }
        };
        let train_good = list_or_missing(root.join("train").join("good"))?;
        let test_dir = root.join("test");
        let test_good = if test_dir.is_dir() {
            list_or_missing(test_dir.join("good"))?
        } else {
            missing.push(test_dir.clone());
            Vec::new()
        };

        let mut defects = BTreeMap::new();
        let mut orphan_masks = Vec::new();
        let gt_dir = root.join("ground_truth");
        let mut defect_types: Vec<String> = Vec::new();
        if test_dir.is_dir() {
            for dir in list_dirs(&test_dir)? {
                let ty = file_name(&dir);
                if ty != "good" {
                    defect_types.push(ty);
                }
            }
        }
        for ty in &defect_types {
            let images = list_images(&test_dir.join(ty))?;
            let mut masks: BTreeMap<String, PathBuf> = BTreeMap::new();
            let ty_gt = gt_dir.join(ty);
            if ty_gt.is_dir() {
                for mask in list_images(&ty_gt)? {
                    match masks.entry(mask_key(&mask)) {
                        std::collections::btree_map::Entry::Occupied(_) => orphan_masks.push(mask),
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(mask);
                        }
                    }
                }
            }
            let mut list = Vec::with_capacity(images.len());
            for image in images {
                let mask = masks.remove(&stem(&image));
                list.push(DefectImage { image, mask });
            }
            orphan_masks.extend(masks.into_values());
            defects.insert(ty.clone(), list);
        }
        // Mask folders of defect types that have no test folder at all.
        if gt_dir.is_dir() {
            for dir in list_dirs(&gt_dir)? {
                if !defect_types.contains(&file_name(&dir)) {
                    orphan_masks.extend(list_images(&dir)?);
                }
            }
        }
        orphan_masks.sort();
        Ok(Category { root, name, train_good, test_good, defects, orphan_masks, missing })
    }

    /// Defect type names, sorted.
    pub fn defect_types(&self) -> Vec<String> {
        self.defects.keys().cloned().collect()
    }

    /// Number of defect images over all types.
    pub fn defect_count(&self) -> usize {
        self.defects.values().map(Vec::len).sum()
    }

    /// Number of mask files found: the matched ones plus [`Category::orphan_masks`].
    pub fn mask_count(&self) -> usize {
        self.defects.values().flatten().filter(|d| d.mask.is_some()).count()
            + self.orphan_masks.len()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The image stem a mask belongs to: `000_mask.png` -> `000` (a stem without the suffix is kept).
fn mask_key(mask: &Path) -> String {
    let s = stem(mask);
    s.strip_suffix(MASK_SUFFIX).map(str::to_owned).unwrap_or(s)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !is_hidden(&path) {
            out.push(path);
        }
    }
    out.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
    Ok(out)
}

/// The image files directly in `dir`, sorted by file name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(read_dir_sorted(dir)?.into_iter().filter(|p| p.is_file() && is_image_file(p)).collect())
}

fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(read_dir_sorted(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_extensions_are_case_insensitive() {
        assert!(is_image_file(Path::new("a/b.PNG")));
        assert!(is_image_file(Path::new("b.tiff")));
        assert!(!is_image_file(Path::new("b.txt")));
        assert!(!is_image_file(Path::new("png")));
    }

    #[test]
    fn mask_key_strips_suffix() {
        assert_eq!(mask_key(Path::new("x/012_mask.png")), "012");
        assert_eq!(mask_key(Path::new("x/012.png")), "012");
    }
}
