//! The host library's error type.
use std::path::PathBuf;

/// Errors of the host library. Binaries wrap them with `anyhow` context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An image could not be decoded or encoded.
    #[error("{path}: {source}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What the codec said.
        source: image::ImageError,
    },
    /// A dataset folder does not have the MVTec AD layout or is inconsistent.
    #[error("dataset {path}: {msg}")]
    Dataset {
        /// The dataset (category) folder.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A configuration value is invalid (the message says which and why).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A model bundle's manifest could not be written or read.
    #[error(transparent)]
    Manifest(#[from] shared::manifest::Error),
    /// The `runtime` engine (the station's) refused or failed on an exported bundle.
    #[error(transparent)]
    Engine(#[from] runtime::engine::EngineError),
    /// JSON (de)serialisation failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Result alias of the host library.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
