//! Training loops. Each writes into a run directory: `config.json` (resolved), `epochs.jsonl` (one line
//! per epoch), `checkpoint_best.safetensors`, `checkpoint_last.safetensors`, the optimizer state
//! (`optimizer_*.safetensors`, [`optim`]) and `state.json`: a resumed run continues exactly as an
//! uninterrupted one.
pub mod classifier;
pub mod glass;
pub mod optim;
pub mod patchcore;
