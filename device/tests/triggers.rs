//! Triggered inspection is matched: every trigger gets exactly one result, in order, echoing its
//! request id: its frame, or a Fail with fault `NoFrame` when no frame came within
//! `trigger_window_ms`. Three serial triggers with one file in the folder: one judged result and two
//! `NoFrame` Fails, on stdout (with `request_id`) and on the serial line.
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use shared::wire::{self, AckCode, Fault, Message, Request};

mod common;
use common::demo;

/// `DIR/station.toml`: the demo bundle, triggers from the serial link at `port` (the only command it
/// takes), frames from `DIR/inbox`; `extra` adds top-level settings (one per line).
fn serial_trigger_config(
    dir: &std::path::Path,
    port: &std::path::Path,
    extra: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let cfg = dir.join("station.toml");
    std::fs::write(
        &cfg,
        format!(
            "station_id = \"trg\"\nmodel = \"{}\"\ninspect_window_ms = 20000\nstate_dir = \"state\"\n\
             trigger = \"serial\"\n{extra}\n\
             [source]\nkind = \"folder\"\npath = \"inbox\"\npoll_ms = 10\n\
             [outputs.serial]\nport = \"{}\"\ncommands = [\"trigger\"]\n",
            demo().display(),
            port.display()
        ),
    )?;
    Ok(cfg)
}

#[test]
fn three_triggers_one_file_give_one_result_and_two_no_frame_fails() -> anyhow::Result<()> {
    let (mut master, slave_path, _slave) = common::raw_pty()?;
    let rx = common::wire_messages(master.try_clone()?);
    let dir = tempfile::tempdir()?;
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox)?;
    std::fs::copy(demo().join("samples/good_000.png"), inbox.join("only.png"))?;
    let cfg =
        serial_trigger_config(dir.path(), &slave_path, "max_frames = 3\ntrigger_window_ms = 400")?;
    let mut child = common::start_station(&cfg)?;
    let mut out = Vec::new();
    for id in [11, 12, 13] {
        out.extend(wire::encode_frame_vec(&Message::Request(Request {
            id,
            command: wire::Command::Trigger,
        }))?);
    }
    let written = master.write_all(&out);
    // A station that never finishes (a trigger left waiting) fails the test instead of hanging it.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    let lines: Vec<serde_json::Value> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let status = child.wait()?;
    written?;
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err)?;
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["request_id"], 11, "{}", lines[0]);
    assert!(lines[0]["file"].as_str().is_some_and(|f| f.ends_with("only.png")), "{}", lines[0]);
    assert_eq!(lines[0]["fault"], "None");
    assert_eq!(lines[0]["verdict"], "pass");
    for (l, id) in lines[1..].iter().zip([12, 13]) {
        assert_eq!(l["request_id"], id, "{l}");
        assert_eq!(l["fault"], "NoFrame", "{l}");
        assert_eq!(l["verdict"], "fail", "{l}");
    }
    // The serial line: three acks, then the three results in trigger order.
    let mut acks = Vec::new();
    let mut faults = Vec::new();
    while faults.len() < 3 {
        match rx.recv_timeout(Duration::from_secs(10))? {
            Message::Ack(a) => acks.push((a.id, a.code)),
            Message::Inspection(r) => faults.push(r.fault),
            _ => {}
        }
    }
    assert_eq!(acks, [(11, AckCode::Ok), (12, AckCode::Ok), (13, AckCode::Ok)]);
    assert_eq!(faults, [Fault::None, Fault::NoFrame, Fault::NoFrame]);
    Ok(())
}

/// A stop (SIGTERM) while triggers wait for frames: each still gets its Fail (fault `NoFrame`, its
/// request id) before the station exits 0, so the line never waits for a result that will not come.
#[test]
fn triggers_waiting_at_sigterm_get_their_fail() -> anyhow::Result<()> {
    let (mut master, slave_path, _slave) = common::raw_pty()?;
    let rx = common::wire_messages(master.try_clone()?);
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("inbox"))?;
    let cfg = serial_trigger_config(dir.path(), &slave_path, "trigger_window_ms = 60000")?;
    let mut child = common::start_station(&cfg)?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    let mut out = Vec::new();
    for id in [21, 22] {
        out.extend(wire::encode_frame_vec(&Message::Request(Request {
            id,
            command: wire::Command::Trigger,
        }))?);
    }
    master.write_all(&out)?;
    // Both triggers taken (acknowledged), then the stop.
    let mut acks = Vec::new();
    while acks.len() < 2 {
        if let Message::Ack(a) = rx.recv_timeout(Duration::from_secs(30))? {
            acks.push((a.id, a.code));
        }
    }
    assert_eq!(acks, [(21, AckCode::Ok), (22, AckCode::Ok)]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let lines: Vec<serde_json::Value> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let status = child.wait()?;
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err)?;
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (l, id) in lines.iter().zip([21, 22]) {
        assert_eq!(l["request_id"], id, "{l}");
        assert_eq!(l["fault"], "NoFrame", "{l}");
        assert_eq!(l["verdict"], "fail", "{l}");
        assert!(l["error"].as_str().is_some_and(|e| e.contains("stopping")), "{l}");
    }
    Ok(())
}
