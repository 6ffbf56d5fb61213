//! Wire messages between a station and the line, and how they travel.
//!
//! Two encodings of a [`Message`]:
//!
//! * **plain** (MQTT payloads, files): `[PROTOCOL_VERSION] ++ postcard(message)`, see [`encode`] / [`decode`];
//! * **serial frame** (UART/RS-485): `COBS(plain ++ crc32_le(plain)) ++ [0x00]`, CRC-32 being
//!   `CRC_32_ISO_HDLC` (the zlib/Ethernet one), see [`encode_frame`] / [`decode_frame`] and the
//!   streaming [`FrameDecoder`].
//!
//! All buffers are the caller's; nothing here allocates unless the `alloc` helpers are used. The
//! format is frozen by `shared/tests/wire_golden.rs`: any change to it needs a [`PROTOCOL_VERSION`] bump.
//!
//! ```
//! use shared::wire::{self, Ack, FrameDecoder, Message, MAX_FRAME};
//!
//! let msg = Message::Ack(Ack::ok(7));
//! let mut buf = [0u8; MAX_FRAME];
//! let frame = wire::encode_frame(&msg, &mut buf).unwrap();
//!
//! let mut decoder = FrameDecoder::new();
//! let got: Vec<_> = decoder.push(frame).collect();
//! assert_eq!(got, [Ok(msg)]);
//! ```

mod decoder;
mod error;
mod message;

pub use decoder::{FrameDecoder, Frames};
pub use error::Error;
pub use message::{
    Ack, AckCode, AnomalyMap, Command, Counters, Fault, InspectionResult, Message, ModelId,
    Request, StationId, StationState, Status, Verdict, MAP_CAPACITY, MAX_MAP_SIDE, MODEL_ID_LEN,
    STATION_ID_LEN,
};

use postcard::ser_flavors::{Cobs, Flavor, Slice};

/// The protocol version this build writes and the only one it accepts; the first byte of every
/// plain encoding (and so of every decoded serial frame).
pub const PROTOCOL_VERSION: u8 = 1;

/// Length of the CRC-32 trailer inside a serial frame.
pub const CRC_LEN: usize = 4;

/// The serial frame delimiter.
pub const FRAME_END: u8 = 0x00;

/// Largest plain encoding of any [`Message`] (version byte included): an [`InspectionResult`] with
/// a full 64×64 map, the longest station id and every varint at its widest.
pub const MAX_MESSAGE: usize = 1 + max_payload_len();

/// Largest serial frame: [`MAX_MESSAGE`] plus CRC-32, COBS overhead and the `0x00` terminator.
/// A buffer this long always suffices for [`encode_frame`]; it is also [`FrameDecoder`]'s buffer size.
pub const MAX_FRAME: usize = cobs_max_len(MAX_MESSAGE + CRC_LEN) + 1;

/// The CRC-32 of serial frames (`CRC_32_ISO_HDLC`, appended little-endian).
pub static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Encodes `msg` as `[PROTOCOL_VERSION] ++ postcard(msg)` into `buf` and returns the used part.
///
/// # Errors
/// [`Error::BufferTooSmall`] if `buf` cannot hold it ([`MAX_MESSAGE`] bytes always can).
pub fn encode<'b>(msg: &Message, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
    postcard::to_slice(&(PROTOCOL_VERSION, msg), buf).map_err(encode_error)
}

/// Decodes a plain encoding produced by [`encode`]. The whole input must be one message.
///
/// # Errors
/// [`Error::Empty`], [`Error::UnknownVersion`], [`Error::Decode`] or [`Error::TrailingBytes`].
pub fn decode(bytes: &[u8]) -> Result<Message, Error> {
    let (&version, payload) = bytes.split_first().ok_or(Error::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(Error::UnknownVersion(version));
    }
    let (msg, rest) = postcard::take_from_bytes::<Message>(payload).map_err(Error::Decode)?;
    if rest.is_empty() {
        Ok(msg)
    } else {
        Err(Error::TrailingBytes(rest.len()))
    }
}

/// Encodes `msg` as a serial frame, `COBS(plain ++ crc32_le(plain)) ++ [0x00]`, into `buf` and
/// returns the used part (terminator included).
///
/// # Errors
/// [`Error::BufferTooSmall`] if `buf` cannot hold it ([`MAX_FRAME`] bytes always can).
pub fn encode_frame<'b>(msg: &Message, buf: &'b mut [u8]) -> Result<&'b mut [u8], Error> {
    let flavor = Crc32Flavor {
        inner: Cobs::try_new(Slice::new(buf)).map_err(encode_error)?,
        digest: CRC32.digest(),
    };
    postcard::serialize_with_flavor(&(PROTOCOL_VERSION, msg), flavor).map_err(encode_error)
}

/// Decodes one serial frame: its COBS bytes, optionally followed by the `0x00` terminator.
/// The frame is COBS-decoded in place, so `frame` is clobbered.
///
/// For a byte stream use [`FrameDecoder`], which finds the frame boundaries.
///
/// # Errors
/// [`Error::Cobs`] (also for a `0x00` inside the frame), [`Error::ShortFrame`], [`Error::Crc`],
/// then the errors of [`decode`].
pub fn decode_frame(frame: &mut [u8]) -> Result<Message, Error> {
    let body = match frame.split_last_mut() {
        Some((&mut FRAME_END, body)) => body,
        _ => frame,
    };
    if body.is_empty() {
        return Err(Error::ShortFrame(0));
    }
    if body.contains(&FRAME_END) {
        return Err(Error::Cobs);
    }
    let n = cobs::decode_in_place(body).map_err(|_| Error::Cobs)?;
    let decoded = body.get(..n).ok_or(Error::Cobs)?;
    let split = n.checked_sub(CRC_LEN).filter(|&p| p >= 1).ok_or(Error::ShortFrame(n))?;
    let (plain, trailer) = decoded.split_at(split);
    let mut crc = [0u8; CRC_LEN];
    crc.copy_from_slice(trailer);
    let expected = u32::from_le_bytes(crc);
    let computed = CRC32.checksum(plain);
    if expected != computed {
        return Err(Error::Crc { expected, computed });
    }
    decode(plain)
}

/// [`encode`] into a new `Vec` (e.g. an MQTT payload).
///
/// # Errors
/// None in practice; the `Result` mirrors [`encode`].
#[cfg(feature = "alloc")]
pub fn encode_vec(msg: &Message) -> Result<alloc::vec::Vec<u8>, Error> {
    let mut buf = alloc::vec![0u8; MAX_MESSAGE];
    let len = encode(msg, &mut buf)?.len();
    buf.truncate(len);
    Ok(buf)
}

/// [`encode_frame`] into a new `Vec`.
///
/// # Errors
/// None in practice; the `Result` mirrors [`encode_frame`].
#[cfg(feature = "alloc")]
pub fn encode_frame_vec(msg: &Message) -> Result<alloc::vec::Vec<u8>, Error> {
    let mut buf = alloc::vec![0u8; MAX_FRAME];
    let len = encode_frame(msg, &mut buf)?.len();
    buf.truncate(len);
    Ok(buf)
}

fn encode_error(e: postcard::Error) -> Error {
    match e {
        postcard::Error::SerializeBufferFull => Error::BufferTooSmall,
        other => Error::Encode(other),
    }
}

/// postcard flavor that checksums everything pushed through it and appends the CRC-32
/// (little-endian) before finalising the inner flavor (here COBS over a slice).
struct Crc32Flavor<'c, B> {
    inner: B,
    digest: crc::Digest<'c, u32>,
}

impl<B: Flavor> Flavor for Crc32Flavor<'_, B> {
    type Output = B::Output;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.digest.update(data);
        self.inner.try_extend(data)
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.digest.update(&[data]);
        self.inner.try_push(data)
    }

    fn finalize(self) -> postcard::Result<Self::Output> {
        let Crc32Flavor { mut inner, digest } = self;
        inner.try_extend(&digest.finalize().to_le_bytes())?;
        inner.finalize()
    }
}

// ---- size bounds -------------------------------------------------------------------------------
// postcard: unsigned ints above u8 are varints (7 bits per byte), f32 is 4 bytes, enum tags and
// sequence/string lengths are varints, Option is a 0/1 byte, [u8; N] is N raw bytes.

const fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

const VARINT_U16: usize = 3;
const VARINT_U32: usize = 5;
const VARINT_U64: usize = 10;
const F32: usize = 4;
/// Every enum here has fewer than 128 variants.
const ENUM_TAG: usize = 1;
const STATION_ID_MAX: usize = varint_len(STATION_ID_LEN) + STATION_ID_LEN;
/// `Fault::Other(u16)` is the longest variant.
const FAULT_MAX: usize = ENUM_TAG + VARINT_U16;
/// `Some` + width + height + cell count + cells.
const MAP_MAX: usize = 1 + 1 + 1 + varint_len(MAP_CAPACITY) + MAP_CAPACITY;
const INSPECTION_MAX: usize = STATION_ID_MAX
    + VARINT_U32 // frame_seq
    + VARINT_U64 // timestamp_ms
    + ENUM_TAG // verdict
    + FAULT_MAX
    + F32 // score
    + F32 // threshold
    + MODEL_ID_LEN
    + VARINT_U32 // latency_us
    + MAP_MAX;
const STATUS_MAX: usize = STATION_ID_MAX
    + VARINT_U32 // seq
    + VARINT_U64 // timestamp_ms
    + VARINT_U32 // uptime_s
    + ENUM_TAG // state
    + F32 // threshold
    + MODEL_ID_LEN
    + 5 * VARINT_U32 // counters
    + FAULT_MAX;
const REQUEST_MAX: usize = VARINT_U32 + ENUM_TAG + F32;
const ACK_MAX: usize = VARINT_U32 + ENUM_TAG;

const fn max_payload_len() -> usize {
    ENUM_TAG + max(max(INSPECTION_MAX, STATUS_MAX), max(REQUEST_MAX, ACK_MAX))
}

/// Worst-case COBS length of `n` bytes: one code byte per started 254-byte run.
const fn cobs_max_len(n: usize) -> usize {
    n + n / 254 + 1
}
