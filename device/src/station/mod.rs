//! `device run --config station.toml`: the station service.
//!
//! One loop owns the station's state and takes every input as a request from one bounded channel
//! ([`inbox`]): frames (asked of the source one at a time), hardware triggers, serial and MQTT commands,
//! signals and the clock. Each frame goes through [`pipeline::Inspector`] (engine on a worker thread,
//! per-frame deadline) to a verdict that every output ([`outputs::Output`]: GPIO handshake, MQTT, stdout
//! JSON lines, serial `shared::wire` frames, failing frames on disk) is told in a fixed order.
//! Every frame gets a verdict: a decode error, an engine error or a missed deadline is a Fail with the
//! fault in the result and the status, and the loop goes on. A threshold set over a command link is
//! saved in `state_dir/threshold.json` and then applied (reloaded at start when the model is the same).
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use shared::signature::PublicKey;
use shared::wire::{AckCode, Counters, Fault, StationId, Verdict};

pub mod camera;
pub mod commands;
pub mod config;
pub mod disk;
pub mod feed;
pub mod frame;
pub mod gpio;
pub mod inbox;
pub mod model;
pub mod mqtt;
pub mod notify;
pub mod outputs;
pub mod pipeline;
pub mod record;
pub mod serial;
pub mod source;
pub mod state;
pub mod trigger;

pub use config::StationConfig;
use config::{SourceConfig, Trigger};
use feed::{source_worker, Heartbeat, Source};
use inbox::{Inbox, Incoming, Link, Request};
use outputs::{Outputs, Report, View};
pub use record::ResultLine;
use record::{now_ms, StatusJson};

/// What a run did (returned when it stops).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Counters at the end.
    pub counters: Counters,
    /// The threshold in force at the end.
    pub threshold: f32,
    /// The last fault.
    pub last_fault: Fault,
    /// The last roll-back or reload and how it ended (as in the MQTT status's `model_note`).
    pub model_note: Option<String>,
}

/// Runs the station until `stop` is set or `max_frames` frames were inspected; digital outputs on the
/// configured GPIO character device.
pub fn run(cfg: &StationConfig, stop: &AtomicBool) -> Result<Summary> {
    run_signalled(cfg, stop, &AtomicBool::new(false))
}

/// [`run`], reloading the bundle `model` names whenever `reload` is set (SIGHUP; see [`model`]).
pub fn run_signalled(
    cfg: &StationConfig,
    stop: &AtomicBool,
    reload: &AtomicBool,
) -> Result<Summary> {
    let gpio = match &cfg.outputs.gpio {
        Some(g) => {
            let pin = |line| gpio::CdevPin::open(&g.chip, line);
            Some(gpio::Handshake::new(
                pin(g.ready)?,
                pin(g.busy)?,
                pin(g.result_valid)?,
                pin(g.pass)?,
                pin(g.fail)?,
                Duration::from_millis(g.pulse_ms),
            ))
        }
        None => None,
    };
    run_inner(cfg, stop, reload, gpio)
}

/// [`run`] with the given digital outputs (any embedded-hal pins, e.g. [`gpio::MockPin`]s).
pub fn run_with_gpio<P: embedded_hal::digital::OutputPin>(
    cfg: &StationConfig,
    stop: &AtomicBool,
    gpio: Option<gpio::Handshake<P>>,
) -> Result<Summary> {
    run_inner(cfg, stop, &AtomicBool::new(false), gpio)
}

fn run_inner<P: embedded_hal::digital::OutputPin>(
    cfg: &StationConfig,
    stop: &AtomicBool,
    reload: &AtomicBool,
    gpio: Option<gpio::Handshake<P>>,
) -> Result<Summary> {
    let trusted = crate::engine::read_trusted_keys(&cfg.trusted_keys)
        .context("reading trusted_keys of the station configuration")?;
    crate::engine::set_threads(cfg.threads);
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state_dir {}", cfg.state_dir.display()))?;
    state::clean_stale_tmp(&cfg.state_dir);
    let (loaded, model_note) = model::start(cfg, &trusted)?;
    let source = match &cfg.source {
        SourceConfig::Folder { path, poll_ms, existing, settle_ms } => Source::Folder(
            source::FolderSource::new(path, Duration::from_millis(*poll_ms), *existing)
                .with_context(|| format!("source folder {}", path.display()))?
                .with_limits(cfg.limits.max_bytes, Duration::from_millis(*settle_ms)),
        ),
        SourceConfig::V4l(c) => Source::Camera(camera::CameraSource::new(c.clone())),
    };
    let (inbox, requests) = Inbox::new();
    if let (Trigger::Gpio, Some(t)) = (&cfg.trigger, &cfg.gpio_trigger) {
        let pin = trigger::CdevInputPin::open(&t.chip, t.line).map_err(anyhow::Error::msg)?;
        trigger::watch(pin, t.edge, Duration::from_millis(t.debounce_ms), inbox.clone());
    }
    // The outputs, in the order they are told (see `outputs::Outputs`).
    let mut outputs = Outputs::default();
    if let Some(mut g) = gpio {
        g.start()?;
        outputs.push(outputs::GpioOutput(g));
    }
    let mut station = Station::new(cfg, trusted, loaded, model_note, inbox.dropped_counter());
    if let Some(m) = &cfg.outputs.mqtt {
        let st = StatusJson::new(
            &cfg.station_id,
            "ready",
            &station.loaded,
            station.model_note.as_deref(),
            &Counters::default(),
            Fault::None,
        );
        let first = serde_json::to_string(&st).unwrap_or_default();
        let out = mqtt::MqttOutput::start(
            m,
            &cfg.station_id,
            &cfg.state_dir.join("spool"),
            first,
            inbox.clone(),
        )
        .map_err(anyhow::Error::msg)?;
        outputs.push(outputs::MqttOut(Some(out)));
    }
    if cfg.outputs.stdout {
        outputs.push(outputs::Stdout);
    }
    if let Some(s) = &cfg.outputs.serial {
        let link =
            serial::SerialLink::open(&s.port, s.baud, inbox.clone()).map_err(anyhow::Error::msg)?;
        outputs.push(outputs::SerialOut::new(link));
    }
    if let Some(d) = &cfg.outputs.disk {
        let disk = disk::DiskOutput::new(&d.dir, d.keep)
            .with_context(|| format!("outputs.disk.dir {}", d.dir.display()))?;
        outputs.push(outputs::DiskOut(disk));
    }

    notify::ready(&format!("inspecting with {}", cfg.model.display()));
    let done = AtomicBool::new(false);
    let heartbeat = Heartbeat::default();
    // How long the source may take over a frame asked of it before the watchdog stops being fed: a
    // camera's capture timeout, plus room for a slow folder listing.
    let stall = Duration::from_secs(10)
        + match &cfg.source {
            SourceConfig::V4l(c) => Duration::from_millis(c.timeout_ms),
            SourceConfig::Folder { .. } => Duration::ZERO,
        };
    let camera = matches!(source, Source::Camera(_));
    let (want_frame, wanted_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        // However the loop ends (a panic included), the clock and the source end, so the scope joins.
        let _done = SetOnDrop(&done);
        let (inbox, done, heartbeat) = (&inbox, &done, &heartbeat);
        s.spawn(move || inbox::clock(inbox, stop, reload, done));
        let triggered = cfg.trigger != Trigger::FreeRun;
        s.spawn(move || source_worker(source, &wanted_rx, inbox, triggered, done, heartbeat));
        let io = LoopIo { requests: &requests, want_frame, inbox, done, heartbeat, stall, camera };
        station.run(&io, &mut outputs);
        // The producers end: the clock and the source at once, the link threads at their next
        // request (their channel end is gone).
        done.store(true, Ordering::Relaxed);
        drop(io);
        drop(requests);
    });
    notify::stopping();
    outputs.count(&mut station.counters);
    outputs.stop(&station.view("stopping"));
    Ok(Summary {
        counters: station.counters,
        threshold: station.loaded.threshold,
        last_fault: station.last_fault,
        model_note: station.model_note,
    })
}

/// Sets the flag when dropped (also while a panic unwinds).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the loop talks to besides its outputs.
struct LoopIo<'a> {
    requests: &'a Receiver<Request>,
    /// Asks the source for one frame.
    want_frame: std::sync::mpsc::Sender<()>,
    inbox: &'a Inbox,
    /// Set when the loop ends: the source gives up the frame it looks for.
    done: &'a AtomicBool,
    heartbeat: &'a Heartbeat,
    /// See `run_inner`.
    stall: Duration,
    camera: bool,
}

/// The station loop's state.
struct Station<'c> {
    cfg: &'c StationConfig,
    trusted: Vec<PublicKey>,
    loaded: model::Loaded,
    model_note: Option<String>,
    reloader: model::Reloader,
    station_id: StationId,
    started: Instant,
    boot_ms: u64,
    counters: Counters,
    last_fault: Fault,
    seq: u32,
    /// Triggers waiting for their frame, oldest first.
    pending: VecDeque<commands::PendingTrigger>,
    /// Per link: serial, MQTT.
    rates: [commands::RateLimit; 2],
    /// Requests dropped because the loop's channel was full.
    requests_dropped: Arc<AtomicU32>,
}

impl<'c> Station<'c> {
    fn new(
        cfg: &'c StationConfig,
        trusted: Vec<PublicKey>,
        loaded: model::Loaded,
        model_note: Option<String>,
        requests_dropped: Arc<AtomicU32>,
    ) -> Self {
        Station {
            requests_dropped,
            cfg,
            trusted,
            loaded,
            model_note,
            reloader: model::Reloader::default(),
            station_id: StationId::try_from(cfg.station_id.as_str()).unwrap_or_default(),
            started: Instant::now(),
            boot_ms: now_ms(),
            counters: Counters::default(),
            last_fault: Fault::None,
            seq: 0,
            pending: VecDeque::new(),
            rates: Default::default(),
        }
    }

    fn view<'v>(&'v self, state: &'v str) -> View<'v> {
        View {
            station: &self.cfg.station_id,
            wire_id: &self.station_id,
            state,
            loaded: &self.loaded,
            note: self.model_note.as_deref(),
            counters: &self.counters,
            last_fault: self.last_fault,
            uptime_s: self.started.elapsed().as_secs() as u32,
            requests_dropped: self.requests_dropped.load(Ordering::Relaxed),
        }
    }

    fn max_frames_reached(&self) -> bool {
        self.cfg.max_frames.is_some_and(|m| u64::from(self.counters.frames) >= m)
    }

    /// Takes requests until a stop (signal, `max_frames`, every producer gone). One frame is asked of
    /// the source at a time: always when free-running, while a trigger waits when triggered. At the
    /// stop, a frame the source already took is inspected (or, past `max_frames`, named in the log),
    /// and triggers still waiting get their Fail.
    fn run(&mut self, io: &LoopIo<'_>, outputs: &mut Outputs<'_>) {
        let free_run = self.cfg.trigger == Trigger::FreeRun;
        let mut watchdog = notify::Watchdog::from_env();
        // When the frame asked of the source and not yet here was asked for.
        let mut asked: Option<Instant> = None;
        // A folder frame that came after its trigger had already failed (NoFrame): the next trigger's.
        let mut held: Option<(source::Frame, Fault)> = None;
        let stopped = loop {
            if self.max_frames_reached() {
                break false;
            }
            if !free_run && !self.pending.is_empty() {
                if let Some((frame, fault)) = held.take() {
                    let id = self.pending.pop_front().and_then(|t| t.id);
                    self.inspect(outputs, frame, fault, id);
                    continue;
                }
            }
            if asked.is_none() && (free_run || !self.pending.is_empty()) {
                asked = io.want_frame.send(()).is_ok().then(Instant::now);
            }
            // The clock ticks every 20 ms; the timeout only guards against a clock that died.
            let request = match io.requests.recv_timeout(Duration::from_secs(1)) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => Request::Tick,
                Err(RecvTimeoutError::Disconnected) => break false,
            };
            io.inbox.taken(&request);
            // systemd's watchdog is fed only from here, and only while the source is not stuck on a
            // frame it was asked for: a loop or a source that hangs gets the service restarted.
            if asked.is_none() || io.heartbeat.age() < io.stall {
                watchdog.ping();
            }
            match request {
                Request::Stop => break true,
                Request::Tick => self.tick(outputs),
                Request::Reload => self.reloader.request(self.cfg, &self.trusted),
                Request::SourceIdle => asked = None,
                Request::Trigger(at) => {
                    if self.pending.len() < commands::MAX_PENDING_TRIGGERS {
                        self.pending.push_back(commands::PendingTrigger { id: None, at });
                    } else {
                        self.requests_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Request::Command { link, id, command } => self.command(outputs, link, id, command),
                Request::Frame(frame, fault) => {
                    let at = asked.take();
                    held = self.take_frame(outputs, frame, fault, io.camera, at);
                }
            }
        };
        // The frame the source may be reading right now: it was taken from the folder, so it is
        // inspected (a stop finishes the frame in flight), unless `max_frames` is reached.
        if asked.is_some() {
            io.done.store(true, Ordering::Relaxed);
            let end = Instant::now() + io.stall;
            while let Ok(r) =
                io.requests.recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                io.inbox.taken(&r);
                match r {
                    Request::Frame(frame, _) if self.max_frames_reached() => {
                        tracing::warn!(
                            "{} was read but not inspected: max_frames reached",
                            frame.name
                        );
                        break;
                    }
                    Request::Frame(frame, fault) => {
                        held = self.take_frame(outputs, frame, fault, io.camera, None);
                        break;
                    }
                    Request::SourceIdle => break,
                    _ => {}
                }
            }
        }
        if let Some((frame, _)) = held {
            tracing::warn!("{} was read but no trigger came for it before the stop", frame.name);
        }
        // Every trigger gets its result: those still waiting fail, no frame will come.
        while stopped && !self.max_frames_reached() {
            let Some(t) = self.pending.pop_front() else { break };
            let frame = source::Frame {
                name: "trigger".into(),
                bytes: Err("no frame: the station is stopping".into()),
            };
            self.inspect(outputs, frame, Fault::NoFrame, t.id);
        }
    }

    /// A frame from the source. Free-running it is inspected. Triggered it goes to the oldest trigger
    /// still in its window, except that a camera frame is not given to a trigger that came after the
    /// frame was asked for (it may have been exposed before that trigger; a fresh one is asked for). A
    /// folder frame with no trigger waiting is returned, to be held for the next trigger.
    fn take_frame(
        &mut self,
        outputs: &mut Outputs<'_>,
        frame: source::Frame,
        fault: Fault,
        camera: bool,
        asked_at: Option<Instant>,
    ) -> Option<(source::Frame, Fault)> {
        if self.cfg.trigger == Trigger::FreeRun {
            // Free-running, a camera that gave no frame is a fault in the status, not a result: no
            // part was asked about.
            if camera && frame.bytes.is_err() {
                self.camera_fault(&frame);
            } else {
                self.inspect(outputs, frame, fault, None);
            }
            return None;
        }
        self.expire_triggers(outputs);
        match self.pending.front() {
            Some(t) if camera && asked_at.is_some_and(|a| t.at > a) => {
                tracing::debug!("{}: taken before the waiting trigger, asking again", frame.name);
                None
            }
            Some(_) => {
                let id = self.pending.pop_front().and_then(|t| t.id);
                self.inspect(outputs, frame, fault, id);
                None
            }
            // Its trigger already failed with NoFrame; a later trigger takes a fresh one.
            None if camera => {
                if frame.bytes.is_err() {
                    self.camera_fault(&frame);
                }
                None
            }
            None => Some((frame, fault)),
        }
    }

    fn camera_fault(&mut self, frame: &source::Frame) {
        self.last_fault = Fault::Camera;
        if let Err(e) = &frame.bytes {
            tracing::warn!("{e}");
        }
    }

    /// The clock: a finished reload is swapped in (between two frames); triggers past their window
    /// get their Fail.
    fn tick(&mut self, outputs: &mut Outputs<'_>) {
        if let Some((new, note)) = self.reloader.poll(self.cfg) {
            if let Some(n) = new {
                tracing::info!("{note}");
                self.loaded = n;
            } else {
                tracing::warn!("{note}");
            }
            self.model_note = Some(note);
            outputs.status(&self.view("ready"));
        }
        self.expire_triggers(outputs);
    }

    /// Triggers past their window get their Fail (fault NoFrame), oldest first.
    fn expire_triggers(&mut self, outputs: &mut Outputs<'_>) {
        let window = Duration::from_millis(self.cfg.trigger_window_ms);
        while !self.max_frames_reached()
            && self.pending.front().is_some_and(|t| t.at.elapsed() >= window)
        {
            let id = self.pending.pop_front().and_then(|t| t.id);
            let msg = format!("no frame within {} ms of the trigger", self.cfg.trigger_window_ms);
            let frame = source::Frame { name: "trigger".into(), bytes: Err(msg) };
            self.inspect(outputs, frame, Fault::NoFrame, id);
        }
    }

    /// One command: carried out if its link enables it and the link's rate allows (else `Busy`), then
    /// answered on that link.
    fn command(&mut self, outputs: &mut Outputs<'_>, link: Link, id: u32, command: Incoming) {
        let (via, allowed, rate) = match link {
            Link::Serial => (
                Trigger::Serial,
                self.cfg.outputs.serial.as_ref().map_or(&[][..], |s| &s.commands),
                &mut self.rates[0],
            ),
            Link::Mqtt => (
                Trigger::Mqtt,
                self.cfg.outputs.mqtt.as_ref().map_or(&[][..], |m| &m.commands),
                &mut self.rates[1],
            ),
        };
        let code = if !rate.allow() {
            AckCode::Busy
        } else {
            match &command {
                Incoming::Wire(c) => commands::apply(
                    id,
                    *c,
                    via,
                    allowed,
                    self.loaded.threshold_range,
                    self.cfg,
                    &self.loaded.model_sha,
                    &mut self.loaded.threshold,
                    &mut self.pending,
                ),
                Incoming::LoadModel if allowed.contains(&config::CommandName::LoadModel) => {
                    self.reloader.request(self.cfg, &self.trusted);
                    AckCode::Ok
                }
                Incoming::LoadModel => {
                    tracing::warn!("command load_model refused: not enabled on this link");
                    AckCode::Unsupported
                }
                Incoming::Unknown(name) => {
                    tracing::warn!("unknown command {name:?}");
                    AckCode::Unsupported
                }
            }
        };
        outputs.answer(link, id, &command, code, &self.view("ready"));
    }

    /// Inspects one frame (or reports why there is none: `bytes` is `Err`, `fault` says why) and
    /// tells every output; `request_id` is the trigger's that asked for it.
    fn inspect(
        &mut self,
        outputs: &mut Outputs<'_>,
        frame: source::Frame,
        fault: Fault,
        request_id: Option<u32>,
    ) {
        let threshold = self.loaded.threshold;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        outputs.begin();
        let outcome = match frame.bytes {
            Ok(bytes) => self.loaded.inspector.inspect(seq, bytes, threshold),
            Err(msg) => pipeline::Outcome {
                seq,
                fail: true,
                score: f32::NAN,
                threshold,
                fault,
                error: Some(msg),
                map: None,
                map_size: (0, 0),
                frame: None,
                latency_ms: 0.0,
            },
        };
        let c = &mut self.counters;
        c.frames = c.frames.wrapping_add(1);
        if outcome.fail {
            c.fails = c.fails.wrapping_add(1);
        } else {
            c.passes = c.passes.wrapping_add(1);
        }
        if !outcome.fault.is_none() {
            self.last_fault = outcome.fault;
        }
        let verdict = if outcome.fail { Verdict::Fail } else { Verdict::Pass };
        // The dedup key of this result everywhere it is reported (boot time + frame number).
        let uid = format!("{:013}-{seq:010}", self.boot_ms);
        let line = ResultLine {
            uid: Some(uid),
            request_id,
            seq: Some(seq),
            score: outcome.score.is_finite().then_some(outcome.score),
            fault: Some(outcome.fault),
            error: outcome.error.clone(),
            latency_ms: outcome.latency_ms,
            ..ResultLine::new(frame.name.clone(), verdict, threshold)
        };
        let report = Report { line: &line, seq, verdict, outcome: &outcome, name: &frame.name };
        outputs.result(&report, &self.view("ready"));
        outputs.count(&mut self.counters);
    }
}
