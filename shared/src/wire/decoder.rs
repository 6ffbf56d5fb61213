//! Streaming decoder for serial frames.

use core::iter::FusedIterator;

use super::{decode_frame, Error, Message, FRAME_END, MAX_FRAME};

/// Reassembles serial frames from a byte stream read in arbitrary chunks and decodes them.
///
/// Frames may be split across chunks and a chunk may hold several frames. Each `0x00` ends a
/// frame: empty frames (repeated `0x00`s, e.g. a sender flushing the line) are skipped silently;
/// anything else before a `0x00` yields exactly one item, the message or the reason it was
/// rejected ([`Error::Cobs`], [`Error::ShortFrame`], [`Error::Crc`], [`Error::UnknownVersion`],
/// [`Error::Decode`], ...). A frame longer than [`MAX_FRAME`] yields one [`Error::Oversize`] and
/// the rest of it, up to the next `0x00`, is discarded. So after garbage the decoder resynchronises
/// on the next `0x00`. No input makes it panic.
///
/// It holds a `MAX_FRAME`-byte buffer inline (about 4 KiB); on small stacks keep it in a `static`.
///
/// ```
/// # use shared::wire::{self, Ack, FrameDecoder, Message, MAX_FRAME};
/// # let mut buf = [0u8; MAX_FRAME];
/// # let stream = wire::encode_frame(&Message::Ack(Ack::ok(1)), &mut buf).unwrap().to_vec();
/// let mut decoder = FrameDecoder::new();
/// for chunk in stream.chunks(3) {
///     // e.g. the bytes of one `read()` from a serial port
///     for item in decoder.push(chunk) {
///         match item {
///             Ok(msg) => println!("{msg:?}"),
///             Err(e) => eprintln!("bad frame: {e}"),
///         }
///     }
/// }
/// ```
#[derive(Clone)]
pub struct FrameDecoder {
    buf: [u8; MAX_FRAME],
    /// Bytes of the current frame held in `buf`; always `<= MAX_FRAME`.
    len: usize,
    /// The current frame overflowed: drop bytes until the next `0x00`.
    discarding: bool,
}

impl FrameDecoder {
    /// An empty decoder, waiting for the start of a frame.
    pub const fn new() -> Self {
        FrameDecoder { buf: [0; MAX_FRAME], len: 0, discarding: false }
    }

    /// Returns an iterator over the items completed by `bytes`, in order. The bytes are consumed
    /// as the iterator advances, so drain it (a `for` loop does); bytes after the last complete
    /// frame stay buffered for the next call. If the iterator is dropped early,
    /// [`Frames::remainder`] gives the bytes not yet consumed.
    pub fn push<'d, 'b>(&'d mut self, bytes: &'b [u8]) -> Frames<'d, 'b> {
        Frames { decoder: self, rest: bytes }
    }

    /// Feeds all of `bytes` and calls `on_item` for each completed item, in order.
    pub fn feed<F: FnMut(Result<Message, Error>)>(&mut self, bytes: &[u8], on_item: F) {
        self.push(bytes).for_each(on_item);
    }

    /// Feeds one byte; returns an item if it completed one.
    pub fn feed_byte(&mut self, byte: u8) -> Option<Result<Message, Error>> {
        self.step(&[byte]).1
    }

    /// Drops any partial frame and starts afresh, as if a `0x00` had been received silently.
    pub fn reset(&mut self) {
        self.len = 0;
        self.discarding = false;
    }

    /// Bytes of an unfinished frame currently held (0 while discarding an oversize frame).
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// Consumes `bytes` until one item is complete or the input runs out. Returns the number of
    /// bytes consumed and the item, if any.
    fn step(&mut self, bytes: &[u8]) -> (usize, Option<Result<Message, Error>>) {
        let mut consumed = 0;
        while let Some(rest) = bytes.get(consumed..).filter(|r| !r.is_empty()) {
            match rest.iter().position(|&b| b == FRAME_END) {
                None => {
                    consumed += rest.len();
                    if let Some(e) = self.append(rest) {
                        return (consumed, Some(Err(e)));
                    }
                }
                Some(end) => {
                    consumed += end + 1;
                    let overflow = self.append(rest.get(..end).unwrap_or_default());
                    let item = self.end_frame();
                    if let Some(e) = overflow {
                        return (consumed, Some(Err(e)));
                    }
                    if item.is_some() {
                        return (consumed, item);
                    }
                }
            }
        }
        (consumed, None)
    }

    /// Appends frame bytes (no `0x00` among them); returns [`Error::Oversize`] when this append
    /// overflows the buffer (once per frame).
    fn append(&mut self, data: &[u8]) -> Option<Error> {
        if self.discarding || data.is_empty() {
            return None;
        }
        let end = self.len.checked_add(data.len());
        match end.and_then(|end| self.buf.get_mut(self.len..end)) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.len += data.len();
                None
            }
            None => {
                self.len = 0;
                self.discarding = true;
                Some(Error::Oversize)
            }
        }
    }

    /// A `0x00` arrived: decode the buffered frame, if there is one, and start the next.
    fn end_frame(&mut self) -> Option<Result<Message, Error>> {
        let len = core::mem::take(&mut self.len);
        if core::mem::take(&mut self.discarding) || len == 0 {
            return None;
        }
        Some(self.buf.get_mut(..len).map_or(Err(Error::Oversize), decode_frame))
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("buffered", &self.len)
            .field("discarding", &self.discarding)
            .finish_non_exhaustive()
    }
}

/// Iterator over the items completed by one chunk; see [`FrameDecoder::push`].
#[derive(Debug)]
pub struct Frames<'d, 'b> {
    decoder: &'d mut FrameDecoder,
    rest: &'b [u8],
}

impl<'b> Frames<'_, 'b> {
    /// The bytes of the chunk not consumed yet.
    pub fn remainder(&self) -> &'b [u8] {
        self.rest
    }
}

impl Iterator for Frames<'_, '_> {
    type Item = Result<Message, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (consumed, item) = self.decoder.step(self.rest);
        self.rest = self.rest.get(consumed..).unwrap_or_default();
        item
    }
}

impl FusedIterator for Frames<'_, '_> {}
