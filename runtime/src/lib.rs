//! `runtime`: running an exported model bundle, shared by the station (`device`) and the trainer
//! (`host`, for export checks, int8 calibration and its heat-map strips).
//!
//! Data flow: bundle (`manifest.json` + ONNX) -> [`engine::Engine`] (checks, tract) ->
//! `shared::preprocess` -> network -> score, map, verdict -> [`inspect`] (one image, one JSON line) and
//! [`overlay`] (a map blended over the image). No I/O links (serial, MQTT, GPIO, camera) live here:
//! those are the station's, in `device`.

mod contract;
pub mod decode;
pub mod engine;
pub mod error;
pub mod golden;
pub mod inspect;
pub mod kernels;
pub mod overlay;
pub mod profile;
