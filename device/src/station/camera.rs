//! V4L2 camera source (`v4l`): device path, size, FourCC (YUYV, MJPG, RGB3), frame rate; frames are
//! converted to RGB8 ([`super::frame`]). On unplug, timeout or driver error the source reports a fault
//! and reopens the device with exponential backoff (0.2 s doubling to 5 s).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

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
    stream: Stream<'static>,
    _dev: Device,
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
        let dev = Device::with_path(&self.cfg.device).map_err(|e| format!("{path}: {e}"))?;
        let mut f = dev.format().map_err(|e| format!("{path}: reading the format: {e}"))?;
        f.width = self.cfg.width;
        f.height = self.cfg.height;
        f.fourcc = FourCC::new(&self.cfg.fourcc.fourcc());
        let f = dev.set_format(&f).map_err(|e| format!("{path}: setting the format: {e}"))?;
        if f.fourcc != FourCC::new(&self.cfg.fourcc.fourcc()) {
            return Err(format!(
                "{path}: the driver does not deliver {:?} (it offers {})",
                self.cfg.fourcc, f.fourcc
            ));
        }
        if let Some(fps) = self.cfg.fps {
            dev.set_params(&v4l::video::capture::Parameters::with_fps(fps))
                .map_err(|e| format!("{path}: setting {fps} fps: {e}"))?;
        }
        let mut stream = Stream::with_buffers(&dev, Type::VideoCapture, 4)
            .map_err(|e| format!("{path}: mapping buffers: {e}"))?;
        stream.set_timeout(Duration::from_millis(self.cfg.timeout_ms));
        Ok(Live {
            stream,
            _dev: dev,
            format: self.cfg.fourcc,
            width: f.width as usize,
            height: f.height as usize,
            stride: f.stride as usize,
        })
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
        let got = live
            .stream
            .next()
            .map(|(buf, meta)| buf[..(meta.bytesused as usize).min(buf.len())].to_vec());
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
