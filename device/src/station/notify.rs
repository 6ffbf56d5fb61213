//! systemd service notifications (`Type=notify`, `WatchdogSec` in `device/systemd/glass-edge.service`)
//! through the `sd-notify` crate: datagrams to `$NOTIFY_SOCKET`, no libsystemd. Outside systemd (no
//! socket in the environment) every call is a no-op.
//!
//! The station says READY=1 once its bundle is loaded and its outputs are up, pings the watchdog from
//! its main loop only (so a hung loop stops the pings and systemd restarts the service), and says
//! STOPPING=1 when it takes its shutdown path.
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// The station is up.
pub fn ready(status: &str) {
    let _ = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The station is shutting down.
pub fn stopping() {
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// Watchdog pings at half the interval systemd asked for (`WATCHDOG_USEC`), none when it asked for
/// none.
pub struct Watchdog {
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Watchdog {
    /// Reads the watchdog interval from the environment.
    pub fn from_env() -> Self {
        let mut usec = 0u64;
        let every = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(100)));
        Watchdog { every, last: None }
    }

    /// Pings when half the interval has passed since the last ping. Call from the main loop only.
    pub fn ping(&mut self) {
        let Some(every) = self.every else { return };
        if self.last.is_none_or(|t| t.elapsed() >= every) {
            let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            self.last = Some(Instant::now());
        }
    }
}
