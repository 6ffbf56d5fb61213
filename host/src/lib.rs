//! `host`: the workstation side of glass-edge.
//!
//! Data flow: [`data`] (MVTec-AD-layout folders, the experiment protocol's splits, the synthetic
//! generator) -> training (GLASS, classifiers; libtorch via `tch`) -> evaluation -> export (ONNX
//! bundle).

pub mod data;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod metrics;
pub mod models;
pub mod run;
pub mod train;

pub use error::{Error, Result};
