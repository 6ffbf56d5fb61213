//! `host data check`: a clean generated category, a deliberately broken one, the CLI's JSON and exit
//! code, and (when present) the real MVTec AD bottle category.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use host::data::check;
use host::data::synth::{self, DefectKind, Kind, SynthConfig};

fn small_category(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let mut cfg = SynthConfig::new(dir, name, Kind::Object);
    cfg.size = 40;
    cfg.train = 4;
    cfg.test_good = 4;
    cfg.test_defect = 3;
    cfg.defects = vec![DefectKind::Hole, DefectKind::Scratch, DefectKind::Color];
    Ok(synth::generate(&cfg).context("generating the test category")?.root)
}

fn has_error(errors: &[String], path: &Path, what: &str) -> bool {
    let p = path.display().to_string();
    errors.iter().any(|e| e.starts_with(&p) && e.contains(what))
}

#[test]
fn clean_generated_category() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = small_category(tmp.path(), "cap")?;
    let r = check(&root, 0)?;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.category, "cap");
    assert_eq!((r.train_good, r.test_good, r.defect_images, r.masks), (4, 4, 9, 9));
    assert_eq!(r.test_defect.values().copied().collect::<Vec<_>>(), [3, 3, 3]);
    assert_eq!(r.image_sizes.get("40x40"), Some(&17));
    let (ad, cls) = (r.splits.ad, r.splits.classifier);
    assert_eq!((ad.train_normal, ad.valid_normal, ad.test_normal), (4, 2, 2));
    assert_eq!((ad.valid_abnormal, ad.test_abnormal), (3, 6));
    // 3 per type -> classifier 2/1/0.
    assert_eq!((cls.train_abnormal, cls.valid_abnormal, cls.test_abnormal), (3 * 2 * 4, 3, 0));

    let json = serde_json::to_value(&r)?;
    for key in ["train_good", "test_good", "test_defect", "masks", "errors"] {
        assert!(json.get(key).is_some(), "JSON lacks {key}");
    }
    for proto in ["ad", "classifier"] {
        for key in [
            "train_normal",
            "train_abnormal",
            "valid_normal",
            "valid_abnormal",
            "test_normal",
            "test_abnormal",
        ] {
            assert!(json["splits"][proto][key].is_u64(), "JSON lacks splits.{proto}.{key}");
        }
    }
    Ok(())
}

/// Breaks a generated category in the four ways the check must report.
fn break_category(root: &Path) -> anyhow::Result<[PathBuf; 4]> {
    let corrupt = root.join("test/good/001.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nthis is not a png")?;
    let orphan = root.join("ground_truth/hole/007_mask.png");
    std::fs::copy(root.join("ground_truth/hole/000_mask.png"), &orphan)?;
    let unmasked = root.join("test/scratch/002.png");
    std::fs::remove_file(root.join("ground_truth/scratch/002_mask.png"))?;
    let mismatched = root.join("ground_truth/color/001_mask.png");
    image::GrayImage::new(20, 40).save(&mismatched)?;
    Ok([corrupt, orphan, unmasked, mismatched])
}

#[test]
fn broken_category_lists_every_problem() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = small_category(tmp.path(), "broken")?;
    let [corrupt, orphan, unmasked, mismatched] = break_category(&root)?;
    let r = check(&root, 0)?;
    assert!(has_error(&r.errors, &corrupt, "cannot decode"), "{:#?}", r.errors);
    assert!(has_error(&r.errors, &orphan, "mask without a defect image"), "{:#?}", r.errors);
    assert!(has_error(&r.errors, &unmasked, "without a mask"), "{:#?}", r.errors);
    assert!(has_error(&r.errors, &mismatched, "20x40"), "{:#?}", r.errors);
    assert_eq!(r.errors.len(), 4, "{:#?}", r.errors);
    // Problems do not stop the scan: the counts are still there.
    assert_eq!((r.train_good, r.test_good, r.defect_images, r.masks), (4, 4, 9, 9));
    Ok(())
}

#[test]
fn missing_folders_are_errors() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("empty");
    std::fs::create_dir_all(root.join("test"))?;
    let r = check(&root, 0)?;
    assert!(
        has_error(&r.errors, &root.join("train").join("good"), "missing folder"),
        "{:?}",
        r.errors
    );
    assert!(
        has_error(&r.errors, &root.join("test").join("good"), "missing folder"),
        "{:?}",
        r.errors
    );
    assert!(check(&tmp.path().join("does-not-exist"), 0).is_err());
    Ok(())
}

#[test]
fn cli_json_and_exit_code() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = small_category(tmp.path(), "cli")?;
    let run = |root: &Path| -> anyhow::Result<(Option<i32>, serde_json::Value)> {
        let out = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["data", "check", "--json", "--seed", "3", "--data"])
            .arg(root)
            .output()
            .context("running host data check")?;
        let json = serde_json::from_slice(&out.stdout).with_context(|| {
            format!("stdout is one JSON object: {}", String::from_utf8_lossy(&out.stdout))
        })?;
        Ok((out.status.code(), json))
    };
    let (code, json) = run(&root)?;
    assert_eq!(code, Some(0));
    assert_eq!(json["seed"], 3);
    assert_eq!(json["test_defect"]["hole"], 3);
    break_category(&root)?;
    let (code, json) = run(&root)?;
    assert_eq!(code, Some(1), "errors give exit code 1");
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(4));
    Ok(())
}

#[test]
fn mvtec_bottle_if_present() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/mvtec_ad/bottle");
    if !root.is_dir() {
        e2e::skip(
            "data_check::mvtec_bottle_if_present",
            &format!("{} not found (the shared evaluation data is absent)", root.display()),
        );
        return Ok(());
    }
    let r = check(&root, 0)?;
    assert!(r.errors.is_empty(), "{:#?}", r.errors);
    assert_eq!((r.train_good, r.test_good, r.defect_images, r.masks), (209, 20, 63, 63));
    assert_eq!((r.splits.ad.valid_normal, r.splits.ad.test_normal), (10, 10));
    assert_eq!((r.splits.ad.valid_abnormal, r.splits.ad.test_abnormal), (31, 32));
    assert_eq!(
        (
            r.splits.classifier.train_abnormal,
            r.splits.classifier.valid_abnormal,
            r.splits.classifier.test_abnormal
        ),
        (128, 16, 15)
    );
    Ok(())
}
