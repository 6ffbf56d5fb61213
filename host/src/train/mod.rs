//! Training loops. Each writes into a run directory: `config.json` (resolved), `epochs.jsonl` (one line
//! per epoch), `checkpoint_best.safetensors`, `checkpoint_last.safetensors` and `state.json` (resume).
pub mod classifier;
pub mod glass;
pub mod patchcore;
pub mod run;
