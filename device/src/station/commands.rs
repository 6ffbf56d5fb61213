//! Line-side commands (serial `Request`s and MQTT `/cmd` messages) and the threshold they persist:
//! a command is carried out only when its link enables it, a threshold only inside the bundle's
//! `threshold.range`, and a new threshold is saved (atomically) in `state_dir/threshold.json` before it
//! is applied.
use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use shared::wire::{AckCode, Command};

use super::config::{self, StationConfig, Trigger};
use super::state;

/// `state_dir/threshold.json`: the threshold last acknowledged, for the model it was set on.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct SavedThreshold {
    pub(super) model_sha256: String,
    pub(super) threshold: f32,
}

/// Where [`SavedThreshold`] lives.
pub(super) fn threshold_file(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("threshold.json")
}

/// A trigger waiting for its frame: the request id it came with (none for a GPIO edge) and when.
pub(super) struct PendingTrigger {
    pub(super) id: Option<u32>,
    pub(super) at: Instant,
}

/// Commands a link may send per second (a burst of as many is allowed); more are answered `Busy`.
pub(super) const COMMANDS_PER_SECOND: f64 = 20.0;

/// A token bucket per link (see [`COMMANDS_PER_SECOND`]).
pub(super) struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { tokens: COMMANDS_PER_SECOND, last: Instant::now() }
    }
}

impl RateLimit {
    /// Takes a token if there is one.
    pub(super) fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * COMMANDS_PER_SECOND;
        self.tokens = (self.tokens + refill).min(COMMANDS_PER_SECOND);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Triggers that may wait at once; one more is refused with `Busy` (each still waiting gets its
/// result, frame or `NoFrame`).
pub(super) const MAX_PENDING_TRIGGERS: usize = 64;

/// Carries out one line-side command (serial or MQTT, `via`) if that link enables it (`allowed`);
/// a threshold must lie within `range` (the bundle's `threshold.range`).
#[allow(clippy::too_many_arguments)]
pub(super) fn apply(
    id: u32,
    command: Command,
    via: Trigger,
    allowed: &[config::CommandName],
    range: [f32; 2],
    cfg: &StationConfig,
    model_sha: &str,
    threshold: &mut f32,
    pending_triggers: &mut VecDeque<PendingTrigger>,
) -> AckCode {
    let name = match command {
        Command::SetThreshold(_) => config::CommandName::SetThreshold,
        Command::Trigger => config::CommandName::Trigger,
        Command::GetStatus => config::CommandName::GetStatus,
    };
    if !allowed.contains(&name) {
        tracing::warn!("command {} refused: not enabled on this link", name.name());
        return AckCode::Unsupported;
    }
    match command {
        Command::SetThreshold(t) if t.is_finite() && t >= range[0] && t <= range[1] => {
            // Saved (atomically) before it is applied: after a crash the station restarts with the
            // threshold it last acknowledged, never one it did not.
            let saved = SavedThreshold { model_sha256: model_sha.to_string(), threshold: t };
            match serde_json::to_vec(&saved)
                .map(|s| state::write_atomic(&threshold_file(&cfg.state_dir), &s))
            {
                Ok(Ok(())) => {
                    *threshold = t;
                    AckCode::Ok
                }
                _ => AckCode::Failed,
            }
        }
        Command::SetThreshold(_) => AckCode::InvalidArgument,
        Command::Trigger
            if cfg.trigger == via && pending_triggers.len() >= MAX_PENDING_TRIGGERS =>
        {
            AckCode::Busy
        }
        Command::Trigger if cfg.trigger == via => {
            pending_triggers.push_back(PendingTrigger { id: Some(id), at: Instant::now() });
            AckCode::Ok
        }
        Command::Trigger => AckCode::Unsupported,
        Command::GetStatus => AckCode::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_limited_to_the_rate() {
        let mut r = RateLimit::default();
        let allowed = (0..1000).filter(|_| r.allow()).count();
        // The burst, plus what refills while the loop runs (well under a millisecond).
        assert!((20..=21).contains(&allowed), "{allowed}");
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert!(r.allow() && r.allow(), "tokens refill at 20 per second");
    }
}
