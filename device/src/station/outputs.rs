//! Where the station's results go: every output (GPIO handshake, MQTT, stdout, serial link, failing
//! frames on disk) implements one trait, [`Output`], and the station loop calls them in a fixed order
//! for each event: a frame going into the engine ([`Output::begin`]), its result
//! ([`Output::result`]), a changed status ([`Output::status`]), the answer to a command
//! ([`Output::answer`]) and the stop ([`Output::stop`]). An output's own failure (a serial write, a
//! full disk) is logged and counted where it has a counter; it never stops the loop or the other
//! outputs.
use std::time::Duration;

use shared::wire::{
    Ack, AckCode, Command, Counters, Fault, InspectionResult, Message, StationId, StationState,
    Status, Verdict,
};

use super::inbox::{Incoming, Link};
use super::pipeline::Outcome;
use super::record::{map_png, now_ms, wire_map, MqttResult, ResultLine, StatusJson};
use super::{disk, gpio, model, mqtt, serial};

/// The station as the outputs report it.
pub struct View<'a> {
    /// `station_id` of the configuration.
    pub station: &'a str,
    /// The same, as the wire carries it.
    pub wire_id: &'a StationId,
    /// "ready" or "stopping" (MQTT status `state`).
    pub state: &'a str,
    /// The model in use.
    pub loaded: &'a model::Loaded,
    /// The last roll-back or reload.
    pub note: Option<&'a str>,
    /// Counters so far.
    pub counters: &'a Counters,
    /// The last fault.
    pub last_fault: Fault,
    /// Seconds since the station started.
    pub uptime_s: u32,
    /// Requests (commands, trigger edges) dropped because the loop's channel was full.
    pub requests_dropped: u32,
}

impl View<'_> {
    /// The wire status (serial `GetStatus`); `seq` numbers status reports.
    fn wire_status(&self, seq: u32) -> Status {
        Status {
            station_id: self.wire_id.clone(),
            seq,
            timestamp_ms: now_ms(),
            uptime_s: self.uptime_s,
            state: if self.last_fault.is_none() {
                StationState::Ready
            } else {
                StationState::Fault
            },
            threshold: self.loaded.threshold,
            model_id: self.loaded.mid,
            counters: *self.counters,
            last_fault: self.last_fault,
        }
    }
}

/// One frame's result.
pub struct Report<'a> {
    /// The record every JSON output prints.
    pub line: &'a ResultLine,
    /// Frame number.
    pub seq: u32,
    /// Pass or Fail.
    pub verdict: Verdict,
    /// The inspection (map, decoded frame, latency).
    pub outcome: &'a Outcome,
    /// File name or camera frame label.
    pub name: &'a str,
}

/// One of the station's outputs.
pub trait Output {
    /// A frame goes into the engine.
    fn begin(&mut self) {}
    /// The result of one frame (exactly one per frame, in frame order).
    fn result(&mut self, report: &Report<'_>, view: &View<'_>);
    /// The status changed outside a result (a model reloaded or refused).
    fn status(&mut self, _view: &View<'_>) {}
    /// A command from `link` was answered with `code`.
    fn answer(
        &mut self,
        _link: Link,
        _id: u32,
        _command: &Incoming,
        _code: AckCode,
        _v: &View<'_>,
    ) {
    }
    /// Adds what the output counts itself (MQTT spool drops) to `counters`.
    fn count(&self, _counters: &mut Counters) {}
    /// The station stops: safe state, flush what can be flushed.
    fn stop(&mut self, _view: &View<'_>) {}
}

/// The GPIO handshake: Busy while a frame is inspected, then Pass or Fail with a ResultValid pulse;
/// every line low on stop (and on drop, see [`gpio::Handshake`]).
pub struct GpioOutput<P: embedded_hal::digital::OutputPin>(pub gpio::Handshake<P>);

impl<P: embedded_hal::digital::OutputPin> Output for GpioOutput<P> {
    fn begin(&mut self) {
        if let Err(e) = self.0.begin() {
            tracing::warn!("{e}");
        }
    }
    fn result(&mut self, r: &Report<'_>, _: &View<'_>) {
        if let Err(e) = self.0.finish(r.outcome.fail) {
            tracing::warn!("{e}");
        }
    }
    fn stop(&mut self, _: &View<'_>) {
        if let Err(e) = self.0.stop() {
            tracing::warn!("{e}");
        }
    }
}

/// MQTT: each result into the spool (QoS 1 by the spool's publisher), the heat-map PNG, the retained
/// status, answers to MQTT commands. On stop: status `stopping`, up to 2 s to empty the spool, then
/// the retained `"offline"`.
pub struct MqttOut(pub Option<mqtt::MqttOutput>);

impl MqttOut {
    fn publish_status(&self, v: &View<'_>) {
        if let Some(m) = &self.0 {
            let st =
                StatusJson::new(v.station, v.state, v.loaded, v.note, v.counters, v.last_fault)
                    .with_spool(m)
                    .with_requests_dropped(v.requests_dropped);
            m.status(serde_json::to_string(&st).unwrap_or_default());
        }
    }
}

impl Output for MqttOut {
    fn result(&mut self, r: &Report<'_>, v: &View<'_>) {
        let Some(m) = &self.0 else { return };
        let j = MqttResult {
            station: v.station,
            timestamp_ms: now_ms(),
            model_id: v.loaded.mid.to_string(),
            line: r.line,
        };
        match serde_json::to_vec(&j) {
            Ok(bytes) => {
                if let Err(e) = m.result(r.line.uid.as_deref().unwrap_or_default(), &bytes) {
                    tracing::warn!("outputs.mqtt: {e}");
                }
            }
            Err(e) => tracing::warn!("outputs.mqtt: {e}"),
        }
        let o = r.outcome;
        if let (Some(map), Some(f)) = (o.map.as_deref(), o.frame.as_ref()) {
            if let Some(png) = map_png(f, map, o.map_size) {
                m.map(png);
            }
        }
        self.publish_status(v);
    }
    fn status(&mut self, v: &View<'_>) {
        self.publish_status(v);
    }
    fn answer(&mut self, link: Link, id: u32, _: &Incoming, code: AckCode, v: &View<'_>) {
        if let (Link::Mqtt, Some(m)) = (link, &self.0) {
            m.ack(&mqtt::MqttAck { id, code: code.as_str().to_string() });
            self.publish_status(v);
        }
    }
    fn count(&self, c: &mut Counters) {
        if let Some(m) = &self.0 {
            c.spool_dropped = m.dropped();
        }
    }
    fn stop(&mut self, v: &View<'_>) {
        self.publish_status(v);
        if let Some(m) = self.0.take() {
            // What the spool can send in 2 s goes now; the rest stays on disk for the next start.
            m.close(Duration::from_secs(2));
        }
    }
}

/// One JSON line per result on stdout (the record `device inspect` prints, plus `uid` and `seq`).
pub struct Stdout;

impl Output for Stdout {
    fn result(&mut self, r: &Report<'_>, _: &View<'_>) {
        if let Ok(s) = serde_json::to_string(r.line) {
            println!("{s}");
        }
    }
}

/// The serial link: an `Inspection` message per result (with the anomaly map cut to the wire's
/// size), an `Ack` for each serial request, and a `Status` after `GetStatus`.
pub struct SerialOut {
    link: serial::SerialLink,
    status_seq: u32,
}

impl SerialOut {
    /// Results and answers over `link`.
    pub fn new(link: serial::SerialLink) -> Self {
        SerialOut { link, status_seq: 0 }
    }

    fn send(&self, m: &Message) {
        if let Err(e) = self.link.send(m) {
            tracing::warn!("{e}");
        }
    }
}

impl Output for SerialOut {
    fn result(&mut self, r: &Report<'_>, v: &View<'_>) {
        let o = r.outcome;
        let (mw, mh) = o.map_size;
        self.send(&Message::Inspection(InspectionResult {
            station_id: v.wire_id.clone(),
            frame_seq: r.seq,
            timestamp_ms: now_ms(),
            verdict: r.verdict,
            fault: o.fault,
            score: o.score,
            threshold: o.threshold,
            model_id: v.loaded.mid,
            latency_us: (o.latency_ms * 1e3) as u32,
            anomaly_map: o.map.as_deref().and_then(|m| wire_map(m, mw, mh)),
        }));
    }
    fn answer(&mut self, link: Link, id: u32, command: &Incoming, code: AckCode, v: &View<'_>) {
        if link != Link::Serial {
            return;
        }
        self.send(&Message::Ack(Ack { id, code }));
        if code == AckCode::Ok && *command == Incoming::Wire(Command::GetStatus) {
            self.status_seq = self.status_seq.wrapping_add(1);
            self.send(&Message::Status(v.wire_status(self.status_seq)));
        }
    }
}

/// Failing frames (and their map overlays) on disk, the newest `keep` kept.
pub struct DiskOut(pub disk::DiskOutput);

impl Output for DiskOut {
    fn result(&mut self, r: &Report<'_>, _: &View<'_>) {
        let o = r.outcome;
        if let (true, Some(f)) = (o.fail, o.frame.as_ref()) {
            let (mw, mh) = o.map_size;
            let map = o.map.as_deref().map(|m| (m, mw, mh));
            if let Err(e) = self.0.store(r.seq, r.name, f, map) {
                tracing::warn!("outputs.disk: {e}");
            }
        }
    }
}

/// The outputs in the order they are told: GPIO first (the line waits on it), then MQTT (a result is
/// in the spool before it is shown anywhere else), stdout, serial, disk.
#[derive(Default)]
pub struct Outputs<'a>(Vec<Box<dyn Output + 'a>>);

impl<'a> Outputs<'a> {
    /// Adds `o` after the outputs already there.
    pub fn push(&mut self, o: impl Output + 'a) {
        self.0.push(Box::new(o));
    }

    /// See [`Output::begin`].
    pub fn begin(&mut self) {
        self.0.iter_mut().for_each(|o| o.begin());
    }

    /// See [`Output::result`].
    pub fn result(&mut self, r: &Report<'_>, v: &View<'_>) {
        self.0.iter_mut().for_each(|o| o.result(r, v));
    }

    /// See [`Output::status`].
    pub fn status(&mut self, v: &View<'_>) {
        self.0.iter_mut().for_each(|o| o.status(v));
    }

    /// See [`Output::answer`].
    pub fn answer(&mut self, link: Link, id: u32, c: &Incoming, code: AckCode, v: &View<'_>) {
        self.0.iter_mut().for_each(|o| o.answer(link, id, c, code, v));
    }

    /// See [`Output::count`].
    pub fn count(&self, c: &mut Counters) {
        self.0.iter().for_each(|o| o.count(c));
    }

    /// See [`Output::stop`].
    pub fn stop(&mut self, v: &View<'_>) {
        self.0.iter_mut().for_each(|o| o.stop(v));
    }
}
