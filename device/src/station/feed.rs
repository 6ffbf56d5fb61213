//! The frame feed: the source (folder or camera) on a thread of its own, giving the station loop one
//! frame each time the loop asks for one, with a heartbeat the loop's watchdog checks.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use shared::wire::Fault;

use super::inbox::{Inbox, Request};
use super::{camera, source};

/// Where frames come from.
pub(super) enum Source {
    /// Image files appearing in a folder.
    Folder(source::FolderSource),
    /// A V4L2 camera.
    Camera(camera::CameraSource),
}

/// When the source worker last showed it was alive while working on a frame.
pub(super) struct Heartbeat {
    start: Instant,
    ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { start: Instant::now(), ms: AtomicU64::new(0) }
    }
}

impl Heartbeat {
    pub(super) fn beat(&self) {
        self.ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn age(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.ms.load(Ordering::Relaxed)))
    }
}

/// Takes a frame from the source each time the loop asks for one (`wanted`), and puts it in the
/// loop's channel (with the fault a frame that could not be read reports); when the loop ends while
/// it looks for one, says so (`SourceIdle`) instead of taking a frame nobody will inspect.
pub(super) fn source_worker(
    mut source: Source,
    wanted: &Receiver<()>,
    inbox: &Inbox,
    triggered: bool,
    done: &AtomicBool,
    heartbeat: &Heartbeat,
) {
    while wanted.recv().is_ok() {
        let (frame, fault) = loop {
            heartbeat.beat();
            if done.load(Ordering::Relaxed) {
                inbox.send(Request::SourceIdle);
                return;
            }
            match &mut source {
                Source::Folder(f) => {
                    if let Some(frame) = f.next(Duration::from_millis(50)) {
                        break (frame, Fault::Decode);
                    }
                }
                // A triggered capture takes a frame exposed after the trigger, not one queued before.
                Source::Camera(c) => match c.capture_fresh(triggered) {
                    Ok(frame) => break (frame, Fault::Camera),
                    Err(e) => {
                        break (
                            source::Frame { name: "camera".into(), bytes: Err(e) },
                            Fault::Camera,
                        )
                    }
                },
            }
        };
        heartbeat.beat();
        if !inbox.send(Request::Frame(frame, fault)) {
            return;
        }
    }
}
