//! `device run` as a library: the station on the demo bundle with a folder source.
//! - corrupt, truncated and empty image files get a Fail verdict with a Decode fault and the station
//!   keeps going; failing frames land on disk within the retention bound;
//! - over a pseudo-terminal pair, a line-side process sends `SetThreshold`, `GetStatus` and `Trigger`
//!   frames with garbage in between and receives the acks, the status and one result per trigger,
//!   judged at the new threshold (which is persisted).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use device::station::{self, StationConfig};
use shared::wire::{self, AckCode, Command, Fault, Message, Request, Verdict};

mod common;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo")
}

fn sample(name: &str) -> PathBuf {
    demo().join("samples").join(name)
}

fn config(dir: &Path, body: &str) -> anyhow::Result<StationConfig> {
    let text = format!(
        "station_id = \"test-1\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n{body}",
        demo().display()
    );
    Ok(StationConfig::parse(&text, &dir.join("station.toml"))?)
}

#[test]
fn bad_files_fail_and_the_station_keeps_running() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    std::fs::copy(sample("good_000.png"), inbox.join("a_good.png"))?;
    std::fs::write(inbox.join("b_garbage.png"), b"this is not an image at all")?;
    let png = std::fs::read(sample("color_000.png"))?;
    std::fs::write(inbox.join("c_truncated.png"), &png[..png.len() / 3])?;
    std::fs::write(inbox.join("d_empty.jpg"), b"")?;
    std::fs::copy(sample("color_000.png"), inbox.join("e_color.png"))?;
    std::fs::copy(sample("contamination_000.png"), inbox.join("f_contamination.png"))?;
    let cfg = config(
        dir.path(),
        "max_frames = 6\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n\
         [outputs.disk]\ndir = \"fails\"\nkeep = 1\n",
    )?;
    let s = station::run(&cfg, &AtomicBool::new(false))?;
    assert_eq!(s.counters.frames, 6);
    assert_eq!(s.counters.passes, 1, "only the good part passes: {:?}", s.counters);
    assert_eq!(s.counters.fails, 5);
    assert_eq!(s.last_fault, Fault::Decode);
    // keep = 1: only the last failing frame (and its map) stays.
    let mut kept: Vec<String> = std::fs::read_dir(dir.path().join("fails"))?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[0].contains("f_contamination") && kept[1].ends_with("_map.png"), "{kept:?}");
    Ok(())
}

fn frame(id: u32, command: Command) -> anyhow::Result<Vec<u8>> {
    Ok(wire::encode_frame_vec(&Message::Request(Request { id, command }))?)
}

#[test]
fn serial_requests_over_a_pty() -> anyhow::Result<()> {
    let (mut master, slave_path, _slave) = common::raw_pty()?;
    let dir = tempfile::tempdir()?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    std::fs::copy(sample("good_000.png"), inbox.join("1.png"))?;
    std::fs::copy(sample("scratch_000.png"), inbox.join("2.png"))?;
    let cfg = config(
        dir.path(),
        &format!(
            "max_frames = 2\ntrigger = \"serial\"\n[source]\nkind = \"folder\"\npath = \"inbox\"\n\
             poll_ms = 20\n[outputs]\nstdout = false\n[outputs.serial]\nport = \"{}\"\n\
             commands = [\"set_threshold\", \"trigger\", \"get_status\"]\n",
            slave_path.display()
        ),
    )?;
    let state = cfg.state_dir.clone();
    let station = std::thread::spawn(move || station::run(&cfg, &AtomicBool::new(false)));

    let rx = common::wire_messages(master.try_clone()?);
    // Garbage, requests, more garbage and a corrupt frame. Line noise ends with a delimiter (a sender
    // starts each frame with 0x00 so that the receiver resynchronises after noise).
    let mut out = vec![0x13, 0x37, 0x00, 0xff, 0xfe, 0x00];
    out.extend(frame(1, Command::SetThreshold(0.5))?);
    out.extend([0x55; 9]);
    out.push(0x00);
    out.extend(frame(2, Command::SetThreshold(f32::NAN))?);
    let mut corrupt = frame(3, Command::GetStatus)?;
    corrupt[2] ^= 0x40;
    out.extend(corrupt);
    out.extend(frame(4, Command::GetStatus)?);
    out.extend(frame(5, Command::Trigger)?);
    out.extend(frame(6, Command::Trigger)?);
    // Give the station time to open the port before writing.
    std::thread::sleep(Duration::from_millis(1500));
    master.write_all(&out)?;
    master.flush()?;

    let mut acks = Vec::new();
    let mut results = Vec::new();
    let mut statuses = 0;
    let end = Instant::now() + Duration::from_secs(120);
    while results.len() < 2 && Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Message::Ack(a)) => acks.push((a.id, a.code)),
            Ok(Message::Inspection(r)) => results.push(r),
            Ok(Message::Status(s)) => {
                statuses += 1;
                assert_eq!(s.threshold, 0.5);
            }
            _ => {}
        }
    }
    let summary = station.join().map_err(|_| anyhow::anyhow!("station panicked"))??;
    assert_eq!(
        acks,
        vec![
            (1, AckCode::Ok),
            (2, AckCode::InvalidArgument),
            (4, AckCode::Ok),
            (5, AckCode::Ok),
            (6, AckCode::Ok)
        ],
        "the corrupt frame (id 3) is dropped, the others answered in order"
    );
    assert_eq!(statuses, 1);
    assert_eq!(results.len(), 2, "one result per trigger");
    assert_eq!(summary.counters.frames, 2);
    for r in &results {
        assert_eq!(r.threshold, 0.5);
        assert_eq!(r.station_id.as_str(), "test-1");
        // Every demo sample scores above 0.5 (the lowest, good_000, 0.518): both parts fail at the new threshold.
        assert_eq!(r.verdict, Verdict::Fail, "{r:?}");
        assert!(r.anomaly_map.is_some());
    }
    let saved =
        std::fs::read_to_string(state.join("threshold.json")).context("persisted threshold")?;
    assert!(saved.contains("0.5"), "{saved}");
    // A restart with the same state_dir and model keeps the threshold.
    std::fs::copy(sample("good_001.png"), inbox.join("3.png"))?;
    let again = config(
        dir.path(),
        "max_frames = 1\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n\
         [outputs]\nstdout = false\n",
    )?;
    let s2 = station::run(&again, &AtomicBool::new(false))?;
    assert_eq!(s2.threshold, 0.5, "threshold after restart");
    Ok(())
}

/// A line-side process floods the serial link with requests while frames arrive: every frame still
/// gets its result, the commands beyond the rate (20/s, burst 20) are answered `Busy`, and what the
/// loop's channel had no room for is dropped, never queued without bound.
#[test]
fn a_command_flood_is_answered_busy_and_frames_still_get_results() -> anyhow::Result<()> {
    let (mut master, slave_path, _slave) = common::raw_pty()?;
    let dir = tempfile::tempdir()?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let cfg = config(
        dir.path(),
        &format!(
            "max_frames = 3\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n\
             [outputs]\nstdout = false\n[outputs.serial]\nport = \"{}\"\n\
             commands = [\"get_status\"]\n",
            slave_path.display()
        ),
    )?;
    let t0 = Instant::now();
    let station = std::thread::spawn(move || station::run(&cfg, &AtomicBool::new(false)));
    let rx = common::wire_messages(master.try_clone()?);
    // The writer is not joined: once the station has stopped nobody reads the link, and a write
    // into the full pseudo-terminal would block for ever.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    {
        let sent = sent.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            for id in (1u32..).step_by(50) {
                let mut chunk = Vec::new();
                for k in id..id + 50 {
                    chunk.extend(frame(k, Command::GetStatus)?);
                }
                master.write_all(&chunk)?;
                sent.store(id + 49, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
    }
    // The frames arrive while the flood is on.
    std::thread::sleep(Duration::from_millis(1500));
    for (i, name) in ["good_000.png", "scratch_000.png", "good_001.png"].iter().enumerate() {
        std::fs::copy(sample(name), inbox.join(format!("{i}.png")))?;
    }
    let (mut ok, mut busy, mut results) = (0u32, 0u32, 0);
    let end = Instant::now() + Duration::from_secs(120);
    while results < 3 && Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Message::Ack(a)) if a.code == AckCode::Ok => ok += 1,
            Ok(Message::Ack(a)) if a.code == AckCode::Busy => busy += 1,
            Ok(Message::Inspection(_)) => results += 1,
            _ => {}
        }
    }
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    let summary = station.join().map_err(|_| anyhow::anyhow!("station panicked"))??;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("{sent} requests in {secs:.1} s: {ok} ok, {busy} busy; {results} results");
    assert_eq!(results, 3, "every frame gets its result during the flood");
    assert_eq!(summary.counters.frames, 3);
    assert!(busy > 0, "a flood beyond the rate is answered Busy");
    // The burst of 20 plus 20 per second of the run, never one per request.
    assert!(f64::from(ok) <= 21.0 + 20.0 * secs, "{ok} commands carried out in {secs:.1} s");
    assert!(u64::from(ok + busy) <= u64::from(sent));
    Ok(())
}

#[test]
fn a_missed_deadline_is_a_fail_and_the_next_frame_still_gets_a_verdict() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    std::fs::copy(sample("good_000.png"), inbox.join("1.png"))?;
    std::fs::copy(sample("good_001.png"), inbox.join("2.png"))?;
    let body = "max_frames = 2\n[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n";
    let text = format!(
        "station_id = \"t\"\nmodel = \"{}\"\ninspect_window_ms = 1\nstate_dir = \"state\"\n{body}",
        demo().display()
    );
    let cfg = StationConfig::parse(&text, &dir.path().join("station.toml"))?;
    let log = device::station::gpio::PinLog::default();
    let pin = |name| device::station::gpio::MockPin { name, log: log.clone() };
    let hs = device::station::gpio::Handshake::new(
        pin("ready"),
        pin("busy"),
        pin("result_valid"),
        pin("pass"),
        pin("fail"),
        Duration::from_millis(1),
    );
    let s = station::run_with_gpio(&cfg, &AtomicBool::new(false), Some(hs))?;
    // 1 ms is far below one inference: both good parts are rejected, fail-safe.
    assert_eq!((s.counters.frames, s.counters.fails), (2, 2));
    assert_eq!(s.last_fault, Fault::DeadlineMissed);
    // GPIO: start (all low, Ready), then per frame the Fail handshake, then stop.
    let got: Vec<String> = log
        .lock()
        .map_err(|_| anyhow::anyhow!("log poisoned"))?
        .iter()
        .map(|(n, v)| format!("{n}{}", if *v { "+" } else { "-" }))
        .collect();
    let start = ["result_valid-", "pass-", "fail-", "busy-", "ready+"];
    let frame = [
        "ready-",
        "busy+",
        "fail+",
        "result_valid+",
        "result_valid-",
        "pass-",
        "fail-",
        "busy-",
        "ready+",
    ];
    let stop = ["ready-", "busy-", "result_valid-", "pass-", "fail-"];
    let want: Vec<&str> = start.iter().chain(&frame).chain(&frame).chain(&stop).copied().collect();
    assert_eq!(got, want);
    Ok(())
}

/// `trusted_keys` in the station configuration: the station refuses to start on the unsigned demo
/// bundle (naming the reason) and runs once the bundle carries a signature by a listed key.
#[test]
fn a_station_with_trusted_keys_runs_only_signed_bundles() -> anyhow::Result<()> {
    use shared::signature::{read_secret_key, sign_bundle, write_key_pair};
    let dir = tempfile::tempdir()?;
    write_key_pair(&dir.path().join("line.key"), [21; 32])?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    std::fs::copy(sample("good_000.png"), inbox.join("a.png"))?;
    let body = "trusted_keys = [\"line.key.pub\"]\nmax_frames = 1\n[source]\nkind = \"folder\"\n\
                path = \"inbox\"\npoll_ms = 20\n";
    let err = station::run(&config(dir.path(), body)?, &AtomicBool::new(false))
        .err()
        .context("an unsigned bundle was accepted")?;
    assert!(format!("{err:#}").contains("not signed"), "{err:#}");

    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle)?;
    for e in std::fs::read_dir(demo())?.flatten() {
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), bundle.join(e.file_name()))?;
        }
    }
    sign_bundle(&bundle, &read_secret_key(&dir.path().join("line.key"))?)?;
    let mut cfg = config(dir.path(), body)?;
    cfg.model = bundle;
    let s = station::run(&cfg, &AtomicBool::new(false))?;
    assert_eq!(s.counters.frames, 1);
    Ok(())
}

/// Commands are off unless a link enables them: a serial trigger without `"trigger"` among the serial
/// link's commands is a configuration error naming the field.
#[test]
fn a_trigger_link_must_enable_the_trigger_command() {
    let dir = tempfile::tempdir().unwrap();
    let body = "trigger = \"serial\"\n[source]\nkind = \"folder\"\npath = \"inbox\"\n\
                [outputs.serial]\nport = \"/dev/null\"\ncommands = [\"get_status\"]\n";
    let Err(err) = config(dir.path(), body) else {
        panic!("accepted a trigger link without the command");
    };
    let msg = format!("{err:#}");
    assert!(msg.contains("outputs.serial.commands") && msg.contains("trigger"), "{msg}");
    let ok = body.replace("[\"get_status\"]", "[\"get_status\", \"trigger\"]");
    assert!(config(dir.path(), &ok).is_ok());
}

/// A stop (what SIGTERM sets) that arrives while ResultValid is high: the pulse finishes (the part in
/// hand keeps its result), the loop ends, and every line is left low, well within 2 s.
#[test]
fn a_stop_during_a_result_pulse_leaves_every_line_low() -> anyhow::Result<()> {
    use device::station::gpio::{Handshake, MockPin, PinLog};
    use std::sync::Arc;
    let dir = tempfile::tempdir()?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    std::fs::copy(sample("good_000.png"), inbox.join("1.png"))?;
    let cfg = config(dir.path(), "[source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 20\n")?;
    let log = PinLog::default();
    let pin = |name| MockPin { name, log: log.clone() };
    let pulse = Duration::from_millis(400);
    let hs = Handshake::new(
        pin("ready"),
        pin("busy"),
        pin("result_valid"),
        pin("pass"),
        pin("fail"),
        pulse,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let station = {
        let stop = stop.clone();
        std::thread::spawn(move || station::run_with_gpio(&cfg, &stop, Some(hs)))
    };
    let end = Instant::now() + Duration::from_secs(60);
    while !log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.contains(&("result_valid", true)) {
        anyhow::ensure!(Instant::now() < end, "no result pulse");
        std::thread::sleep(Duration::from_millis(2));
    }
    let stopped_at = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let s = station.join().map_err(|_| anyhow::anyhow!("station panicked"))??;
    let took = stopped_at.elapsed();
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    assert_eq!(s.counters.frames, 1);
    let log = log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    for line in ["ready", "busy", "result_valid", "pass", "fail"] {
        let last = log.iter().rev().find(|(n, _)| *n == line).map(|(_, v)| *v);
        assert_eq!(last, Some(false), "{line} not low at the end: {log:?}");
    }
    // The pulse was not cut short: Pass was high with ResultValid, then both went low.
    let i = log.iter().position(|e| *e == ("result_valid", true)).unwrap_or(0);
    assert!(log[..i].contains(&("pass", true)), "{log:?}");
    Ok(())
}
