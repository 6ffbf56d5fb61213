//! Hostile input has limits: a decompression bomb and a manifest with an absurd number are refused
//! with a message naming the limit, inside a bounded amount of memory (peak RSS of the `device`
//! process, measured by the kernel through `wait4`), never an out-of-memory kill or a panic.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::demo;

/// Peak RSS the station may reach on hostile input, bytes.
const RSS_LIMIT: u64 = 300 << 20;

fn first_sample() -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(demo().join("samples"))
        .expect("models/demo/samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    v.remove(0)
}

/// Runs `device inspect --model BUNDLE IMAGE`: exit code, stdout, stderr, peak RSS in bytes.
// The child is reaped by `wait4` (which also gives its own peak RSS), not `Child::wait`.
#[allow(clippy::zombie_processes)]
fn inspect_rss(bundle: &Path, image: &Path) -> (i32, String, String, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_device"))
        .arg("inspect")
        .arg("--model")
        .arg(bundle)
        .arg(image)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the device binary");
    let (mut out, mut err) = (String::new(), String::new());
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t = std::thread::spawn(move || {
        let mut e = String::new();
        se.read_to_string(&mut e).ok();
        e
    });
    so.read_to_string(&mut out).ok();
    err.push_str(&t.join().unwrap_or_default());
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for this child only.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child (its pid from spawn); status and ru are valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (code, out, err, ru.ru_maxrss as u64 * 1024)
}

/// A valid 12000 x 12000 RGB PNG of zeros: ~0.4 MB on disk, 432 MB decoded.
fn png_bomb(path: &Path) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).expect("bomb file"));
    let mut enc = png::Encoder::new(f, 12_000, 12_000);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().expect("png header");
    let mut s = w.stream_writer().expect("png stream");
    let row = vec![0u8; 12_000 * 3];
    for _ in 0..12_000 {
        std::io::Write::write_all(&mut s, &row).expect("png row");
    }
    s.finish().expect("png end");
}

#[test]
fn png_bomb_is_an_error_line_inside_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.png");
    png_bomb(&bomb);
    let (code, out, err, rss) = inspect_rss(&demo(), &bomb);
    eprintln!("exit {code}, peak RSS {} MB, stdout {out}", rss >> 20);
    assert_eq!(code, 2, "stderr: {err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(line["verdict"], "error");
    let msg = line["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("bomb.png") && msg.contains("12000x12000 exceeds the decode limit"),
        "{msg}"
    );
    assert!(rss < RSS_LIMIT, "peak RSS {} MB", rss >> 20);
}

#[test]
fn manifest_blur_sigma_1e30_is_a_refused_bundle_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    for e in std::fs::read_dir(demo()).unwrap().flatten() {
        if e.file_type().unwrap().is_file() && e.file_name() != "manifest.sig" {
            std::fs::copy(e.path(), bundle.join(e.file_name())).unwrap();
        }
    }
    let mpath = bundle.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["anomaly_map"]["blur_sigma"] = serde_json::json!(1e30);
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let (code, out, err, rss) = inspect_rss(&bundle, &first_sample());
    eprintln!("exit {code}, peak RSS {} MB, stderr {err}", rss >> 20);
    assert_eq!(code, 2, "stdout: {out}");
    assert!(err.contains("blur_sigma"), "{err}");
    assert!(out.trim().is_empty(), "no verdict from a refused bundle: {out}");
    assert!(rss < RSS_LIMIT, "peak RSS {} MB", rss >> 20);
}
