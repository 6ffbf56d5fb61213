//! Frame sources. The folder source processes image files that appear in a directory, oldest name
//! first, each once (replay, testing, and a station without a camera).
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

const IMAGE_EXT: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "ppm"];

impl FolderSource {
    /// Watches `dir`; with `existing == false` the files already there are skipped.
    pub fn new(dir: &Path, poll: Duration, existing: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut s = FolderSource { dir: dir.to_path_buf(), poll, seen: HashSet::new() };
        if !existing {
            s.seen = s.list()?.into_iter().collect();
        }
        Ok(s)
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
                if let Some(p) = files.into_iter().find(|p| !self.seen.contains(p)) {
                    self.seen.insert(p.clone());
                    let bytes = std::fs::read(&p)
                        .map(FrameData::Encoded)
                        .map_err(|e| format!("{}: {e}", p.display()));
                    return Some(Frame { name: p.display().to_string(), bytes });
                }
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(self.poll.min(end - std::time::Instant::now()));
        }
    }
}
