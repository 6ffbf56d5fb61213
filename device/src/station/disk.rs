//! Failing frames and their heat-map overlays on disk, with bounded retention (oldest removed first).
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Writes `<seq>_<name>.png` (the frame) and `<seq>_<name>_map.png` (overlay) per failing frame.
pub struct DiskOutput {
    dir: PathBuf,
    keep: usize,
    kept: VecDeque<Vec<PathBuf>>,
}

impl DiskOutput {
    /// Creates `dir`; files from earlier runs count towards `keep` (in name order).
    pub fn new(dir: &Path, keep: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut old: Vec<PathBuf> =
            std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        old.sort();
        let kept = old.into_iter().map(|p| vec![p]).collect();
        let mut d = DiskOutput { dir: dir.to_path_buf(), keep: keep.max(1), kept };
        d.trim();
        Ok(d)
    }

    fn trim(&mut self) {
        while self.kept.len() > self.keep {
            if let Some(files) = self.kept.pop_front() {
                for f in files {
                    let _ = std::fs::remove_file(f);
                }
            }
        }
    }

    /// Stores one failing frame (RGB8) and, when given, its map overlay.
    pub fn store(
        &mut self,
        seq: u32,
        name: &str,
        frame: &(Vec<u8>, usize, usize),
        map: Option<(&[f32], usize, usize)>,
    ) -> Result<(), String> {
        let stem = Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or("frame");
        let base = format!("{seq:010}_{stem}");
        let (rgb, w, h) = frame;
        let img = image::RgbImage::from_raw(*w as u32, *h as u32, rgb.clone())
            .ok_or_else(|| "frame buffer size mismatch".to_string())?;
        let p = self.dir.join(format!("{base}.png"));
        img.save(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut files = vec![p];
        if let Some((m, mw, mh)) = map {
            let small = image::imageops::resize(
                &img,
                mw as u32,
                mh as u32,
                image::imageops::FilterType::Triangle,
            );
            let ov = crate::overlay::overlay(&small, m, 0.0, 1.0, 0.55);
            let q = self.dir.join(format!("{base}_map.png"));
            ov.save(&q).map_err(|e| format!("{}: {e}", q.display()))?;
            files.push(q);
        }
        self.kept.push_back(files);
        self.trim();
        Ok(())
    }
}
