//! Unit tests of the manifest module.
use super::checksum::hex;
use super::*;

#[test]
fn hex_and_model_id() {
    assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
    let sha = "0123456789abcdef".repeat(4);
    let m = Manifest {
        schema_version: SCHEMA_VERSION,
        model_kind: ModelKind::Classifier,
        architecture: "tinyvit_21m_512".into(),
        backbone: String::new(),
        input: PreprocessConfig::default(),
        classes: vec![],
        outputs: vec![],
        score_normalisation: ScoreNormalisation::default(),
        threshold: Threshold {
            value: 0.5,
            method: String::new(),
            details: Default::default(),
            range: None,
        },
        anomaly_map: None,
        files: Files {
            fp32: FileRef { path: "m.onnx".into(), sha256: sha },
            int8: None,
            golden: None,
        },
        metrics: None,
        provenance: Provenance::default(),
    };
    assert_eq!(m.model_id(), "0123456789abcdef");
    assert_eq!(m.model_id_bytes(), [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
    assert!(m.validate(Path::new("x/manifest.json")).is_ok());
}

#[test]
fn score_normalisation() {
    let n = ScoreNormalisation { kind: ScoreNormKind::MinMax, lo: 2.0, hi: 4.0 };
    assert_eq!(n.apply(3.0), 0.5);
    let s = ScoreNormalisation { kind: ScoreNormKind::Sigmoid, ..n };
    assert_eq!(s.apply(0.0), 0.5);
    assert_eq!(ScoreNormalisation::default().apply(7.0), 7.0);
}
