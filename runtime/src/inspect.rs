//! One image through the engine as one JSON line (`device inspect`, the host's export checks) and
//! per-stage latency (`device bench`).
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use shared::wire::{Fault, Verdict};

use crate::engine::{decode_file, Engine, Inference};
use crate::overlay::overlay;

/// One inspected image or frame as `device inspect`, the station's stdout and its MQTT results print
/// it (one JSON object per line; the station's MQTT result adds `station`, `timestamp_ms` and
/// `model_id`). Fields a producer has no value for are left out, never invented.
#[derive(Debug, Clone, Serialize)]
pub struct InspectionRecord {
    /// Dedup key of a station result: boot time (ms, 13 digits) + frame number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The id of the trigger request a station result answers (serial / MQTT triggers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<u32>,
    /// The station's frame number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    /// The image file or frame label.
    pub file: String,
    /// "pass", "fail" or (`device inspect` only) "error"; a station reports every fault as "fail".
    #[serde(serialize_with = "Verdict::serialize_lowercase")]
    pub verdict: Verdict,
    /// Image score (absent when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Threshold in force.
    pub threshold: f32,
    /// The station's fault for this frame (`"None"` when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Frame-in to verdict (decode + preprocess + inference + post-processing), milliseconds.
    pub latency_ms: f64,
    /// Overlay PNG written for this image (`device inspect --save-maps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<String>,
}

impl InspectionRecord {
    /// A record of `file` with this verdict and threshold and nothing else yet.
    pub fn new(file: String, verdict: Verdict, threshold: f32) -> Self {
        InspectionRecord {
            uid: None,
            request_id: None,
            seq: None,
            file,
            verdict,
            score: None,
            threshold,
            fault: None,
            error: None,
            latency_ms: 0.0,
            map: None,
        }
    }
}

/// The name `device inspect`'s line had before the station shared it.
pub type InspectLine = InspectionRecord;

/// Inspects one file; never panics on bad input: errors become verdict "error" naming the file.
pub fn inspect_file(engine: &Engine, file: &Path, save_maps: Option<&Path>) -> InspectLine {
    let t0 = Instant::now();
    let mut line =
        InspectionRecord::new(file.display().to_string(), Verdict::Error, engine.threshold());
    let res = (|| -> Result<(Inference, Vec<u8>, usize, usize), String> {
        let (rgb, w, h) = decode_file(file)?;
        let inf = engine
            .infer_rgb(&rgb, w, h, save_maps.is_some())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        Ok((inf, rgb, w, h))
    })();
    match res {
        Ok((inf, rgb, w, h)) => {
            line.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
            line.verdict = if inf.fail { Verdict::Fail } else { Verdict::Pass };
            line.score = Some(inf.score);
            if let (Some(dir), Some(map)) = (save_maps, inf.map.as_ref()) {
                match write_overlay(engine, dir, file, &rgb, w, h, map) {
                    Ok(p) => line.map = Some(p.display().to_string()),
                    Err(e) => line.error = Some(e),
                }
            }
        }
        Err(e) => {
            line.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
            line.error = Some(e);
        }
    }
    line
}

/// Writes `DIR/<stem>.png`: the image with the anomaly map blended over it, at model input size.
fn write_overlay(
    engine: &Engine,
    dir: &Path,
    file: &Path,
    rgb: &[u8],
    w: usize,
    h: usize,
    map: &[f32],
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (mw, mh) = engine.input_size();
    let (lo, hi) =
        engine.manifest().anomaly_map.as_ref().map(|m| (m.lo, m.hi)).unwrap_or((0.0, 1.0));
    let src = image::RgbImage::from_raw(w as u32, h as u32, rgb.to_vec())
        .ok_or_else(|| format!("{}: frame buffer size mismatch", file.display()))?;
    let base =
        image::imageops::resize(&src, mw as u32, mh as u32, image::imageops::FilterType::Triangle);
    let out = overlay(&base, map, lo, hi, 0.5);
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    let path = dir.join(format!("{stem}.png"));
    out.save(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Median per-stage latency over `runs` inferences of one image.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// "fp32" / "int8".
    pub precision: &'static str,
    /// tract threads.
    pub threads: usize,
    /// Inferences timed (after one warm-up).
    pub runs: usize,
    /// Model input `WxH`.
    pub input: String,
    /// Median decode time (ms).
    pub decode_ms: f64,
    /// Median preprocessing time (ms).
    pub preprocess_ms: f64,
    /// Median network time (ms).
    pub infer_ms: f64,
    /// Median post-processing (map) time (ms).
    pub postprocess_ms: f64,
    /// Median total (ms).
    pub total_ms: f64,
    /// Peak resident set size of the process (kB), from /proc/self/status.
    pub peak_rss_kb: Option<u64>,
    /// Where it ran.
    pub machine: String,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Peak RSS (VmHWM) in kB on Linux.
pub fn peak_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Benchmarks `engine` on `image` (a file) or, without one, a mid-grey frame of input size encoded
/// as PNG in memory (so decode is still measured).
pub fn bench(
    engine: &Engine,
    image: Option<&Path>,
    runs: usize,
    threads: usize,
) -> Result<BenchReport, String> {
    let (w, h) = engine.input_size();
    let png = match image {
        Some(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => {
            let img = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([128, 128, 128]));
            let mut buf = std::io::Cursor::new(Vec::new());
            img.write_to(&mut buf, image::ImageFormat::Png).map_err(|e| e.to_string())?;
            buf.into_inner()
        }
    };
    let (mut dec, mut pre, mut inf, mut post, mut tot) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..=runs {
        let t0 = Instant::now();
        let img = image::load_from_memory(&png).map_err(|e| format!("decode: {e}"))?.to_rgb8();
        let (iw, ih) = img.dimensions();
        let d = t0.elapsed().as_secs_f64() * 1e3;
        let r = engine
            .infer_rgb(img.as_raw(), iw as usize, ih as usize, true)
            .map_err(|e| e.to_string())?;
        let total = t0.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            continue; // warm-up
        }
        dec.push(d);
        pre.push(r.timings.preprocess_ms);
        inf.push(r.timings.infer_ms);
        post.push(r.timings.postprocess_ms);
        tot.push(total);
    }
    Ok(BenchReport {
        precision: engine.precision().name(),
        threads,
        runs,
        input: format!("{w}x{h}"),
        decode_ms: median(&mut dec),
        preprocess_ms: median(&mut pre),
        infer_ms: median(&mut inf),
        postprocess_ms: median(&mut post),
        total_ms: median(&mut tot),
        peak_rss_kb: peak_rss_kb(),
        machine: format!("{} {}", std::env::consts::ARCH, std::env::consts::OS),
    })
}
