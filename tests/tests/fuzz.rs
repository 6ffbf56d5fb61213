//! Bounded mutation fuzzing (`e2e::fuzz`) of every parser that reads untrusted bytes: the serial wire
//! decoder, the bundle manifest, the MQTT command JSON and station.toml. Each target starts from valid
//! seeds and must never panic; CI runs `e2e::fuzz::DEFAULT_ITERS` inputs per target,
//! `GLASS_EDGE_FUZZ_ITERS=10000000 cargo test --release --test fuzz` is the long local run (README).
use std::path::Path;

use device::station::config::StationConfig;
use device::station::mqtt::MqttCommand;
use e2e::fuzz;
use shared::manifest::Manifest;
use shared::wire::{self, FrameDecoder};

const JSON_DICT: [&[u8]; 14] = [
    b"null",
    b"true",
    b"1e30",
    b"-1",
    b"NaN",
    b"{}",
    b"[]",
    b"\"\"",
    b"0",
    b"4294967296",
    b"\"blur_sigma\"",
    b"\"value\"",
    b"\"width\"",
    b"-0.0",
];

#[test]
fn wire_decoder() {
    let seeds: Vec<Vec<u8>> = device::selftest::sample_messages()
        .iter()
        .map(|m| wire::encode_frame_vec(m).expect("sample message encodes"))
        .collect();
    let mut stream: Vec<u8> = seeds.concat();
    stream.extend([0, 0, 7, 0]);
    let mut all = seeds.clone();
    all.push(stream);
    let r = fuzz::run("wire_decoder", &all, &[&[0], &[0xff; 4]], |bytes| {
        // The streaming decoder (serial link) and the one-message decoders.
        let mut dec = FrameDecoder::new();
        let mut ok = false;
        dec.feed(bytes, |m| ok |= m.is_ok());
        let mut frame = bytes.to_vec();
        let _ = wire::decode_frame(&mut frame);
        let _ = wire::decode(bytes);
        ok
    });
    assert!(r.accepted > 0, "no input decoded: the seeds are not reaching the parser");
}

#[test]
fn manifest_parser() {
    let root = e2e::workspace_root();
    let demo = std::fs::read(root.join("models/demo/manifest.json")).expect("demo manifest");
    let r = fuzz::run("manifest", &[demo], &JSON_DICT, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return false };
        match Manifest::parse(text, Path::new("fuzz/manifest.json")) {
            Ok(m) => {
                let _ = m.threshold_range();
                true
            }
            Err(e) => {
                let _ = e.to_string();
                false
            }
        }
    });
    assert!(r.accepted > 0, "the demo manifest itself must parse");
}

#[test]
fn mqtt_command_json() {
    let seeds: Vec<Vec<u8>> = [
        r#"{"id":1,"command":"set_threshold","value":0.5}"#,
        r#"{"id":2,"command":"trigger"}"#,
        r#"{"command":"get_status"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let r = fuzz::run("mqtt_command", &seeds, &JSON_DICT, |bytes| {
        match serde_json::from_slice::<MqttCommand>(bytes) {
            Ok(c) => c.to_command().is_some(),
            Err(_) => false,
        }
    });
    assert!(r.accepted > 0);
}

#[test]
fn station_toml() {
    let root = e2e::workspace_root();
    let example = std::fs::read(root.join("device/station.example.toml")).expect("example config");
    let minimal =
        b"station_id = \"s1\"\nmodel = \"m\"\n[source]\nkind = \"folder\"\npath = \"in\"\n"
            .to_vec();
    let dict: [&[u8]; 10] = [
        b"\n[outputs.mqtt]\n",
        b"\n[limits]\n",
        b" = ",
        b"\"",
        b"1e30",
        b"-1",
        b"[]",
        b"true",
        b"\nmax_width = 0\n",
        b"\ninspect_window_ms = 18446744073709551615\n",
    ];
    let r = fuzz::run("station_toml", &[example, minimal], &dict, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return false };
        StationConfig::parse(text, Path::new("/fuzz/station.toml")).is_ok()
    });
    assert!(r.accepted > 0, "the example and minimal configs must parse");
}
