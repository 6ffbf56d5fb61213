//! Makes host binaries, tests and examples find libtorch at run time without LD_LIBRARY_PATH
//! (an rpath to `$LIBTORCH/lib`), and forces `libtorch_cuda.so` into the link when the wheel has it:
//! rustc links with `--as-needed`, which would otherwise drop it because no symbol of ours references
//! it, and libtorch would then never see CUDA. Set `GLASS_EDGE_NO_CUDA=1` to build a CPU-only binary.
use std::path::PathBuf;

fn main() {
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
