//! `device inspect` as a line integrator's script calls it: exit code 0 (all pass) / 1 (any fail) / 2
//! (error), one JSON line per image; a missing, damaged or tampered bundle is exit 2 with a message that
//! names the file, never a panic.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::demo;

fn inspect(bundle: &Path, images: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_device"))
        .arg("inspect")
        .arg("--model")
        .arg(bundle)
        .args(images)
        .output()
        .expect("running the device binary")
}

fn samples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(demo().join("samples"))
        .expect("models/demo/samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    v
}

fn copy_bundle(dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(demo()).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn demo_bundle_gives_one_json_line_per_image_and_a_verdict_exit_code() {
    let files = samples();
    let out = inspect(&demo(), &files);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), files.len());
    let any_fail = lines.iter().any(|l| l["verdict"] == "fail");
    assert_eq!(code, Some(if any_fail { 1 } else { 0 }), "exit code follows the verdicts");
}

#[test]
fn unreadable_bundles_exit_2_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let img = samples().remove(0);

    // No bundle at all.
    let missing = tmp.path().join("nothing-here");
    let out = inspect(&missing, std::slice::from_ref(&img));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("manifest.json"), "{err}");

    // A manifest that is not JSON.
    let broken = tmp.path().join("broken");
    copy_bundle(&broken);
    std::fs::write(broken.join("manifest.json"), b"{ not json").unwrap();
    let out = inspect(&broken, std::slice::from_ref(&img));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("manifest.json"), "{err}");

    // A model file edited after export: the sha256 check refuses it.
    let edited = tmp.path().join("edited");
    copy_bundle(&edited);
    let onnx = edited.join("model_fp32.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&onnx, bytes).unwrap();
    let out = inspect(&edited, std::slice::from_ref(&img));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sha256") && err.contains("model_fp32.onnx"), "{err}");

    // An unreadable image with a good bundle: exit 2, the error names the image, no panic.
    let bad = tmp.path().join("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let out = inspect(&demo(), &[bad]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("bad.png") && stdout.contains("\"error\""), "{stdout}");
}

fn inspect_trusting(bundle: &Path, keys: &[&Path], image: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_device"));
    cmd.arg("inspect").arg("--model").arg(bundle);
    for k in keys {
        cmd.arg("--trusted-key").arg(k);
    }
    cmd.arg(image).output().expect("running the device binary")
}

/// Signed bundles (`host keygen` / `host export --sign` write the same files as the library calls
/// here): with a trusted key configured, the signed bundle runs; an unsigned one, one signed by
/// another key and one whose manifest was edited after signing (threshold raised) exit 2, each with
/// its reason.
#[test]
fn with_trusted_keys_only_bundles_signed_by_them_load() {
    use shared::signature::{read_public_key, read_secret_key, sign_bundle, write_key_pair};
    let tmp = tempfile::tempdir().unwrap();
    let img = samples().remove(0);
    let (line, other) = (tmp.path().join("line.key"), tmp.path().join("other.key"));
    let line_pub = write_key_pair(&line, [11; 32]).unwrap();
    let other_pub = write_key_pair(&other, [12; 32]).unwrap();
    assert!(read_public_key(&line_pub).is_ok());
    let refused = |out: &Output, why: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(why), "expected {why:?} in: {err}");
        assert!(out.stdout.is_empty(), "a refused bundle inspected something");
    };

    // Signed by the trusted key: runs (0 or 1 by verdict).
    let signed = tmp.path().join("signed");
    copy_bundle(&signed);
    sign_bundle(&signed, &read_secret_key(&line).unwrap()).unwrap();
    let out = inspect_trusting(&signed, &[&other_pub, &line_pub], &img);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without --trusted-key the signature is not required (and not in the way).
    assert!(matches!(
        inspect(&signed, std::slice::from_ref(&img)).status.code(),
        Some(0) | Some(1)
    ));

    // Unsigned.
    let unsigned = tmp.path().join("unsigned");
    copy_bundle(&unsigned);
    refused(&inspect_trusting(&unsigned, &[&line_pub], &img), "not signed");

    // Signed by a key the station does not trust.
    let foreign = tmp.path().join("foreign");
    copy_bundle(&foreign);
    sign_bundle(&foreign, &read_secret_key(&other).unwrap()).unwrap();
    refused(&inspect_trusting(&foreign, &[&line_pub], &img), "not a trusted key");

    // Manifest edited after signing: a threshold that passes every part.
    let edited = tmp.path().join("edited");
    copy_bundle(&edited);
    sign_bundle(&edited, &read_secret_key(&line).unwrap()).unwrap();
    let text = std::fs::read_to_string(edited.join("manifest.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["threshold"]["value"] = serde_json::json!(1e30);
    std::fs::write(edited.join("manifest.json"), serde_json::to_string_pretty(&v).unwrap())
        .unwrap();
    refused(&inspect_trusting(&edited, &[&line_pub], &img), "changed after signing");
}

/// `device run` stops cleanly on SIGTERM (what systemd sends): the loop ends between frames, the
/// shutdown path runs and the process exits 0 with its summary, instead of dying with its outputs in
/// whatever state they had.
#[test]
fn device_run_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::copy(&samples()[0], inbox.join("a.png")).unwrap();
    let cfg = tmp.path().join("station.toml");
    std::fs::write(
        &cfg,
        format!(
            "station_id = \"sig\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n\
             [source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n",
            demo().display()
        ),
    )
    .unwrap();
    let mut child = common::start_station(&cfg).expect("starting device run");
    // Wait for its first result line: the station is in its loop.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"verdict\""), "{first}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < end, "device run ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("stopped after 1 frames"), "{err}");
}

/// The self-test at load (README.md, "Loading a bundle"): the demo bundle passes it for both
/// model files and says so; a `golden.npz` replaced without updating the manifest is refused for its
/// hash; one whose image scores are those of another model (moved by 0.5), re-hashed in the manifest
/// the way an export would write it, is refused by the self-test, naming golden.npz and the
/// difference. Both exit 2 and inspect nothing.
#[test]
fn golden_self_test_at_load_refuses_a_bundle_whose_outputs_differ() {
    use device::golden::{read_npz, write_npz, Array};
    let img = samples().remove(0);
    for precision in ["--fp32", "--int8"] {
        let out = Command::new(env!("CARGO_BIN_EXE_device"))
            .args(["inspect", precision, "--model"])
            .arg(demo())
            .arg(&img)
            .output()
            .expect("running the device binary");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(0) | Some(1)), "{precision}: {err}");
        assert!(err.contains("self-test: 2 golden image(s)"), "{precision}: {err}");
    }
    let refused = |bundle: &Path, why: &[&str]| {
        let out = inspect(bundle, std::slice::from_ref(&img));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        for w in why {
            assert!(err.contains(w), "expected {w:?} in: {err}");
        }
        assert!(out.stdout.is_empty(), "a refused bundle inspected something");
    };

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad");
    copy_bundle(&bad);
    let mut arrays = read_npz(&std::fs::read(bad.join("golden.npz")).unwrap()).unwrap();
    for v in &mut arrays.get_mut("image_score").expect("image_score").data {
        *v += 0.5;
    }
    let list: Vec<(&str, &Array)> = arrays.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let bytes = write_npz(&list).unwrap();
    std::fs::write(bad.join("golden.npz"), &bytes).unwrap();
    refused(&bad, &["golden.npz", "sha256 mismatch"]);

    let mpath = bad.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["files"]["golden"]["sha256"] = shared::manifest::sha256_bytes(&bytes).into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    refused(
        &bad,
        &["golden.npz", "self-test failed", "differ from the golden outputs by up to 5.0"],
    );
}

/// The graph's outputs are checked against the manifest at load: a manifest whose `outputs` name
/// another tensor, or give the patch grid another size, is refused (exit 2) naming the mismatch,
/// before any frame is run.
#[test]
fn outputs_that_differ_from_the_manifest_refuse_the_bundle() {
    let img = samples().remove(0);
    let tmp = tempfile::tempdir().unwrap();
    for (name, edit, why) in [
        ("renamed", ("name", serde_json::json!("scores")), "manifest.json `outputs` lists"),
        ("resized", ("shape", serde_json::json!([-1, 21, 20])), "manifest.json says [-1, 21, 20]"),
    ] {
        let b = tmp.path().join(name);
        copy_bundle(&b);
        let mpath = b.join("manifest.json");
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
        m["outputs"][0][edit.0] = edit.1;
        std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        let out = inspect(&b, std::slice::from_ref(&img));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains("model_fp32.onnx") && err.contains(why), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}: a refused bundle inspected something");
    }
}

/// Nothing carries over from frame to frame: the same image gives bit-identical scores however many
/// other images ran in between, on both model files.
#[test]
fn the_same_image_gives_identical_scores_frame_after_frame() {
    let s = samples();
    let (a, b) = (&s[0], &s[s.len() - 1]);
    for precision in ["--fp32", "--int8"] {
        let out = Command::new(env!("CARGO_BIN_EXE_device"))
            .args(["inspect", precision, "--model"])
            .arg(demo())
            .args([a, b, a, b, a])
            .output()
            .expect("running the device binary");
        let scores: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["score"].to_string())
            .collect();
        assert_eq!(scores.len(), 5, "{precision}: {scores:?}");
        assert!(scores[0] == scores[2] && scores[2] == scores[4], "{precision}: {scores:?}");
        assert!(scores[1] == scores[3] && scores[0] != scores[1], "{precision}: {scores:?}");
    }
}
