//! `kill -9` at random points of `device run` while it persists thresholds (serial `SetThreshold`
//! over a pseudo-terminal) and spools results for an MQTT broker that is down, 200 times; then a
//! broker comes up and the station runs once more:
//! - after every kill, `threshold.json` parses and holds a value that was set (never a torn write);
//! - no spool entry is ever quarantined (every entry on disk is whole);
//! - every result any run printed on stdout arrives at the broker exactly once (by `uid`): nothing
//!   shown is lost, nothing is sent twice.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use shared::wire::{self, Message, Request};

mod common;
use common::{demo, free_port, start_broker};

/// A small deterministic generator for the kill points (no `rand` dependency).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn spawn_station(cfg: &std::path::Path, lines: &Arc<Mutex<Vec<String>>>) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_device"))
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting device run");
    let out = child.stdout.take().expect("piped stdout");
    let lines = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            lines.lock().unwrap_or_else(|p| p.into_inner()).push(l);
        }
    });
    child
}

#[test]
fn kill_9_loop_never_tears_state_or_loses_a_shown_result() -> anyhow::Result<()> {
    let (mut master, slave_path, _slave) = common::raw_pty()?;
    // Drain what the stations send on the serial line so that a full buffer never blocks them.
    let mut reader = master.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });

    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let inbox = d.join("inbox");
    std::fs::create_dir_all(&inbox)?;
    std::fs::copy(demo().join("samples/good_000.png"), inbox.join("a.png"))?;
    std::fs::copy(demo().join("samples/scratch_000.png"), inbox.join("b.png"))?;
    let port = free_port()?;
    let cfg = d.join("station.toml");
    std::fs::write(
        &cfg,
        format!(
            "station_id = \"kl\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n\
             [source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 10\n\
             [outputs.serial]\nport = \"{}\"\ncommands = [\"set_threshold\"]\n\
             [outputs.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nprefix = \"ge\"\n",
            demo().display(),
            slave_path.display()
        ),
    )?;
    let threshold_file = d.join("state/threshold.json");
    let quarantine = d.join("state/spool/quarantine");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut rng = Lcg(0x5eed);
    let mut sent: Vec<f32> = Vec::new();
    let rounds = 200;
    let (mut previous, mut changed) = (None, 0);
    for i in 0..rounds {
        // A threshold inside the demo bundle's range, different from the last one.
        let t = 0.5 + (i % 40) as f32 * 0.01;
        sent.push(t);
        let request = wire::encode_frame_vec(&Message::Request(Request {
            id: i,
            command: wire::Command::SetThreshold(t),
        }))?;
        let mut child = spawn_station(&cfg, &lines);
        let written = master.write_all(&request);
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        let killed = child.kill();
        child.wait()?;
        written?;
        killed?;
        if let Ok(bytes) = std::fs::read(&threshold_file) {
            let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
                format!("round {i}: threshold.json is torn: {:?}", String::from_utf8_lossy(&bytes))
            })?;
            let got = v["threshold"].as_f64().context("no threshold")? as f32;
            ensure!(sent.contains(&got), "round {i}: threshold {got} was never set");
            changed += usize::from(previous != Some(got));
            previous = Some(got);
        }
        ensure!(
            !quarantine.exists() || std::fs::read_dir(&quarantine)?.next().is_none(),
            "round {i}: a spool entry was torn"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let shown: Vec<String> = lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["uid"].as_str().map(str::to_owned))
        .collect();
    ensure!(shown.len() >= 50, "too few results shown before the kills: {}", shown.len());
    // The kills must also land after threshold writes, not only before them.
    ensure!(changed >= 20, "the threshold changed in only {changed} of {rounds} rounds");

    // The broker comes up; one more run sends what the killed ones spooled.
    let conf = d.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )?;
    let mut broker = start_broker(&conf, port)?;
    let received: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut opts = MqttOptions::new("kill-loop-sub", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (sub, mut conn) = Client::new(opts, 64);
    sub.subscribe("ge/kl/result", QoS::AtLeastOnce)?;
    {
        let received = received.clone();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) {
                            if let Some(uid) = v["uid"].as_str() {
                                let mut r = received.lock().unwrap_or_else(|p| p.into_inner());
                                *r.entry(uid.to_owned()).or_default() += 1;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut last = spawn_station(&cfg, &lines);
    let end = Instant::now() + Duration::from_secs(90);
    let all_in = || {
        let r = received.lock().unwrap_or_else(|p| p.into_inner());
        shown.iter().all(|u| r.contains_key(u))
    };
    while Instant::now() < end && !all_in() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let term = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(last.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    last.wait()?;
    term?;
    std::thread::sleep(Duration::from_millis(300));
    let _ = broker.kill();
    let _ = broker.wait();
    let r = received.lock().unwrap_or_else(|p| p.into_inner());
    let missing: Vec<&String> = shown.iter().filter(|u| !r.contains_key(*u)).collect();
    let twice: Vec<(&String, &u32)> = r.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "{rounds} kills: threshold changed in {changed} rounds; {} results shown, {} received, \
         {} missing, {} duplicated",
        shown.len(),
        r.len(),
        missing.len(),
        twice.len()
    );
    ensure!(missing.is_empty(), "results shown but never delivered: {missing:?}");
    ensure!(twice.is_empty(), "results delivered twice: {twice:?}");
    Ok(())
}
