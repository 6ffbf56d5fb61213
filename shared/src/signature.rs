//! Signed bundles: an ed25519 signature over the exact bytes of `manifest.json`, which lists every
//! model file's SHA-256, so the signature covers the whole bundle (threshold, input contract, models).
//!
//! Files (all text, so they survive copying through any tool):
//! - secret key `KEY`: `glass-edge-ed25519-secret <64 hex digits>` (the 32-byte seed; keep it off the
//!   stations, mode 0600);
//! - public key `KEY.pub`: `glass-edge-ed25519-public <64 hex digits>`;
//! - `manifest.sig` in the bundle: `{"algorithm": "ed25519", "public_key": "<hex>", "signature":
//!   "<128 hex digits>"}`.
//!
//! A station configured with trusted public keys loads a bundle only when `manifest.sig` exists, names
//! one of those keys and verifies against the manifest bytes on disk ([`verify_bundle`]); each refusal
//! says which of the three it was. ed25519 from the `ed25519-dalek` crate (RustCrypto, audited), not
//! hand-written.
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::manifest::FILE_NAME;

/// An ed25519 public key (a trusted bundle signer).
pub type PublicKey = VerifyingKey;

/// The signature file inside a bundle.
pub const SIG_FILE: &str = "manifest.sig";
const SECRET_TAG: &str = "glass-edge-ed25519-secret";
const PUBLIC_TAG: &str = "glass-edge-ed25519-public";

/// Why a key or a bundle's signature was not accepted.
#[derive(Debug)]
pub enum SignatureError {
    /// The bundle has no `manifest.sig` while trusted keys are configured.
    Unsigned {
        /// The missing signature file.
        path: PathBuf,
    },
    /// The signature does not verify: `manifest.json` changed after signing (or the signature did).
    Tampered {
        /// The manifest.
        path: PathBuf,
    },
    /// Signed by a key that is not among the trusted ones.
    UntrustedKey {
        /// The signature file.
        path: PathBuf,
        /// The signer's public key (hex).
        key: String,
    },
    /// A key or signature file that cannot be read or parsed.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Unsigned { path } => write!(
                f,
                "{}: bundle is not signed (trusted keys are configured, so unsigned bundles are refused)",
                path.display()
            ),
            SignatureError::Tampered { path } => write!(
                f,
                "{}: signature does not verify: the manifest was changed after signing",
                path.display()
            ),
            SignatureError::UntrustedKey { path, key } => write!(
                f,
                "{}: signed by key {key}, which is not a trusted key",
                path.display()
            ),
            SignatureError::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for SignatureError {}

#[derive(Serialize, Deserialize)]
struct SigFile {
    algorithm: String,
    public_key: String,
    signature: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn invalid(path: &Path, reason: impl Into<String>) -> SignatureError {
    SignatureError::Invalid { path: path.to_path_buf(), reason: reason.into() }
}

fn read_tagged(path: &Path, tag: &str) -> Result<[u8; 32], SignatureError> {
    let text = std::fs::read_to_string(path).map_err(|e| invalid(path, e.to_string()))?;
    let mut it = text.split_whitespace();
    match (it.next(), it.next().and_then(unhex::<32>), it.next()) {
        (Some(t), Some(bytes), None) if t == tag => Ok(bytes),
        _ => Err(invalid(path, format!("not a key file (expected `{tag} <64 hex digits>`)"))),
    }
}

/// Reads a public key file (`KEY.pub`).
///
/// # Errors
/// Unreadable, or not a public key file.
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, SignatureError> {
    let bytes = read_tagged(path, PUBLIC_TAG)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| invalid(path, format!("invalid ed25519 key: {e}")))
}

/// Reads a secret key file (`KEY`).
///
/// # Errors
/// Unreadable, or not a secret key file.
pub fn read_secret_key(path: &Path) -> Result<SigningKey, SignatureError> {
    Ok(SigningKey::from_bytes(&read_tagged(path, SECRET_TAG)?))
}

/// Writes a key pair from a 32-byte random seed: the secret key to `out` (mode 0600) and the public
/// key to `out.pub`; returns the public key file's path.
///
/// # Errors
/// Either file cannot be written, or `out` already exists (keys are never overwritten).
pub fn write_key_pair(out: &Path, seed: [u8; 32]) -> Result<PathBuf, SignatureError> {
    let key = SigningKey::from_bytes(&seed);
    let public = public_key_path(out);
    for p in [out, public.as_path()] {
        if p.exists() {
            return Err(invalid(p, "exists already; keys are never overwritten"));
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).map_err(|e| invalid(out, e.to_string()))?;
    std::io::Write::write_all(&mut f, format!("{SECRET_TAG} {}\n", hex(&seed)).as_bytes())
        .map_err(|e| invalid(out, e.to_string()))?;
    std::fs::write(&public, format!("{PUBLIC_TAG} {}\n", hex(key.verifying_key().as_bytes())))
        .map_err(|e| invalid(&public, e.to_string()))?;
    Ok(public)
}

/// `KEY` -> `KEY.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut s = secret.as_os_str().to_os_string();
    s.push(".pub");
    PathBuf::from(s)
}

/// Signs `dir/manifest.json` as it is on disk, writing `dir/manifest.sig`.
///
/// # Errors
/// The manifest cannot be read or the signature written.
pub fn sign_bundle(dir: &Path, key: &SigningKey) -> Result<(), SignatureError> {
    let manifest = dir.join(FILE_NAME);
    let bytes = std::fs::read(&manifest).map_err(|e| invalid(&manifest, e.to_string()))?;
    let sig = SigFile {
        algorithm: "ed25519".into(),
        public_key: hex(key.verifying_key().as_bytes()),
        signature: hex(&key.sign(&bytes).to_bytes()),
    };
    let path = dir.join(SIG_FILE);
    let text = serde_json::to_string_pretty(&sig).map_err(|e| invalid(&path, e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| invalid(&path, e.to_string()))
}

/// Checks that `dir/manifest.json` carries a valid signature by one of `trusted` (call before loading
/// anything the manifest points to). With no trusted keys every bundle passes (signing is opt-in).
///
/// # Errors
/// [`SignatureError::Unsigned`], [`SignatureError::UntrustedKey`], [`SignatureError::Tampered`], or
/// an unreadable signature file.
pub fn verify_bundle(dir: &Path, trusted: &[VerifyingKey]) -> Result<(), SignatureError> {
    if trusted.is_empty() {
        return Ok(());
    }
    let manifest = dir.join(FILE_NAME);
    let bytes = std::fs::read(&manifest).map_err(|e| invalid(&manifest, e.to_string()))?;
    verify_manifest_bytes(dir, &bytes, trusted)
}

/// [`verify_bundle`] over manifest bytes the caller has already read: a loader that verifies and then
/// parses the same bytes cannot be handed a different manifest between the two.
pub fn verify_manifest_bytes(
    dir: &Path,
    manifest_bytes: &[u8],
    trusted: &[VerifyingKey],
) -> Result<(), SignatureError> {
    if trusted.is_empty() {
        return Ok(());
    }
    let sig_path = dir.join(SIG_FILE);
    if !sig_path.is_file() {
        return Err(SignatureError::Unsigned { path: sig_path });
    }
    let text = std::fs::read_to_string(&sig_path).map_err(|e| invalid(&sig_path, e.to_string()))?;
    let sig: SigFile = serde_json::from_str(&text)
        .map_err(|e| invalid(&sig_path, format!("not a signature file: {e}")))?;
    if sig.algorithm != "ed25519" {
        return Err(invalid(&sig_path, format!("unknown algorithm {:?}", sig.algorithm)));
    }
    let key_bytes = unhex::<32>(&sig.public_key)
        .ok_or_else(|| invalid(&sig_path, "public_key is not 64 hex digits"))?;
    let Some(key) = trusted.iter().find(|k| k.as_bytes() == &key_bytes) else {
        return Err(SignatureError::UntrustedKey { path: sig_path, key: sig.public_key });
    };
    let sig_bytes = unhex::<64>(&sig.signature)
        .ok_or_else(|| invalid(&sig_path, "signature is not 128 hex digits"))?;
    let manifest = dir.join(FILE_NAME);
    key.verify(manifest_bytes, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| SignatureError::Tampered { path: manifest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(dir: &Path) {
        std::fs::write(dir.join(FILE_NAME), b"{\"threshold\": 0.5}").unwrap();
    }

    #[test]
    fn signed_accepted_edited_unsigned_and_foreign_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (b, keys) = (dir.path().join("b"), dir.path().join("keys"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(&keys).unwrap();
        bundle(&b);
        let pub_a = write_key_pair(&keys.join("a"), [7; 32]).unwrap();
        let pub_b = write_key_pair(&keys.join("b"), [9; 32]).unwrap();
        let (ka, kb) = (read_public_key(&pub_a).unwrap(), read_public_key(&pub_b).unwrap());
        // No trusted keys: everything loads; trusted keys and no signature: refused.
        verify_bundle(&b, &[]).unwrap();
        assert!(matches!(verify_bundle(&b, &[ka]), Err(SignatureError::Unsigned { .. })));
        sign_bundle(&b, &read_secret_key(&keys.join("a")).unwrap()).unwrap();
        verify_bundle(&b, &[kb, ka]).unwrap();
        let e = verify_bundle(&b, &[kb]).unwrap_err();
        assert!(matches!(e, SignatureError::UntrustedKey { .. }), "{e}");
        std::fs::write(b.join(FILE_NAME), b"{\"threshold\": 1e30}").unwrap();
        let e = verify_bundle(&b, &[ka]).unwrap_err();
        assert!(matches!(e, SignatureError::Tampered { .. }), "{e}");
        assert!(e.to_string().contains("changed after signing"), "{e}");
        // Keys are never overwritten; a public key is not a secret key.
        assert!(write_key_pair(&keys.join("a"), [1; 32]).is_err());
        assert!(read_secret_key(&pub_a).is_err());
    }
}
