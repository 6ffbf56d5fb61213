//! The station loop's one input: a bounded channel of [`Request`]s. Every input the station has
//! becomes a request here: frames from the source (only when the loop asked for one), hardware
//! triggers, serial and MQTT commands, signals (stop, reload) and the clock's ticks.
//!
//! The channel holds at most [`CAPACITY`] requests, and commands at most [`COMMAND_QUOTA`] of them, so
//! a command flood always leaves room for trigger edges, the clock, signals and frames. Producers that
//! the line controls (commands, trigger edges, ticks) *offer*: when there is no room the request is
//! dropped and counted ([`Inbox::dropped`]), so a flood can neither grow memory nor block the producer;
//! a tick is only offered when the last one was taken. Frames and stop are *sent*: the producer waits
//! for room (a frame is only produced when the loop asked for one, so at most one is ever in the
//! channel). The loop reports each request it takes ([`Inbox::taken`]).
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::wire::{Command, Fault};

use super::source::Frame;

/// Requests the channel holds at most.
pub const CAPACITY: usize = 64;

/// Commands the channel holds at most (the rest of it stays free for the other inputs).
pub const COMMAND_QUOTA: usize = CAPACITY / 2;

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
    /// The source gave up the frame it was asked for (the loop is ending).
    SourceIdle,
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
    /// Commands in the channel.
    commands: Arc<AtomicUsize>,
    /// A tick is in the channel.
    tick_pending: Arc<AtomicBool>,
}

/// What became of an offered request.
enum Put {
    Queued,
    Dropped,
    Closed,
}

impl Inbox {
    /// A new channel: the producers' end and the loop's.
    pub fn new() -> (Inbox, Receiver<Request>) {
        let (tx, rx) = mpsc::sync_channel(CAPACITY);
        let inbox = Inbox {
            tx,
            dropped: Arc::default(),
            commands: Arc::default(),
            tick_pending: Arc::default(),
        };
        (inbox, rx)
    }

    fn put(&self, r: Request) -> Put {
        match self.tx.try_send(r) {
            Ok(()) => Put::Queued,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Put::Dropped
            }
            Err(TrySendError::Disconnected(_)) => Put::Closed,
        }
    }

    /// Puts `r` in the channel if there is room; a request that finds it full is dropped and counted.
    /// `false` once the loop has ended (the producer should stop). Commands go through
    /// [`Inbox::offer_command`].
    pub fn offer(&self, r: Request) -> bool {
        !matches!(self.put(r), Put::Closed)
    }

    /// [`Inbox::offer`] for a command from `link`, within [`COMMAND_QUOTA`]: a command beyond it is
    /// dropped and counted like one that finds the channel full.
    pub fn offer_command(&self, link: Link, id: u32, command: Incoming) -> bool {
        if self.commands.fetch_add(1, Ordering::AcqRel) >= COMMAND_QUOTA {
            self.commands.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        match self.put(Request::Command { link, id, command }) {
            Put::Queued => true,
            Put::Dropped => {
                self.commands.fetch_sub(1, Ordering::AcqRel);
                true
            }
            Put::Closed => false,
        }
    }

    /// The loop took `r` from the channel (frees its command slot, or lets the clock tick again).
    pub fn taken(&self, r: &Request) {
        match r {
            Request::Command { .. } => {
                self.commands.fetch_sub(1, Ordering::AcqRel);
            }
            Request::Tick => self.tick_pending.store(false, Ordering::Release),
            _ => {}
        }
    }

    /// Offers a tick unless one is waiting in the channel already. `false` once the loop has ended.
    fn offer_tick(&self) -> bool {
        if self.tick_pending.swap(true, Ordering::AcqRel) {
            return true;
        }
        match self.put(Request::Tick) {
            Put::Queued => true,
            Put::Dropped => {
                self.tick_pending.store(false, Ordering::Release);
                true
            }
            Put::Closed => false,
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
        if !inbox.offer_tick() {
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
            inbox.offer(Request::Trigger(Instant::now()));
        }
        assert_eq!(inbox.dropped(), 10);
        assert_eq!(rx.try_iter().count(), CAPACITY);
        drop(rx);
        assert!(!inbox.offer(Request::Tick), "no loop: the producer is told to stop");
        assert!(!inbox.send(Request::Stop), "no loop: send returns instead of blocking");
    }

    #[test]
    fn a_command_flood_leaves_room_for_triggers_and_ticks() {
        let (inbox, rx) = Inbox::new();
        for id in 0..1000 {
            inbox.offer_command(Link::Serial, id, Incoming::Wire(Command::GetStatus));
        }
        assert_eq!(inbox.dropped(), 1000 - COMMAND_QUOTA as u32);
        for _ in 0..5 {
            assert!(inbox.offer_tick());
        }
        for _ in 0..CAPACITY - COMMAND_QUOTA - 1 {
            inbox.offer(Request::Trigger(Instant::now()));
        }
        assert_eq!(inbox.dropped(), 1000 - COMMAND_QUOTA as u32, "no trigger edge dropped");
        let got: Vec<Request> = rx.try_iter().collect();
        let count = |f: fn(&Request) -> bool| got.iter().filter(|r| f(r)).count();
        assert_eq!(count(|r| matches!(r, Request::Command { .. })), COMMAND_QUOTA);
        assert_eq!(count(|r| matches!(r, Request::Tick)), 1, "one tick waits at a time");
        assert_eq!(count(|r| matches!(r, Request::Trigger(_))), CAPACITY - COMMAND_QUOTA - 1);
        // Taken, the commands free their slots.
        got.iter().for_each(|r| inbox.taken(r));
        assert!(inbox.offer_command(Link::Mqtt, 1, Incoming::LoadModel));
        assert_eq!(rx.try_iter().count(), 1);
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
                inbox.taken(&r);
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
