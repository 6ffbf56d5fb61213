//! `device`: the inspection-station runtime (library part, so tests and examples can drive it).
//!
//! Data flow: frame source -> `shared::preprocess` -> engine (tract) -> `shared::wire` messages ->
//! serial / MQTT / GPIO. This crate never links libtorch and builds for aarch64-unknown-linux-gnu.

pub mod engine;
pub mod inspect;
pub mod selftest;
pub mod station;
