//! `device wire-selftest`: encodes every wire message kind, streams the serial frames through the
//! decoder in small chunks with line noise in between, and checks that what comes out is what went in
//! and that a corrupted frame is rejected. Proves on the target board (or under qemu) that the station
//! speaks the same bytes as the host.
use shared::wire::{
    self, Ack, AckCode, AnomalyMap, Command, Counters, Fault, FrameDecoder, InspectionResult,
    Message, ModelId, Request, StationId, StationState, Status, Verdict, MAX_FRAME,
};

/// What the self-test found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Messages encoded.
    pub messages: usize,
    /// Bytes on the simulated line (frames + noise).
    pub line_bytes: usize,
    /// Messages decoded equal to the originals.
    pub decoded_ok: usize,
    /// Errors the decoder reported (expected: one for the noise burst, one for the corrupted frame).
    pub errors_reported: usize,
    /// The corrupted frame was rejected with a CRC error.
    pub corrupted_rejected: bool,
    /// Largest frame seen, and the protocol's maximum.
    pub largest_frame: usize,
    /// [`MAX_FRAME`].
    pub max_frame: usize,
    /// Everything as expected.
    pub passed: bool,
}

fn station() -> StationId {
    let mut s = StationId::new();
    // 12 ASCII bytes always fit the 32-byte id.
    let _ = s.push_str("selftest-arm");
    s
}

/// The sample messages: one of each kind, including the largest (a full 64x64 map).
pub fn sample_messages() -> Vec<Message> {
    let cells: Vec<u8> = (0..64 * 64).map(|i| (i * 7 % 256) as u8).collect();
    let map = AnomalyMap::new(64, 64, &cells).ok();
    let model_id = ModelId([0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67]);
    vec![
        Message::Inspection(InspectionResult {
            station_id: station(),
            frame_seq: 41,
            timestamp_ms: 1_764_000_000_000,
            verdict: Verdict::Fail,
            fault: Fault::None,
            score: 0.93,
            threshold: 0.61,
            model_id,
            latency_us: 48_250,
            anomaly_map: map,
        }),
        Message::Inspection(InspectionResult {
            station_id: station(),
            frame_seq: 42,
            timestamp_ms: 1_764_000_000_040,
            verdict: Verdict::Error,
            fault: Fault::DeadlineMissed,
            score: f32::NAN,
            threshold: 0.61,
            model_id,
            latency_us: 250_000,
            anomaly_map: None,
        }),
        Message::Status(Status {
            station_id: station(),
            seq: 7,
            timestamp_ms: 1_764_000_000_100,
            uptime_s: 3600,
            state: StationState::Ready,
            threshold: 0.61,
            model_id,
            counters: Counters { frames: 42, passes: 40, fails: 1, errors: 1, spool_dropped: 0 },
            last_fault: Fault::DeadlineMissed,
        }),
        Message::Request(Request { id: 1, command: Command::SetThreshold(0.7) }),
        Message::Request(Request { id: 2, command: Command::Trigger }),
        Message::Request(Request { id: 3, command: Command::GetStatus }),
        Message::Ack(Ack::ok(1)),
        Message::Ack(Ack { id: 9, code: AckCode::InvalidArgument }),
    ]
}

/// Messages equal, treating NaN scores as equal (the wire keeps them bit-exact).
fn same(a: &Message, b: &Message) -> bool {
    match (a, b) {
        (Message::Inspection(x), Message::Inspection(y)) => {
            let mut x = x.clone();
            let mut y = y.clone();
            if x.score.is_nan() && y.score.is_nan() {
                x.score = 0.0;
                y.score = 0.0;
            }
            x == y
        }
        _ => a == b,
    }
}

/// Runs the self-test, feeding the line to the decoder `chunk` bytes at a time.
pub fn run(chunk: usize) -> Report {
    let msgs = sample_messages();
    let mut line = Vec::new();
    let mut largest = 0;
    let mut buf = vec![0u8; MAX_FRAME];
    line.extend_from_slice(&[0x13, 0x37, 0xff, 0x42, 0x00]); // noise before the first frame
    for (i, m) in msgs.iter().enumerate() {
        match wire::encode_frame(m, &mut buf) {
            Ok(frame) => {
                largest = largest.max(frame.len());
                line.extend_from_slice(frame);
            }
            Err(_) => return failed(msgs.len()),
        }
        if i == 2 {
            // A corrupted copy of the status frame: flip a payload byte (never the 0x00 delimiter).
            if let Ok(frame) = wire::encode_frame(m, &mut buf) {
                let mut bad = frame.to_vec();
                let k = bad.len() / 2;
                bad[k] = if bad[k] == 0x01 { 0x02 } else { 0x01 };
                line.extend_from_slice(&bad);
            }
        }
    }
    let mut dec = FrameDecoder::new();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for piece in line.chunks(chunk.max(1)) {
        for item in dec.push(piece) {
            match item {
                Ok(m) => out.push(m),
                Err(e) => errors.push(e),
            }
        }
    }
    let decoded_ok = out.iter().zip(&msgs).filter(|(a, b)| same(a, b)).count();
    let corrupted_rejected =
        errors.iter().any(|e| matches!(e, wire::Error::Crc { .. } | wire::Error::Cobs));
    let passed = decoded_ok == msgs.len()
        && out.len() == msgs.len()
        && corrupted_rejected
        && largest <= MAX_FRAME;
    Report {
        messages: msgs.len(),
        line_bytes: line.len(),
        decoded_ok,
        errors_reported: errors.len(),
        corrupted_rejected,
        largest_frame: largest,
        max_frame: MAX_FRAME,
        passed,
    }
}

fn failed(n: usize) -> Report {
    Report {
        messages: n,
        line_bytes: 0,
        decoded_ok: 0,
        errors_reported: 0,
        corrupted_rejected: false,
        largest_frame: 0,
        max_frame: MAX_FRAME,
        passed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_passes_for_every_chunk_size() {
        for chunk in [1, 3, 7, 64, 4096, 100_000] {
            let r = run(chunk);
            assert!(r.passed, "chunk {chunk}: {r:?}");
            assert_eq!(r.errors_reported, 2, "noise burst + corrupted frame: {r:?}");
        }
    }
}
