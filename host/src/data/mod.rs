//! Datasets: MVTec-AD-layout category folders ([`category`]), the experiment protocol's two splits
//! ([`split`]), the procedural generator of synthetic categories ([`synth`]), the consistency
//! check behind `host data check` ([`check`]) and the automatic foreground masks behind `host data
//! fg-masks` ([`foreground`]).

pub mod category;
pub mod check;
pub mod foreground;
pub mod loader;
pub mod split;
pub mod synth;

pub use category::{Category, DefectImage};
pub use check::{check, CheckReport};
pub use split::{Item, Label, Protocol, Rotation, Split, SplitConfig, SplitCounts};
pub use synth::{generate, DefectKind, Kind, SynthConfig, SynthSummary};
