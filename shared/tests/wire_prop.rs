//! Property tests for `shared::wire`: round trips through both encodings, arbitrary chunking of
//! the serial stream, and arbitrary bytes fed to the `FrameDecoder` (no panic, and it resyncs).

use proptest::collection::vec;
use proptest::prelude::*;
use shared::wire::{
    self, Ack, AckCode, AnomalyMap, Command, Counters, Error, Fault, FrameDecoder,
    InspectionResult, Message, ModelId, Request, StationId, StationState, Status, Verdict,
    MAX_FRAME, MAX_MESSAGE, STATION_ID_LEN,
};

// ---- strategies ------------------------------------------------------------------------------------

/// Any f32 but NaN (NaN != NaN would break the equality checks; it is covered separately).
fn float() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("not NaN", |f| !f.is_nan())
}

fn station_id() -> impl Strategy<Value = StationId> {
    prop_oneof!["[a-z0-9-]{0,32}", "\\PC{0,12}"]
        .prop_filter("fits STATION_ID_LEN bytes", |s: &String| s.len() <= STATION_ID_LEN)
        .prop_map(|s| StationId::try_from(s.as_str()).expect("length filtered"))
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::None),
        Just(Fault::Camera),
        Just(Fault::Decode),
        Just(Fault::Engine),
        Just(Fault::DeadlineMissed),
        Just(Fault::Busy),
        Just(Fault::NoFrame),
        any::<u16>().prop_map(Fault::Other),
    ]
}

fn model_id() -> impl Strategy<Value = ModelId> {
    any::<[u8; 8]>().prop_map(ModelId)
}

fn anomaly_map() -> impl Strategy<Value = AnomalyMap> {
    (1u8..=64, 1u8..=64).prop_flat_map(|(w, h)| {
        vec(any::<u8>(), usize::from(w) * usize::from(h))
            .prop_map(move |cells| AnomalyMap::new(w, h, &cells).expect("sized to w*h"))
    })
}

fn inspection() -> impl Strategy<Value = InspectionResult> {
    (
        station_id(),
        any::<u32>(),
        any::<u64>(),
        prop_oneof![Just(Verdict::Pass), Just(Verdict::Fail), Just(Verdict::Error)],
        fault(),
        float(),
        float(),
        model_id(),
        any::<u32>(),
        proptest::option::of(anomaly_map()),
    )
        .prop_map(
            |(
                station_id,
                frame_seq,
                timestamp_ms,
                verdict,
                fault,
                score,
                threshold,
                model_id,
                latency_us,
                anomaly_map,
            )| InspectionResult {
                station_id,
                frame_seq,
                timestamp_ms,
                verdict,
                fault,
                score,
                threshold,
                model_id,
                latency_us,
                anomaly_map,
            },
        )
}

fn status() -> impl Strategy<Value = Status> {
    (
        station_id(),
        any::<(u32, u64, u32)>(),
        prop_oneof![
            Just(StationState::Starting),
            Just(StationState::Ready),
            Just(StationState::Busy),
            Just(StationState::Fault),
        ],
        float(),
        model_id(),
        any::<[u32; 5]>(),
        fault(),
    )
        .prop_map(
            |(
                station_id,
                (seq, timestamp_ms, uptime_s),
                state,
                threshold,
                model_id,
                c,
                last_fault,
            )| {
                Status {
                    station_id,
                    seq,
                    timestamp_ms,
                    uptime_s,
                    state,
                    threshold,
                    model_id,
                    counters: Counters {
                        frames: c[0],
                        passes: c[1],
                        fails: c[2],
                        errors: c[3],
                        spool_dropped: c[4],
                    },
                    last_fault,
                }
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    let command = prop_oneof![
        float().prop_map(Command::SetThreshold),
        Just(Command::Trigger),
        Just(Command::GetStatus),
    ];
    (any::<u32>(), command).prop_map(|(id, command)| Request { id, command })
}

fn ack() -> impl Strategy<Value = Ack> {
    let code = prop_oneof![
        Just(AckCode::Ok),
        Just(AckCode::InvalidArgument),
        Just(AckCode::Busy),
        Just(AckCode::Unsupported),
        Just(AckCode::Failed),
    ];
    (any::<u32>(), code).prop_map(|(id, code)| Ack { id, code })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        inspection().prop_map(Message::from),
        status().prop_map(Message::from),
        request().prop_map(Message::from),
        ack().prop_map(Message::from),
    ]
}

// ---- helpers ---------------------------------------------------------------------------------------

fn frame_of(msg: &Message) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME];
    wire::encode_frame(msg, &mut buf).expect("MAX_FRAME always suffices").to_vec()
}

/// Splits `bytes` at the given (unsorted, possibly out of range) cut points.
fn chunks<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

fn decode_chunks(decoder: &mut FrameDecoder, chunks: &[&[u8]]) -> Vec<Result<Message, Error>> {
    chunks.iter().flat_map(|c| decoder.push(c).collect::<Vec<_>>()).collect()
}

// ---- properties ------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn plain_round_trip(msg in message()) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let plain = wire::encode(&msg, &mut buf).expect("MAX_MESSAGE always suffices").to_vec();
        prop_assert!(plain.len() <= MAX_MESSAGE);
        prop_assert_eq!(plain[0], wire::PROTOCOL_VERSION);
        prop_assert_eq!(wire::decode(&plain), Ok(msg));
    }

    #[test]
    fn frame_round_trip(msg in message()) {
        let frame = frame_of(&msg);
        prop_assert!(frame.len() <= MAX_FRAME);
        // Exactly one 0x00: the terminator.
        prop_assert_eq!(frame.iter().position(|&b| b == 0), Some(frame.len() - 1));
        prop_assert_eq!(wire::decode_frame(&mut frame.clone()), Ok(msg.clone()));
        let mut decoder = FrameDecoder::new();
        prop_assert_eq!(decoder.push(&frame).collect::<Vec<_>>(), vec![Ok(msg)]);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn nan_survives_bit_exact(bits in any::<u32>(), id in any::<u32>()) {
        let msg = Message::Request(Request { id, command: Command::SetThreshold(f32::from_bits(bits)) });
        let frame = frame_of(&msg);
        let back = wire::decode_frame(&mut frame.clone()).expect("round trip");
        prop_assert_eq!(frame_of(&back), frame);
    }

    #[test]
    fn stream_in_random_chunks(
        msgs in vec(message(), 1..6),
        cuts in vec(any::<usize>(), 0..40),
        flushes in vec(0usize..3, 6),
    ) {
        // Frames back to back, some preceded by idle 0x00s.
        let mut stream = Vec::new();
        for (msg, &zeros) in msgs.iter().zip(&flushes) {
            stream.extend(std::iter::repeat_n(0u8, zeros));
            stream.extend(frame_of(msg));
        }
        let mut decoder = FrameDecoder::new();
        let got = decode_chunks(&mut decoder, &chunks(&stream, &cuts));
        prop_assert_eq!(got, msgs.into_iter().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn random_bytes_never_panic_and_decoder_resyncs(
        garbage in prop_oneof![
            vec(any::<u8>(), 0..600),
            vec(1u8..=255, 0..(3 * MAX_FRAME)),
            vec(prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), any::<u8>()], 0..2000),
        ],
        cuts in vec(any::<usize>(), 0..20),
        msg in message(),
    ) {
        // The plain and one-shot decoders take anything.
        let _ = wire::decode(&garbage);
        let _ = wire::decode_frame(&mut garbage.clone());

        let mut decoder = FrameDecoder::new();
        let items = decode_chunks(&mut decoder, &chunks(&garbage, &cuts));
        // At most one item per 0x00, plus one Oversize per MAX_FRAME run of non-zero bytes.
        let zeros = garbage.iter().filter(|&&b| b == 0).count();
        prop_assert!(items.len() <= zeros + garbage.len() / MAX_FRAME + 1);

        // After the garbage, a 0x00 and a valid frame: the frame decodes.
        let mut tail = vec![0u8];
        tail.extend(frame_of(&msg));
        let items = decode_chunks(&mut decoder, &chunks(&tail, &cuts));
        prop_assert_eq!(items.last(), Some(&Ok(msg)));
    }

    #[test]
    fn corrupted_frame_never_yields_a_wrong_message(
        msg in message(),
        at in any::<usize>(),
        flip in 1u8..=255,
    ) {
        let mut frame = frame_of(&msg);
        let i = at % (frame.len() - 1); // leave the terminator alone
        frame[i] ^= flip;
        frame.extend(frame_of(&msg));
        let items = FrameDecoder::new().push(&frame).collect::<Vec<_>>();
        for m in items.iter().flatten() {
            prop_assert_eq!(m, &msg);
        }
        // The intact copy after the corrupted one always gets through.
        prop_assert_eq!(items.last(), Some(&Ok(msg)));
    }
}
