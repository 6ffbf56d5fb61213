//! What can stop a bundle from loading or a frame from being inferred ([`EngineError`]); each
//! variant names the file it concerns where there is one.
use std::path::PathBuf;

use shared::manifest;
use shared::preprocess;

/// Engine errors. Each names the file it concerns where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The manifest is missing, malformed, of an unknown schema, or a file's sha256 differs.
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    /// The bundle's signature is missing, foreign or broken while trusted keys are configured.
    #[error(transparent)]
    Signature(#[from] shared::signature::SignatureError),
    /// The bundle has no int8 model.
    #[error("{path}: the bundle has no int8 model (export with --int8)")]
    NoInt8 {
        /// The manifest.
        path: PathBuf,
    },
    /// tract could not load or optimise the model.
    #[error("{path}: cannot load the model: {msg}")]
    Model {
        /// The ONNX file.
        path: PathBuf,
        /// tract's message.
        msg: String,
    },
    /// The model's input or outputs do not match the manifest.
    #[error("{path}: {msg}")]
    Contract {
        /// The ONNX file.
        path: PathBuf,
        /// What does not match.
        msg: String,
    },
    /// An input frame could not be preprocessed.
    #[error("preprocessing: {0}")]
    Preprocess(preprocess::Error),
    /// Inference failed at run time.
    #[error("inference: {0}")]
    Run(String),
    /// `golden.npz` cannot be read.
    #[error("{path}: {msg}")]
    Golden {
        /// The golden file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The self-test at load failed: the model's outputs on the golden inputs differ from
    /// libtorch's by more than the manifest allows.
    #[error(
        "{path}: self-test failed: the {precision} model's outputs differ from the golden outputs by \
         up to {max_difference:.3e} (manifest tolerance {tolerance:.3e}); the bundle is refused"
    )]
    SelfTest {
        /// The golden file.
        path: PathBuf,
        /// "fp32" or "int8".
        precision: &'static str,
        /// Largest absolute difference measured.
        max_difference: f32,
        /// The manifest's tolerance.
        tolerance: f32,
    },
}
