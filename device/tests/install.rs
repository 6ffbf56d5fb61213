//! `device install` and the bundle store (README.md, "Updating the model on a station"):
//! - a good bundle (folder or `.tar`) becomes `current`, the one before `previous`; a bundle whose
//!   golden outputs are wrong, or an archive with a link in it, is refused (exit 2) and `current` stays;
//! - a station whose `current` fails its self-test at start rolls back to `previous` and runs;
//! - `device run` switches to a newly installed bundle on SIGHUP while frames keep coming, and every
//!   frame gets its one result (consecutive `seq`, one line per file);
//! - `kill -9` at any point of an install leaves a `current` that loads.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use device::engine::{Engine, Precision};
use device::store::{Store, CURRENT, PREVIOUS};

mod common;
use common::demo;

fn sample() -> PathBuf {
    demo().join("samples").join("good_000.png")
}

fn install(bundle: &Path, store: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_device"))
        .arg("install")
        .arg(bundle)
        .arg("--store")
        .arg(store)
        .output()
        .expect("running device install")
}

/// A copy of the demo bundle's station files with another threshold (so another manifest, another
/// bundle id).
fn variant(dst: &Path, threshold: f64) {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["manifest.json", "model_fp32.onnx", "model_int8.onnx", "golden.npz"] {
        std::fs::copy(demo().join(f), dst.join(f)).unwrap();
    }
    let p = dst.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["threshold"]["value"] = threshold.into();
    std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Moves the golden image scores by 0.5 and re-hashes golden.npz in the manifest, the way an export
/// of another model would write it: only the self-test can tell.
fn spoil_golden(dir: &Path) {
    use device::golden::{read_npz, write_npz, Array};
    let mut arrays = read_npz(&std::fs::read(dir.join("golden.npz")).unwrap()).unwrap();
    for v in &mut arrays.get_mut("image_score").expect("image_score").data {
        *v += 0.5;
    }
    let list: Vec<(&str, &Array)> = arrays.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let bytes = write_npz(&list).unwrap();
    std::fs::write(dir.join("golden.npz"), &bytes).unwrap();
    let p = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    m["files"]["golden"]["sha256"] = shared::manifest::sha256_bytes(&bytes).into();
    std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn refused(out: &Output, why: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(why), "expected {why:?} in: {err}");
}

#[test]
fn install_switches_links_refuses_bad_bundles_and_the_station_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::new(&root);
    let b = tmp.path().join("b");
    variant(&b, 0.7);

    assert!(ok(&install(&demo(), &root)).contains("installed bundle"));
    let a_id = store.id_of(CURRENT).expect("current after the first install");
    assert_eq!(
        a_id,
        shared::manifest::sha256_bytes(&std::fs::read(demo().join("manifest.json")).unwrap())
    );
    ok(&install(&b, &root));
    let b_id = store.id_of(CURRENT).unwrap();
    assert_ne!(a_id, b_id);
    assert_eq!(store.id_of(PREVIOUS).as_deref(), Some(a_id.as_str()));

    // The same bundle as a .tar (one top-level folder): already current, nothing switches.
    let tar_path = tmp.path().join("b.tar");
    let mut t = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    t.append_dir_all("b", &b).unwrap();
    t.finish().unwrap();
    drop(t);
    assert!(ok(&install(&tar_path, &root)).contains("already bundle"));

    // An archive with a link in it is refused before anything is verified.
    let evil = tmp.path().join("evil.tar");
    let mut t = tar::Builder::new(std::fs::File::create(&evil).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    t.append_link(&mut h, "manifest.json", "/etc/passwd").unwrap();
    t.finish().unwrap();
    drop(t);
    refused(&install(&evil, &root), "only plain files and folders");

    // Wrong golden outputs: refused by the self-test; current and previous stay.
    let bad = tmp.path().join("bad");
    variant(&bad, 0.6);
    spoil_golden(&bad);
    refused(&install(&bad, &root), "self-test failed");
    assert_eq!(store.id_of(CURRENT).as_deref(), Some(b_id.as_str()));
    assert_eq!(store.id_of(PREVIOUS).as_deref(), Some(a_id.as_str()));
    let names: Vec<String> = std::fs::read_dir(root.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "only current and previous are kept: {names:?}");

    // The current bundle goes bad on disk in a way only its self-test sees: the station rolls back to
    // previous at start, runs on it (its threshold) and points current at it again.
    spoil_golden(&root.join("bundles").join(&b_id));
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::copy(sample(), inbox.join("a.png")).unwrap();
    let text = format!(
        "station_id = \"rb\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n\
         max_frames = 1\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n",
        root.join(CURRENT).display()
    );
    let cfg =
        device::station::StationConfig::parse(&text, &tmp.path().join("station.toml")).unwrap();
    let s = device::station::run(&cfg, &AtomicBool::new(false)).unwrap();
    assert_eq!(s.counters.frames, 1);
    let a_threshold = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(demo().join("manifest.json")).unwrap(),
    )
    .unwrap()["threshold"]["value"]
        .as_f64()
        .unwrap() as f32;
    assert_eq!(s.threshold, a_threshold, "runs on the previous bundle");
    assert_eq!(store.id_of(CURRENT).as_deref(), Some(a_id.as_str()), "current rolled back");
    let note = s.model_note.unwrap_or_default();
    assert!(note.starts_with(&format!("rolled back to bundle {a_id}")), "{note}");
    assert!(note.contains("self-test failed"), "{note}");
}

#[test]
fn a_running_station_switches_on_sighup_without_missing_a_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    ok(&install(&demo(), &root));
    let b = tmp.path().join("b");
    variant(&b, 0.75);
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let cfg = tmp.path().join("station.toml");
    std::fs::write(
        &cfg,
        format!(
            "station_id = \"hup\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n\
             [source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 10\nsettle_ms = 0\n",
            root.join(CURRENT).display()
        ),
    )
    .unwrap();
    let mut child = common::start_station(&cfg).expect("starting device run");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let png = std::fs::read(sample()).unwrap();
    let feed = |i: usize| {
        let tmp_name = inbox.join(format!("f{i:04}.part"));
        std::fs::write(&tmp_name, &png).unwrap();
        std::fs::rename(&tmp_name, inbox.join(format!("f{i:04}.png"))).unwrap();
    };
    let mut results: Vec<serde_json::Value> = Vec::new();
    let mut next = |results: &mut Vec<serde_json::Value>| {
        let l = lines.next().expect("a result line").unwrap();
        results.push(serde_json::from_str(&l).unwrap());
    };
    let mut fed = 0;
    // One frame at a time until the switch is seen; the install and SIGHUP happen with frames in the
    // inbox and in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut switched_at = None;
    while Instant::now() < deadline {
        feed(fed);
        fed += 1;
        if fed == 5 {
            ok(&install(&b, &root));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        }
        next(&mut results);
        let t = results.last().unwrap()["threshold"].as_f64().unwrap();
        if (t - 0.75).abs() < 1e-6 && switched_at.is_none() {
            switched_at = Some(fed);
        }
        if switched_at.is_some_and(|s| fed >= s + 3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(switched_at.is_some(), "no result at the new threshold after SIGHUP: {err}");
    assert!(err.contains("reloaded"), "{err}");
    // Every file fed has exactly one result, in order, with consecutive seq; thresholds switch once.
    assert_eq!(results.len(), fed, "{err}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["seq"].as_u64(), Some(i as u64 + 1), "{r}");
        assert_eq!(
            r["file"].as_str().map(|f| f.ends_with(&format!("f{i:04}.png"))),
            Some(true),
            "{r}"
        );
        assert_eq!(r["fault"], "None", "{r}");
    }
    let switches = results.windows(2).filter(|w| w[0]["threshold"] != w[1]["threshold"]).count();
    assert_eq!(switches, 1, "{results:?}");
}

#[test]
fn a_kill_at_any_point_of_an_install_leaves_a_loadable_current() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::new(&root);
    let b = tmp.path().join("b");
    variant(&b, 0.7);
    let t0 = Instant::now();
    ok(&install(&demo(), &root));
    let full = t0.elapsed();
    let rounds = 20u32;
    let mut switched = 0;
    for i in 0..rounds {
        let before = store.id_of(CURRENT);
        let bundle = if i % 2 == 0 { &b } else { &demo() };
        let mut child = Command::new(env!("CARGO_BIN_EXE_device"))
            .arg("install")
            .arg(bundle)
            .arg("--store")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill points spread over the whole install: four in the copy (the first ~20%), the rest from
        // the verification to past the end (rename, links, prune come last).
        let percent = if i < 4 { i * 5 } else { 60 + (i - 4) * 5 };
        std::thread::sleep(full * percent / 100);
        let _ = child.kill();
        let _ = child.wait();
        let current = store.resolve(CURRENT).unwrap_or_else(|| panic!("round {i}: no current"));
        Engine::load_trusted(&current, Precision::Fp32, &[])
            .unwrap_or_else(|e| panic!("round {i}: current does not load: {e}"));
        switched += u32::from(store.id_of(CURRENT) != before);
    }
    // How many kills came after the switch (informational: it depends on the machine's speed).
    eprintln!(
        "{switched} of {rounds} killed installs had switched current (a full one took {full:?})"
    );
    // The next install completes and clears what the killed ones left.
    ok(&install(&b, &root));
    let left: Vec<String> = std::fs::read_dir(root.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
