//! The manifest's error type and `Result` alias.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Errors of loading, validating and saving a manifest. Every variant names the file concerned.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The manifest has a `schema_version` this code does not read.
    UnknownSchema {
        /// The manifest file.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The version supported ([`SCHEMA_VERSION`](super::SCHEMA_VERSION)).
        supported: u32,
    },
    /// A model file listed in the manifest does not exist.
    MissingFile {
        /// The missing file (bundle directory joined with the listed path).
        path: PathBuf,
    },
    /// A model file's SHA-256 differs from the manifest's.
    ShaMismatch {
        /// The model file.
        path: PathBuf,
        /// The hash the manifest lists.
        expected: String,
        /// The hash of the file on disk.
        actual: String,
    },
    /// A manifest field has an invalid value.
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// The field, dotted (`input.std`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The manifest is not valid JSON or does not match the schema.
    Json {
        /// The manifest file.
        path: PathBuf,
        /// The parse error (with line and column).
        source: serde_json::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownSchema { path, found, supported } => write!(
                f,
                "{}: unknown manifest schema_version {found} (this build reads version {supported})",
                path.display()
            ),
            Error::MissingFile { path } => {
                write!(f, "{}: model file listed in the manifest does not exist", path.display())
            }
            Error::ShaMismatch { path, expected, actual } => write!(
                f,
                "{}: sha256 mismatch: manifest says {expected}, file has {actual}",
                path.display()
            ),
            Error::Invalid { path, field, reason } => {
                write!(f, "{}: invalid `{field}`: {reason}", path.display())
            }
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Json { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
