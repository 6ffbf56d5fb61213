//! Model code (tch). One folder per model, one file per component; variable paths equal the PyTorch
//! reference's state_dict keys so that converted weights load with no rename table.

pub mod backbone;
pub mod classifier;
pub mod glass;
pub mod patchcore;
pub mod tinyvit;
