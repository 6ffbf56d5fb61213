//! Hardware trigger: an edge on a digital input (embedded-hal `InputPin`), polled every millisecond
//! on its own thread, with a debounce time; each edge is one trigger.
use std::time::Duration;

use embedded_hal::digital::InputPin;

use super::inbox::{Inbox, Request};

/// Which edge triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    /// Low -> high.
    Rising,
    /// High -> low.
    Falling,
}

/// Watches `pin` and offers one [`Request::Trigger`] per `edge` to the station loop (edges closer than
/// `debounce` to the last one are ignored). The thread ends when the loop has ended.
pub fn watch<P: InputPin + Send + 'static>(
    mut pin: P,
    edge: Edge,
    debounce: Duration,
    inbox: Inbox,
) {
    std::thread::Builder::new()
        .name("gpio-trigger".into())
        .spawn(move || {
            let mut last = pin.is_high().unwrap_or(false);
            let mut last_edge: Option<std::time::Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(1));
                let Ok(now) = pin.is_high() else { continue };
                let fired = match edge {
                    Edge::Rising => !last && now,
                    Edge::Falling => last && !now,
                };
                last = now;
                if fired && last_edge.is_none_or(|t| t.elapsed() >= debounce) {
                    let at = std::time::Instant::now();
                    last_edge = Some(at);
                    if !inbox.offer(Request::Trigger(at)) {
                        break; // the station loop has ended
                    }
                }
            }
        })
        .ok();
}

/// A line of a Linux GPIO character device requested as an input.
pub struct CdevInputPin {
    handle: gpio_cdev::LineHandle,
}

impl CdevInputPin {
    /// Requests `line` of `chip` as an input.
    pub fn open(chip: &std::path::Path, line: u32) -> Result<Self, String> {
        let mut c = gpio_cdev::Chip::new(chip).map_err(|e| format!("{}: {e}", chip.display()))?;
        let handle = c
            .get_line(line)
            .and_then(|l| l.request(gpio_cdev::LineRequestFlags::INPUT, 0, "glass-edge-trigger"))
            .map_err(|e| format!("{} line {line}: {e}", chip.display()))?;
        Ok(CdevInputPin { handle })
    }
}

impl embedded_hal::digital::ErrorType for CdevInputPin {
    type Error = super::gpio::CdevError;
}

impl InputPin for CdevInputPin {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        self.handle.get_value().map(|v| v != 0).map_err(|e| super::gpio::CdevError(e.to_string()))
    }
    fn is_low(&mut self) -> Result<bool, Self::Error> {
        self.is_high().map(|h| !h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Level(Arc<AtomicBool>);

    impl embedded_hal::digital::ErrorType for Level {
        type Error = core::convert::Infallible;
    }

    impl InputPin for Level {
        fn is_high(&mut self) -> Result<bool, Self::Error> {
            Ok(self.0.load(Ordering::SeqCst))
        }
        fn is_low(&mut self) -> Result<bool, Self::Error> {
            Ok(!self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn one_trigger_per_rising_edge() {
        let level = Arc::new(AtomicBool::new(false));
        let (inbox, rx) = Inbox::new();
        watch(Level(level.clone()), Edge::Rising, Duration::from_millis(0), inbox);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(20));
            level.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            level.store(false, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(rx.try_iter().filter(|r| matches!(r, Request::Trigger(_))).count(), 3);
    }
}
