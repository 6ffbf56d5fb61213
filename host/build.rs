//! Makes host binaries, tests and examples find libtorch at run time without LD_LIBRARY_PATH
//! (an rpath to `$LIBTORCH/lib`), and forces `libtorch_cuda.so` into the link when the wheel has it:
//! rustc links with `--as-needed`, which would otherwise drop it because no symbol of ours references
//! it, and libtorch would then never see CUDA. Set `GLASS_EDGE_NO_CUDA=1` to build a CPU-only binary.
use std::path::PathBuf;

fn main() {
    git_commit();
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=GLASS_EDGE_NO_CUDA");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        // torch-sys itself reports the missing libtorch with instructions; nothing to add here.
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let want_cuda = std::env::var_os("GLASS_EDGE_NO_CUDA").is_none_or(|v| v.is_empty() || v == "0");
    if want_cuda && lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// The tool's own commit (`git describe --always --dirty` of this checkout) as `GLASS_EDGE_GIT`, so
/// reports and bundles record the code that made them, not the directory they were run from.
fn git_commit() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git = dir.join("../.git");
    for f in ["HEAD", "refs/heads"] {
        if git.join(f).exists() {
            println!("cargo:rerun-if-changed={}", git.join(f).display());
        }
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["describe", "--always", "--dirty"])
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-env=GLASS_EDGE_GIT={v}");
        }
    }
}
