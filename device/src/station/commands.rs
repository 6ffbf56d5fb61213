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
        eprintln!("command {} refused: not enabled on this link", name.name());
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
