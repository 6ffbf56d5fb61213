//! Frame -> verdict with a deadline. The engine runs on a worker thread; the caller waits at most the
//! inspection window. A late answer, an undecodable frame, an engine error or a panic all give a Fail
//! with the fault named, and the next frame is inspected as usual (fail-safe, never a crash).
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use shared::wire::Fault;

use super::source::FrameData;
use crate::engine::Engine;
use runtime::decode::{decode_bytes, DecodeLimits};

/// What the station decided for one frame.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Frame sequence number.
    pub seq: u32,
    /// `true` = reject (defect found, or any fault).
    pub fail: bool,
    /// Image score (NaN when there is none).
    pub score: f32,
    /// Threshold used.
    pub threshold: f32,
    /// Why the frame could not be judged normally.
    pub fault: Fault,
    /// Human-readable fault text.
    pub error: Option<String>,
    /// Anomaly map at model input size, when the model makes one.
    pub map: Option<Vec<f32>>,
    /// Map size.
    pub map_size: (usize, usize),
    /// Decoded frame (RGB8, width, height) for outputs that store it.
    pub frame: Option<(Vec<u8>, usize, usize)>,
    /// Frame-in to verdict, milliseconds.
    pub latency_ms: f64,
}

struct Job {
    seq: u32,
    data: FrameData,
}

type Answer = (u32, Result<(crate::engine::Inference, Vec<u8>, usize, usize), (Fault, String)>);

/// The inspection worker.
pub struct Inspector {
    jobs: Sender<Job>,
    answers: Receiver<Answer>,
    window: Duration,
    map_size: (usize, usize),
    map_range: (f32, f32),
}

/// Maps `lo..hi` onto `[0, 1]` (clamped); the identity for GLASS maps (0..1).
fn unit_range(mut map: Vec<f32>, (lo, hi): (f32, f32)) -> Vec<f32> {
    if lo == 0.0 && hi == 1.0 {
        return map;
    }
    let span = (hi - lo).max(f32::EPSILON);
    for v in &mut map {
        *v = ((*v - lo) / span).clamp(0.0, 1.0);
    }
    map
}

impl Inspector {
    /// Starts the worker thread that owns `engine`.
    pub fn new(engine: Engine, window: Duration, limits: DecodeLimits) -> Self {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (ans_tx, answers) = mpsc::channel::<Answer>();
        let map_size = engine
            .manifest()
            .anomaly_map
            .as_ref()
            .map(|m| (m.width as usize, m.height as usize))
            .unwrap_or((0, 0));
        // The station's outputs (wire thumbnail, overlays) take maps in [0, 1]: the manifest's
        // `lo..hi` (GLASS 0..1, PatchCore the validation distance range) is mapped onto it.
        let map_range =
            engine.manifest().anomaly_map.as_ref().map(|m| (m.lo, m.hi)).unwrap_or((0.0, 1.0));
        std::thread::Builder::new()
            .name("inspect".into())
            .spawn(move || {
                for job in job_rx {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let (rgb, w, h) = match job.data {
                            FrameData::Rgb(rgb, w, h) => {
                                limits.check_size(w, h).map_err(|e| (Fault::Decode, e))?;
                                (rgb, w, h)
                            }
                            FrameData::Encoded(bytes) => decode_bytes(&bytes, &limits)
                                .map_err(|e| (Fault::Decode, format!("decoding the frame: {e}")))?,
                        };
                        let inf = engine.infer_rgb(&rgb, w, h, true).map_err(|e| {
                            let f = match e {
                                crate::engine::EngineError::Preprocess(_) => Fault::Decode,
                                _ => Fault::Engine,
                            };
                            (f, e.to_string())
                        })?;
                        Ok((inf, rgb, w, h))
                    }))
                    .unwrap_or_else(|_| Err((Fault::Engine, "the inspection panicked".into())));
                    if ans_tx.send((job.seq, r)).is_err() {
                        break;
                    }
                }
            })
            .ok();
        Inspector { jobs, answers, window, map_size, map_range }
    }

    /// Inspects one frame against `threshold`.
    pub fn inspect(&self, seq: u32, data: FrameData, threshold: f32) -> Outcome {
        let t0 = Instant::now();
        let mut out = Outcome {
            seq,
            fail: true,
            score: f32::NAN,
            threshold,
            fault: Fault::None,
            error: None,
            map: None,
            map_size: self.map_size,
            frame: None,
            latency_ms: 0.0,
        };
        if self.jobs.send(Job { seq, data }).is_err() {
            out.fault = Fault::Engine;
            out.error = Some("the inspection worker is gone".into());
            return out;
        }
        let deadline = t0 + self.window;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok((s, _)) if s != seq => continue, // a late answer to an earlier frame
                Ok((_, Ok((inf, rgb, w, h)))) => {
                    out.score = inf.score;
                    out.fail = inf.score.is_nan() || threshold.is_nan() || inf.score >= threshold;
                    out.map = inf.map.map(|m| unit_range(m, self.map_range));
                    out.frame = Some((rgb, w, h));
                }
                Ok((_, Err((fault, msg)))) => {
                    out.fault = fault;
                    out.error = Some(msg);
                }
                Err(RecvTimeoutError::Timeout) => {
                    out.fault = Fault::DeadlineMissed;
                    out.error = Some(format!("no verdict within {} ms", self.window.as_millis()));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    out.fault = Fault::Engine;
                    out.error = Some("the inspection worker stopped".into());
                }
            }
            break;
        }
        out.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
        out
    }
}
