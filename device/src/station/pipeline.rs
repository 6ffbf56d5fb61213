//! Frame -> verdict with a deadline. The engine runs on a worker thread; the caller waits at most the
//! inspection window. A late answer, an undecodable frame, an engine error or a panic all give a Fail
//! with the fault named, and the next frame is inspected as usual (fail-safe, never a crash).
//!
//! Work is bounded: at most one frame in the engine and one waiting for it. A frame that finds both
//! places taken (the engine stalled past two deadlines) is, by the station's `busy_policy`, failed at
//! once with fault `Busy` (`fail`, the default) or put in the waiting frame's place (`drop_oldest`: the
//! waiting frame, which already has its DeadlineMissed verdict, is never computed); nothing is ever
//! queued beyond that. Once the engine catches up, the next frame gets its verdict as usual.
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
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

/// What the worker makes of one frame: the inference and the decoded frame, or the fault.
pub type Work = Result<(crate::engine::Inference, Vec<u8>, usize, usize), (Fault, String)>;

type Answer = (u32, Work);

/// Frames in the worker's hands (one inferring, one waiting) beyond which the busy policy applies.
pub const MAX_OUTSTANDING: usize = 2;

/// What happens to a frame that finds the engine and the waiting place taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusyPolicy {
    /// The new frame is a Fail with fault `Busy`.
    #[default]
    Fail,
    /// The new frame takes the waiting frame's place; that one is never computed.
    DropOldest,
}

/// Frames handed to the worker: waiting, and whether one is being inferred.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    in_engine: bool,
    closed: bool,
}

type Shared = Arc<(Mutex<Queue>, Condvar)>;

/// The inspection worker.
pub struct Inspector {
    queue: Shared,
    answers: Receiver<Answer>,
    window: Duration,
    map_size: (usize, usize),
    map_range: (f32, f32),
    policy: BusyPolicy,
}

impl Drop for Inspector {
    /// Lets the worker thread end once it has finished the frame in hand.
    fn drop(&mut self) {
        let (lock, cv) = &*self.queue;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        cv.notify_all();
    }
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
        let work = move |data: FrameData| -> Work {
            let (rgb, w, h) = match data {
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
        };
        Self::with_work(work, window, map_size, map_range)
    }

    /// With this busy policy (default [`BusyPolicy::Fail`]).
    pub fn with_policy(mut self, policy: BusyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Starts a worker thread that runs `work` on each frame (the engine, or a stand-in in tests);
    /// maps are `map_size` and span `map_range`.
    pub fn with_work(
        mut work: impl FnMut(FrameData) -> Work + Send + 'static,
        window: Duration,
        map_size: (usize, usize),
        map_range: (f32, f32),
    ) -> Self {
        let queue: Shared = Arc::default();
        let (ans_tx, answers) = mpsc::channel::<Answer>();
        let worker_queue = queue.clone();
        std::thread::Builder::new()
            .name("inspect".into())
            .spawn(move || {
                let (lock, cv) = &*worker_queue;
                loop {
                    let job = {
                        let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
                        q.in_engine = false;
                        while q.waiting.is_empty() && !q.closed {
                            q = cv.wait(q).unwrap_or_else(|p| p.into_inner());
                        }
                        match q.waiting.pop_front() {
                            Some(job) => {
                                q.in_engine = true;
                                job
                            }
                            None => break, // closed and nothing left
                        }
                    };
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job.data)))
                            .unwrap_or_else(|_| {
                                Err((Fault::Engine, "the inspection panicked".into()))
                            });
                    if ans_tx.send((job.seq, r)).is_err() {
                        break;
                    }
                }
            })
            .ok();
        Inspector { queue, answers, window, map_size, map_range, policy: BusyPolicy::Fail }
    }

    /// Inspects one frame against `threshold`.
    pub fn inspect(&mut self, seq: u32, data: FrameData, threshold: f32) -> Outcome {
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
        // Late answers to earlier frames are of no use any more.
        while self.answers.try_recv().is_ok() {}
        {
            let (lock, cv) = &*self.queue;
            let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
            let taken = q.waiting.len() + usize::from(q.in_engine);
            if taken >= MAX_OUTSTANDING {
                match self.policy {
                    BusyPolicy::DropOldest if !q.waiting.is_empty() => {
                        q.waiting.pop_front();
                    }
                    _ => {
                        out.fault = Fault::Busy;
                        out.error = Some(format!(
                            "the engine still has {taken} earlier frames (it missed their deadlines)"
                        ));
                        out.latency_ms = t0.elapsed().as_secs_f64() * 1e3;
                        return out;
                    }
                }
            }
            q.waiting.push_back(Job { seq, data });
            cv.notify_one();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    /// A worker whose score is the frame's first byte / 255; frame 1 stalls until released; `calls`
    /// counts the frames it computed.
    fn stalling() -> (Inspector, mpsc::SyncSender<()>, Arc<std::sync::atomic::AtomicUsize>) {
        let (release, gate) = sync_channel::<()>(1);
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let mut first = true;
        let work = move |data: FrameData| -> Work {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if std::mem::take(&mut first) {
                let _ = gate.recv();
            }
            let FrameData::Rgb(rgb, w, h) = data else { return Err((Fault::Decode, "rgb".into())) };
            let score = f32::from(rgb[0]) / 255.0;
            let inf = crate::engine::Inference {
                score,
                threshold: 0.5,
                fail: score >= 0.5,
                patch_scores: Vec::new(),
                grid: (0, 0),
                map: None,
                timings: Default::default(),
            };
            Ok((inf, rgb, w, h))
        };
        (Inspector::with_work(work, Duration::from_millis(300), (0, 0), (0.0, 1.0)), release, calls)
    }

    fn frame(v: u8) -> FrameData {
        FrameData::Rgb(vec![v; 3 * 4 * 4], 4, 4)
    }

    #[test]
    fn an_engine_that_stalls_once_fails_the_queued_frames_busy_and_then_recovers() {
        let (mut insp, release, _) = stalling();
        // 1 stalls in the engine, 2 waits behind it: both miss their deadline (Fail).
        let o1 = insp.inspect(1, frame(0), 0.5);
        assert_eq!((o1.fault, o1.fail), (Fault::DeadlineMissed, true));
        let o2 = insp.inspect(2, frame(0), 0.5);
        assert_eq!((o2.fault, o2.fail), (Fault::DeadlineMissed, true));
        // Both places taken: 3 and 4 are Busy at once, never queued.
        for seq in [3, 4] {
            let t = Instant::now();
            let o = insp.inspect(seq, frame(0), 0.5);
            assert_eq!((o.fault, o.fail), (Fault::Busy, true));
            assert!(t.elapsed() < Duration::from_millis(100), "a Busy frame waited");
        }
        // The engine catches up: the next frames get their own correct verdicts.
        release.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let pass = insp.inspect(5, frame(10), 0.5);
        assert_eq!((pass.fault, pass.fail), (Fault::None, false), "{:?}", pass.error);
        assert!((pass.score - 10.0 / 255.0).abs() < 1e-6);
        let fail = insp.inspect(6, frame(250), 0.5);
        assert_eq!((fail.fault, fail.fail), (Fault::None, true));
        assert!((fail.score - 250.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn drop_oldest_puts_the_new_frame_in_the_waiting_place() {
        let (insp, release, calls) = stalling();
        let mut insp = insp.with_policy(BusyPolicy::DropOldest);
        assert_eq!(insp.inspect(1, frame(0), 0.5).fault, Fault::DeadlineMissed);
        assert_eq!(insp.inspect(2, frame(0), 0.5).fault, Fault::DeadlineMissed);
        // 3 replaces 2 in the waiting place; the engine recovers while 3 waits: 3 gets its verdict.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(40));
            let _ = release.send(());
        });
        let o3 = insp.inspect(3, frame(200), 0.5);
        assert_eq!((o3.fault, o3.fail), (Fault::None, true), "{:?}", o3.error);
        assert!((o3.score - 200.0 / 255.0).abs() < 1e-6);
        // Frame 2 was never computed: the engine ran 1 and 3 only.
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
