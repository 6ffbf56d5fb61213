//! Atomic state files. A write goes to `NAME.tmp`, is fsynced, renamed over `NAME`, and the directory
//! is fsynced, so a power cut or a kill at any point leaves either the old file or the new one, never
//! a torn or empty one. Leftover `.tmp` files (a write cut short) are removed at start.
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (see the module doc).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "state file path has no file name")
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory, so a rename inside it survives a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::File::open(dir)?.sync_all()
}

/// Removes `*.tmp` files left in `dir` by writes that were cut short; returns how many.
pub fn clean_stale_tmp(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .filter(|p| std::fs::remove_file(p).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_stale_tmp_files_are_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("threshold.json");
        write_atomic(&p, b"{\"threshold\":0.5}").unwrap();
        write_atomic(&p, b"{\"threshold\":0.7}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"threshold\":0.7}");
        std::fs::write(d.path().join("threshold.json.tmp"), b"{\"thr").unwrap();
        std::fs::write(d.path().join("r1.tmp"), b"").unwrap();
        assert_eq!(clean_stale_tmp(d.path()), 2);
        assert_eq!(clean_stale_tmp(d.path()), 0);
        assert!(p.is_file());
    }
}
