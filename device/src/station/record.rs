//! What the station reports: the per-frame result record (stdout line; the MQTT result adds its
//! provenance), the retained MQTT status, the wire form of the anomaly map and its PNG overlay.
use serde::Serialize;
use shared::wire::{AnomalyMap, Counters, Fault};

use super::{model, mqtt};

/// Milliseconds since the Unix epoch (station clock; 0 before 1970).
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One stdout line / MQTT result per frame: the record `device inspect` prints too.
pub use crate::inspect::InspectionRecord as ResultLine;

/// The map, averaged down to at most 64x64 cells and quantised to 0..=255 (wire form).
pub(super) fn wire_map(map: &[f32], w: usize, h: usize) -> Option<AnomalyMap> {
    if w == 0 || h == 0 || map.len() != w * h {
        return None;
    }
    let f = w.div_ceil(shared::wire::MAX_MAP_SIDE).max(h.div_ceil(shared::wire::MAX_MAP_SIDE));
    let (cw, ch) = (w.div_ceil(f), h.div_ceil(f));
    let mut cells = Vec::with_capacity(cw * ch);
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut s, mut n) = (0f32, 0f32);
            for y in cy * f..((cy + 1) * f).min(h) {
                for x in cx * f..((cx + 1) * f).min(w) {
                    s += map[y * w + x];
                    n += 1.0;
                }
            }
            cells.push(((s / n.max(1.0)).clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    AnomalyMap::new(cw as u8, ch as u8, &cells).ok()
}

/// A result on `<prefix>/<station>/result`: the stdout line (with its dedup key `uid`) plus provenance.
#[derive(Serialize)]
pub(super) struct MqttResult<'a> {
    pub(super) station: &'a str,
    pub(super) timestamp_ms: u64,
    pub(super) model_id: String,
    #[serde(flatten)]
    pub(super) line: &'a ResultLine,
}

/// The retained status on `<prefix>/<station>/status`.
#[derive(Serialize)]
pub(super) struct StatusJson<'a> {
    station: &'a str,
    state: &'a str,
    threshold: f32,
    frames: u32,
    passes: u32,
    fails: u32,
    spool_dropped: u32,
    /// Results whose spool write failed (published directly at QoS 0 instead).
    spool_failed: u32,
    requests_dropped: u32,
    last_fault: &'static str,
    timestamp_ms: u64,
    /// The bundle in use (its folder name: `sha256(manifest.json)` for an installed bundle).
    bundle: String,
    /// The last roll-back or reload, and how it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_note: Option<&'a str>,
}

impl<'a> StatusJson<'a> {
    pub(super) fn new(
        station: &'a str,
        state: &'a str,
        l: &model::Loaded,
        note: Option<&'a str>,
        c: &Counters,
        f: Fault,
    ) -> Self {
        StatusJson {
            station,
            state,
            threshold: l.threshold,
            bundle: l
                .bundle
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model_note: note,
            frames: c.frames,
            passes: c.passes,
            fails: c.fails,
            spool_dropped: c.spool_dropped,
            spool_failed: 0,
            requests_dropped: 0,
            last_fault: f.as_str(),
            timestamp_ms: now_ms(),
        }
    }

    /// With the MQTT output's spool counts (failed writes, dropped entries).
    pub(super) fn with_spool(mut self, m: &mqtt::MqttOutput) -> Self {
        self.spool_failed = m.spool_failed();
        self.spool_dropped = m.dropped();
        self
    }

    /// With the count of requests the station loop's channel had no room for.
    pub(super) fn with_requests_dropped(mut self, n: u32) -> Self {
        self.requests_dropped = n;
        self
    }
}

/// PNG bytes of the map overlaid on the frame at map size.
pub(super) fn map_png(
    frame: &(Vec<u8>, usize, usize),
    map: &[f32],
    (mw, mh): (usize, usize),
) -> Option<Vec<u8>> {
    let (rgb, w, h) = frame;
    let img = image::RgbImage::from_raw(*w as u32, *h as u32, rgb.clone())?;
    let small =
        image::imageops::resize(&img, mw as u32, mh as u32, image::imageops::FilterType::Triangle);
    let ov = crate::overlay::overlay(&small, map, 0.0, 1.0, 0.55);
    let mut out = std::io::Cursor::new(Vec::new());
    ov.write_to(&mut out, image::ImageFormat::Png).ok()?;
    Some(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_map_averages_down_to_64_cells() {
        let m = vec![1.0f32; 160 * 160];
        let w = wire_map(&m, 160, 160).unwrap();
        assert_eq!((w.width(), w.height()), (54, 54));
        assert!(w.cells().iter().all(|&c| c == 255));
        assert!(wire_map(&m, 10, 10).is_none());
    }
}
