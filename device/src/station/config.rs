//! `station.toml`: what `device run --config` reads. Unknown keys and bad values are errors that name
//! the key (`device/station.example.toml` is the annotated example).
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors of reading a station configuration; each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// TOML syntax or schema error (the message names the key and its line).
    #[error("{path}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key.
        msg: String,
    },
    /// A value is out of range.
    #[error("{path}: `{key}`: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong.
        msg: String,
    },
}

/// Which model file the station runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// The manifest's `metrics.preferred` (int8 only when it was measured faster and as accurate).
    #[default]
    Auto,
    /// `model_fp32.onnx`.
    Fp32,
    /// `model_int8.onnx`.
    Int8,
    /// `model_fp32.onnx` in half precision (aarch64 cores with FP16 arithmetic; see
    /// `runtime::engine::Precision::F16`).
    F16,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Station name in every message (at most 32 bytes).
    pub station_id: String,
    /// Model bundle directory (`host export`).
    pub model: PathBuf,
    /// Public key files (`host keygen`'s `KEY.pub`) of which one must have signed the bundle
    /// (`manifest.sig`); empty: unsigned bundles load. Relative paths are from this file's folder.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// auto, fp32, int8 or f16.
    #[serde(default)]
    pub precision: PrecisionChoice,
    /// tract threads.
    #[serde(default = "one")]
    pub threads: usize,
    /// Per-frame deadline: no verdict within this many milliseconds means Fail (fault DeadlineMissed).
    pub inspect_window_ms: u64,
    /// Where the station keeps state across restarts (the threshold set over serial / MQTT).
    pub state_dir: PathBuf,
    /// Stop after this many frames (tests, demos); default: run until stopped.
    #[serde(default)]
    pub max_frames: Option<u64>,
    /// When to inspect: every new frame (free_run) or one frame per serial `Trigger` request.
    #[serde(default)]
    pub trigger: Trigger,
    /// A frame that finds the engine and its one waiting place taken: `fail` (fault `Busy`) or
    /// `drop_oldest` (it takes the waiting frame's place).
    #[serde(default)]
    pub busy_policy: super::pipeline::BusyPolicy,
    /// A trigger that finds no frame within this many milliseconds gets a Fail with fault `NoFrame`.
    #[serde(default = "trigger_window_default")]
    pub trigger_window_ms: u64,
    /// The digital input of `trigger = "gpio"`.
    #[serde(default)]
    pub gpio_trigger: Option<GpioTriggerConfig>,
    /// Frame source.
    pub source: SourceConfig,
    /// Outputs (each optional).
    #[serde(default)]
    pub outputs: OutputsConfig,
    /// Decoder limits for every frame (`[limits]`: max_width, max_height, max_bytes, max_alloc);
    /// a frame over a limit is a Fail (fault Decode) naming the limit.
    #[serde(default)]
    pub limits: runtime::decode::DecodeLimits,
}

fn one() -> usize {
    1
}

/// When the station inspects.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every frame the source delivers.
    #[default]
    FreeRun,
    /// One frame per `Trigger` request on the serial link (needs `outputs.serial`).
    Serial,
    /// One frame per `trigger` command on MQTT (needs `outputs.mqtt`).
    Mqtt,
    /// One frame per edge on a digital input (needs `[gpio_trigger]`).
    Gpio,
}

/// Frame sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Image files that appear in a directory (replay, testing, a station without a camera).
    Folder {
        /// The watched directory.
        path: PathBuf,
        /// How often to look for new files, milliseconds.
        #[serde(default = "poll_default")]
        poll_ms: u64,
        /// Process files already there at start-up (default true).
        #[serde(default = "yes")]
        existing: bool,
        /// A new file is inspected once its size and modification time have not changed for this
        /// long, milliseconds (a file still being copied in is not read half-written).
        #[serde(default = "settle_default")]
        settle_ms: u64,
    },
    /// A V4L2 camera.
    V4l(super::camera::CameraConfig),
}

fn poll_default() -> u64 {
    200
}

fn settle_default() -> u64 {
    50
}

fn yes() -> bool {
    true
}

/// A trigger input on a Linux GPIO character device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioTriggerConfig {
    /// e.g. /dev/gpiochip0.
    pub chip: PathBuf,
    /// Line offset.
    pub line: u32,
    /// rising or falling.
    #[serde(default = "edge_default")]
    pub edge: super::trigger::Edge,
    /// Edges closer than this to the previous one are ignored, milliseconds.
    #[serde(default = "debounce_default")]
    pub debounce_ms: u64,
}

fn edge_default() -> super::trigger::Edge {
    super::trigger::Edge::Rising
}

fn debounce_default() -> u64 {
    10
}

/// The outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsConfig {
    /// Serial link (wire frames: results out, SetThreshold / Trigger / GetStatus in).
    pub serial: Option<SerialConfig>,
    /// Digital outputs (Ready, Busy, ResultValid, Pass, Fail).
    pub gpio: Option<GpioConfig>,
    /// Failing frames and their heat maps on disk.
    pub disk: Option<DiskConfig>,
    /// MQTT (results with a no-loss spool, maps, status, commands).
    pub mqtt: Option<MqttConfig>,
    /// One JSON line per result on stdout (default true).
    #[serde(default = "yes")]
    pub stdout: bool,
}

/// No `[outputs]` section: JSON lines on stdout only (as with an empty section).
impl Default for OutputsConfig {
    fn default() -> Self {
        OutputsConfig { serial: None, gpio: None, disk: None, mqtt: None, stdout: true }
    }
}

/// A line-side command a link may carry (`commands = [...]` in `[outputs.serial]` / `[outputs.mqtt]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandName {
    /// Change the threshold (within the bundle's `threshold.range`; persisted).
    SetThreshold,
    /// Inspect one frame (with `trigger` set to this link).
    Trigger,
    /// Report the status.
    GetStatus,
    /// Load the bundle `model` names again (after `device install`); MQTT only.
    LoadModel,
}

impl CommandName {
    /// The name as configured.
    pub fn name(self) -> &'static str {
        match self {
            CommandName::SetThreshold => "set_threshold",
            CommandName::Trigger => "trigger",
            CommandName::GetStatus => "get_status",
            CommandName::LoadModel => "load_model",
        }
    }
}

/// Serial link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// Device path, e.g. /dev/ttyUSB0 or /dev/ttyAMA0.
    pub port: PathBuf,
    /// Baud rate.
    #[serde(default = "baud_default")]
    pub baud: u32,
    /// Commands this link accepts; none by default (a link that only reports cannot change the
    /// station). Others are answered `Unsupported`.
    #[serde(default)]
    pub commands: Vec<CommandName>,
}

fn baud_default() -> u32 {
    115_200
}

/// Digital outputs on a Linux GPIO character device (line offsets on `chip`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// e.g. /dev/gpiochip0.
    pub chip: PathBuf,
    /// High while the station can take the next part.
    pub ready: u32,
    /// High while a frame is being inspected.
    pub busy: u32,
    /// High for `pulse_ms` once Pass / Fail carry the result.
    pub result_valid: u32,
    /// High with ResultValid when the part passed.
    pub pass: u32,
    /// High with ResultValid when the part failed (also on any fault).
    pub fail: u32,
    /// ResultValid pulse length, milliseconds.
    #[serde(default = "pulse_default")]
    pub pulse_ms: u64,
}

fn trigger_window_default() -> u64 {
    1000
}

fn pulse_default() -> u64 {
    50
}

/// MQTT broker and topics (`<prefix>/<station_id>/...`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    #[serde(default = "mqtt_port")]
    pub port: u16,
    /// Topic prefix.
    #[serde(default = "mqtt_prefix")]
    pub prefix: String,
    /// Client id (default `glass-edge-<station_id>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// TLS to the broker (needs `ca_file`).
    #[serde(default)]
    pub tls: bool,
    /// PEM CA certificate(s) that sign the broker's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS, with `client_key`: the broker can then tell this
    /// station from any other client (mosquitto `require_certificate`, `use_identity_as_username`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Keep-alive, seconds (>= 5).
    #[serde(default = "mqtt_keepalive")]
    pub keepalive_s: u64,
    /// Results kept while the broker is unreachable (oldest dropped beyond; counted in the status).
    #[serde(default = "mqtt_spool_max")]
    pub spool_max: usize,
    /// Commands accepted on `<prefix>/<station>/cmd`; none by default. Retained command messages are
    /// always ignored (a retained `set_threshold` would be re-applied at every reconnect).
    #[serde(default)]
    pub commands: Vec<CommandName>,
}

fn mqtt_port() -> u16 {
    1883
}

fn mqtt_prefix() -> String {
    "glass-edge".into()
}

fn mqtt_keepalive() -> u64 {
    5
}

fn mqtt_spool_max() -> usize {
    10_000
}

/// Failing frames on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Directory (created).
    pub dir: PathBuf,
    /// Keep at most this many failing frames (oldest removed first).
    #[serde(default = "keep_default")]
    pub keep: usize,
}

fn keep_default() -> usize {
    1000
}

impl StationConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io { path: path.into(), source: e })?;
        Self::parse(&text, path)
    }

    /// Parses and checks `text` (`path` is only for messages); relative paths are taken relative to
    /// the file's folder.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut c: StationConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.into(), msg: e.to_string() })?;
        let bad = |key: &str, msg: String| ConfigError::Invalid {
            path: path.into(),
            key: key.into(),
            msg,
        };
        if c.station_id.is_empty() || c.station_id.len() > shared::wire::STATION_ID_LEN {
            return Err(bad(
                "station_id",
                format!("must be 1 to {} bytes", shared::wire::STATION_ID_LEN),
            ));
        }
        if c.inspect_window_ms == 0 {
            return Err(bad("inspect_window_ms", "must be > 0".into()));
        }
        if c.trigger_window_ms == 0 {
            return Err(bad("trigger_window_ms", "must be > 0".into()));
        }
        if c.trigger == Trigger::Serial && c.outputs.serial.is_none() {
            return Err(bad("trigger", "\"serial\" needs an [outputs.serial] section".into()));
        }
        if c.trigger == Trigger::Mqtt && c.outputs.mqtt.is_none() {
            return Err(bad("trigger", "\"mqtt\" needs an [outputs.mqtt] section".into()));
        }
        let enabled = |cmds: Option<&Vec<CommandName>>| {
            cmds.is_some_and(|v| v.contains(&CommandName::Trigger))
        };
        if c.trigger == Trigger::Serial && !enabled(c.outputs.serial.as_ref().map(|s| &s.commands))
        {
            return Err(bad(
                "outputs.serial.commands",
                "trigger = \"serial\" needs \"trigger\" among the serial link's commands".into(),
            ));
        }
        if c.trigger == Trigger::Mqtt && !enabled(c.outputs.mqtt.as_ref().map(|m| &m.commands)) {
            return Err(bad(
                "outputs.mqtt.commands",
                "trigger = \"mqtt\" needs \"trigger\" among the MQTT link's commands".into(),
            ));
        }
        if c.trigger == Trigger::Gpio && c.gpio_trigger.is_none() {
            return Err(bad("trigger", "\"gpio\" needs a [gpio_trigger] section".into()));
        }
        if c.threads == 0 {
            return Err(bad("threads", "must be >= 1".into()));
        }
        if let Some(g) = &c.outputs.gpio {
            let lines = [g.ready, g.busy, g.result_valid, g.pass, g.fail];
            let mut sorted = lines.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != lines.len() {
                return Err(bad("outputs.gpio", format!("line offsets must differ: {lines:?}")));
            }
        }
        if let Some(g) = &c.outputs.gpio {
            if g.pulse_ms == 0 || g.pulse_ms > super::gpio::MAX_PULSE_MS {
                return Err(bad(
                    "outputs.gpio.pulse_ms",
                    format!(
                        "must be 1 to {} (a stop waits for the pulse)",
                        super::gpio::MAX_PULSE_MS
                    ),
                ));
            }
        }
        if let Some(d) = &c.outputs.disk {
            if d.keep == 0 {
                return Err(bad("outputs.disk.keep", "must be >= 1".into()));
            }
        }
        if let Some(m) = &c.outputs.mqtt {
            if m.tls && m.ca_file.is_none() {
                return Err(bad("outputs.mqtt.ca_file", "needed when tls = true".into()));
            }
            if m.client_cert.is_some() != m.client_key.is_some() {
                return Err(bad(
                    "outputs.mqtt.client_key",
                    "client_cert and client_key go together".into(),
                ));
            }
            if m.client_cert.is_some() && !m.tls {
                return Err(bad("outputs.mqtt.client_cert", "needs tls = true".into()));
            }
            if m.username.is_some() != m.password.is_some() {
                return Err(bad(
                    "outputs.mqtt.password",
                    "username and password go together".into(),
                ));
            }
            if m.spool_max == 0 {
                return Err(bad("outputs.mqtt.spool_max", "must be >= 1".into()));
            }
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut c.model);
        fix(&mut c.state_dir);
        c.trusted_keys.iter_mut().for_each(fix);
        match &mut c.source {
            SourceConfig::Folder { path, .. } => fix(path),
            SourceConfig::V4l(cam) => {
                if cam.width == 0 || cam.height == 0 {
                    return Err(bad("source.width", "width and height must be > 0".into()));
                }
            }
        }
        if let Some(d) = &mut c.outputs.disk {
            fix(&mut d.dir);
        }
        if let Some(m) = &mut c.outputs.mqtt {
            for f in [&mut m.ca_file, &mut m.client_cert, &mut m.client_key].into_iter().flatten() {
                fix(f);
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
station_id = "line3-cam1"
model = "models/demo"
inspect_window_ms = 2000
state_dir = "state"
[source]
kind = "folder"
path = "inbox"
[outputs.disk]
dir = "fails"
keep = 10
"#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = StationConfig::parse(GOOD, Path::new("/etc/ge/station.toml")).unwrap();
        assert_eq!(c.model, Path::new("/etc/ge/models/demo"));
        assert!(
            matches!(c.source, SourceConfig::Folder { ref path, .. } if path == Path::new("/etc/ge/inbox"))
        );
        assert_eq!(c.precision, PrecisionChoice::Auto);
    }

    #[test]
    fn without_an_outputs_section_results_go_to_stdout() {
        let text =
            "station_id = \"s\"\nmodel = \"m\"\ninspect_window_ms = 100\nstate_dir = \"st\"\n\
                    [source]\nkind = \"folder\"\npath = \"in\"\n";
        let c = StationConfig::parse(text, Path::new("s.toml")).unwrap();
        assert!(c.outputs.stdout);
    }

    #[test]
    fn the_annotated_example_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("station.example.toml");
        let c = StationConfig::load(&p).unwrap();
        assert_eq!(c.station_id, "line3-cam1");
        assert!(c.outputs.serial.is_some() && c.outputs.gpio.is_some() && c.outputs.disk.is_some());
    }

    #[test]
    fn errors_name_the_key() {
        let p = Path::new("s.toml");
        let e = StationConfig::parse(&GOOD.replace("keep = 10", "keep = 10\nkep = 3"), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("kep") && e.contains("s.toml"), "{e}");
        let e = StationConfig::parse(&GOOD.replace("2000", "0"), p).unwrap_err().to_string();
        assert!(e.contains("inspect_window_ms"), "{e}");
        let e = StationConfig::parse(&GOOD.replace("\"folder\"", "\"usb\""), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("usb"), "{e}");
        let e = StationConfig::parse(&GOOD.replace("inspect_window_ms = 2000\n", ""), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inspect_window_ms"), "{e}");
    }
}
