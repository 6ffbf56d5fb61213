//! `host sign`: sign a bundle's manifest.json (also used by `host export --sign`).
use std::path::{Path, PathBuf};

/// `host sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The bundle directory (manifest.json as exported; sign after the last edit).
    #[arg(long)]
    pub bundle: PathBuf,
    /// The secret key file (`host keygen`).
    #[arg(long)]
    pub key: PathBuf,
}

/// Runs `host sign`.
pub fn run(a: SignArgs) -> anyhow::Result<()> {
    sign_bundle(&a.bundle, &a.key)
}

pub fn sign_bundle(bundle: &Path, key: &Path) -> anyhow::Result<()> {
    let k = shared::signature::read_secret_key(key)?;
    shared::signature::sign_bundle(bundle, &k)?;
    println!(
        "  signed {} with {}",
        bundle.join(shared::signature::SIG_FILE).display(),
        shared::signature::public_key_path(key).display()
    );
    Ok(())
}
