//! The station loop's one input: a bounded channel of [`Request`]s. Every input the station has
//! becomes a request here: frames from the source (only when the loop asked for one), hardware
//! triggers, serial and MQTT commands, signals (stop, reload) and the clock's ticks.
//!
//! The channel holds at most [`CAPACITY`] requests. Producers that the line controls (commands,
//! trigger edges, ticks) *offer*: when the channel is full the request is dropped and counted
//! ([`Inbox::dropped`]), so a flood can neither grow memory nor block the producer. Frames and stop are
//! *sent*: the producer waits for room (the loop takes a request every few milliseconds, and a frame is
//! only produced when the loop asked for one, so at most one frame is ever in the channel).
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::wire::{Command, Fault};

use super::source::Frame;

/// Requests the channel holds at most.
pub const CAPACITY: usize = 64;

/// How often the clock ticks (trigger windows, reload completion, watchdog).
pub const TICK: Duration = Duration::from_millis(20);

/// Which command link a request came over (its answer goes back the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The serial link (`shared::wire` frames).
    Serial,
    /// MQTT `<prefix>/<station>/cmd`.
    Mqtt,
}

/// A command as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A command both links know.
    Wire(Command),
    /// MQTT `load_model`: load the bundle `model` names again (as SIGHUP).
    LoadModel,
    /// A command name this station does not know (answered `unsupported`).
    Unknown(String),
}

/// One input of the station loop.
pub enum Request {
    /// The frame the loop asked the source for, and the fault to report when it could not be read.
    Frame(Frame, Fault),
    /// A hardware trigger edge, and when it was seen.
    Trigger(Instant),
    /// A command from a link, with the id its answer echoes.
    Command {
        /// Where it came from.
        link: Link,
        /// Request id.
        id: u32,
        /// What it asks.
        command: Incoming,
    },
    /// Load the model again (SIGHUP).
    Reload,
    /// Stop (SIGTERM / SIGINT).
    Stop,
    /// The clock.
    Tick,
}

/// The producers' end of the channel.
#[derive(Clone)]
pub struct Inbox {
    tx: SyncSender<Request>,
    dropped: Arc<AtomicU32>,
}

impl Inbox {
    /// A new channel: the producers' end and the loop's.
    pub fn new() -> (Inbox, Receiver<Request>) {
        let (tx, rx) = mpsc::sync_channel(CAPACITY);
        (Inbox { tx, dropped: Arc::default() }, rx)
    }

    /// Puts `r` in the channel if there is room; a request that finds it full is dropped and counted.
    /// `false` once the loop has ended (the producer should stop).
    pub fn offer(&self, r: Request) -> bool {
        match self.tx.try_send(r) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Puts `r` in the channel, waiting for room. `false` when the loop has ended.
    pub fn send(&self, r: Request) -> bool {
        self.tx.send(r).is_ok()
    }

    /// Requests dropped because the channel was full.
    pub fn dropped(&self) -> u32 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The counter behind [`Inbox::dropped`], for a reader that holds no sender.
    pub fn dropped_counter(&self) -> Arc<AtomicU32> {
        self.dropped.clone()
    }
}

/// The clock and the signals: every [`TICK`] a `Tick`; `Reload` when `reload` was set; `Stop` (then
/// nothing more) when `stop` was set or `done` (the loop ended for another reason).
pub fn clock(inbox: &Inbox, stop: &AtomicBool, reload: &AtomicBool, done: &AtomicBool) {
    loop {
        std::thread::sleep(TICK);
        if done.load(Ordering::Relaxed) {
            return;
        }
        if stop.load(Ordering::Relaxed) {
            inbox.send(Request::Stop);
            return;
        }
        if reload.swap(false, Ordering::Relaxed) && !inbox.send(Request::Reload) {
            return;
        }
        // A tick that finds the channel full is not needed: the loop is busy with requests anyway.
        if !inbox.offer(Request::Tick) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_offers_and_counts_them() {
        let (inbox, rx) = Inbox::new();
        for _ in 0..CAPACITY + 10 {
            inbox.offer(Request::Tick);
        }
        assert_eq!(inbox.dropped(), 10);
        assert_eq!(rx.try_iter().count(), CAPACITY);
        drop(rx);
        assert!(!inbox.offer(Request::Tick), "no loop: the producer is told to stop");
        assert!(!inbox.send(Request::Stop), "no loop: send returns instead of blocking");
    }

    #[test]
    fn the_clock_turns_signals_into_requests() {
        let (inbox, rx) = Inbox::new();
        let (stop, reload, done) =
            (AtomicBool::new(false), AtomicBool::new(true), AtomicBool::new(false));
        std::thread::scope(|s| {
            s.spawn(|| clock(&inbox, &stop, &reload, &done));
            let mut seen = Vec::new();
            while let Ok(r) = rx.recv_timeout(Duration::from_secs(5)) {
                match r {
                    Request::Reload => seen.push("reload"),
                    Request::Tick if !seen.contains(&"tick") => {
                        seen.push("tick");
                        stop.store(true, Ordering::Relaxed);
                    }
                    Request::Stop => {
                        seen.push("stop");
                        break;
                    }
                    _ => {}
                }
            }
            assert_eq!(seen, ["reload", "tick", "stop"]);
        });
    }
}
