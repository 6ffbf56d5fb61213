//! MQTT output with a no-loss spool.
//!
//! Topics under `<prefix>/<station>/`: `result` (JSON, QoS 1, one per frame, in order), `map` (PNG heat-map
//! overlay, QoS 0), `status` (retained JSON; the broker's last will sets it to `"offline"`), `cmd` (JSON
//! commands in) and `ack` (JSON answers out).
//!
//! Every result is first written to the on-disk spool (`spool_dir/<seq>.json`, named so that file
//! order is publish order); one publisher thread sends the oldest entry with QoS 1 and deletes it only
//! when the broker acknowledged it (PUBACK). While the broker is unreachable entries accumulate and are
//! published in order when it returns; if the spool holds `spool_max` entries the oldest are dropped and
//! counted (`spool_dropped` in the status). An entry whose PUBACK was lost in a reconnect is sent again:
//! delivery is at least once, and each result carries a dedup key (`uid` = boot id + frame number).
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use serde::{Deserialize, Serialize};

use super::config::MqttConfig;
use super::inbox::{Inbox, Incoming, Link};
use shared::wire::Command;

/// A command received on `<prefix>/<station>/cmd`.
#[derive(Debug, Clone, Deserialize)]
pub struct MqttCommand {
    /// Echoed in the ack.
    #[serde(default)]
    pub id: u32,
    /// "set_threshold", "trigger" or "get_status".
    pub command: String,
    /// The new threshold for "set_threshold".
    #[serde(default)]
    pub value: Option<f32>,
}

impl MqttCommand {
    /// The command as the station loop takes it.
    pub fn to_incoming(&self) -> Incoming {
        match self.to_command() {
            Some(c) => Incoming::Wire(c),
            None if self.command == super::config::CommandName::LoadModel.name() => {
                Incoming::LoadModel
            }
            None => Incoming::Unknown(self.command.clone()),
        }
    }

    /// The wire command this names (`None` for an unknown name; a `set_threshold` without a value
    /// carries NaN, which the station refuses as out of range).
    pub fn to_command(&self) -> Option<Command> {
        match self.command.as_str() {
            "set_threshold" => Some(Command::SetThreshold(self.value.unwrap_or(f32::NAN))),
            "trigger" => Some(Command::Trigger),
            "get_status" => Some(Command::GetStatus),
            _ => None,
        }
    }
}

/// The answer on `<prefix>/<station>/ack`.
#[derive(Debug, Clone, Serialize)]
pub struct MqttAck {
    /// The command's id.
    pub id: u32,
    /// "ok", "invalid_argument", "unsupported", "failed".
    pub code: String,
}

/// The MQTT output.
pub struct MqttOutput {
    client: Client,
    topic: String,
    spool: Arc<Spool>,
    spool_failed: Arc<std::sync::atomic::AtomicU32>,
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

/// The on-disk queue of results not yet acknowledged by the broker.
struct Spool {
    dir: PathBuf,
    max: usize,
    queue: Mutex<VecDeque<PathBuf>>,
    dropped: AtomicU32,
    wake: Mutex<Option<Sender<()>>>,
}

impl Spool {
    fn open(dir: &Path, max: usize) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let stale = super::state::clean_stale_tmp(dir);
        if stale > 0 {
            tracing::warn!(
                "outputs.mqtt: removed {stale} unfinished spool write(s) in {}",
                dir.display()
            );
        }
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        old.sort();
        // An empty or unreadable entry is never published: it goes to `quarantine/`, counted.
        let quarantine = dir.join("quarantine");
        let mut bad = 0usize;
        old.retain(|p| {
            let ok = std::fs::read(p)
                .ok()
                .is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok());
            if !ok {
                bad += 1;
                let _ = std::fs::create_dir_all(&quarantine);
                if let Some(name) = p.file_name() {
                    let _ = std::fs::rename(p, quarantine.join(name));
                }
            }
            ok
        });
        if bad > 0 {
            tracing::warn!(
                "outputs.mqtt: {bad} empty or corrupt spool entr(ies) moved to {}",
                quarantine.display()
            );
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            max: max.max(1),
            queue: Mutex::new(old.into()),
            dropped: AtomicU32::new(0),
            wake: Mutex::new(None),
        })
    }

    fn push(&self, key: &str, payload: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(format!("{key}.json"));
        super::state::write_atomic(&path, payload)?;
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(path);
        while q.len() > self.max {
            if let Some(old) = q.pop_front() {
                let _ = std::fs::remove_file(old);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(q);
        if let Some(w) = self.wake.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = w.send(());
        }
        Ok(())
    }

    fn front(&self) -> Option<PathBuf> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).front().cloned()
    }

    fn pop(&self, path: &Path) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.front().is_some_and(|f| f == path) {
            q.pop_front();
        }
        let _ = std::fs::remove_file(path);
    }

    fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl MqttOutput {
    /// Connects (in the background) and starts the spool publisher; `status_json` is the first
    /// retained status.
    pub fn start(
        cfg: &MqttConfig,
        station: &str,
        spool_dir: &Path,
        status_json: String,
        inbox: Inbox,
    ) -> Result<Self, String> {
        let topic = format!("{}/{}", cfg.prefix, station);
        let mut opts = MqttOptions::new(
            cfg.client_id.clone().unwrap_or_else(|| format!("glass-edge-{station}")),
            cfg.host.clone(),
            cfg.port,
        );
        opts.set_keep_alive(Duration::from_secs(cfg.keepalive_s.max(5)));
        // Heat-map PNGs are tens of KB (rumqttc's default limit is 10 KB).
        opts.set_max_packet_size(4 << 20, 4 << 20);
        opts.set_clean_session(true);
        opts.set_last_will(LastWill::new(
            format!("{topic}/status"),
            "\"offline\"",
            QoS::AtLeastOnce,
            true,
        ));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts.set_credentials(u.clone(), p.clone());
        }
        let read = |f: &PathBuf| std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()));
        if cfg.tls {
            let ca = match &cfg.ca_file {
                Some(f) => read(f)?,
                None => return Err("outputs.mqtt.tls needs ca_file".into()),
            };
            let client_auth = match (&cfg.client_cert, &cfg.client_key) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                (None, None) => None,
                _ => return Err("outputs.mqtt: client_cert and client_key go together".into()),
            };
            opts.set_transport(Transport::tls(ca, client_auth, None));
        } else {
            // Said once at start, where an integrator reads the log: the link is readable and
            // writable by anyone on the network path.
            tracing::warn!(
                "outputs.mqtt talks plaintext to {}:{}: results, credentials and commands \
                 travel unencrypted; set tls = true with ca_file (and client_cert / client_key)",
                cfg.host,
                cfg.port
            );
            if cfg.client_cert.is_some() || cfg.client_key.is_some() {
                return Err("outputs.mqtt: client_cert / client_key need tls = true".into());
            }
        }
        let (client, mut connection) = Client::new(opts, 64);
        let spool = Arc::new(
            Spool::open(spool_dir, cfg.spool_max)
                .map_err(|e| format!("spool {}: {e}", spool_dir.display()))?,
        );
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ack_tx, ack_rx) = mpsc::channel::<u16>();
        let (pub_tx, pub_rx) = mpsc::channel::<u16>(); // packet ids of our QoS 1 publishes

        // Event loop: connection state, PUBACKs, commands.
        {
            let connected = connected.clone();
            let stop = stop.clone();
            let client = client.clone();
            let topic = topic.clone();
            std::thread::Builder::new()
                .name("mqtt-events".into())
                .spawn(move || {
                    let mut backoff = Duration::from_millis(200);
                    for ev in connection.iter() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match ev {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                connected.store(true, Ordering::Relaxed);
                                backoff = Duration::from_millis(200);
                                let _ =
                                    client.try_subscribe(format!("{topic}/cmd"), QoS::AtLeastOnce);
                                let _ = client.try_publish(
                                    format!("{topic}/status"),
                                    QoS::AtMostOnce,
                                    true,
                                    status_json.clone(),
                                );
                            }
                            Ok(Event::Incoming(Packet::PubAck(a))) => {
                                let _ = ack_tx.send(a.pkid);
                            }
                            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) if pkid != 0 => {
                                let _ = pub_tx.send(pkid);
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                // A retained command is a stale one: the broker replays it at every
                                // (re)connect, so it would be applied again and again.
                                if p.retain {
                                    tracing::warn!(
                                        "outputs.mqtt: ignoring a retained message on {}",
                                        p.topic
                                    );
                                } else if p.topic.ends_with("/cmd") {
                                    if let Ok(c) = serde_json::from_slice::<MqttCommand>(&p.payload)
                                    {
                                        inbox.offer_command(Link::Mqtt, c.id, c.to_incoming());
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(_) => {
                                connected.store(false, Ordering::Relaxed);
                                std::thread::sleep(backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(5));
                            }
                        }
                    }
                })
                .map_err(|e| format!("mqtt thread: {e}"))?;
        }

        // Spool publisher: oldest entry, QoS 1, delete on its PUBACK.
        {
            let spool = spool.clone();
            let connected = connected.clone();
            let stop = stop.clone();
            let client = client.clone();
            let topic = format!("{topic}/result");
            let (wake_tx, wake_rx) = mpsc::channel::<()>();
            *spool.wake.lock().unwrap_or_else(|p| p.into_inner()) = Some(wake_tx);
            std::thread::Builder::new()
                .name("mqtt-spool".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(path) = spool.front() else {
                            let _ = wake_rx.recv_timeout(Duration::from_millis(200));
                            continue;
                        };
                        if !connected.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                        let Ok(payload) = std::fs::read(&path) else {
                            spool.pop(&path); // vanished or unreadable: nothing to send
                            continue;
                        };
                        while pub_rx.try_recv().is_ok() {}
                        while ack_rx.try_recv().is_ok() {}
                        if client.publish(topic.clone(), QoS::AtLeastOnce, false, payload).is_err()
                        {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                        // Our packet id, then its PUBACK (or a retry after a timeout / reconnect).
                        let Ok(pkid) = pub_rx.recv_timeout(Duration::from_secs(5)) else {
                            continue;
                        };
                        let end = Instant::now() + Duration::from_secs(5);
                        loop {
                            match ack_rx.recv_timeout(end.saturating_duration_since(Instant::now()))
                            {
                                Ok(a) if a == pkid => {
                                    spool.pop(&path);
                                    break;
                                }
                                Ok(_) => continue,
                                Err(RecvTimeoutError::Timeout)
                                | Err(RecvTimeoutError::Disconnected) => break,
                            }
                        }
                    }
                })
                .map_err(|e| format!("mqtt thread: {e}"))?;
        }
        Ok(MqttOutput {
            client,
            topic,
            spool,
            connected,
            stop,
            spool_failed: Arc::new(std::sync::atomic::AtomicU32::new(0)),
        })
    }

    /// Queues one result (JSON) under `key` (sortable: publish order). When the spool cannot be
    /// written (disk full, I/O error) the failure is counted ([`MqttOutput::spool_failed`]) and the
    /// result is published directly, at QoS 0 (delivered when the broker is up; QoS 1 PUBACKs are
    /// the spool's, matched by packet id); the error says which happened.
    pub fn result(&self, key: &str, json: &[u8]) -> Result<(), String> {
        let Err(e) = self.spool.push(key, json) else { return Ok(()) };
        self.spool_failed.fetch_add(1, Ordering::Relaxed);
        let direct = self.client.try_publish(
            format!("{}/result", self.topic),
            QoS::AtMostOnce,
            false,
            json.to_vec(),
        );
        Err(match direct {
            Ok(()) => format!("spool write failed ({e}); result {key} published directly"),
            Err(d) => format!("spool write failed ({e}) and direct publish failed ({d})"),
        })
    }

    /// Results whose spool write failed (each published directly instead, see [`MqttOutput::result`]).
    pub fn spool_failed(&self) -> u32 {
        self.spool_failed.load(Ordering::Relaxed)
    }

    /// Sends the heat-map PNG (QoS 0; dropped while disconnected).
    pub fn map(&self, png: Vec<u8>) {
        if self.connected.load(Ordering::Relaxed) {
            let _ =
                self.client.try_publish(format!("{}/map", self.topic), QoS::AtMostOnce, false, png);
        }
    }

    /// Publishes the retained status (QoS 0: only results use QoS 1, so every PUBACK is a result's).
    pub fn status(&self, json: String) {
        let _ =
            self.client.try_publish(format!("{}/status", self.topic), QoS::AtMostOnce, true, json);
    }

    /// Answers a command.
    pub fn ack(&self, ack: &MqttAck) {
        if let Ok(s) = serde_json::to_string(ack) {
            let _ =
                self.client.try_publish(format!("{}/ack", self.topic), QoS::AtMostOnce, false, s);
        }
    }

    /// Results dropped because the spool was full.
    pub fn dropped(&self) -> u32 {
        self.spool.dropped.load(Ordering::Relaxed)
    }

    /// Entries waiting in the spool.
    pub fn pending(&self) -> usize {
        self.spool.len()
    }

    /// Waits up to `timeout` for the spool to drain, then leaves the way the last will would: the
    /// retained status becomes `"offline"`, then a clean disconnect (entries left stay on disk and
    /// are sent by the next start).
    pub fn close(self, timeout: Duration) {
        let end = Instant::now() + timeout;
        while self.spool.len() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.connected.load(Ordering::Relaxed) {
            let _ = self.client.try_publish(
                format!("{}/status", self.topic),
                QoS::AtMostOnce,
                true,
                "\"offline\"",
            );
        }
        let _ = self.client.try_disconnect();
        // The event loop sends the status and the DISCONNECT before it is told to stop.
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
    }
}
