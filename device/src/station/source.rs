//! Frame sources. The folder source processes image files that appear in a directory, oldest name
//! first, each once (replay, testing, and a station without a camera). A file is taken only once it
//! has stopped changing (its size and modification time unchanged for `settle`), so a file still being
//! copied in is not inspected half-written; a file over the byte limit is a Fail without being read.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A frame's pixels.
pub enum FrameData {
    /// An encoded image file (PNG, JPEG, BMP, TIFF, PPM).
    Encoded(Vec<u8>),
    /// Decoded RGB8 (camera), with width and height.
    Rgb(Vec<u8>, usize, usize),
}

/// One frame: its data (or why it could not be read) and where it came from.
pub struct Frame {
    /// File name or camera frame label.
    pub name: String,
    /// The pixels; `Err` when the frame could not be read (it still gets a Fail verdict).
    pub bytes: Result<FrameData, String>,
}

/// Watches a directory.
pub struct FolderSource {
    dir: PathBuf,
    poll: Duration,
    seen: HashSet<PathBuf>,
    /// New files still changing at the last look: their size and modification time then.
    settling: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    settle: Duration,
    max_bytes: u64,
}

const IMAGE_EXT: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "ppm"];

impl FolderSource {
    /// Watches `dir`; with `existing == false` the files already there are skipped.
    pub fn new(dir: &Path, poll: Duration, existing: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut s = FolderSource {
            dir: dir.to_path_buf(),
            poll,
            seen: HashSet::new(),
            settling: HashMap::new(),
            settle: Duration::from_millis(50),
            max_bytes: u64::MAX,
        };
        if !existing {
            s.seen = s.list()?.into_iter().collect();
        }
        Ok(s)
    }

    /// Files larger than `max_bytes` give a Fail without being read; a file is taken once its size and
    /// modification time have not changed for `settle`.
    pub fn with_limits(mut self, max_bytes: u64, settle: Duration) -> Self {
        self.max_bytes = max_bytes;
        self.settle = settle;
        self
    }

    /// True when `p` has stopped changing: modified at least `settle` ago, or unchanged since the
    /// previous look. Remembers what it saw.
    fn settled(&mut self, p: &Path, len: u64, modified: Option<SystemTime>) -> bool {
        let old = modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= self.settle);
        let same = self.settling.get(p) == Some(&(len, modified));
        if old || same {
            self.settling.remove(p);
            true
        } else {
            self.settling.insert(p.to_path_buf(), (len, modified));
            false
        }
    }

    fn list(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXT.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// The next new file, waiting up to `timeout` (polling). `None` when nothing arrived.
    pub fn next(&mut self, timeout: Duration) -> Option<Frame> {
        let end = std::time::Instant::now() + timeout;
        loop {
            if let Ok(files) = self.list() {
                // Forget files that are gone: a station that runs for months on a folder whose files
                // are removed after inspection must not grow with every name it ever saw (and a new
                // file under an old name is a new frame).
                if self.seen.len() > files.len() || !self.settling.is_empty() {
                    let present: HashSet<&PathBuf> = files.iter().collect();
                    self.seen.retain(|p| present.contains(p));
                    self.settling.retain(|p, _| present.contains(p));
                }
                let new: Vec<PathBuf> =
                    files.into_iter().filter(|p| !self.seen.contains(p)).collect();
                for p in new {
                    let meta = match std::fs::metadata(&p) {
                        Ok(m) => m,
                        Err(_) => continue, // gone again: not a frame
                    };
                    if !self.settled(&p, meta.len(), meta.modified().ok()) {
                        continue;
                    }
                    self.seen.insert(p.clone());
                    let bytes = if meta.len() > self.max_bytes {
                        Err(format!(
                            "{}: {} bytes exceeds the decode limit of {} bytes (limits.max_bytes)",
                            p.display(),
                            meta.len(),
                            self.max_bytes
                        ))
                    } else {
                        std::fs::read(&p)
                            .map(FrameData::Encoded)
                            .map_err(|e| format!("{}: {e}", p.display()))
                    };
                    return Some(Frame { name: p.display().to_string(), bytes });
                }
            }
            let now = std::time::Instant::now();
            if now >= end {
                return None;
            }
            let wait =
                if self.settling.is_empty() { self.poll } else { self.poll.min(self.settle) };
            std::thread::sleep(wait.min(end - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of removed files are forgotten (memory stays flat on a folder that is emptied as it is
    /// inspected), and a new file under an old name is a new frame.
    #[test]
    fn removed_files_are_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut src = FolderSource::new(dir.path(), Duration::from_millis(1), true)
            .expect("folder")
            .with_limits(u64::MAX, Duration::from_millis(0));
        for i in 0..50 {
            std::fs::write(dir.path().join(format!("{i:03}.png")), b"x").expect("write");
        }
        for _ in 0..50 {
            assert!(src.next(Duration::from_millis(200)).is_some());
        }
        assert_eq!(src.seen.len(), 50);
        for i in 0..50 {
            std::fs::remove_file(dir.path().join(format!("{i:03}.png"))).expect("remove");
        }
        assert!(src.next(Duration::from_millis(5)).is_none());
        assert!(src.seen.is_empty(), "{} names kept", src.seen.len());
        std::fs::write(dir.path().join("007.png"), b"y").expect("write");
        let f = src.next(Duration::from_millis(200)).expect("the new 007.png");
        assert!(f.name.ends_with("007.png"));
    }
}
