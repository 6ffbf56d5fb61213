//! Datasets: MVTec-AD-layout category folders ([`mvtec`]), the user's two split protocols ([`split`]),
//! the procedural generator of synthetic categories ([`synth`]) and the consistency check behind
//! `host data check` ([`check`]).

pub mod check;
pub mod loader;
pub mod mvtec;
pub mod split;
pub mod synth;

pub use check::{check, CheckReport};
pub use mvtec::{Category, DefectImage};
pub use split::{Item, Label, Protocol, Rotation, Split, SplitConfig, SplitCounts};
pub use synth::{generate, DefectKind, Kind, SynthConfig, SynthSummary};
