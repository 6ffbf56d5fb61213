//! `device run --config station.toml`: the station service.
//!
//! frame source -> [`pipeline::Inspector`] (engine on a worker thread, per-frame deadline) -> verdict
//! -> outputs: stdout JSON lines, serial (`shared::wire` frames), GPIO handshake, failing frames on disk.
//! Every frame gets a verdict: a decode error, an engine error or a missed deadline is a Fail with the
//! fault in the result and the status, and the loop goes on. A threshold set over the serial link is
//! applied at once and persisted in `state_dir/threshold.json` (reloaded at start when the model is the
//! same).
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use shared::wire::{
    Ack, AckCode, Command, Counters, Fault, InspectionResult, Message, StationId, StationState,
    Status, Verdict,
};

pub mod camera;
pub mod commands;
pub mod config;
pub mod disk;
pub mod frame;
pub mod gpio;
pub mod model;
pub mod mqtt;
pub mod notify;
pub mod pipeline;
pub mod record;
pub mod serial;
pub mod source;
pub mod state;
pub mod trigger;

use commands::apply;
pub use config::StationConfig;
use config::{SourceConfig, Trigger};
pub use record::ResultLine;
use record::{map_png, now_ms, publish_status, wire_map, MqttResult, StatusJson};

/// Where frames come from.
enum Source {
    Folder(source::FolderSource),
    Camera(camera::CameraSource),
}

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
    mut gpio: Option<gpio::Handshake<P>>,
) -> Result<Summary> {
    let trusted = crate::engine::read_trusted_keys(&cfg.trusted_keys)
        .context("reading trusted_keys of the station configuration")?;
    crate::engine::set_threads(cfg.threads);
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state_dir {}", cfg.state_dir.display()))?;
    state::clean_stale_tmp(&cfg.state_dir);
    let (mut loaded, mut model_note) = model::start(cfg, &trusted)?;
    let mut reloader = model::Reloader::default();
    let station_id: StationId = StationId::try_from(cfg.station_id.as_str()).unwrap_or_default();
    let mut source = match &cfg.source {
        SourceConfig::Folder { path, poll_ms, existing, settle_ms } => Source::Folder(
            source::FolderSource::new(path, Duration::from_millis(*poll_ms), *existing)
                .with_context(|| format!("source folder {}", path.display()))?
                .with_limits(cfg.limits.max_bytes, Duration::from_millis(*settle_ms)),
        ),
        SourceConfig::V4l(c) => Source::Camera(camera::CameraSource::new(c.clone())),
    };
    let hw_trigger = match (&cfg.trigger, &cfg.gpio_trigger) {
        (Trigger::Gpio, Some(t)) => {
            let pin = trigger::CdevInputPin::open(&t.chip, t.line).map_err(anyhow::Error::msg)?;
            Some(trigger::watch(pin, t.edge, Duration::from_millis(t.debounce_ms)))
        }
        _ => None,
    };
    let link = match &cfg.outputs.serial {
        Some(s) => Some(serial::SerialLink::open(&s.port, s.baud).map_err(anyhow::Error::msg)?),
        None => None,
    };
    if let Some(g) = gpio.as_mut() {
        g.start()?;
    }
    let mut disk = match &cfg.outputs.disk {
        Some(d) => Some(
            disk::DiskOutput::new(&d.dir, d.keep)
                .with_context(|| format!("outputs.disk.dir {}", d.dir.display()))?,
        ),
        None => None,
    };

    let boot_ms = now_ms();
    let mqtt_out = match &cfg.outputs.mqtt {
        Some(m) => {
            let st = StatusJson::new(
                &cfg.station_id,
                "ready",
                &loaded,
                model_note.as_deref(),
                &Counters::default(),
                Fault::None,
            );
            let first = serde_json::to_string(&st).unwrap_or_default();
            Some(
                mqtt::MqttOutput::start(m, &cfg.station_id, &cfg.state_dir.join("spool"), first)
                    .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };

    let started = Instant::now();
    let mut counters = Counters::default();
    let mut last_fault = Fault::None;
    let mut seq: u32 = 0;
    let mut status_seq: u32 = 0;
    let mut pending_triggers = std::collections::VecDeque::<commands::PendingTrigger>::new();
    let trigger_window = Duration::from_millis(cfg.trigger_window_ms);
    let (mut serial_rate, mut mqtt_rate) =
        (commands::RateLimit::default(), commands::RateLimit::default());
    let status = |counters: &Counters, last_fault: Fault, l: &model::Loaded, seq: u32| Status {
        station_id: station_id.clone(),
        seq,
        timestamp_ms: now_ms(),
        uptime_s: started.elapsed().as_secs() as u32,
        state: if last_fault.is_none() { StationState::Ready } else { StationState::Fault },
        threshold: l.threshold,
        model_id: l.mid,
        counters: *counters,
        last_fault,
    };
    notify::ready(&format!("inspecting with {}", cfg.model.display()));
    let mut watchdog = notify::Watchdog::from_env();
    while !stop.load(Ordering::Relaxed) {
        watchdog.ping();
        // A new bundle (SIGHUP / load_model) is loaded beside the running one and swapped in here,
        // between two frames.
        if reload.swap(false, Ordering::Relaxed) {
            reloader.request(cfg, &trusted);
        }
        if let Some((new, note)) = reloader.poll(cfg) {
            if let Some(n) = new {
                tracing::info!("{note}");
                loaded = n;
            } else {
                tracing::warn!("{note}");
            }
            model_note = Some(note);
            if let Some(m) = &mqtt_out {
                publish_status(
                    m,
                    &cfg.station_id,
                    "ready",
                    &loaded,
                    model_note.as_deref(),
                    &counters,
                    last_fault,
                );
            }
        }
        if cfg.max_frames.is_some_and(|m| u64::from(counters.frames) >= m) {
            break;
        }
        // Requests from the line (serial and MQTT), applied in arrival order per link; a few per pass
        // and at most COMMANDS_PER_SECOND per link (more: Busy), so a flood cannot stop inspection.
        for req in std::iter::from_fn(|| link.as_ref().and_then(|l| l.try_request()))
            .take(commands::COMMANDS_PER_PASS)
        {
            let code = if !serial_rate.allow() {
                AckCode::Busy
            } else {
                apply(
                    req.id,
                    req.command,
                    Trigger::Serial,
                    cfg.outputs.serial.as_ref().map_or(&[][..], |s| &s.commands),
                    loaded.threshold_range,
                    cfg,
                    &loaded.model_sha,
                    &mut loaded.threshold,
                    &mut pending_triggers,
                )
            };
            if let Some(l) = &link {
                let _ = l.send(&Message::Ack(Ack { id: req.id, code }));
                if req.command == Command::GetStatus {
                    status_seq = status_seq.wrapping_add(1);
                    let st = status(&counters, last_fault, &loaded, status_seq);
                    let _ = l.send(&Message::Status(st));
                }
            }
        }
        for c in std::iter::from_fn(|| mqtt_out.as_ref().and_then(|m| m.try_command()))
            .take(commands::COMMANDS_PER_PASS)
        {
            let mqtt_commands = cfg.outputs.mqtt.as_ref().map_or(&[][..], |m| &m.commands);
            let code = match c.to_command() {
                _ if !mqtt_rate.allow() => AckCode::Busy,
                None if c.command == config::CommandName::LoadModel.name() => {
                    if mqtt_commands.contains(&config::CommandName::LoadModel) {
                        reloader.request(cfg, &trusted);
                        AckCode::Ok
                    } else {
                        tracing::warn!("command load_model refused: not enabled on this link");
                        AckCode::Unsupported
                    }
                }
                Some(k) => apply(
                    c.id,
                    k,
                    Trigger::Mqtt,
                    mqtt_commands,
                    loaded.threshold_range,
                    cfg,
                    &loaded.model_sha,
                    &mut loaded.threshold,
                    &mut pending_triggers,
                ),
                None => AckCode::Unsupported,
            };
            if let Some(m) = &mqtt_out {
                m.ack(&mqtt::MqttAck { id: c.id, code: format!("{code:?}").to_lowercase() });
                publish_status(
                    m,
                    &cfg.station_id,
                    "ready",
                    &loaded,
                    model_note.as_deref(),
                    &counters,
                    last_fault,
                );
            }
        }
        if let Some(rx) = &hw_trigger {
            for _ in rx.try_iter() {
                if pending_triggers.len() < commands::MAX_PENDING_TRIGGERS {
                    let at = Instant::now();
                    pending_triggers.push_back(commands::PendingTrigger { id: None, at });
                }
            }
        }
        // Triggered: each trigger gets exactly one result, in order: its frame, or a Fail with
        // fault NoFrame once `trigger_window_ms` has passed without one.
        let mut wait = Duration::from_millis(50);
        let mut no_frame = None;
        if cfg.trigger != Trigger::FreeRun {
            let Some(front) = pending_triggers.front() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            match trigger_window.checked_sub(front.at.elapsed()) {
                Some(left) if !left.is_zero() => wait = wait.min(left),
                _ => no_frame = pending_triggers.pop_front(),
            }
        }
        let request_id = no_frame.as_ref().and_then(|t| t.id);
        let is_no_frame = no_frame.is_some();
        let frame = match (&mut source, no_frame) {
            (_, Some(_)) => source::Frame {
                name: "trigger".into(),
                bytes: Err(format!("no frame within {} ms of the trigger", cfg.trigger_window_ms)),
            },
            (Source::Folder(f), None) => match f.next(wait) {
                Some(frame) => frame,
                None => continue,
            },
            // A triggered capture takes a frame exposed after the trigger, not one queued before.
            (Source::Camera(c), None) => match c.capture_fresh(cfg.trigger != Trigger::FreeRun) {
                Ok(frame) => frame,
                Err(e) => {
                    // No frame: a fault in the status; a pending trigger still gets its (Fail) result.
                    last_fault = Fault::Camera;
                    tracing::warn!("{e}");
                    if pending_triggers.is_empty() {
                        continue;
                    }
                    source::Frame { name: "camera".into(), bytes: Err(e) }
                }
            },
        };
        let request_id = match (request_id, cfg.trigger) {
            (Some(id), _) => Some(id),
            (None, Trigger::FreeRun) => None,
            // The trigger this frame answers (a NoFrame result popped its own above).
            (None, _) if is_no_frame => None,
            (None, _) => pending_triggers.pop_front().and_then(|t| t.id),
        };
        let threshold = loaded.threshold;
        seq = seq.wrapping_add(1);
        if let Some(g) = gpio.as_mut() {
            if let Err(e) = g.begin() {
                tracing::warn!("{e}");
            }
        }
        let outcome = match frame.bytes {
            Ok(bytes) => loaded.inspector.inspect(seq, bytes, threshold),
            Err(msg) => pipeline::Outcome {
                seq,
                fail: true,
                score: f32::NAN,
                threshold,
                fault: if is_no_frame {
                    Fault::NoFrame
                } else if matches!(source, Source::Camera(_)) {
                    Fault::Camera
                } else {
                    Fault::Decode
                },
                error: Some(msg),
                map: None,
                map_size: (0, 0),
                frame: None,
                latency_ms: 0.0,
            },
        };
        if let Some(g) = gpio.as_mut() {
            if let Err(e) = g.finish(outcome.fail) {
                tracing::warn!("{e}");
            }
        }
        counters.frames = counters.frames.wrapping_add(1);
        if outcome.fail {
            counters.fails = counters.fails.wrapping_add(1);
        } else {
            counters.passes = counters.passes.wrapping_add(1);
        }
        if !outcome.fault.is_none() {
            last_fault = outcome.fault;
        }
        let verdict = if outcome.fail { Verdict::Fail } else { Verdict::Pass };
        // The dedup key of this result everywhere it is reported (boot time + frame number).
        let uid = format!("{boot_ms:013}-{seq:010}");
        let line = ResultLine {
            uid: Some(uid.clone()),
            request_id,
            seq: Some(seq),
            score: outcome.score.is_finite().then_some(outcome.score),
            fault: Some(outcome.fault),
            error: outcome.error.clone(),
            latency_ms: outcome.latency_ms,
            ..ResultLine::new(frame.name.clone(), verdict, threshold)
        };
        // Into the MQTT spool first: a result shown anywhere is one the spool holds (a kill between
        // the two can only leave a spooled result that stdout did not print, never the reverse).
        if let Some(m) = &mqtt_out {
            let j = MqttResult {
                station: &cfg.station_id,
                timestamp_ms: now_ms(),
                model_id: loaded.mid.to_string(),
                line: &line,
            };
            match serde_json::to_vec(&j) {
                Ok(bytes) => {
                    if let Err(e) = m.result(&uid, &bytes) {
                        tracing::warn!("outputs.mqtt: {e}");
                    }
                }
                Err(e) => tracing::warn!("outputs.mqtt: {e}"),
            }
        }
        if cfg.outputs.stdout {
            if let Ok(s) = serde_json::to_string(&line) {
                println!("{s}");
            }
        }
        if let Some(l) = &link {
            let (mw, mh) = outcome.map_size;
            let r = InspectionResult {
                station_id: station_id.clone(),
                frame_seq: seq,
                timestamp_ms: now_ms(),
                verdict,
                fault: outcome.fault,
                score: outcome.score,
                threshold,
                model_id: loaded.mid,
                latency_us: (outcome.latency_ms * 1e3) as u32,
                anomaly_map: outcome.map.as_deref().and_then(|m| wire_map(m, mw, mh)),
            };
            if let Err(e) = l.send(&Message::Inspection(r)) {
                tracing::warn!("{e}");
            }
        }
        if let Some(m) = &mqtt_out {
            if let (Some(map), Some(f)) = (outcome.map.as_deref(), outcome.frame.as_ref()) {
                if let Some(png) = map_png(f, map, outcome.map_size) {
                    m.map(png);
                }
            }
            counters.spool_dropped = m.dropped();
            publish_status(
                m,
                &cfg.station_id,
                "ready",
                &loaded,
                model_note.as_deref(),
                &counters,
                last_fault,
            );
        }
        if outcome.fail {
            if let (Some(d), Some(f)) = (disk.as_mut(), outcome.frame.as_ref()) {
                let (mw, mh) = outcome.map_size;
                let map = outcome.map.as_deref().map(|m| (m, mw, mh));
                if let Err(e) = d.store(seq, &frame.name, f, map) {
                    tracing::warn!("outputs.disk: {e}");
                }
            }
        }
    }
    notify::stopping();
    if let Some(g) = gpio.as_mut() {
        let _ = g.stop();
    }
    if let Some(m) = mqtt_out {
        counters.spool_dropped = m.dropped();
        publish_status(
            &m,
            &cfg.station_id,
            "stopping",
            &loaded,
            model_note.as_deref(),
            &counters,
            last_fault,
        );
        // What the spool can send in 2 s goes now; the rest stays on disk for the next start.
        m.close(Duration::from_secs(2));
    }
    Ok(Summary { counters, threshold: loaded.threshold, last_fault, model_note })
}
