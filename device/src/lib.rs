//! `device`: the inspection-station runtime (library part, so tests and examples can drive it).
//!
//! Data flow: frame source -> `runtime` (`shared::preprocess`, the tract engine) -> `shared::wire`
//! messages -> serial / MQTT / GPIO. This crate never links libtorch and builds for
//! aarch64-unknown-linux-gnu.

// The engine, one-image inspection and overlays live in the `runtime` crate (shared with the host
// trainer); re-exported so `device::engine` etc. stay the station's paths.
pub use runtime::{engine, golden, inspect, overlay, profile};
pub mod selftest;
pub mod station;
pub mod store;
