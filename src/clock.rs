//! Time, behind a trait so that algorithms never read a clock themselves.
//!
//! Slot epochs are counted from the Unix epoch so that every node of a cluster
//! numbers its slots alike; a clock therefore returns Unix time in
//! nanoseconds. Production uses [`QuantaClock`] (a cached TSC read refreshed
//! by an upkeep thread: well under a nanosecond a read, about a millisecond
//! stale). Tests use [`ManualClock`]. Simulations plug in their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time in nanoseconds.
pub type Nanos = u64;

/// Nanoseconds in a second.
pub const SECOND: Nanos = 1_000_000_000;

/// Nanoseconds in a millisecond.
pub const MILLI: Nanos = 1_000_000;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Unix time now, in nanoseconds. Never goes backwards.
    fn now(&self) -> Nanos;
}

fn unix_now() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as Nanos)
}

/// The production clock: wall time at start plus quanta's monotonic
/// `recent()` since then.
pub struct QuantaClock {
    clock: quanta::Clock,
    start: quanta::Instant,
    start_unix: Nanos,
    _upkeep: Option<quanta::Handle>,
}

impl QuantaClock {
    /// Starts quanta's upkeep thread (once per process) and anchors the clock
    /// to the current wall time.
    pub fn new() -> Self {
        Self::starting_at(unix_now())
    }

    /// A clock that reads `start` (Unix ns) now and runs on from there:
    /// for tests that need a process to live at another date.
    pub fn starting_at(start_unix: Nanos) -> Self {
        // Fails only when another upkeep thread already runs, which serves
        // `recent()` just as well.
        let upkeep = quanta::Upkeep::new(Duration::from_millis(1)).start().ok();
        let clock = quanta::Clock::new();
        let start = clock.now();
        Self {
            clock,
            start,
            start_unix,
            _upkeep: upkeep,
        }
    }
}

impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for QuantaClock {
    fn now(&self) -> Nanos {
        let mut recent = self.clock.recent();
        if recent < self.start {
            // The upkeep thread has not ticked yet.
            recent = self.clock.now();
        }
        self.start_unix + recent.duration_since(self.start).as_nanos() as Nanos
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Nanos) -> Self {
        Self(AtomicU64::new(start))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Sets the clock to `at` (which may be earlier: a replay decides).
    pub fn set(&self, at: Nanos) {
        self.0.store(at, Ordering::SeqCst);
    }
}

/// Time as tokio sees it, from a given Unix time: it follows tokio's paused
/// or simulated time (turmoil), which quanta and `Instant` do not.
#[derive(Debug)]
pub struct TokioClock {
    start_unix: Nanos,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start_unix` now; call inside a runtime.
    pub fn new(start_unix: Nanos) -> Self {
        Self {
            start_unix,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Nanos {
        self.start_unix + self.start.elapsed().as_nanos() as Nanos
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quanta_clock_follows_wall_time_and_never_goes_back() {
        let clock = QuantaClock::new();
        let first = clock.now();
        assert!(first.abs_diff(unix_now()) < 5 * SECOND);
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.now() >= first);
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(7);
        assert_eq!(clock.now(), 7);
        clock.advance(Duration::from_nanos(3));
        assert_eq!(clock.now(), 10);
    }
}
