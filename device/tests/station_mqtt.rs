//! The station's MQTT output against a real `mosquitto` on 127.0.0.1 (a free port): results arrive on
//! `<prefix>/<station>/result` in order; the broker is stopped mid-stream and restarted; every result
//! arrives (at least once, with the `uid` dedup key), none is lost, and an MQTT command changes the
//! threshold with an ack. Commands are trusted only as configured: a retained `set_threshold` (which
//! the broker replays at every reconnect) is ignored, a threshold outside the bundle's range is
//! refused, a command the link does not enable is answered `unsupported`.
use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use device::station::{self, StationConfig};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

mod common;
use common::{demo, free_port, start_broker};

fn stop_broker(mut child: Child) -> anyhow::Result<()> {
    // SIGTERM: mosquitto writes its persistence file (the subscriber's session) and exits.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    child.wait()?;
    Ok(())
}

fn drop_files(inbox: &Path, from: usize, to: usize) -> anyhow::Result<()> {
    let samples = ["good_000.png", "color_000.png", "good_001.png", "scratch_000.png"];
    for i in from..to {
        let src = demo().join("samples").join(samples[i % samples.len()]);
        let tmp = inbox.join(format!(".{i:03}.tmp"));
        std::fs::copy(&src, &tmp)?;
        std::fs::rename(&tmp, inbox.join(format!("{i:03}.png")))?;
    }
    Ok(())
}

#[test]
fn results_survive_a_broker_restart_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let db = dir.path().join("db");
    std::fs::create_dir_all(&db)?;
    let conf = dir.path().join("mosquitto.conf");
    let mut f = std::fs::File::create(&conf)?;
    writeln!(
        f,
        "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
        db.display()
    )?;
    drop(f);
    let broker = start_broker(&conf, port)?;

    // The line side: a persistent session, so results published while it reconnects are kept for it.
    let mut opts = MqttOptions::new("line-mes", "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (sub, mut conn) = Client::new(opts, 64);
    let (tx, rx) = mpsc::channel::<(String, Vec<u8>)>();
    let sub2 = sub.clone();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = sub2.try_subscribe("ge/test-1/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });

    // A retained command left on the broker: the station must not apply it when it subscribes, nor
    // after the broker restart below.
    sub.publish(
        "ge/test-1/cmd",
        QoS::AtLeastOnce,
        true,
        r#"{"id":8,"command":"set_threshold","value":0.2}"#,
    )?;
    std::thread::sleep(Duration::from_millis(300));

    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let text = format!(
        "station_id = \"test-1\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n\
         max_frames = 12\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n\
         [outputs]\nstdout = false\n[outputs.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nprefix = \"ge\"\n\
         commands = [\"set_threshold\", \"get_status\"]\n",
        demo().display()
    );
    let cfg = StationConfig::parse(&text, &dir.path().join("station.toml"))?;
    let station = std::thread::spawn(move || station::run(&cfg, &AtomicBool::new(false)));

    let mut results: Vec<serde_json::Value> = Vec::new();
    let mut acks = Vec::new();
    let mut maps = 0;
    let collect = |want: usize,
                   secs: u64,
                   results: &mut Vec<serde_json::Value>,
                   acks: &mut Vec<serde_json::Value>,
                   maps: &mut usize| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let uniq: std::collections::BTreeSet<String> =
                results.iter().map(|r| r["uid"].to_string()).collect();
            if uniq.len() >= want {
                break;
            }
            if let Ok((topic, payload)) = rx.recv_timeout(Duration::from_millis(100)) {
                if topic.ends_with("/result") {
                    if let Ok(v) = serde_json::from_slice(&payload) {
                        results.push(v);
                    }
                } else if topic.ends_with("/ack") {
                    if let Ok(v) = serde_json::from_slice(&payload) {
                        acks.push(v);
                    }
                } else if topic.ends_with("/map") {
                    assert!(payload.starts_with(b"\x89PNG"), "map is not a PNG");
                    *maps += 1;
                }
            }
        }
    };

    // Four frames with the broker up; a threshold command in between.
    std::thread::sleep(Duration::from_millis(500));
    drop_files(&inbox, 0, 4)?;
    collect(4, 60, &mut results, &mut acks, &mut maps);
    sub.publish(
        "ge/test-1/cmd",
        QoS::AtLeastOnce,
        false,
        r#"{"id":7,"command":"set_threshold","value":0.9}"#,
    )?;
    // Outside the bundle's threshold range (a threshold that passes every part): refused.
    sub.publish(
        "ge/test-1/cmd",
        QoS::AtLeastOnce,
        false,
        r#"{"id":9,"command":"set_threshold","value":1e30}"#,
    )?;
    // Not enabled on this link.
    sub.publish("ge/test-1/cmd", QoS::AtLeastOnce, false, r#"{"id":10,"command":"trigger"}"#)?;
    std::thread::sleep(Duration::from_millis(500));
    // Broker down: four more frames go to the spool.
    stop_broker(broker)?;
    drop_files(&inbox, 4, 8)?;
    std::thread::sleep(Duration::from_secs(2));
    // Broker back; four more.
    let broker = start_broker(&conf, port)?;
    drop_files(&inbox, 8, 12)?;
    collect(12, 90, &mut results, &mut acks, &mut maps);
    let summary = station.join().map_err(|_| anyhow::anyhow!("station panicked"))??;
    // Anything still in flight after the station's flush.
    collect(12, 5, &mut results, &mut acks, &mut maps);
    stop_broker(broker)?;

    assert_eq!(summary.counters.frames, 12);
    assert_eq!(summary.counters.spool_dropped, 0);
    // Zero lost, first arrivals in order; duplicates only as exact repeats of a uid.
    let mut first: Vec<u64> = Vec::new();
    for r in &results {
        let seq = r["seq"].as_u64().context("seq")?;
        if !first.contains(&seq) {
            first.push(seq);
        }
    }
    eprintln!(
        "{} result messages, {} unique, order {first:?}, {} acks, {maps} maps",
        results.len(),
        first.len(),
        acks.len()
    );
    assert_eq!(first, (1..=12).collect::<Vec<u64>>(), "every result once, in order");
    let code = |id: u64| acks.iter().find(|a| a["id"] == id).map(|a| a["code"].clone());
    eprintln!("acks: {acks:?}");
    assert_eq!(code(7), Some("ok".into()), "{acks:?}");
    assert_eq!(code(9), Some("invalidargument".into()), "{acks:?}");
    assert_eq!(code(10), Some("unsupported".into()), "{acks:?}");
    assert_eq!(code(8), None, "the retained command was applied: {acks:?}");
    let late = results.iter().find(|r| r["seq"] == 12).context("seq 12")?;
    assert_eq!(late["threshold"].as_f64().map(|t| t as f32), Some(0.9));
    assert!(maps > 0);
    Ok(())
}

/// The spool outlives the station: with the broker unreachable, a station with `spool_max = 3`
/// inspects five frames, drops the two oldest results (counted in `spool_dropped`) and exits with
/// three entries on disk; a new station started on the same state folder, with the broker up,
/// publishes those three first (in order, with the first boot's `uid`s), then its own result.
#[test]
fn spool_survives_a_station_restart_and_counts_its_drops() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let config = |frames: usize, existing: bool| -> anyhow::Result<StationConfig> {
        let text = format!(
            "station_id = \"test-2\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n\
             max_frames = {frames}\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n\
             existing = {existing}\n[outputs]\nstdout = false\n[outputs.mqtt]\nhost = \"127.0.0.1\"\nport = {port}\n\
             prefix = \"ge\"\nspool_max = 3\n",
            demo().display()
        );
        Ok(StationConfig::parse(&text, &dir.path().join("station.toml"))?)
    };
    let spooled = |d: &Path| -> anyhow::Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(d)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        v.sort();
        Ok(v)
    };
    let spool_dir = dir.path().join("state/spool");

    // First boot, no broker: five results (the files already waiting), room for three.
    drop_files(&inbox, 0, 5)?;
    let cfg = config(5, true)?;
    let first = std::thread::spawn(move || station::run(&cfg, &AtomicBool::new(false)));
    let summary = first.join().map_err(|_| anyhow::anyhow!("station panicked"))??;
    assert_eq!(summary.counters.frames, 5);
    assert_eq!(summary.counters.spool_dropped, 2, "two results over spool_max");
    let left = spooled(&spool_dir)?;
    eprintln!("left in the spool after the first boot: {left:?}");
    assert_eq!(left.len(), 3, "{left:?}");
    let seqs: Vec<&str> =
        left.iter().filter_map(|n| n.trim_end_matches(".json").rsplit('-').next()).collect();
    assert_eq!(seqs, ["0000000003", "0000000004", "0000000005"], "the newest three are kept");

    // Broker up, the line side subscribed, second boot on the same state folder.
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n"))?;
    let broker = start_broker(&conf, port)?;
    let (sub, mut conn) = Client::new(MqttOptions::new("line-mes-2", "127.0.0.1", port), 64);
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    let (subscribed_tx, subscribed) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = sub.try_subscribe("ge/test-2/result", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    subscribed.recv_timeout(Duration::from_secs(10)).context("the line side never subscribed")?;
    // The second boot skips the files the first one inspected; its frame is the one dropped below.
    let cfg = config(1, false)?;
    let second = std::thread::spawn(move || station::run(&cfg, &AtomicBool::new(false)));
    let mut uids: Vec<String> = Vec::new();
    let collect = |want: usize, uids: &mut Vec<String>| -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(60);
        while uids.len() < want && Instant::now() < end {
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(100)) {
                let uid = v["uid"].as_str().context("result without uid")?.to_string();
                if !uids.contains(&uid) {
                    uids.push(uid);
                }
            }
        }
        Ok(())
    };
    // The spooled results go out first; a new frame only after they left (otherwise a fourth result
    // would push the oldest out of the three-entry spool, as spool_max says).
    collect(3, &mut uids)?;
    drop_files(&inbox, 5, 6)?;
    collect(4, &mut uids)?;
    let summary = second.join().map_err(|_| anyhow::anyhow!("station panicked"))??;
    stop_broker(broker)?;
    eprintln!("published after the restart: {uids:?}");
    assert_eq!(summary.counters.spool_dropped, 0);
    let spooled_uids: Vec<String> =
        left.iter().map(|n| n.trim_end_matches(".json").to_string()).collect();
    assert_eq!(uids.len(), 4, "{uids:?}");
    assert_eq!(uids[..3], spooled_uids[..], "the spooled results first, in order");
    assert!(uids[3].ends_with("-0000000001") && uids[3] > uids[2], "then the new boot's: {uids:?}");
    assert!(spooled(&spool_dir)?.is_empty(), "the spool drained");
    Ok(())
}
