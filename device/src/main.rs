//! `device`: the inspection-station runtime.
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Inspection-station runtime: camera frames -> model -> verdict -> serial / MQTT / GPIO.
#[derive(Parser)]
#[command(name = "device", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Encode every wire message kind into serial frames, stream them through the decoder with line
    /// noise and a corrupted frame in between, and report (exit 0 when all checks pass).
    WireSelftest {
        /// Bytes per simulated serial read.
        #[arg(long, default_value_t = 7)]
        chunk: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::WireSelftest { chunk, json } => {
            let r = device::selftest::run(chunk);
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "wire self-test ({} {}): {} messages, {} line bytes in {}-byte reads; decoded {}/{} equal; \
                     {} errors reported (corrupted frame rejected: {}); largest frame {} of max {} bytes: {}",
                    std::env::consts::ARCH,
                    std::env::consts::OS,
                    r.messages,
                    r.line_bytes,
                    chunk,
                    r.decoded_ok,
                    r.messages,
                    r.errors_reported,
                    r.corrupted_rejected,
                    r.largest_frame,
                    r.max_frame,
                    if r.passed { "PASS" } else { "FAIL" }
                );
            }
            Ok(if r.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
