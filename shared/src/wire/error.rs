//! The one error type of [`crate::wire`].

use core::fmt;

/// Everything that can go wrong while encoding or decoding wire messages and serial frames.
///
/// Decoding errors never leave a [`FrameDecoder`](super::FrameDecoder) in a bad state: it reports the
/// error for the offending frame and carries on with the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The caller's output buffer is too small for the encoded message or frame.
    /// A buffer of [`MAX_FRAME`](super::MAX_FRAME) bytes always suffices.
    BufferTooSmall,
    /// postcard failed to serialise the message for a reason other than buffer space.
    Encode(postcard::Error),
    /// The input was empty: not even the leading protocol version byte was present.
    Empty,
    /// The leading version byte names a protocol version this build does not speak.
    UnknownVersion(u8),
    /// The payload after the version byte is not a valid postcard encoding of a
    /// [`Message`](super::Message) (truncated, bad enum tag, string or map over capacity, ...).
    Decode(postcard::Error),
    /// A complete message was decoded but this many bytes followed it.
    TrailingBytes(usize),
    /// A serial frame is not valid COBS.
    Cobs,
    /// A serial frame decoded to this many bytes, fewer than a version byte plus the CRC-32.
    ShortFrame(usize),
    /// The CRC-32 carried by a serial frame does not match the one computed over its contents.
    Crc {
        /// The checksum carried in the frame.
        expected: u32,
        /// The checksum computed over the received bytes.
        computed: u32,
    },
    /// A serial frame grew past [`MAX_FRAME`](super::MAX_FRAME) bytes before its `0x00` terminator;
    /// the decoder discards everything up to the next `0x00`.
    Oversize,
    /// Anomaly map dimensions are zero, exceed [`MAX_MAP_SIDE`](super::MAX_MAP_SIDE), or do not
    /// match the number of cells supplied.
    InvalidMap {
        /// Map width in cells.
        width: u8,
        /// Map height in cells.
        height: u8,
        /// Number of cells supplied.
        cells: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferTooSmall => f.write_str("output buffer too small for the encoded message"),
            Error::Encode(e) => write!(f, "message encoding failed: {e}"),
            Error::Empty => f.write_str("empty input: no protocol version byte"),
            Error::UnknownVersion(v) => {
                write!(
                    f,
                    "unknown protocol version {v} (this build speaks {})",
                    super::PROTOCOL_VERSION
                )
            }
            Error::Decode(e) => write!(f, "undecodable message payload: {e}"),
            Error::TrailingBytes(n) => write!(f, "{n} trailing byte(s) after the message"),
            Error::Cobs => f.write_str("invalid COBS encoding in serial frame"),
            Error::ShortFrame(n) => {
                write!(f, "serial frame too short: {n} byte(s), need a version byte and a CRC-32")
            }
            Error::Crc { expected, computed } => {
                write!(
                    f,
                    "CRC-32 mismatch: frame carries {expected:#010x}, computed {computed:#010x}"
                )
            }
            Error::Oversize => {
                write!(f, "serial frame longer than {} bytes, discarded", super::MAX_FRAME)
            }
            Error::InvalidMap { width, height, cells } => write!(
                f,
                "invalid anomaly map: {width}x{height} with {cells} cell(s) (max side {})",
                super::MAX_MAP_SIDE
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Encode(e) | Error::Decode(e) => Some(e),
            _ => None,
        }
    }
}

// postcard::Error only implements defmt::Format behind postcard's own `use-defmt` feature, so the
// derive cannot be used; route through Display instead.
#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{}", defmt::Display2Format(self));
    }
}
