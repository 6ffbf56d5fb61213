//! The cross-compiled aarch64 `device` binary, run under qemu-aarch64, does real work from `shared`
//! (the wire self-test) and reports exactly what the x86_64 build reports.
//!
//! `scripts/test` builds the binary first and sets `GLASS_EDGE_REQUIRE_ARM=1`, so there a missing binary
//! or a missing qemu is a failure. A plain `cargo test` without the cross build skips with a message.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

fn arm_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::workspace_root().join("target"));
    target.join("aarch64-unknown-linux-gnu/release/device")
}

#[test]
fn wire_selftest_under_qemu_matches_x86() -> anyhow::Result<()> {
    let bin = arm_binary();
    let required = std::env::var_os("GLASS_EDGE_REQUIRE_ARM").is_some_and(|v| v != "0");
    if !bin.is_file() {
        if required {
            bail!("{} is missing: run `cargo device-arm`", bin.display());
        }
        eprintln!("SKIP: {} not built (cargo device-arm); scripts/test builds it", bin.display());
        return Ok(());
    }
    let out = Command::new("qemu-aarch64")
        .args(["-L", "/usr/aarch64-linux-gnu"])
        .arg(&bin)
        .args(["wire-selftest", "--json", "--chunk", "5"])
        .output()
        .context("running qemu-aarch64 (apt package qemu-user; scripts/setup installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "arm self-test failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arm: serde_json::Value =
        serde_json::from_str(stdout.trim()).context("parsing the arm report")?;
    let x86 = serde_json::to_value(device::selftest::run(5))?;
    assert_eq!(arm, x86, "aarch64 and x86_64 disagree");
    assert_eq!(arm["passed"], true);
    Ok(())
}
