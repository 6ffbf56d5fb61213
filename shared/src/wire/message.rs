//! The message types. Field order is the wire order: reordering fields, variants or changing a
//! field type changes the encoding and needs a [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) bump.

use core::fmt;

use serde::{Deserialize, Serialize};

use super::Error;

/// Longest station id in bytes (UTF-8).
pub const STATION_ID_LEN: usize = 32;
/// Length of a [`ModelId`]: this many leading bytes of the model file's SHA-256.
pub const MODEL_ID_LEN: usize = 8;
/// Largest anomaly map side, in cells.
pub const MAX_MAP_SIDE: usize = 64;
/// Largest number of cells in an anomaly map (`MAX_MAP_SIDE²`).
pub const MAP_CAPACITY: usize = MAX_MAP_SIDE * MAX_MAP_SIDE;

/// A station's name, e.g. `"line3-cam1"`; at most [`STATION_ID_LEN`] bytes.
pub type StationId = heapless::String<STATION_ID_LEN>;

/// Any message exchanged between a station and the line. The wire format is a leading
/// [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) byte followed by the postcard encoding of this enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(
    clippy::large_enum_variant,
    reason = "no_std without alloc cannot box; the map makes results ~4 KiB by design"
)]
pub enum Message {
    /// The outcome of inspecting one frame (station → line).
    Inspection(InspectionResult),
    /// Heartbeat / status report (station → line), periodic or in answer to [`Command::GetStatus`].
    Status(Status),
    /// A command for the station (line → station).
    Request(Request),
    /// The station's answer to a [`Request`] (station → line).
    Ack(Ack),
}

impl From<InspectionResult> for Message {
    fn from(r: InspectionResult) -> Self {
        Message::Inspection(r)
    }
}

impl From<Status> for Message {
    fn from(s: Status) -> Self {
        Message::Status(s)
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Ack> for Message {
    fn from(a: Ack) -> Self {
        Message::Ack(a)
    }
}

/// The result of inspecting one camera frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InspectionResult {
    /// The station that inspected the frame.
    pub station_id: StationId,
    /// Frame sequence number, counted by the station from start-up (wraps).
    pub frame_seq: u32,
    /// Capture time, milliseconds since the Unix epoch (station clock).
    pub timestamp_ms: u64,
    /// The decision.
    pub verdict: Verdict,
    /// Why the verdict is [`Verdict::Error`] (or what went wrong alongside it); [`Fault::None`] otherwise.
    pub fault: Fault,
    /// Anomaly score of the frame (higher is more anomalous).
    pub score: f32,
    /// The threshold the score was compared against (`score >= threshold` fails).
    pub threshold: f32,
    /// The model that produced the score.
    pub model_id: ModelId,
    /// Capture-to-verdict latency in microseconds.
    pub latency_us: u32,
    /// Quantised anomaly map, if the model produces one and the station sends it.
    pub anomaly_map: Option<AnomalyMap>,
}

/// The decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// The part is good: score below threshold.
    Pass,
    /// The part is defective: score at or above threshold.
    Fail,
    /// The station could not inspect the frame; see the [`Fault`].
    Error,
}

impl Verdict {
    /// The lowercase name used in JSON lines (`device inspect`, the station's stdout): "pass",
    /// "fail", "error".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }

    /// Serialises as [`Verdict::as_str`] (for JSON lines; the wire encoding is unchanged).
    pub fn serialize_lowercase<S: serde::Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
}

/// What went wrong at a station. Carried by results (why this frame errored) and by status
/// reports (the most recent fault).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Fault {
    /// No fault.
    #[default]
    None,
    /// The camera failed to deliver a frame (disconnect, timeout, driver error).
    Camera,
    /// The frame could not be decoded or preprocessed.
    Decode,
    /// The inference engine failed.
    Engine,
    /// Inference finished after the frame's deadline.
    DeadlineMissed,
    /// A station-specific fault code not covered above.
    Other(u16),
    /// The frame arrived while the engine had one frame in hand and one waiting (bounded work: it is
    /// failed at once instead of queued). Appended after `Other`, so earlier encodings are unchanged.
    Busy,
    /// A trigger found no frame within the station's trigger window (its result is this Fail).
    NoFrame,
}

impl Fault {
    /// The name the station's JSON reports it by (MQTT status `last_fault`): the variant's name,
    /// `"Other"` for every [`Fault::Other`] code. Stable: users' scripts match these strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "None",
            Fault::Camera => "Camera",
            Fault::Decode => "Decode",
            Fault::Engine => "Engine",
            Fault::DeadlineMissed => "DeadlineMissed",
            Fault::Other(_) => "Other",
            Fault::Busy => "Busy",
            Fault::NoFrame => "NoFrame",
        }
    }

    /// `true` for [`Fault::None`].
    pub fn is_none(&self) -> bool {
        matches!(self, Fault::None)
    }
}

/// Identifies a model: the first [`MODEL_ID_LEN`] bytes of the SHA-256 of the model file.
/// `Display` prints it as lowercase hex.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelId(pub [u8; MODEL_ID_LEN]);

impl ModelId {
    /// The id made of the first [`MODEL_ID_LEN`] bytes of `digest` (a SHA-256 or any longer
    /// digest); `None` if `digest` is shorter than that.
    pub fn from_digest(digest: &[u8]) -> Option<Self> {
        let prefix = digest.get(..MODEL_ID_LEN)?;
        let mut id = [0u8; MODEL_ID_LEN];
        id.copy_from_slice(prefix);
        Some(ModelId(id))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; MODEL_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A quantised anomaly map: `width × height` cells in row-major order, each `0..=255`
/// (0 least anomalous). The mapping from model scores to cell values is the producer's.
///
/// The invariant `1 <= width, height <= MAX_MAP_SIDE` and `cells == width * height` is checked by
/// the constructors and on decoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMap")]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AnomalyMap {
    width: u8,
    height: u8,
    cells: heapless::Vec<u8, MAP_CAPACITY>,
}

/// The unchecked shape [`AnomalyMap`] is deserialised through.
#[derive(Deserialize)]
struct RawMap {
    width: u8,
    height: u8,
    cells: heapless::Vec<u8, MAP_CAPACITY>,
}

impl TryFrom<RawMap> for AnomalyMap {
    type Error = Error;

    fn try_from(raw: RawMap) -> Result<Self, Error> {
        AnomalyMap::from_vec(raw.width, raw.height, raw.cells)
    }
}

impl AnomalyMap {
    /// A map of `width × height` cells copied from `cells` (row-major).
    ///
    /// # Errors
    /// [`Error::InvalidMap`] if a side is 0 or over [`MAX_MAP_SIDE`], or `cells.len() != width * height`.
    pub fn new(width: u8, height: u8, cells: &[u8]) -> Result<Self, Error> {
        let invalid = Error::InvalidMap { width, height, cells: cells.len() };
        let vec = heapless::Vec::from_slice(cells).map_err(|_| invalid)?;
        Self::from_vec(width, height, vec)
    }

    /// Like [`AnomalyMap::new`], taking ownership of an existing cell vector.
    ///
    /// # Errors
    /// [`Error::InvalidMap`] as for [`AnomalyMap::new`].
    pub fn from_vec(
        width: u8,
        height: u8,
        cells: heapless::Vec<u8, MAP_CAPACITY>,
    ) -> Result<Self, Error> {
        let (w, h) = (usize::from(width), usize::from(height));
        let side_ok = |s: usize| (1..=MAX_MAP_SIDE).contains(&s);
        if side_ok(w) && side_ok(h) && cells.len() == w * h {
            Ok(AnomalyMap { width, height, cells })
        } else {
            Err(Error::InvalidMap { width, height, cells: cells.len() })
        }
    }

    /// Width in cells.
    pub fn width(&self) -> u8 {
        self.width
    }

    /// Height in cells.
    pub fn height(&self) -> u8 {
        self.height
    }

    /// All cells, row-major (`cells()[y * width + x]`).
    pub fn cells(&self) -> &[u8] {
        &self.cells
    }

    /// The cell at column `x`, row `y`; `None` outside the map.
    pub fn get(&self, x: usize, y: usize) -> Option<u8> {
        let w = usize::from(self.width);
        if x >= w {
            return None;
        }
        self.cells.get(y.checked_mul(w)?.checked_add(x)?).copied()
    }

    /// The rows, top to bottom, each `width` cells long.
    pub fn rows(&self) -> core::slice::Chunks<'_, u8> {
        // `width >= 1` is an invariant, so `chunks` cannot panic; `max(1)` keeps that local.
        self.cells.chunks(usize::from(self.width).max(1))
    }

    /// Gives back the cell vector.
    pub fn into_cells(self) -> heapless::Vec<u8, MAP_CAPACITY> {
        self.cells
    }
}

/// Station heartbeat: sent periodically and in answer to [`Command::GetStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Status {
    /// The reporting station.
    pub station_id: StationId,
    /// Heartbeat sequence number, counted from start-up (wraps).
    pub seq: u32,
    /// Report time, milliseconds since the Unix epoch (station clock).
    pub timestamp_ms: u64,
    /// Seconds since the station started.
    pub uptime_s: u32,
    /// What the station is doing.
    pub state: StationState,
    /// The decision threshold in force.
    pub threshold: f32,
    /// The loaded model.
    pub model_id: ModelId,
    /// Counters since start-up.
    pub counters: Counters,
    /// The most recent fault since start-up ([`Fault::None`] if there was none).
    pub last_fault: Fault,
}

/// A station's operating state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StationState {
    /// Loading the model / opening the camera.
    Starting,
    /// Idle, waiting for a trigger or the next frame.
    Ready,
    /// Inspecting a frame.
    Busy,
    /// Not inspecting because of a fault (see [`Status::last_fault`]).
    Fault,
}

/// Counters since station start-up (each wraps at `u32::MAX`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Frames inspected (`passes + fails + errors`).
    pub frames: u32,
    /// Frames with [`Verdict::Pass`].
    pub passes: u32,
    /// Frames with [`Verdict::Fail`].
    pub fails: u32,
    /// Frames with [`Verdict::Error`].
    pub errors: u32,
    /// Results dropped because the outgoing spool was full.
    pub spool_dropped: u32,
}

/// A command for a station, with the id its [`Ack`] will carry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request {
    /// Request id chosen by the sender; echoed in [`Ack::id`].
    pub id: u32,
    /// What to do.
    pub command: Command,
}

/// What a [`Request`] asks a station to do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command {
    /// Replace the decision threshold.
    SetThreshold(f32),
    /// Capture and inspect one frame now (triggered mode).
    Trigger,
    /// Send a [`Status`] (after the [`Ack`]).
    GetStatus,
}

/// A station's answer to a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack {
    /// The [`Request::id`] this answers.
    pub id: u32,
    /// Outcome.
    pub code: AckCode,
}

impl Ack {
    /// A successful acknowledgement of request `id`.
    pub fn ok(id: u32) -> Self {
        Ack { id, code: AckCode::Ok }
    }

    /// `true` if the request was carried out.
    pub fn is_ok(&self) -> bool {
        self.code == AckCode::Ok
    }
}

/// Outcome of a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AckCode {
    /// Done.
    Ok,
    /// An argument was out of range (e.g. a non-finite threshold).
    InvalidArgument,
    /// The station is busy and cannot do it now.
    Busy,
    /// This station does not support the command.
    Unsupported,
    /// The station tried and failed.
    Failed,
}

impl AckCode {
    /// The name the MQTT `ack` topic reports it by ("ok", "invalidargument", "busy", "unsupported",
    /// "failed"). Stable: users' scripts match these strings.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Ok => "ok",
            AckCode::InvalidArgument => "invalidargument",
            AckCode::Busy => "busy",
            AckCode::Unsupported => "unsupported",
            AckCode::Failed => "failed",
        }
    }
}
