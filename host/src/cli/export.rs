//! `host export`: a trained run to a model bundle for the station.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::show_progress;
use super::sign::sign_bundle;

/// `host export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A run directory written by `host train` (its best checkpoint is exported).
    #[arg(long)]
    pub run: PathBuf,
    /// The bundle directory to write (created; existing bundle files are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write an int8 model (post-training static quantization, ONNX QOperator form).
    #[arg(long)]
    pub int8: bool,
    /// Training normals used to calibrate the int8 activation ranges.
    #[arg(long, default_value_t = host::export::DEFAULT_CALIB)]
    pub calib: usize,
    /// Also measure the fp32 model in half precision (`device ... --precision f16`, for aarch64
    /// cores with FP16 arithmetic): records its self-test tolerance, validation AUROC and verdict
    /// agreement with fp32 in the manifest.
    #[arg(long)]
    pub f16: bool,
    /// Validation images stored with libtorch's outputs in golden.npz.
    #[arg(long, default_value_t = 4)]
    pub golden: usize,
    /// Threads for libtorch and for tract when the bundle is checked (latency is measured with it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Sign the bundle with this secret key (`host keygen`): writes manifest.sig, an ed25519 signature
    /// of manifest.json, which lists every model file's sha256.
    #[arg(long)]
    pub sign: Option<PathBuf>,
}

/// Runs `host export`.
pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let r = host::export::export(&host::export::ExportOptions {
        run: a.run.clone(),
        out: a.out.clone(),
        int8: a.int8,
        calib: a.calib,
        f16: a.f16,
        golden: a.golden,
        threads: a.threads,
        progress: show_progress(),
    })
    .with_context(|| format!("exporting {} to {}", a.run.display(), a.out.display()))?;
    // A signature from an earlier export would not match the new manifest.
    let stale = a.out.join(shared::signature::SIG_FILE);
    if stale.is_file() {
        std::fs::remove_file(&stale).with_context(|| format!("removing {}", stale.display()))?;
    }
    let m = &r.manifest;
    let mm = m.metrics.clone().unwrap_or_default();
    println!("{} -> {} ({})", a.run.display(), a.out.display(), m.architecture);
    println!(
        "  threshold {:.4} ({}), {} validation images",
        m.threshold.value, m.threshold.method, r.n_valid
    );
    println!("  {:<6} {:>12} {:>14}  file", "model", "val AUROC", "latency ms");
    let f = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    println!(
        "  {:<6} {:>12} {:>14}  {}",
        "fp32",
        f(mm.fp32_val_auroc),
        f(mm.fp32_latency_ms),
        m.files.fp32.path
    );
    if let Some(i8f) = &m.files.int8 {
        println!(
            "  {:<6} {:>12} {:>14}  {}",
            "int8",
            f(mm.int8_val_auroc),
            f(mm.int8_latency_ms),
            i8f.path
        );
        if let Some(agree) = r.int8_verdict_agreement {
            println!("  int8 verdict = fp32 verdict on {:.1}% of validation images", agree * 100.0);
        }
    }
    if let (Some(auroc), Some(agree)) = (mm.f16_val_auroc, mm.f16_verdict_agreement) {
        println!(
            "  {:<6} {:>12} {:>14}  {} in half precision (speed: measure on the board)",
            "f16",
            f(Some(auroc)),
            "-",
            m.files.fp32.path
        );
        println!("  f16 verdict = fp32 verdict on {:.1}% of validation images", agree * 100.0);
    }
    println!("  latency measured on: {}", mm.latency_device);
    println!(
        "  the station runs {} by default (int8 only when faster and within 0.005 AUROC)",
        mm.preferred.as_deref().unwrap_or("fp32")
    );
    if let Some(key) = &a.sign {
        sign_bundle(&a.out, key)?;
    }
    Ok(())
}
