//! The two split protocols of the experiment protocol (docs/experiment-protocol.md), exactly and
//! reproducibly.
//!
//! | | train | valid | test |
//! |---|---|---|---|
//! | anomaly detection (AD), normal | all of `train/good` | 50% of `test/good` | the other 50% |
//! | AD, abnormal | none | 50% of each defect type | the other 50% |
//! | classifier, normal | all of `train/good` | the same valid half as AD | the same test half as AD |
//! | classifier, abnormal | 50% of each defect type, x4 by rotation 0/90/180/270 | 25% | 25% |
//!
//! # Algorithm (this is the contract; changing it changes every reported number)
//!
//! * **Shuffle**: Fisher-Yates from the last index down; the index for position `i` is drawn as
//!   `next_u64() % (i + 1)` with rejection of the biased tail (see `shuffle`). It only uses
//!   `RngCore::next_u64` of `ChaCha8Rng`, whose stream is fixed by `rand_chacha`, so splits do not change
//!   with the `rand` version.
//! * **Normals**: `test/good` sorted by file name, shuffled with `ChaCha8Rng::seed_from_u64(seed)`.
//!   The first `floor(n/2)` go to valid, the rest to test, for both protocols.
//! * **Defects**: per defect type, in sorted order of type names, the type's images sorted by file
//!   name are shuffled with `ChaCha8Rng::seed_from_u64(seed ^ fnv1a64(type name))`. Adding or removing
//!   a type therefore leaves the other types' splits unchanged.
//!   * AD: the first `floor(n/2)` of the shuffled list -> valid, the rest -> test.
//!   * Classifier: along the *same* shuffled list, the first `round(n/2)` -> train (each image four
//!     times, rotated 0/90/180/270 degrees clockwise), the next `round(n/4)` -> valid, the rest -> test
//!     (rounding half up). Since `round(n/2) >= floor(n/2)`, the classifier's test abnormals are a subset of
//!     the AD test abnormals, so both models are scored on shared images.
//! * `train/good`: all to train (rotation 0) for both protocols, in file-name order.
//! * **Unseen defect types** (experiment 3, [`SplitConfig::train_defects`]): only the listed types go to
//!   the classifier's train and valid. Every type, listed or not, keeps exactly its classifier test
//!   images (the last quarter of its shuffled list), so recall per unseen type is measured on the same
//!   images as in the full protocol; the other 75% of an unseen type's images are not used.
//!
//! Item order inside each part: normals first, then defect types in sorted order, each in shuffled
//! order (rotations of one image next to each other).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::DynamicImage;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::category::{Category, DefectImage};
use crate::{Error, Result};

/// Ground-truth label of an item. Positive = abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// A good part.
    Normal,
    /// A part with a defect.
    Abnormal,
}

/// Rotation applied to an item's image (and mask) before use, clockwise. Serialised as degrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
pub enum Rotation {
    /// As stored.
    #[default]
    R0,
    /// 90 degrees clockwise.
    R90,
    /// 180 degrees.
    R180,
    /// 270 degrees clockwise.
    R270,
}

impl Rotation {
    /// The four rotations of the classifier's augmentation, in order.
    pub const ALL: [Rotation; 4] = [Rotation::R0, Rotation::R90, Rotation::R180, Rotation::R270];

    /// Clockwise degrees: 0, 90, 180 or 270.
    pub fn degrees(self) -> u16 {
        match self {
            Rotation::R0 => 0,
            Rotation::R90 => 90,
            Rotation::R180 => 180,
            Rotation::R270 => 270,
        }
    }

    /// Rotates `img` clockwise by this rotation (apply it to the image and its mask alike).
    pub fn apply(self, img: &DynamicImage) -> DynamicImage {
        match self {
            Rotation::R0 => img.clone(),
            Rotation::R90 => img.rotate90(),
            Rotation::R180 => img.rotate180(),
            Rotation::R270 => img.rotate270(),
        }
    }
}

impl From<Rotation> for u16 {
    fn from(r: Rotation) -> u16 {
        r.degrees()
    }
}

impl TryFrom<u16> for Rotation {
    type Error = String;
    fn try_from(deg: u16) -> std::result::Result<Self, String> {
        match deg {
            0 => Ok(Rotation::R0),
            90 => Ok(Rotation::R90),
            180 => Ok(Rotation::R180),
            270 => Ok(Rotation::R270),
            other => Err(format!("rotation must be 0, 90, 180 or 270, not {other}")),
        }
    }
}

/// One sample of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The image file.
    pub image: PathBuf,
    /// Normal or abnormal.
    pub label: Label,
    /// The defect type (`test/<defect>` folder name) for abnormal items.
    pub defect: Option<String>,
    /// The ground-truth mask, when the item is abnormal and has one.
    pub mask: Option<PathBuf>,
    /// Rotation to apply to image and mask ([`Rotation::R0`] except classifier train abnormals).
    pub rotation: Rotation,
}

impl Item {
    fn normal(image: &Path) -> Item {
        Item {
            image: image.to_path_buf(),
            label: Label::Normal,
            defect: None,
            mask: None,
            rotation: Rotation::R0,
        }
    }

    fn abnormal(ty: &str, d: &DefectImage, rotation: Rotation) -> Item {
        Item {
            image: d.image.clone(),
            label: Label::Abnormal,
            defect: Some(ty.to_owned()),
            mask: d.mask.clone(),
            rotation,
        }
    }
}

/// Which of the two protocols a split follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Anomaly detection (GLASS): no abnormal training images.
    AnomalyDetection,
    /// Supervised normal/abnormal classifier (TinyViT).
    Classifier,
}

/// Split parameters; a run writes them next to its outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Seed of all shuffles.
    #[serde(default)]
    pub seed: u64,
    /// Classifier only: the defect types allowed in train and valid (experiment 3). `None` = all.
    #[serde(default)]
    pub train_defects: Option<Vec<String>>,
}

/// Item counts of a split, by part and label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    /// Normal training items.
    pub train_normal: usize,
    /// Abnormal training items (classifier: after the x4 rotation augmentation).
    pub train_abnormal: usize,
    /// Normal validation items.
    pub valid_normal: usize,
    /// Abnormal validation items.
    pub valid_abnormal: usize,
    /// Normal test items.
    pub test_normal: usize,
    /// Abnormal test items.
    pub test_abnormal: usize,
}

/// A train/valid/test split of one category under one protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The protocol it follows.
    pub protocol: Protocol,
    /// The parameters it was made with.
    pub config: SplitConfig,
    /// Training items.
    pub train: Vec<Item>,
    /// Validation items (early stopping, threshold choice).
    pub valid: Vec<Item>,
    /// Test items (reported numbers).
    pub test: Vec<Item>,
}

impl Split {
    /// Splits `category` under `protocol`. Fails when `config.train_defects` names an unknown defect type
    /// or is empty, or is given for the AD protocol.
    pub fn new(category: &Category, protocol: Protocol, config: &SplitConfig) -> Result<Split> {
        if let Some(types) = &config.train_defects {
            let fail = |msg: String| Err(Error::Dataset { path: category.root.clone(), msg });
            if protocol == Protocol::AnomalyDetection {
                return fail("train_defects only applies to the classifier protocol".into());
            }
            if types.is_empty() {
                return fail("train_defects is empty".into());
            }
            for t in types {
                if !category.defects.contains_key(t) {
                    let known = category.defect_types().join(", ");
                    return fail(format!(
                        "unknown defect type {t:?} in train_defects (known: {known})"
                    ));
                }
            }
        }
        Ok(Split::build(category, protocol, config))
    }

    /// [`Split::new`] after validation: cannot fail.
    fn build(category: &Category, protocol: Protocol, config: &SplitConfig) -> Split {
        let mut split = Split {
            protocol,
            config: config.clone(),
            train: category.train_good.iter().map(|p| Item::normal(p)).collect(),
            valid: Vec::new(),
            test: Vec::new(),
        };

        let normals = shuffled(&category.test_good, config.seed);
        let half = normals.len() / 2;
        split.valid.extend(normals[..half].iter().map(|p| Item::normal(p)));
        split.test.extend(normals[half..].iter().map(|p| Item::normal(p)));

        for (ty, images) in &category.defects {
            let list = shuffled(images, config.seed ^ fnv1a64(ty.as_bytes()));
            let n = list.len();
            match protocol {
                Protocol::AnomalyDetection => {
                    let v = n / 2;
                    let ab = |d: &DefectImage| Item::abnormal(ty, d, Rotation::R0);
                    split.valid.extend(list[..v].iter().map(ab));
                    split.test.extend(list[v..].iter().map(ab));
                }
                Protocol::Classifier => {
                    let (t, v) = classifier_counts(n);
                    let seen = config.train_defects.as_ref().is_none_or(|s| s.contains(ty));
                    if seen {
                        for d in &list[..t] {
                            split
                                .train
                                .extend(Rotation::ALL.iter().map(|&r| Item::abnormal(ty, d, r)));
                        }
                        split.valid.extend(
                            list[t..t + v].iter().map(|d| Item::abnormal(ty, d, Rotation::R0)),
                        );
                    }
                    split
                        .test
                        .extend(list[t + v..].iter().map(|d| Item::abnormal(ty, d, Rotation::R0)));
                }
            }
        }
        split
    }

    /// The anomaly-detection split of `category` with `seed`.
    pub fn anomaly_detection(category: &Category, seed: u64) -> Split {
        Split::build(
            category,
            Protocol::AnomalyDetection,
            &SplitConfig { seed, train_defects: None },
        )
    }

    /// The classifier split of `category` with `seed`; `train_defects` restricts the defect types
    /// of train and valid (experiment 3).
    pub fn classifier(
        category: &Category,
        seed: u64,
        train_defects: Option<&[String]>,
    ) -> Result<Split> {
        let config = SplitConfig { seed, train_defects: train_defects.map(<[String]>::to_vec) };
        Split::new(category, Protocol::Classifier, &config)
    }

    /// Item counts by part and label.
    pub fn counts(&self) -> SplitCounts {
        let count =
            |items: &[Item], label: Label| items.iter().filter(|i| i.label == label).count();
        SplitCounts {
            train_normal: count(&self.train, Label::Normal),
            train_abnormal: count(&self.train, Label::Abnormal),
            valid_normal: count(&self.valid, Label::Normal),
            valid_abnormal: count(&self.valid, Label::Abnormal),
            test_normal: count(&self.test, Label::Normal),
            test_abnormal: count(&self.test, Label::Abnormal),
        }
    }

    /// Abnormal test items per defect type (for recall per type).
    pub fn test_by_defect(&self) -> BTreeMap<String, Vec<&Item>> {
        let mut out: BTreeMap<String, Vec<&Item>> = BTreeMap::new();
        for item in &self.test {
            if let Some(ty) = &item.defect {
                out.entry(ty.clone()).or_default().push(item);
            }
        }
        out
    }
}

/// Classifier train and valid counts of a defect type with `n` images: `round(n/2)`, `round(n/4)`,
/// rounding half up; test gets the rest.
pub fn classifier_counts(n: usize) -> (usize, usize) {
    (n.div_ceil(2), (n + 2) / 4)
}

/// FNV-1a, 64 bit: mixes a defect type's name into the seed of its shuffle.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A copy of `items` shuffled by [`shuffle`] with `ChaCha8Rng::seed_from_u64(seed)`.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    shuffle(&mut v, &mut ChaCha8Rng::seed_from_u64(seed));
    v
}

/// Fisher-Yates shuffle that depends only on `rng.next_u64()` (not on `rand`'s range sampling, whose
/// algorithm may change between versions).
pub fn shuffle<T>(items: &mut [T], rng: &mut impl RngCore) {
    for i in (1..items.len()).rev() {
        let bound = i as u64 + 1;
        // Reject the top `2^64 mod bound` values so every index is equally likely.
        let zone = u64::MAX - (u64::MAX % bound + 1) % bound;
        let j = loop {
            let x = rng.next_u64();
            if x <= zone {
                break x % bound;
            }
        };
        items.swap(i, j as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_counts_round_half_up() {
        assert_eq!(classifier_counts(20), (10, 5));
        assert_eq!(classifier_counts(21), (11, 5));
        assert_eq!(classifier_counts(22), (11, 6));
        assert_eq!(classifier_counts(1), (1, 0));
        assert_eq!(classifier_counts(0), (0, 0));
        for n in 0..200 {
            let (t, v) = classifier_counts(n);
            assert!(t + v <= n && t >= n / 2, "n={n}");
        }
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..50).collect();
        shuffle(&mut v, &mut ChaCha8Rng::seed_from_u64(3));
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn rotation_serde_as_degrees() {
        assert_eq!(serde_json::to_string(&Rotation::R270).ok().as_deref(), Some("270"));
        assert!(serde_json::from_str::<Rotation>("45").is_err());
    }
}
