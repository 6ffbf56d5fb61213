//! Shared by the station's integration tests: the demo bundle and a `mosquitto` on a free local port.
// Each test crate uses a subset of these.
#![allow(dead_code)]
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// `models/demo`.
pub fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/demo")
}

/// `device run --config CFG` with stdout and stderr piped.
pub fn start_station(cfg: &Path) -> anyhow::Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_device"))
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting device run")
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `mosquitto -c conf` and waits (10 s at most) until it listens on `port`.
pub fn start_broker(conf: &Path, port: u16) -> anyhow::Result<Child> {
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .spawn()
        .context("starting mosquitto (scripts/setup installs it)")?;
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("mosquitto did not listen on {port}")
}

/// A raw-mode pseudo-terminal pair for a station's serial link: the line side's end (master, as a
/// file), the path the station opens, and the slave descriptor (kept open so writes queue for the
/// station even before it opens the path).
pub fn raw_pty() -> anyhow::Result<(std::fs::File, PathBuf, std::os::fd::OwnedFd)> {
    use nix::sys::termios;
    let pty = nix::pty::openpty(None, None)?;
    for fd in [&pty.master, &pty.slave] {
        let mut t = termios::tcgetattr(fd)?;
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(fd, termios::SetArg::TCSANOW, &t)?;
    }
    let path = nix::unistd::ttyname(&pty.slave)?;
    Ok((std::fs::File::from(pty.master), path, pty.slave))
}

/// Decodes `shared::wire` messages arriving on `reader` (a pty master) on a thread of its own; corrupt
/// frames are skipped, as the station's own decoder does.
pub fn wire_messages(
    mut reader: std::fs::File,
) -> std::sync::mpsc::Receiver<shared::wire::Message> {
    use std::io::Read;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut dec = shared::wire::FrameDecoder::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            dec.feed(&buf[..n], |m| {
                if let Ok(m) = m {
                    let _ = tx.send(m);
                }
            });
        }
    });
    rx
}
