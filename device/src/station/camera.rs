//! V4L2 camera source: device path, size, FourCC (YUYV, MJPG, RGB3), frame rate; frames are converted
//! to RGB8 ([`super::frame`]). On unplug, timeout or driver error the source reports a fault and reopens
//! the device with exponential backoff (0.2 s doubling to 5 s).
//!
//! V4L2 through the `linuxvideo` crate: its kernel structures are written in Rust, so building the
//! station needs no libclang or kernel headers (the `v4l` crate runs bindgen at build time, which fails
//! on a machine with only the Rust toolchain). mmap streaming; each capture waits for a filled buffer
//! with `poll` up to `timeout_ms`.
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use linuxvideo::format::{PixFormat, PixelFormat as V4lFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{Device, Fract};

use super::frame::{self, PixelFormat};
use super::source::{Frame, FrameData};

/// `[source] kind = "v4l"`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// e.g. /dev/video0.
    pub device: PathBuf,
    /// Requested width (the driver may pick the nearest; the frame says what it got).
    pub width: u32,
    /// Requested height.
    pub height: u32,
    /// YUYV, MJPG or RGB3.
    pub fourcc: PixelFormat,
    /// Frames per second to ask for (default: the driver's).
    #[serde(default)]
    pub fps: Option<u32>,
    /// A frame that takes longer is a camera fault.
    #[serde(default = "timeout_default")]
    pub timeout_ms: u64,
}

fn timeout_default() -> u64 {
    2000
}

struct Live {
    stream: ReadStream,
    format: PixelFormat,
    width: usize,
    height: usize,
    stride: usize,
}

/// The camera.
pub struct CameraSource {
    cfg: CameraConfig,
    live: Option<Live>,
    backoff: Duration,
    next_try: Instant,
    frames: u64,
}

impl CameraSource {
    /// A source for `cfg`; the device is opened on the first frame (and reopened after faults).
    pub fn new(cfg: CameraConfig) -> Self {
        CameraSource {
            cfg,
            live: None,
            backoff: Duration::from_millis(200),
            next_try: Instant::now(),
            frames: 0,
        }
    }

    fn open(&self) -> Result<Live, String> {
        let path = self.cfg.device.display().to_string();
        let dev = Device::open(&self.cfg.device).map_err(|e| format!("{path}: {e}"))?;
        let want = V4lFormat::from_fourcc(self.cfg.fourcc.fourcc());
        let cap = dev
            .video_capture(PixFormat::new(self.cfg.width, self.cfg.height, want))
            .map_err(|e| format!("{path}: setting the format: {e}"))?;
        let f = cap.format();
        if f.pixel_format() != want {
            return Err(format!(
                "{path}: the driver does not deliver {:?} (it offers {})",
                self.cfg.fourcc,
                f.pixel_format()
            ));
        }
        let (width, height, stride) =
            (f.width() as usize, f.height() as usize, f.bytes_per_line() as usize);
        if let Some(fps) = self.cfg.fps {
            cap.set_frame_interval(Fract::new(1, fps.max(1)))
                .map_err(|e| format!("{path}: setting {fps} fps: {e}"))?;
        }
        let stream = cap.into_stream().map_err(|e| format!("{path}: mapping buffers: {e}"))?;
        Ok(Live { stream, format: self.cfg.fourcc, width, height, stride })
    }

    /// The next frame, or the camera fault (the device is then reopened with backoff on later calls).
    pub fn capture(&mut self) -> Result<Frame, String> {
        if self.live.is_none() {
            let now = Instant::now();
            if now < self.next_try {
                std::thread::sleep((self.next_try - now).min(Duration::from_millis(50)));
                return Err("camera: reconnecting".into());
            }
            match self.open() {
                Ok(l) => {
                    self.live = Some(l);
                    self.backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    self.next_try = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                    return Err(e);
                }
            }
        }
        let Some(live) = self.live.as_mut() else { return Err("camera: not open".into()) };
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let got = wait_readable(&live.stream, timeout).and_then(|()| {
            live.stream.dequeue(|buf| {
                if buf.is_error() {
                    Err(std::io::Error::other("the driver flagged the frame as corrupt"))
                } else {
                    Ok(buf.to_vec())
                }
            })
        });
        match got {
            Ok(bytes) => {
                self.frames += 1;
                let name = format!("{}#{}", self.cfg.device.display(), self.frames);
                let data = frame::to_rgb(live.format, &bytes, live.width, live.height, live.stride)
                    .map(|(rgb, w, h)| FrameData::Rgb(rgb, w, h));
                Ok(Frame { name, bytes: data })
            }
            Err(e) => {
                self.live = None;
                self.next_try = Instant::now() + self.backoff;
                Err(format!("camera {}: {e}", self.cfg.device.display()))
            }
        }
    }
}

impl CameraSource {
    /// Discards the frames the driver filled before now (at most one ring of buffers), so that a
    /// triggered capture returns a frame exposed after the trigger, never an older one waiting in
    /// the queue; returns how many were dropped. A camera that is not open has nothing to drop.
    pub fn discard_stale(&mut self) -> usize {
        let Some(live) = self.live.as_mut() else { return 0 };
        let mut dropped = 0;
        while dropped < MAX_STALE
            && wait_readable(&live.stream, Duration::ZERO).is_ok()
            && live.stream.dequeue(|_| Ok(())).is_ok()
        {
            dropped += 1;
        }
        dropped
    }

    /// [`CameraSource::capture`], after [`CameraSource::discard_stale`] when `after_trigger`.
    pub fn capture_fresh(&mut self, after_trigger: bool) -> Result<Frame, String> {
        if after_trigger {
            self.discard_stale();
        }
        self.capture()
    }
}

/// More filled buffers than a V4L2 ring holds (drivers use 2 to 32).
const MAX_STALE: usize = 64;

/// Waits until the stream has a filled buffer, at most `timeout` (a dead camera must not hang the
/// station).
fn wait_readable(stream: &ReadStream, timeout: Duration) -> std::io::Result<()> {
    let mut fds = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    let n = unsafe { libc::poll(&mut fds, 1, ms) };
    match n {
        n if n < 0 => Err(std::io::Error::last_os_error()),
        0 => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no frame within {} ms", timeout.as_millis()),
        )),
        _ if fds.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 => {
            Err(std::io::Error::other(format!("poll reported {:#x}", fds.revents)))
        }
        _ => Ok(()),
    }
}
