//! Shared by the parity tests: reference fixtures generated once by a checked-in Python script into a
//! cache folder (`$GLASS_EDGE_FIXTURES`, else `$CARGO_TARGET_DIR/fixtures`, else
//! `<tmp>/glass-edge-fixtures`), in a sub-folder named after a hash of the script (editing the script
//! regenerates). The interpreter is `$GLASS_EDGE_PYTHON` (set by `scripts/env.sh`), else `python3`; when
//! it cannot produce the fixtures the tests fail, they never skip.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use tch::{nn, Tensor};

/// The host crate's folder.
pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// FNV-1a: a stable content hash without another dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Runs `scripts/fixtures/<script> --out DIR` once per script version and returns DIR
/// (`<prefix>-<hash>`); `hint` says what the script needs when it fails.
pub fn generate(script: &str, prefix: &str, hint: &str) -> Result<PathBuf> {
    let script = manifest_dir().join("../scripts/fixtures").join(script);
    let src = std::fs::read(&script).with_context(|| format!("reading {}", script.display()))?;
    let root = std::env::var_os("GLASS_EDGE_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("fixtures")))
        .unwrap_or_else(|| std::env::temp_dir().join("glass-edge-fixtures"));
    let current = format!("{prefix}-{:016x}", fnv1a(&src));
    let dir = root.join(&current);
    if dir.join("complete").is_file() {
        return Ok(dir);
    }
    // Generate next to the final folder and rename: concurrent test runs never see a half-written one.
    let tmp = root.join(format!("{prefix}-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let python = std::env::var_os("GLASS_EDGE_PYTHON").unwrap_or_else(|| "python3".into());
    eprintln!("generating {prefix} fixtures into {} (once)", dir.display());
    let out = Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(&tmp)
        .env("OMP_NUM_THREADS", "1")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!("cannot run {python:?}: {e}; {hint}");
        }
    };
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "{python:?} {} failed ({}); {hint}\n--- stderr ---\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(tmp.join("complete"), &out.stdout)?;
    // Drop fixtures of older script versions (they are large).
    let tmp_prefix = format!("{prefix}-tmp-");
    for entry in std::fs::read_dir(&root)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{prefix}-"))
            && !name.starts_with(&tmp_prefix)
            && name != current
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another run finished first; use its copy.
        let _ = std::fs::remove_dir_all(&tmp);
        ensure!(
            dir.join("complete").is_file(),
            "cannot move {} to {}",
            tmp.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// Every tensor of a safetensors file by name.
pub fn read(file: &Path) -> Result<BTreeMap<String, Tensor>> {
    Ok(Tensor::read_safetensors(file)
        .with_context(|| format!("reading {}", file.display()))?
        .into_iter()
        .collect())
}

/// `max |ours − ref| / max |ref|`, asserted `<= tol`.
pub fn rel_err(ours: &Tensor, reference: &Tensor, what: &str, tol: f64) -> Result<f64> {
    ensure!(
        ours.size() == reference.size(),
        "{what}: shape {:?} != {:?}",
        ours.size(),
        reference.size()
    );
    let scale = reference.abs().max().double_value(&[]);
    let err = (ours - reference).abs().max().double_value(&[]) / scale;
    eprintln!("{what}: rel err {err:.3e} (max |ref| {scale:.3})");
    ensure!(err <= tol, "{what}: relative error {err:.3e} > {tol:e}");
    Ok(err)
}

/// A committed key list `tests/fixtures/<rel>`: `{section: {key: shape}}` plus extras.
pub fn key_list(rel: &str) -> Result<serde_json::Value> {
    let file = manifest_dir().join("tests/fixtures").join(rel);
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
}

/// One section of a key list as `{key: shape}`.
pub fn expected_shapes(v: &serde_json::Value, section: &str) -> Result<BTreeMap<String, Vec<i64>>> {
    serde_json::from_value(v[section].clone()).with_context(|| format!("section {section}"))
}

/// The store's `{key: shape}`.
pub fn our_shapes(vs: &nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect()
}

/// Same keys with the same shapes, else a message listing the differences.
pub fn assert_same_keys(
    ours: &BTreeMap<String, Vec<i64>>,
    expected: &BTreeMap<String, Vec<i64>>,
    what: &str,
) {
    let extra: Vec<_> = ours.keys().filter(|k| !expected.contains_key(*k)).collect();
    let missing: Vec<_> = expected.keys().filter(|k| !ours.contains_key(*k)).collect();
    let shapes: Vec<_> =
        ours.iter().filter(|(k, s)| expected.get(*k).is_some_and(|e| e != *s)).collect();
    assert!(
        extra.is_empty() && missing.is_empty() && shapes.is_empty(),
        "{what}: not in reference {extra:?}; missing {missing:?}; shape mismatches {shapes:?}"
    );
}

/// The Python of `scripts/setup` (onnx, onnxruntime, torch).
pub fn python() -> String {
    std::env::var("GLASS_EDGE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `scripts/check_onnx.py BUNDLE --model MODEL`: onnx.checker (full) and onnxruntime vs golden.npz.
pub fn check_onnx(bundle: &Path, model: &str) -> Result<serde_json::Value> {
    let script = manifest_dir().join("../scripts/check_onnx.py");
    let out = Command::new(python())
        .arg(script)
        .arg(bundle)
        .args(["--model", model])
        .output()
        .context("running scripts/check_onnx.py (onnx + onnxruntime from scripts/setup)")?;
    ensure!(
        out.status.success(),
        "check_onnx.py {model} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Makes a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE) in the calling test thread print the signal,
/// its code and address, and the native stack of the faulting thread to stderr before the process dies
/// as it would have, so that a rare crash inside libtorch or tract seen only in CI leaves a trace in the
/// CI log. Call at the start of a test, on the test's own thread.
///
/// The handler runs on a 1 MiB alternate signal stack installed here for the calling thread: the one
/// Rust's runtime gives each thread is sized for the largest signal frame the kernel may push
/// (AT_MINSIGSTKSZ, ~11.7 KB on this CPU with AMX tile state), so once libtorch's math libraries have
/// used AMX on a thread, a handler on that stack overflows at its first call and the process dies
/// silently (seen in the kernel log of three CI crashes: the fault at the handler's entry, 448 bytes
/// above the stack's guard page).
pub fn report_crashes() {
    const ALT_STACK: usize = 1 << 20;
    thread_local! {
        static ALT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !ALT.with(|a| a.replace(true)) {
        // Leaked on purpose: the stack must outlive the thread's last signal.
        let stack: &'static mut [u8] = Box::leak(vec![0u8; ALT_STACK].into_boxed_slice());
        let ss =
            libc::stack_t { ss_sp: stack.as_mut_ptr().cast(), ss_flags: 0, ss_size: ALT_STACK };
        // SAFETY: the stack is valid, writable and never freed.
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE] {
            // SAFETY: a zeroed sigaction is valid; the handler only calls async-signal-safe
            // functions (write, and glibc's backtrace / backtrace_symbols_fd, which write to the fd).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_fatal_signal as *const () as usize;
                // One shot: the default action is back when the handler returns, so the faulting
                // instruction runs again and the process dies of the same signal.
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

extern "C" {
    fn backtrace(buffer: *mut *mut libc::c_void, size: libc::c_int) -> libc::c_int;
    fn backtrace_symbols_fd(buffer: *const *mut libc::c_void, size: libc::c_int, fd: libc::c_int);
}

/// Writes `v` in hex into `buf` (async-signal-safe); returns the digits.
fn hex(mut v: u64, buf: &mut [u8; 18]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
        if v == 0 || i == 2 {
            break;
        }
    }
    i -= 2;
    buf[i] = b'0';
    buf[i + 1] = b'x';
    &buf[i..]
}

extern "C" fn on_fatal_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let mut frames = [std::ptr::null_mut::<libc::c_void>(); 64];
    let mut b = [0u8; 18];
    // SAFETY: `info` is the kernel's siginfo for this signal; the buffer holds 64 frames; every call
    // writes to stderr only.
    unsafe {
        let put = |s: &[u8]| {
            libc::write(2, s.as_ptr().cast(), s.len());
        };
        put(b"\n*** fatal signal ");
        put(hex(sig as u64, &mut b));
        put(b" in this test binary, si_code ");
        put(hex((*info).si_code as u32 as u64, &mut b));
        put(b", si_addr ");
        put(hex((*info).si_addr() as u64, &mut b));
        put(b"; native stack of the faulting thread:\n");
        let n = backtrace(frames.as_mut_ptr(), 64);
        backtrace_symbols_fd(frames.as_ptr(), n, 2);
    }
}
