//! Which of tract's CPU kernels this runtime lets it choose (docs/performance.md, "Kernels tract may
//! not use").
//!
//! tract picks its matmul kernels from the instruction sets it finds on the CPU, once per process,
//! at the first model it optimises. [`configure`] runs before that (every [`crate::engine`] entry
//! point calls it) and takes out the kernels this project does not trust:
//!
//! - **AMX int8** (x86_64, Sapphire Rapids and later; tract-linalg 0.23's `avx512amx_mmm_i32_*`):
//!   its inner loop loads a 64-deep K slice of the B operand per step, 512 bytes, from B packed for
//!   the VNNI kernels, which is padded to a multiple of 4 only. When K is not a multiple of 64 (most
//!   EfficientNet layers) the last load reads up to 480 bytes past the packed buffer. The result
//!   stays right (those K rows meet zero padding in A), but when the buffer ends at a page boundary
//!   the read faults and the process dies of SIGSEGV. Seen as a rare crash of the int8 tests in CI;
//!   under Electric Fence (a guard page after every allocation) `device inspect --precision int8` on
//!   an EfficientNet-Lite0 bundle dies at `tileloadd (%rbx,%r9,1),%tmm2` on the first frame, and
//!   runs clean with the feature taken out. The VNNI kernels tract uses instead give the same
//!   integers (both are exact int8 x int8 -> int32).
//!
//! An operator's own `TRACT_CPU_ISA` (tract's knob, e.g. `-avx512f` to compare kernels) is kept:
//! the edits here are appended to it.

use std::sync::Once;

/// The `TRACT_CPU_ISA` edits this runtime applies on this architecture.
#[cfg(target_arch = "x86_64")]
pub const ISA_EDITS: &str = "-amx-int8";
/// The `TRACT_CPU_ISA` edits this runtime applies on this architecture (none here).
#[cfg(not(target_arch = "x86_64"))]
pub const ISA_EDITS: &str = "";

/// Applies [`ISA_EDITS`] to tract's kernel choice. Idempotent; must run before the process's
/// first tract model is optimised (tract fixes its instruction-set view then), which every
/// entry point of [`crate::engine`] ensures.
pub fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if ISA_EDITS.is_empty() {
            return;
        }
        let knob = &tract_linalg::knobs::TRACT_CPU_ISA;
        let spec = match std::env::var(knob.name) {
            Ok(own) if !own.trim().is_empty() => format!("{own},{ISA_EDITS}"),
            _ => ISA_EDITS.to_string(),
        };
        knob.set(Some(spec));
    });
}

/// Whether tract would use AMX int8 kernels in this process (always false once [`configure`] ran).
pub fn amx_int8_in_use() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        tract_linalg::isa::native().has(tract_linalg::isa::Isa::X86_64AmxInt8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn amx_int8_is_never_chosen() {
        super::configure();
        assert!(!super::amx_int8_in_use(), "tract may still pick its AMX int8 kernels");
    }
}
