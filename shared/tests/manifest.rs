//! `shared::manifest`: round trip, and every error names the file concerned.
#![cfg(feature = "std")]

use std::error::Error as _;
use std::fs;
use std::path::Path;

use shared::manifest::{
    sha256_file, AnomalyMapSpec, Error, FileRef, Files, Manifest, Metrics, ModelKind, OutputSpec,
    Provenance, ScoreNormKind, ScoreNormalisation, Threshold, SCHEMA_VERSION,
};
use shared::preprocess::{PreprocessConfig, ResizeMode};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A GLASS bundle in `dir` with fp32 and int8 "models".
fn bundle(dir: &Path) -> Result<Manifest, Box<dyn std::error::Error>> {
    fs::write(dir.join("model.onnx"), b"fp32 model bytes")?;
    fs::create_dir_all(dir.join("q"))?;
    fs::write(dir.join("q/model.int8.onnx"), b"int8 model bytes")?;
    let mut details = serde_json::Map::new();
    details.insert("f1".into(), serde_json::json!(0.93));
    let mut run_metrics = serde_json::Map::new();
    run_metrics.insert("val_image_auroc".into(), serde_json::json!(0.991));
    Ok(Manifest {
        schema_version: SCHEMA_VERSION,
        model_kind: ModelKind::Glass,
        architecture: "glass".into(),
        backbone: "wide_resnet50_2".into(),
        input: PreprocessConfig::imagenet(288, 288, ResizeMode::ShorterSideThenCenterCrop),
        classes: vec![],
        outputs: vec![
            OutputSpec { name: "score".into(), shape: vec![-1], meaning: "image_score".into() },
            OutputSpec {
                name: "map".into(),
                shape: vec![-1, 36, 36],
                meaning: "patch_scores".into(),
            },
        ],
        score_normalisation: ScoreNormalisation { kind: ScoreNormKind::MinMax, lo: 0.1, hi: 0.9 },
        threshold: Threshold {
            value: 0.42,
            method: "best_f1_validation".into(),
            details,
            range: Some([0.1, 0.9]),
        },
        anomaly_map: Some(AnomalyMapSpec {
            width: 288,
            height: 288,
            blur_sigma: 4.0,
            lo: 0.0,
            hi: 1.0,
        }),
        files: Files {
            fp32: FileRef::from_file(dir, "model.onnx")?,
            int8: Some(FileRef::from_file(dir, "q/model.int8.onnx")?),
            golden: None,
        },
        metrics: Some(Metrics {
            fp32_val_auroc: Some(0.99),
            int8_val_auroc: Some(0.985),
            fp32_latency_ms: Some(41.0),
            int8_latency_ms: None,
            f16_val_auroc: Some(0.99),
            f16_verdict_agreement: Some(1.0),
            latency_device: "x86_64".into(),
            preferred: Some("fp32".into()),
        }),
        provenance: Provenance {
            dataset: "mvtec_ad".into(),
            category: "bottle".into(),
            split_seed: 42,
            epochs: 120,
            metrics: run_metrics,
            git_commit: "0123abc".into(),
            created: "2025-01-02T03:04:05Z".into(),
        },
    })
}

/// An edit applied to the saved manifest JSON.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

fn edit_json(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) -> TestResult {
    let path = dir.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
    f(&mut v);
    fs::write(&path, serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

fn assert_names(err: &Error, file: &str) {
    let msg = err.to_string();
    assert!(msg.contains(file), "error message {msg:?} does not name {file}");
}

#[test]
fn round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let m = bundle(dir.path())?;
    m.save(dir.path())?;
    let back = Manifest::load(dir.path())?;
    assert_eq!(back, m);
    assert_eq!(back.model_id(), &m.files.fp32.sha256[..16]);
    let id = back.model_id_bytes();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, back.model_id());
    assert_eq!(back.fp32_path(dir.path()), dir.path().join("model.onnx"));
    // The manifest records the SHA-256 of the fp32 bytes (`printf 'fp32 model bytes' | sha256sum`).
    assert_eq!(
        m.files.fp32.sha256,
        "a585a559a0d316e18cbb1831998d7b93e41dc00c36a44ea19383db6f99265371"
    );
    let text = fs::read_to_string(dir.path().join("manifest.json"))?;
    assert!(text.contains("\"resize_mode\": \"shorter_side_then_center_crop\""));
    assert!(text.contains("\"kind\": \"minmax\""));
    assert!(text.contains("\"model_kind\": \"glass\""));
    Ok(())
}

#[test]
fn sha256_known_vector() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("abc");
    fs::write(&p, b"abc")?;
    assert_eq!(
        sha256_file(&p)?,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    Ok(())
}

#[test]
fn unknown_fields_and_defaults_are_accepted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let m = bundle(dir.path())?;
    m.save(dir.path())?;
    edit_json(dir.path(), |v| {
        v["future_field"] = serde_json::json!({"x": 1});
        let o = v.as_object_mut().expect("object");
        o.remove("metrics");
        o.remove("provenance");
        o.remove("score_normalisation");
        v["input"].as_object_mut().expect("input").remove("mean");
    })?;
    let back = Manifest::load(dir.path())?;
    assert_eq!(back.metrics, None);
    assert_eq!(back.provenance, Provenance::default());
    assert_eq!(back.input.mean, PreprocessConfig::default().mean);
    Ok(())
}

#[test]
fn missing_manifest_and_missing_model_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let err = Manifest::load(dir.path()).expect_err("no manifest");
    assert!(matches!(err, Error::MissingFile { .. }), "{err}");
    assert_names(&err, "manifest.json");

    let m = bundle(dir.path())?;
    m.save(dir.path())?;
    fs::remove_file(dir.path().join("q/model.int8.onnx"))?;
    let err = Manifest::load(dir.path()).expect_err("missing int8");
    assert!(
        matches!(&err, Error::MissingFile { path } if path.ends_with("q/model.int8.onnx")),
        "{err}"
    );
    assert_names(&err, "model.int8.onnx");
    Ok(())
}

#[test]
fn sha_mismatch() -> TestResult {
    let dir = tempfile::tempdir()?;
    bundle(dir.path())?.save(dir.path())?;
    fs::write(dir.path().join("model.onnx"), b"tampered")?;
    let err = Manifest::load(dir.path()).expect_err("tampered");
    match &err {
        Error::ShaMismatch { path, expected, actual } => {
            assert!(path.ends_with("model.onnx"));
            assert_ne!(expected, actual);
            assert_eq!(actual.len(), 64);
        }
        other => panic!("expected ShaMismatch, got {other}"),
    }
    assert_names(&err, "model.onnx");
    Ok(())
}

#[test]
fn unknown_schema() -> TestResult {
    let dir = tempfile::tempdir()?;
    bundle(dir.path())?.save(dir.path())?;
    // A future schema may change anything else; the version is checked first.
    edit_json(dir.path(), |v| {
        v["schema_version"] = serde_json::json!(2);
        v["input"] = serde_json::json!("something new");
    })?;
    let err = Manifest::load(dir.path()).expect_err("v2");
    assert!(matches!(err, Error::UnknownSchema { found: 2, supported: 1, .. }), "{err}");
    assert_names(&err, "manifest.json");

    edit_json(dir.path(), |v| {
        v.as_object_mut().expect("object").remove("schema_version");
    })?;
    let err = Manifest::load(dir.path()).expect_err("no version");
    assert!(matches!(&err, Error::Invalid { field, .. } if field == "schema_version"), "{err}");
    Ok(())
}

#[test]
fn invalid_fields() -> TestResult {
    let dir = tempfile::tempdir()?;
    let m = bundle(dir.path())?;
    let cases: Vec<(&str, Edit)> = vec![
        ("input.std", Box::new(|v| v["input"]["std"] = serde_json::json!([0.2, 0.0, 0.2]))),
        ("input.width", Box::new(|v| v["input"]["width"] = serde_json::json!(0))),
        ("input.channels", Box::new(|v| v["input"]["channels"] = serde_json::json!(2))),
        ("threshold.value", Box::new(|v| v["threshold"]["value"] = serde_json::json!(null))),
        (
            "anomaly_map",
            Box::new(|v| {
                v.as_object_mut().expect("object").remove("anomaly_map");
            }),
        ),
        (
            "files.fp32.sha256",
            Box::new(|v| v["files"]["fp32"]["sha256"] = serde_json::json!("ABC")),
        ),
        (
            "files.int8.path",
            Box::new(|v| v["files"]["int8"]["path"] = serde_json::json!("../x.onnx")),
        ),
        (
            "score_normalisation",
            Box::new(|v| v["score_normalisation"]["hi"] = serde_json::json!(0.0)),
        ),
        (
            "files.golden.path",
            Box::new(|v| {
                v["files"]["golden"] = serde_json::json!({"path": "/etc/golden.npz",
                    "sha256": "0".repeat(64), "fp32_tolerance": 1e-3});
            }),
        ),
        (
            "files.golden.fp32_tolerance",
            Box::new(|v| {
                v["files"]["golden"] = serde_json::json!({"path": "golden.npz",
                    "sha256": "0".repeat(64), "fp32_tolerance": 1e30});
            }),
        ),
        (
            "files.golden.int8_tolerance",
            Box::new(|v| {
                v["files"]["golden"] = serde_json::json!({"path": "golden.npz",
                    "sha256": "0".repeat(64), "fp32_tolerance": 1e-3, "int8_tolerance": -1.0});
            }),
        ),
        (
            "files.golden.f16_tolerance",
            Box::new(|v| {
                v["files"]["golden"] = serde_json::json!({"path": "golden.npz",
                    "sha256": "0".repeat(64), "fp32_tolerance": 1e-3, "f16_tolerance": 1e9});
            }),
        ),
    ];
    for (field, edit) in cases {
        m.save(dir.path())?;
        edit_json(dir.path(), edit)?;
        let err = Manifest::load(dir.path()).expect_err(field);
        assert_names(&err, "manifest.json");
        match &err {
            Error::Invalid { field: f, .. } => assert_eq!(f, field, "{err}"),
            // A null threshold does not decode as f32: a JSON error, still naming the file.
            Error::Json { .. } if field == "threshold.value" => {}
            other => panic!("{field}: expected Invalid, got {other}"),
        }
    }
    Ok(())
}

#[test]
fn truncated_json() -> TestResult {
    let dir = tempfile::tempdir()?;
    bundle(dir.path())?.save(dir.path())?;
    let path = dir.path().join("manifest.json");
    let text = fs::read_to_string(&path)?;
    fs::write(&path, &text[..text.len() / 2])?;
    let err = Manifest::load(dir.path()).expect_err("truncated");
    assert!(matches!(err, Error::Json { .. }), "{err}");
    assert!(err.source().is_some());
    assert_names(&err, "manifest.json");
    // Wrong-length mean: a decoding error that names the file and the problem.
    bundle(dir.path())?.save(dir.path())?;
    edit_json(dir.path(), |v| v["input"]["mean"] = serde_json::json!([0.5, 0.5]))?;
    let err = Manifest::load(dir.path()).expect_err("short mean");
    assert!(matches!(err, Error::Json { .. }), "{err}");
    assert!(err.to_string().contains("length"), "{err}");
    Ok(())
}
