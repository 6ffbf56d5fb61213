//! The digital-output handshake with a PLC, on embedded-hal `OutputPin`s.
//!
//! Lines: **Ready**, **Busy**, **ResultValid**, **Pass**, **Fail**. Per frame:
//!
//! 1. Ready low, Busy high (inspection started);
//! 2. exactly one of Pass / Fail high (Fail on a defect **and on any fault or missed deadline**);
//! 3. ResultValid high for `pulse_ms`: the PLC latches Pass / Fail now;
//! 4. ResultValid low, Pass and Fail low, Busy low, Ready high.
//!
//! The PLC treats a part as rejected unless it saw ResultValid with Pass within its own window: a
//! missing result (station down, cable cut) means reject.
//!
//! Every way out drives the lines to the safe state (all low: not Ready, no result): the station's stop
//! path calls [`Handshake::stop`], and dropping a handshake that was not stopped (an error return, a
//! panic unwinding through the loop) does the same. A stop that arrives during a ResultValid pulse lets
//! the pulse finish (at most [`MAX_PULSE_MS`]), so the part in hand keeps its result.
use std::time::Duration;

use embedded_hal::digital::OutputPin;

/// The longest ResultValid pulse a configuration may ask for (a stop waits for it).
pub const MAX_PULSE_MS: u64 = 1000;

/// The five lines.
pub struct Handshake<P: OutputPin> {
    /// Ready.
    pub ready: P,
    /// Busy.
    pub busy: P,
    /// ResultValid.
    pub result_valid: P,
    /// Pass.
    pub pass: P,
    /// Fail.
    pub fail: P,
    /// ResultValid pulse.
    pub pulse: Duration,
    /// Lines driven since [`Handshake::start`] and not yet made safe.
    live: bool,
}

/// A GPIO write failed (the message says which line).
#[derive(Debug, thiserror::Error)]
#[error("gpio {line}: {msg}")]
pub struct GpioError {
    /// The line's role.
    pub line: &'static str,
    /// What the driver said.
    pub msg: String,
}

fn set<P: OutputPin>(p: &mut P, line: &'static str, high: bool) -> Result<(), GpioError> {
    let r = if high { p.set_high() } else { p.set_low() };
    r.map_err(|e| GpioError { line, msg: format!("{e:?}") })
}

impl<P: OutputPin> Handshake<P> {
    /// The handshake on these lines (nothing is written until [`Handshake::start`]).
    pub fn new(ready: P, busy: P, result_valid: P, pass: P, fail: P, pulse: Duration) -> Self {
        Handshake { ready, busy, result_valid, pass, fail, pulse, live: false }
    }

    /// All low, then Ready high (station up).
    pub fn start(&mut self) -> Result<(), GpioError> {
        self.live = true;
        set(&mut self.result_valid, "result_valid", false)?;
        set(&mut self.pass, "pass", false)?;
        set(&mut self.fail, "fail", false)?;
        set(&mut self.busy, "busy", false)?;
        set(&mut self.ready, "ready", true)
    }

    /// Step 1: a frame is being inspected.
    pub fn begin(&mut self) -> Result<(), GpioError> {
        set(&mut self.ready, "ready", false)?;
        set(&mut self.busy, "busy", true)
    }

    /// Steps 2-4 for one verdict (`fail` includes every fault).
    pub fn finish(&mut self, fail: bool) -> Result<(), GpioError> {
        if fail {
            set(&mut self.fail, "fail", true)?;
        } else {
            set(&mut self.pass, "pass", true)?;
        }
        set(&mut self.result_valid, "result_valid", true)?;
        std::thread::sleep(self.pulse);
        set(&mut self.result_valid, "result_valid", false)?;
        set(&mut self.pass, "pass", false)?;
        set(&mut self.fail, "fail", false)?;
        set(&mut self.busy, "busy", false)?;
        set(&mut self.ready, "ready", true)
    }

    /// Station stopping: Ready low, everything else low.
    pub fn stop(&mut self) -> Result<(), GpioError> {
        self.live = false;
        set(&mut self.ready, "ready", false)?;
        set(&mut self.busy, "busy", false)?;
        set(&mut self.result_valid, "result_valid", false)?;
        set(&mut self.pass, "pass", false)?;
        set(&mut self.fail, "fail", false)
    }
}

impl<P: OutputPin> Drop for Handshake<P> {
    /// The safe state on every exit that did not call [`Handshake::stop`] (errors, panics).
    fn drop(&mut self) {
        if self.live {
            // Every line is tried even when one write fails.
            let _ = set(&mut self.ready, "ready", false);
            let _ = set(&mut self.busy, "busy", false);
            let _ = set(&mut self.result_valid, "result_valid", false);
            let _ = set(&mut self.pass, "pass", false);
            let _ = set(&mut self.fail, "fail", false);
        }
    }
}

/// `(line name, level)` per write, in order, shared by [`MockPin`]s.
pub type PinLog = std::sync::Arc<std::sync::Mutex<Vec<(&'static str, bool)>>>;

/// A pin that records its writes into a shared log (tests, dry runs).
#[derive(Clone)]
pub struct MockPin {
    /// The line's name in the log.
    pub name: &'static str,
    /// The shared log.
    pub log: PinLog,
}

impl embedded_hal::digital::ErrorType for MockPin {
    type Error = core::convert::Infallible;
}

impl OutputPin for MockPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push((self.name, false));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push((self.name, true));
        Ok(())
    }
}

/// A line of a Linux GPIO character device (`/dev/gpiochipN`), requested as an output.
pub struct CdevPin {
    handle: gpio_cdev::LineHandle,
}

impl CdevPin {
    /// Requests `line` of `chip` as an output, initially low.
    pub fn open(chip: &std::path::Path, line: u32) -> Result<Self, GpioError> {
        let err = |e: gpio_cdev::Error| GpioError {
            line: "open",
            msg: format!("{}: {e}", chip.display()),
        };
        let mut c = gpio_cdev::Chip::new(chip).map_err(err)?;
        let handle = c
            .get_line(line)
            .and_then(|l| l.request(gpio_cdev::LineRequestFlags::OUTPUT, 0, "glass-edge"))
            .map_err(err)?;
        Ok(CdevPin { handle })
    }
}

/// A character-device write error.
#[derive(Debug)]
pub struct CdevError(pub String);

impl embedded_hal::digital::Error for CdevError {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

impl embedded_hal::digital::ErrorType for CdevPin {
    type Error = CdevError;
}

impl OutputPin for CdevPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.handle.set_value(0).map_err(|e| CdevError(e.to_string()))
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.handle.set_value(1).map_err(|e| CdevError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> (Handshake<MockPin>, PinLog) {
        let log = PinLog::default();
        let pin = |name| MockPin { name, log: log.clone() };
        let h = Handshake::new(
            pin("ready"),
            pin("busy"),
            pin("result_valid"),
            pin("pass"),
            pin("fail"),
            Duration::from_millis(1),
        );
        (h, log)
    }

    fn highs(log: &[(&'static str, bool)]) -> Vec<String> {
        log.iter().map(|(n, v)| format!("{n}{}", if *v { "+" } else { "-" })).collect()
    }

    #[test]
    fn pass_and_fail_sequences() {
        for (fail, line) in [(false, "pass"), (true, "fail")] {
            let (mut h, log) = mock();
            h.begin().unwrap();
            h.finish(fail).unwrap();
            let got = highs(&log.lock().unwrap());
            let want = [
                "ready-".to_string(),
                "busy+".into(),
                format!("{line}+"),
                "result_valid+".into(),
                "result_valid-".into(),
                "pass-".into(),
                "fail-".into(),
                "busy-".into(),
                "ready+".into(),
            ];
            assert_eq!(got, want);
        }
    }

    /// The level each line was left at (all five must have been written).
    fn last_levels(log: &[(&'static str, bool)]) -> Vec<(&'static str, bool)> {
        ["ready", "busy", "result_valid", "pass", "fail"]
            .iter()
            .map(|n| (*n, log.iter().rev().find(|(l, _)| l == n).map(|(_, v)| *v).unwrap_or(true)))
            .collect()
    }

    #[test]
    fn a_panic_with_a_result_on_the_lines_leaves_them_low() {
        let (h, log) = mock();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let mut h = h;
            h.start().unwrap();
            h.begin().unwrap();
            set(&mut h.pass, "pass", true).unwrap();
            set(&mut h.result_valid, "result_valid", true).unwrap();
            panic!("the loop panicked mid-pulse");
        }));
        assert!(r.is_err());
        let log = log.lock().unwrap();
        assert!(last_levels(&log).iter().all(|(_, v)| !v), "{:?}", last_levels(&log));
        // A handshake that was stopped is not written again when dropped; one never started is not
        // written at all.
        let (mut h, log) = mock();
        h.start().unwrap();
        h.stop().unwrap();
        let n = log.lock().unwrap().len();
        drop(h);
        assert_eq!(log.lock().unwrap().len(), n);
        let (h, log) = mock();
        drop(h);
        assert!(log.lock().unwrap().is_empty());
    }
}
