//! A small mutation fuzzer for the parsers that read untrusted bytes (wire frames, manifests,
//! signatures, MQTT commands, station.toml), run by `tests/tests/fuzz.rs` on stable Rust.
//!
//! Why not cargo-fuzz / libFuzzer: they need a nightly toolchain and sanitizer runtimes, which CI and a
//! new machine do not have. This harness has no coverage feedback; it makes up for part of that by
//! mutating valid seed inputs (bit flips, interesting bytes, insertions, deletions, duplicated and
//! spliced ranges, dictionary tokens), so most inputs get deep into the parsers. A panic is a failure;
//! the input that caused it is written to `$CARGO_TARGET_DIR/fuzz-crashes/<target>-<n>.bin` (or
//! `target/...`) for reproduction.
//!
//! Budget: `GLASS_EDGE_FUZZ_ITERS` inputs per target (CI: the default, a few seconds each);
//! `GLASS_EDGE_FUZZ_SEED` picks the random stream.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Inputs per target when `GLASS_EDGE_FUZZ_ITERS` is not set.
pub const DEFAULT_ITERS: u64 = 200_000;

/// What one target's run did.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    /// Target name.
    pub target: String,
    /// Inputs tried.
    pub iters: u64,
    /// Inputs the parser accepted (the rest were errors, as expected for most mutations).
    pub accepted: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'[', b'\n', b'='];

/// One mutation of `input` (a few random edits), using `seeds` for splicing and `dict` for tokens.
pub fn mutate(rng: &mut ChaCha8Rng, input: &[u8], seeds: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                v.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(32));
                let chunk = v[i..i + n].to_vec();
                let j = rng.random_range(0..=len);
                v.splice(j..j, chunk);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = rng.random_range(a..other.len()) + 1;
                    let i = rng.random_range(0..=len);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            6 if !dict.is_empty() => {
                let tok = dict[rng.random_range(0..dict.len())];
                let i = rng.random_range(0..=len);
                v.splice(i..i, tok.iter().copied());
            }
            7 if len > 0 => v.truncate(rng.random_range(0..len)),
            _ => {
                let i = rng.random_range(0..=len);
                v.insert(i, rng.random());
            }
        }
    }
    v
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok())
}

fn crash_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
        .join("fuzz-crashes")
}

/// Runs `parse` on the seeds and then on mutations of them; `parse` returns whether it accepted the
/// input. Panics (fails the test) on the first input that makes `parse` panic, after saving it.
pub fn run(
    target: &str,
    seeds: &[Vec<u8>],
    dict: &[&[u8]],
    parse: impl Fn(&[u8]) -> bool,
) -> FuzzReport {
    let iters = env_u64("GLASS_EDGE_FUZZ_ITERS").unwrap_or(DEFAULT_ITERS);
    let mut rng = ChaCha8Rng::seed_from_u64(env_u64("GLASS_EDGE_FUZZ_SEED").unwrap_or(0));
    let t0 = std::time::Instant::now();
    let mut accepted = 0u64;
    // Quiet panics while fuzzing: one message per crash is enough (printed below).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut corpus: Vec<Vec<u8>> = seeds.to_vec();
    let mut crash = None;
    for n in 0..iters {
        let input = if (n as usize) < seeds.len() {
            seeds[n as usize].clone()
        } else {
            let base = &corpus[rng.random_range(0..corpus.len())];
            mutate(&mut rng, base, seeds, dict)
        };
        match catch_unwind(AssertUnwindSafe(|| parse(&input))) {
            Ok(true) => {
                accepted += 1;
                // Accepted mutants become new bases (bounded): they reach further into the parser.
                if corpus.len() < 4096 && input.len() < 1 << 16 {
                    corpus.push(input);
                }
            }
            Ok(false) => {}
            Err(_) => {
                crash = Some((n, input));
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    if let Some((n, input)) = crash {
        let dir = crash_dir();
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{target}-{n}.bin"));
        let _ = std::fs::write(&path, &input);
        panic!(
            "fuzz target {target}: input #{n} ({} bytes) panicked; saved to {}",
            input.len(),
            path.display()
        );
    }
    let r =
        FuzzReport { target: target.into(), iters, accepted, seconds: t0.elapsed().as_secs_f64() };
    eprintln!(
        "fuzz {}: {} inputs, {} accepted, 0 panics, {:.1} s",
        r.target, r.iters, r.accepted, r.seconds
    );
    r
}
