//! Helpers for the end-to-end tests in `tests/tests/`: locating the workspace and its built binaries.
use std::path::PathBuf;

pub mod fuzz;

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// Records that `test` skipped its check and why: prints `SKIP test: reason` and, when
/// `GLASS_EDGE_SKIP_LOG` names a file (scripts/test sets it), appends `test<TAB>reason` to it, so the
/// suite's summary counts and lists skips instead of hiding them among passes.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIP {test}: {reason}");
    if let Some(path) = std::env::var_os("GLASS_EDGE_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
