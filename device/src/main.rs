//! `device`: the inspection-station runtime.
use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use device::engine::{self, Engine, Precision};
use shared::wire::Verdict;

/// Inspection-station runtime: camera frames -> model -> verdict -> serial / MQTT / GPIO.
#[derive(Parser)]
#[command(name = "device", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Which bundle and model to run, and on how many threads.
#[derive(clap::Args)]
struct ModelArgs {
    /// The bundle directory (manifest.json + ONNX files, from `host export`).
    #[arg(long)]
    model: PathBuf,
    /// Run the int8 model (default: the manifest's `metrics.preferred`, else fp32).
    #[arg(long, conflicts_with_all = ["fp32", "precision"])]
    int8: bool,
    /// Run the fp32 model.
    #[arg(long, conflicts_with = "precision")]
    fp32: bool,
    /// Which model and arithmetic: fp32, int8 or f16 (the fp32 model in half precision, for aarch64
    /// cores with FP16 arithmetic). Default: the manifest's `metrics.preferred`, else fp32.
    #[arg(long, value_parser = ["fp32", "int8", "f16"])]
    precision: Option<String>,
    /// tract threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A public key file (`host keygen`'s KEY.pub) whose signature the bundle must carry
    /// (manifest.sig); repeatable. Without it, unsigned bundles load.
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<PathBuf>,
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
    /// Inspect image files with a model bundle: one JSON line per image
    /// {"file","verdict","score","threshold","latency_ms"} with verdict "pass", "fail" or "error".
    /// Exit code 0 when all pass, 1 when any fails, 2 when any could not be inspected.
    Inspect {
        #[command(flatten)]
        m: ModelArgs,
        /// Override the bundle's threshold.
        #[arg(long)]
        threshold: Option<f32>,
        /// Write heat-map overlay PNGs (<DIR>/<image stem>.png).
        #[arg(long)]
        save_maps: Option<PathBuf>,
        /// Image files (PNG, JPEG, BMP, TIFF).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the station service: frames from the configured source, a verdict for every frame within
    /// `inspect_window_ms` (any fault = Fail), results to stdout / serial / GPIO / disk.
    Run {
        /// The station configuration (see device/station.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Verify a bundle (a folder from `host export` or a `.tar` of one: signature, hashes, graph
    /// contract, golden self-test of every model file) and make it the store's `current`, keeping the
    /// one before as `previous`; a running station picks it up on SIGHUP (`systemctl reload
    /// glass-edge`) or an MQTT `load_model`. Exit code 0 installed, 2 refused.
    Install {
        /// The bundle folder or `.tar`.
        bundle: PathBuf,
        /// The bundle store (the station's `model` is `<store>/current`).
        #[arg(long, default_value = "/var/lib/glass-edge")]
        store: PathBuf,
        /// Check signatures against the station configuration's `trusted_keys` (and take nothing else
        /// from it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A public key file the bundle's signature must match; repeatable (adds to `--config`'s).
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<PathBuf>,
        /// tract threads for the self-test.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Median latency per stage (decode, preprocess, infer, post-process) and peak RSS.
    Bench {
        #[command(flatten)]
        m: ModelArgs,
        /// Timed runs (after one warm-up).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// An image to decode each run (default: a grey PNG of input size).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also time every op of the optimised tract plan (median per node over `--runs`) and print
        /// the totals per op kind and the slowest nodes (JSON: a `profile` field).
        #[arg(long)]
        profile: bool,
    },
}

fn load_engine(a: &ModelArgs) -> Result<Engine> {
    let model = &a.model;
    let trusted = engine::read_trusted_keys(&a.trusted_keys).context("reading --trusted-key")?;
    engine::set_threads(a.threads);
    let precision = match (a.precision.as_deref(), a.int8, a.fp32) {
        (Some("int8"), ..) | (None, true, _) => Precision::Int8,
        (Some("fp32"), ..) | (None, _, true) => Precision::Fp32,
        (Some("f16"), ..) => Precision::F16,
        _ => engine::preferred_precision(model),
    };
    // Signature, hashes, graph contract and the golden self-test, from bytes read once.
    let engine = Engine::load_trusted(model, precision, &trusted).with_context(|| {
        format!("refusing bundle {} ({} model)", model.display(), precision.name())
    })?;
    if let Some(t) = engine.self_test() {
        eprintln!(
            "self-test: {} golden image(s), largest difference {:.2e} (tolerance {:.2e})",
            t.images, t.max_difference, t.tolerance
        );
    }
    Ok(engine)
}

/// The per-op profile as two tables: op kinds, then the slowest nodes.
fn print_profile(p: &device::profile::Profile) {
    println!(
        "\nplan profile ({} runs, medians per node; sum {:.2} ms, which includes tract's per-node overhead)",
        p.runs, p.total_ms
    );
    println!("  {:<28} {:>6} {:>10} {:>7}", "op kind", "nodes", "ms", "share");
    for k in &p.kinds {
        println!("  {:<28} {:>6} {:>10.3} {:>6.1}%", k.op, k.nodes, k.ms, 100.0 * k.share);
    }
    println!("\n  {:<5} {:<40} {:<22} {:>9}", "node", "name", "op", "ms");
    for n in p.nodes.iter().take(15) {
        let name: String = n.name.chars().take(40).collect();
        println!("  {:<5} {:<40} {:<22} {:>9.3}", n.id, name, n.op, n.ms);
    }
}

/// The station's memory on glibc. Two allocator settings, each only when its environment variable
/// (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) does not set it already, before any thread starts:
/// - one malloc arena: glibc gives each allocating thread its own, and memory freed into one is not
///   reused by another; the station's threads (source, inspection worker, loop, links) hand frames and
///   maps to each other;
/// - buffers of 8 MB and more (tract's largest intermediate tensors at 512 px) mapped and unmapped
///   each time, instead of glibc raising that limit after the first such free and carving them from a
///   heap that then fragments.
///
/// `device run` on the 512 px bottle bundle, 30 frames (dev build, 2026-12-03): peak RSS 239-263 MB
/// with glibc's defaults, 136-203 MB with one arena, 118-123 MB with both (130 MB after 100 frames),
/// at 7.7-7.9 s instead of 7.1-7.3 s for the 30 frames (re-mapping costs ~20 ms per frame of ~230 ms;
/// a release build is faster, the cost the same); `scripts/bench` reports
/// `device_run_peak_rss_mb`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() -> Result<ExitCode> {
    tune_malloc();
    let cli = Cli::parse();
    // The station's log: stderr (journald under systemd), `RUST_LOG` filters (default info), colours
    // only on a terminal.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
        Cmd::Inspect { m, threshold, save_maps, files } => {
            let mut engine = match load_engine(&m) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            if let Some(t) = threshold {
                if !engine.set_threshold(t) {
                    eprintln!("error: --threshold must be finite");
                    return Ok(ExitCode::from(2));
                }
            }
            let (mut any_fail, mut any_err) = (false, false);
            for f in &files {
                let line = device::inspect::inspect_file(&engine, f, save_maps.as_deref());
                match line.verdict {
                    Verdict::Fail => any_fail = true,
                    Verdict::Error => any_err = true,
                    Verdict::Pass => {}
                }
                if let Some(e) = &line.error {
                    eprintln!("error: {e}");
                }
                println!("{}", serde_json::to_string(&line)?);
            }
            Ok(ExitCode::from(if any_err {
                2
            } else if any_fail {
                1
            } else {
                0
            }))
        }
        Cmd::Install { bundle, store, config, mut trusted_keys, threads } => {
            if let Some(c) = &config {
                let cfg = device::station::StationConfig::load(c)?;
                trusted_keys.extend(cfg.trusted_keys);
            }
            let trusted =
                engine::read_trusted_keys(&trusted_keys).context("reading trusted keys")?;
            engine::set_threads(threads);
            let store = device::store::Store::new(store);
            match store.install(&bundle, &trusted) {
                Ok(i) => {
                    for (p, d) in &i.verified {
                        match d {
                            Some(d) => eprintln!("verified {p} model: golden difference {d:.2e}"),
                            None => eprintln!("verified {p} model (no golden self-test)"),
                        }
                    }
                    let root = store.root().display();
                    if i.already_current {
                        println!("{root}/current is already bundle {}", i.id);
                    } else {
                        println!("installed bundle {} as {root}/current", i.id);
                        if let Some(old) = &i.replaced {
                            println!("previous: {old}");
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Cmd::Run { config } => {
            let cfg = device::station::StationConfig::load(&config)?;
            // SIGTERM (systemd stop) and SIGINT (Ctrl-C) end the loop between frames, so the station
            // takes its shutdown path (GPIO lines low, MQTT status and spool flush) and exits 0; a
            // second signal exits at once. signal-hook: async-signal-safe flag handling.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
                    .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
                    .context("installing the signal handlers")?;
            }
            // SIGHUP (`systemctl reload`): load the bundle `model` names again, between frames.
            let reload = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
                .context("installing the SIGHUP handler")?;
            let s = device::station::run_signalled(&cfg, &stop, &reload)
                .with_context(|| format!("station {}", config.display()))?;
            eprintln!(
                "stopped after {} frames ({} pass, {} fail); last fault {:?}",
                s.counters.frames, s.counters.passes, s.counters.fails, s.last_fault
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { m, runs, image, json, profile } => {
            let engine = load_engine(&m)?;
            let model = &m.model;
            let r = device::inspect::bench(&engine, image.as_deref(), runs.max(1), m.threads)
                .map_err(anyhow::Error::msg)?;
            let prof = if profile {
                Some(engine.profile(runs.max(1)).context("profiling the plan")?)
            } else {
                None
            };
            if json {
                let mut v = serde_json::to_value(&r)?;
                if let (Some(p), Some(o)) = (&prof, v.as_object_mut()) {
                    o.insert("profile".into(), serde_json::to_value(p)?);
                }
                println!("{v}");
            } else {
                println!(
                    "{} {} threads={} input {} ({} runs, medians)",
                    model.display(),
                    r.precision,
                    r.threads,
                    r.input,
                    r.runs
                );
                println!("  {:<12} {:>9}", "stage", "ms");
                for (k, v) in [
                    ("decode", r.decode_ms),
                    ("preprocess", r.preprocess_ms),
                    ("infer", r.infer_ms),
                    ("postprocess", r.postprocess_ms),
                    ("total", r.total_ms),
                ] {
                    println!("  {k:<12} {v:>9.2}");
                }
                match r.peak_rss_kb {
                    Some(kb) => println!("  peak RSS {:.1} MiB", kb as f64 / 1024.0),
                    None => println!("  peak RSS n/a"),
                }
                if let Some(p) = &prof {
                    print_profile(p);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
