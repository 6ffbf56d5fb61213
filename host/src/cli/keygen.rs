//! `host keygen`: a new ed25519 key pair for signing bundles.
use std::path::PathBuf;

/// `host keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The secret key file to write (mode 0600); the public key goes to OUT.pub. Existing files are
    /// never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `host keygen`: a new ed25519 key pair from the operating system's random source.
pub fn run(a: KeygenArgs) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let public = shared::signature::write_key_pair(&a.out, seed)?;
    println!(
        "secret key {} (keep it on the workstation), public key {} (list it in the station's \
         trusted_keys, or pass it to device --trusted-key)",
        a.out.display(),
        public.display()
    );
    Ok(())
}
