//! Golden vectors for `shared::wire`: they freeze the wire format byte for byte.
//!
//! CHANGING ANY EXPECTED BYTE ARRAY IN THIS FILE CHANGES THE PROTOCOL: the same change must bump
//! `shared::wire::PROTOCOL_VERSION` (and the stations and line software must be updated together).
//! Adding vectors for new messages is fine.
//!
//! The serial frames are cross-checked on every run against an independent implementation:
//! `scripts/fixtures/check_wire_frames.py` (the `cobs` package and Python's `zlib.crc32`) recomputes
//! the frame of every vector here and of the worked examples in docs/wire-protocol.md
//! (`golden_frames_agree_with_python_cobs_and_zlib`).
//!
//! Also here: the `FrameDecoder` behaviours (partial reads, several frames per chunk, garbage,
//! bad CRC, oversize frames, unknown versions) and the `MAX_FRAME` bound.

use shared::wire::{
    self, Ack, AckCode, AnomalyMap, Command, Counters, Error, Fault, FrameDecoder,
    InspectionResult, Message, ModelId, Request, StationState, Status, Verdict, CRC32, MAX_FRAME,
    MAX_MESSAGE, PROTOCOL_VERSION,
};

// ---- golden vectors ------------------------------------------------------------------------------

const MODEL: ModelId = ModelId([0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67]);

fn station() -> wire::StationId {
    wire::StationId::try_from("st-01").expect("short literal fits")
}

/// Checks both encodings of `msg` against the frozen bytes, and that both decode back.
fn check_golden(msg: &Message, plain: &[u8], frame: &[u8]) {
    let mut buf = [0u8; MAX_FRAME];
    assert_eq!(wire::encode(msg, &mut buf).expect("encode"), plain, "plain encoding changed");
    assert_eq!(wire::decode(plain).as_ref(), Ok(msg));
    assert_eq!(wire::encode_frame(msg, &mut buf).expect("encode_frame"), frame, "frame changed");
    assert_eq!(wire::decode_frame(&mut frame.to_vec()).as_ref(), Ok(msg));
    let mut decoder = FrameDecoder::new();
    assert_eq!(decoder.push(frame).collect::<Vec<_>>(), [Ok(msg.clone())]);
    assert_eq!(plain[0], PROTOCOL_VERSION);
}

fn inspection_fail_with_map() -> Message {
    Message::Inspection(InspectionResult {
        station_id: station(),
        frame_seq: 42,
        timestamp_ms: 1_700_000_000_000,
        verdict: Verdict::Fail,
        fault: Fault::None,
        score: 0.75,
        threshold: 0.5,
        model_id: MODEL,
        latency_us: 12_345,
        anomaly_map: Some(AnomalyMap::new(2, 2, &[0, 64, 128, 255]).expect("valid 2x2 map")),
    })
}

fn inspection_error_no_map() -> Message {
    Message::Inspection(InspectionResult {
        station_id: station(),
        frame_seq: 43,
        timestamp_ms: 1_700_000_000_040,
        verdict: Verdict::Error,
        fault: Fault::Other(300),
        score: 0.0,
        threshold: 0.5,
        model_id: MODEL,
        latency_us: 250_000,
        anomaly_map: None,
    })
}

fn status() -> Message {
    Message::Status(Status {
        station_id: station(),
        seq: 7,
        timestamp_ms: 1_700_000_000_500,
        uptime_s: 3600,
        state: StationState::Ready,
        threshold: 0.5,
        model_id: MODEL,
        counters: Counters { frames: 100, passes: 97, fails: 2, errors: 1, spool_dropped: 0 },
        last_fault: Fault::Camera,
    })
}

fn set_threshold() -> Message {
    Message::Request(Request { id: 1, command: Command::SetThreshold(0.625) })
}

fn ack_ok() -> Message {
    Message::Ack(Ack::ok(1))
}

#[test]
fn golden_inspection_fail_with_map() {
    check_golden(
        &inspection_fail_with_map(),
        &[
            1, 0, 5, 115, 116, 45, 48, 49, 42, 128, 208, 149, 255, 188, 49, 1, 0, 0, 0, 64, 63, 0,
            0, 0, 63, 222, 173, 190, 239, 1, 35, 69, 103, 185, 96, 1, 2, 2, 4, 0, 64, 128, 255,
        ],
        &[
            2, 1, 15, 5, 115, 116, 45, 48, 49, 42, 128, 208, 149, 255, 188, 49, 1, 1, 1, 3, 64, 63,
            1, 1, 16, 63, 222, 173, 190, 239, 1, 35, 69, 103, 185, 96, 1, 2, 2, 4, 8, 64, 128, 255,
            94, 11, 102, 9, 0,
        ],
    );
}

#[test]
fn golden_inspection_error_no_map() {
    check_golden(
        &inspection_error_no_map(),
        &[
            1, 0, 5, 115, 116, 45, 48, 49, 43, 168, 208, 149, 255, 188, 49, 2, 5, 172, 2, 0, 0, 0,
            0, 0, 0, 0, 63, 222, 173, 190, 239, 1, 35, 69, 103, 144, 161, 15, 0,
        ],
        &[
            2, 1, 18, 5, 115, 116, 45, 48, 49, 43, 168, 208, 149, 255, 188, 49, 2, 5, 172, 2, 1, 1,
            1, 1, 1, 1, 13, 63, 222, 173, 190, 239, 1, 35, 69, 103, 144, 161, 15, 5, 23, 22, 3,
            119, 0,
        ],
    );
}

#[test]
fn golden_status() {
    check_golden(
        &status(),
        &[
            1, 1, 5, 115, 116, 45, 48, 49, 7, 244, 211, 149, 255, 188, 49, 144, 28, 1, 0, 0, 0, 63,
            222, 173, 190, 239, 1, 35, 69, 103, 100, 97, 2, 1, 0, 1,
        ],
        &[
            19, 1, 1, 5, 115, 116, 45, 48, 49, 7, 244, 211, 149, 255, 188, 49, 144, 28, 1, 1, 1,
            14, 63, 222, 173, 190, 239, 1, 35, 69, 103, 100, 97, 2, 1, 6, 1, 78, 65, 66, 23, 0,
        ],
    );
}

#[test]
fn golden_request_set_threshold() {
    check_golden(
        &set_threshold(),
        &[1, 2, 1, 0, 0, 0, 32, 63],
        &[4, 1, 2, 1, 1, 1, 7, 32, 63, 228, 20, 169, 214, 0],
    );
}

#[test]
fn golden_request_trigger() {
    check_golden(
        &Message::Request(Request { id: 2, command: Command::Trigger }),
        &[1, 2, 2, 1],
        &[9, 1, 2, 2, 1, 3, 62, 77, 223, 0],
    );
}

#[test]
fn golden_request_get_status() {
    check_golden(
        &Message::Request(Request { id: 300, command: Command::GetStatus }),
        &[1, 2, 172, 2, 2],
        &[10, 1, 2, 172, 2, 2, 140, 177, 17, 93, 0],
    );
}

#[test]
fn golden_ack_ok() {
    check_golden(&ack_ok(), &[1, 3, 1, 0], &[4, 1, 3, 1, 5, 97, 55, 165, 130, 0]);
}

#[test]
fn golden_ack_invalid_argument() {
    check_golden(
        &Message::Ack(Ack { id: 2, code: AckCode::InvalidArgument }),
        &[1, 3, 2, 1],
        &[9, 1, 3, 2, 1, 52, 84, 143, 222, 0],
    );
}

/// The independent cross-check: `$GLASS_EDGE_PYTHON` (set by scripts/env.sh; else `python3`) runs the
/// checked-in script; it fails (never skips) when Python or the `cobs` package is missing.
#[test]
fn golden_frames_agree_with_python_cobs_and_zlib() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("GLASS_EDGE_PYTHON").unwrap_or_else(|| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(root.join("scripts/fixtures/check_wire_frames.py"))
        .arg("--repo")
        .arg(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e} (bash scripts/setup installs it)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_wire_frames.py failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Every golden test of this file is among the vectors the script checked.
    let n: usize = stdout.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let here = include_str!("wire_golden.rs").matches("\n    check_golden(").count();
    assert!(n >= here + 3, "the script checked {n} vectors; this file has {here} (+3 in the docs)");
}

#[test]
fn protocol_constants_are_frozen() {
    assert_eq!(PROTOCOL_VERSION, 1);
    // CRC-32/ISO-HDLC check value (the zlib / Ethernet CRC).
    assert_eq!(CRC32.checksum(b"123456789"), 0xCBF4_3926);
}

// ---- MAX_FRAME -------------------------------------------------------------------------------------

/// The largest message there is: the full map, the longest station id, every varint at its widest
/// and no zero bytes anywhere (zeros only shorten COBS).
fn largest_message() -> Message {
    let id = "x".repeat(wire::STATION_ID_LEN);
    Message::Inspection(InspectionResult {
        station_id: wire::StationId::try_from(id.as_str()).expect("exactly STATION_ID_LEN bytes"),
        frame_seq: u32::MAX,
        timestamp_ms: u64::MAX,
        verdict: Verdict::Error,
        fault: Fault::Other(u16::MAX),
        score: f32::from_bits(0x3f81_8181),
        threshold: f32::from_bits(0x3f81_8181),
        model_id: ModelId([0xff; 8]),
        latency_us: u32::MAX,
        anomaly_map: Some(
            AnomalyMap::new(64, 64, &[0xff; wire::MAP_CAPACITY]).expect("full 64x64 map"),
        ),
    })
}

#[test]
fn largest_message_fits_max_frame() {
    let msg = largest_message();
    let mut buf = vec![0u8; MAX_FRAME];
    let plain_len = wire::encode(&msg, &mut buf).expect("plain fits").len();
    assert_eq!(plain_len, MAX_MESSAGE, "MAX_MESSAGE is the exact worst case");

    let frame = wire::encode_frame(&msg, &mut buf).expect("frame fits in MAX_FRAME").to_vec();
    assert!(frame.len() <= MAX_FRAME, "{} > {MAX_FRAME}", frame.len());
    // The bound is tight up to zero bytes the CRC may contain.
    assert!(frame.len() + CRC_SLACK >= MAX_FRAME, "{} much below {MAX_FRAME}", frame.len());
    assert_eq!(wire::decode_frame(&mut frame.clone()), Ok(msg.clone()));

    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &frame {
        got.extend(decoder.feed_byte(*b));
    }
    assert_eq!(got, [Ok(msg.clone())]);

    // One byte short is reported, not a panic.
    assert_eq!(wire::encode_frame(&msg, &mut buf[..frame.len() - 1]), Err(Error::BufferTooSmall));
    assert_eq!(wire::encode(&msg, &mut buf[..plain_len - 1]), Err(Error::BufferTooSmall));
}
const CRC_SLACK: usize = 4;

#[test]
fn largest_status_fits_max_message() {
    let id = "\u{00e9}".repeat(wire::STATION_ID_LEN / 2); // multi-byte UTF-8, 32 bytes
    let msg = Message::Status(Status {
        station_id: wire::StationId::try_from(id.as_str()).expect("32 bytes"),
        seq: u32::MAX,
        timestamp_ms: u64::MAX,
        uptime_s: u32::MAX,
        state: StationState::Fault,
        threshold: f32::MAX,
        model_id: ModelId([0xff; 8]),
        counters: Counters {
            frames: u32::MAX,
            passes: u32::MAX,
            fails: u32::MAX,
            errors: u32::MAX,
            spool_dropped: u32::MAX,
        },
        last_fault: Fault::Other(u16::MAX),
    });
    let mut buf = [0u8; MAX_FRAME];
    assert!(wire::encode(&msg, &mut buf).expect("fits").len() <= MAX_MESSAGE);
    assert!(wire::encode_frame(&msg, &mut buf).expect("fits").len() <= MAX_FRAME);
}

// ---- plain decoding errors -------------------------------------------------------------------------

#[test]
fn plain_decode_errors_are_typed() {
    assert_eq!(wire::decode(&[]), Err(Error::Empty));
    assert_eq!(wire::decode(&[2, 3, 1, 0]), Err(Error::UnknownVersion(2)));
    assert_eq!(wire::decode(&[0, 3, 1, 0]), Err(Error::UnknownVersion(0)));
    assert_eq!(wire::decode(&[1, 3, 1, 0, 9]), Err(Error::TrailingBytes(1)));
    assert_eq!(
        wire::decode(&[1, 3, 1]),
        Err(Error::Decode(postcard::Error::DeserializeUnexpectedEnd))
    );
    // Message tag 9 does not exist.
    assert!(matches!(wire::decode(&[1, 9, 1, 0]), Err(Error::Decode(_))));
    // AckCode 5 does not exist.
    assert!(matches!(wire::decode(&[1, 3, 1, 5]), Err(Error::Decode(_))));
}

#[test]
fn invalid_anomaly_map_is_rejected_on_decode() {
    let mut buf = [0u8; MAX_FRAME];
    let mut plain = wire::encode(&inspection_fail_with_map(), &mut buf).expect("encode").to_vec();
    // The map sits at the end: [1 (Some), w, h, len, cells...]. Claim 3x2 for 4 cells.
    let w = plain.len() - 7;
    assert_eq!(&plain[w..w + 3], &[2, 2, 4]);
    plain[w] = 3;
    assert!(matches!(wire::decode(&plain), Err(Error::Decode(_))));
    // And a map side of 65 (with matching cell count) is rejected too.
    assert!(AnomalyMap::new(65, 1, &[1u8; 65]).is_err());
}

#[test]
fn anomaly_map_and_model_id_helpers() {
    assert!(matches!(AnomalyMap::new(0, 1, &[]), Err(Error::InvalidMap { .. })));
    assert!(matches!(AnomalyMap::new(2, 2, &[1, 2, 3]), Err(Error::InvalidMap { .. })));
    let map = AnomalyMap::new(3, 2, &[1, 2, 3, 4, 5, 6]).expect("valid");
    assert_eq!((map.width(), map.height()), (3, 2));
    assert_eq!(map.get(2, 1), Some(6));
    assert_eq!(map.get(3, 0), None);
    assert_eq!(map.get(0, 2), None);
    assert_eq!(map.rows().collect::<Vec<_>>(), [&[1, 2, 3][..], &[4, 5, 6][..]]);
    assert!(AnomalyMap::new(64, 64, &[0; 4096]).is_ok());

    assert_eq!(MODEL.to_string(), "deadbeef01234567");
    let digest = [0xabu8; 32];
    assert_eq!(ModelId::from_digest(&digest), Some(ModelId([0xab; 8])));
    assert_eq!(ModelId::from_digest(&digest[..7]), None);
}

// ---- FrameDecoder ----------------------------------------------------------------------------------

fn frame_of(msg: &Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    wire::encode_frame(msg, &mut buf).expect("encode_frame").to_vec()
}

/// A serial frame around arbitrary `plain` bytes, with the given CRC (the right one if `None`).
fn raw_frame(plain: &[u8], crc: Option<u32>) -> Vec<u8> {
    let mut body = plain.to_vec();
    body.extend_from_slice(&crc.unwrap_or_else(|| CRC32.checksum(plain)).to_le_bytes());
    let mut out = vec![0u8; cobs::max_encoding_length(body.len()) + 1];
    let n = cobs::encode(&body, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

fn all_messages() -> Vec<Message> {
    vec![inspection_fail_with_map(), status(), set_threshold(), inspection_error_no_map(), ack_ok()]
}

fn stream_of(msgs: &[Message]) -> Vec<u8> {
    msgs.iter().flat_map(frame_of).collect()
}

fn oks(msgs: &[Message]) -> Vec<Result<Message, Error>> {
    msgs.iter().cloned().map(Ok).collect()
}

fn push_all(decoder: &mut FrameDecoder, bytes: &[u8]) -> Vec<Result<Message, Error>> {
    decoder.push(bytes).collect()
}

#[test]
fn decoder_byte_by_byte() {
    let msgs = all_messages();
    let stream = stream_of(&msgs);
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &stream {
        got.extend(push_all(&mut decoder, std::slice::from_ref(b)));
    }
    assert_eq!(got, oks(&msgs));
    assert_eq!(decoder.buffered(), 0);
}

#[test]
fn decoder_feed_byte_and_callback_agree() {
    let msgs = all_messages();
    let stream = stream_of(&msgs);
    let mut a = FrameDecoder::new();
    let by_byte: Vec<_> = stream.iter().filter_map(|b| a.feed_byte(*b)).collect();
    let mut b = FrameDecoder::default();
    let mut by_callback = Vec::new();
    b.feed(&stream, |item| by_callback.push(item));
    assert_eq!(by_byte, by_callback);
    assert_eq!(by_byte.len(), msgs.len());
}

#[test]
fn decoder_multiple_frames_in_one_chunk() {
    let msgs = all_messages();
    let mut decoder = FrameDecoder::new();
    let got = push_all(&mut decoder, &stream_of(&msgs));
    assert_eq!(got, oks(&msgs));
}

#[test]
fn decoder_frame_split_at_every_position() {
    let msgs = [set_threshold(), inspection_fail_with_map(), ack_ok()];
    let stream = stream_of(&msgs);
    for cut in 0..=stream.len() {
        let mut decoder = FrameDecoder::new();
        let mut got = push_all(&mut decoder, &stream[..cut]);
        got.extend(push_all(&mut decoder, &stream[cut..]));
        assert_eq!(got, oks(&msgs), "cut at {cut}");
    }
}

#[test]
fn decoder_partial_frame_stays_buffered() {
    let frame = frame_of(&status());
    let mut decoder = FrameDecoder::new();
    assert!(push_all(&mut decoder, &frame[..10]).is_empty());
    assert_eq!(decoder.buffered(), 10);
    assert_eq!(push_all(&mut decoder, &frame[10..]), [Ok(status())]);
    // reset() drops a partial frame.
    assert!(push_all(&mut decoder, &frame[..10]).is_empty());
    decoder.reset();
    assert_eq!(push_all(&mut decoder, &frame), [Ok(status())]);
}

#[test]
fn decoder_skips_empty_frames() {
    let mut stream = vec![0, 0, 0];
    stream.extend(frame_of(&ack_ok()));
    stream.extend([0, 0]);
    stream.extend(frame_of(&set_threshold()));
    let mut decoder = FrameDecoder::new();
    assert_eq!(push_all(&mut decoder, &stream), [Ok(ack_ok()), Ok(set_threshold())]);
}

#[test]
fn decoder_resyncs_after_garbage() {
    // Garbage ended by a 0x00 costs one error, then decoding goes on.
    let mut stream = b"\x13hello, line noise".to_vec();
    stream.push(0);
    stream.extend(frame_of(&ack_ok()));
    stream.extend([0xff, 0xfe, 0x07, 0x00]); // garbage between frames
    stream.extend(frame_of(&status()));
    let mut decoder = FrameDecoder::new();
    let got = push_all(&mut decoder, &stream);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[0].is_err());
    assert_eq!(got[1], Ok(ack_ok()));
    assert!(got[2].is_err());
    assert_eq!(got[3], Ok(status()));

    // Garbage glued to the front of a frame (no 0x00 in between) loses that frame only.
    let mut stream = vec![0x42, 0x17];
    stream.extend(frame_of(&ack_ok()));
    stream.extend(frame_of(&status()));
    let got = push_all(&mut FrameDecoder::new(), &stream);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].is_err());
    assert_eq!(got[1], Ok(status()));
}

#[test]
fn decoder_rejects_bad_crc() {
    let mut buf = [0u8; MAX_FRAME];
    let plain = wire::encode(&ack_ok(), &mut buf).expect("encode").to_vec();
    let good = CRC32.checksum(&plain);
    let mut stream = raw_frame(&plain, Some(good ^ 0x0100_0000));
    stream.extend(frame_of(&ack_ok()));
    let got = push_all(&mut FrameDecoder::new(), &stream);
    assert_eq!(
        got,
        [Err(Error::Crc { expected: good ^ 0x0100_0000, computed: good }), Ok(ack_ok())]
    );

    // A flipped payload bit is caught too.
    let mut frame = frame_of(&set_threshold());
    frame[7] ^= 0x04;
    assert!(matches!(wire::decode_frame(&mut frame), Err(Error::Crc { .. })));
}

#[test]
fn decoder_rejects_unknown_version() {
    let mut buf = [0u8; MAX_FRAME];
    let mut plain = wire::encode(&ack_ok(), &mut buf).expect("encode").to_vec();
    plain[0] = PROTOCOL_VERSION + 1;
    let mut stream = raw_frame(&plain, None);
    stream.extend(frame_of(&ack_ok()));
    let got = push_all(&mut FrameDecoder::new(), &stream);
    assert_eq!(got, [Err(Error::UnknownVersion(PROTOCOL_VERSION + 1)), Ok(ack_ok())]);
}

#[test]
fn decoder_rejects_undecodable_payload() {
    let mut stream = raw_frame(&[PROTOCOL_VERSION, 9, 9, 9], None); // no message tag 9
    stream.extend(raw_frame(&[PROTOCOL_VERSION, 3, 1, 0, 0], None)); // ack + a trailing byte
    stream.extend(raw_frame(&[PROTOCOL_VERSION, 2], None)); // request cut short
    stream.extend(frame_of(&ack_ok()));
    let got = push_all(&mut FrameDecoder::new(), &stream);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(matches!(got[0], Err(Error::Decode(_))));
    assert_eq!(got[1], Err(Error::TrailingBytes(1)));
    assert_eq!(got[2], Err(Error::Decode(postcard::Error::DeserializeUnexpectedEnd)));
    assert_eq!(got[3], Ok(ack_ok()));
}

#[test]
fn decoder_rejects_short_and_malformed_frames() {
    let mut stream = raw_frame(&[], None); // CRC only: 4 bytes
    stream.extend([3, 1, 0]); // COBS says 2 data bytes, only 1 follows
    stream.extend(frame_of(&ack_ok()));
    let got = push_all(&mut FrameDecoder::new(), &stream);
    assert_eq!(got, [Err(Error::ShortFrame(4)), Err(Error::Cobs), Ok(ack_ok())]);

    assert_eq!(wire::decode_frame(&mut []), Err(Error::ShortFrame(0)));
    assert_eq!(wire::decode_frame(&mut [0]), Err(Error::ShortFrame(0)));
    assert_eq!(wire::decode_frame(&mut [2, 0, 1]), Err(Error::Cobs));
}

#[test]
fn decoder_oversize_frame_reported_once() {
    let mut stream = vec![0x01; MAX_FRAME + 10];
    stream.push(0);
    stream.extend(frame_of(&ack_ok()));

    // In one chunk ...
    let got = push_all(&mut FrameDecoder::new(), &stream);
    assert_eq!(got, [Err(Error::Oversize), Ok(ack_ok())]);

    // ... byte by byte ...
    let mut decoder = FrameDecoder::new();
    let got: Vec<_> = stream.iter().filter_map(|b| decoder.feed_byte(*b)).collect();
    assert_eq!(got, [Err(Error::Oversize), Ok(ack_ok())]);

    // ... and in odd chunks, with a long run of garbage (several MAX_FRAMEs).
    let mut stream = vec![0x55; 3 * MAX_FRAME];
    stream.push(0);
    stream.extend(frame_of(&status()));
    let mut decoder = FrameDecoder::new();
    let got: Vec<_> = stream.chunks(997).flat_map(|c| push_all(&mut decoder, c)).collect();
    assert_eq!(got, [Err(Error::Oversize), Ok(status())]);
}

#[test]
fn decoder_iterator_remainder_when_dropped_early() {
    let stream = stream_of(&[ack_ok(), set_threshold()]);
    let mut decoder = FrameDecoder::new();
    let mut frames = decoder.push(&stream);
    assert_eq!(frames.next(), Some(Ok(ack_ok())));
    let rest = frames.remainder();
    assert_eq!(rest, &frame_of(&set_threshold())[..]);
    assert_eq!(push_all(&mut decoder, rest), [Ok(set_threshold())]);
}

#[test]
fn error_display_is_informative() {
    assert_eq!(
        Error::UnknownVersion(7).to_string(),
        "unknown protocol version 7 (this build speaks 1)"
    );
    assert!(Error::Oversize.to_string().contains(&MAX_FRAME.to_string()));
}

#[cfg(feature = "std")]
#[test]
fn error_is_std_error_with_source() {
    let e: Box<dyn std::error::Error> =
        Box::new(Error::Decode(postcard::Error::DeserializeUnexpectedEnd));
    assert!(e.source().is_some());
    assert!(e.to_string().starts_with("undecodable message payload"));
}
