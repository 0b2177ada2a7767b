//! Sliding window over slots of half a window.
//!
//! The count in the window is estimated as
//! `current + previous + (1 - p) * oldest`, where `p` is the elapsed fraction
//! of the current slot: the oldest slot is weighted by how much of it the
//! window still covers (Cloudflare's approximation, with slots of half a
//! window rather than a whole one).
//!
//! Guarantee: any two consecutive slots, that is any window aligned to a slot
//! boundary, hold at most `limit` units. A window at an arbitrary offset can
//! hold more only when the oldest slot's requests bunched at its end; the
//! adversarial worst case is `2 * limit`.

use super::{LimitState, Outcome, Rate};
use crate::clock::Nanos;

/// Slots per window; the ring holds one more for the weighted oldest slot
/// and one spare for late counts from peers.
const SLOTS_PER_WINDOW: u64 = 2;

/// At most `limit` units per `window`.
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindow {
    rate: Rate,
}

impl SlidingWindow {
    /// `rate.count()` units per `rate.period()`.
    pub fn new(rate: Rate) -> Self {
        Self { rate }
    }

    /// Units allowed per window.
    pub fn limit(&self) -> u32 {
        self.rate.count()
    }

    /// The window's length.
    pub fn window(&self) -> Nanos {
        self.rate.period()
    }

    /// The rate this window enforces.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Width of one counter slot: half the window.
    pub fn slot_width(&self) -> Nanos {
        (self.window() / SLOTS_PER_WINDOW).max(1)
    }

    /// `scale` below 1 (a node cut off from part of its cluster) admits
    /// only that fraction of the limit.
    pub(super) fn evaluate(&self, state: &mut LimitState, now: Nanos, cost: u32, scale: f64) -> Outcome {
        let width = self.slot_width();
        let epoch = now / width;
        state.counter.advance(epoch, |_, _| {});
        let counts = [
            state.counter.net(epoch) as f64,
            state.counter.net(epoch.saturating_sub(1)) as f64,
            state.counter.net(epoch.saturating_sub(2)) as f64,
        ];
        let phase = (now - epoch * width) as f64 / width as f64;
        let limit = self.limit() as f64 * scale.min(1.0);
        let estimate = counts[0] + counts[1] + (1.0 - phase) * counts[2];
        let cost_f = cost as f64;
        // A hair of tolerance so that float rounding never denies an exact fit.
        let allowed = estimate + cost_f <= limit + 1e-9;
        let mut after = counts;
        if allowed {
            after[0] += cost_f;
        }
        let used = after[0] + after[1] + (1.0 - phase) * after[2];
        Outcome {
            allowed,
            // A float-to-int cast truncates, and saturates negatives to 0.
            remaining: (limit - used) as u64,
            reset_after: reset_after(&after, phase, width),
            retry_after: match allowed {
                true => None,
                false => self.retry_after(counts, phase, cost_f),
            },
        }
    }

    /// Time until a request of `cost` fits if nothing else arrives: slide
    /// the slots forward one at a time and solve for the phase at which the
    /// weighted oldest slot has faded enough.
    fn retry_after(&self, counts: [f64; 3], phase: f64, cost: f64) -> Option<Nanos> {
        let limit = self.limit() as f64;
        if cost > limit {
            return None;
        }
        let width = self.slot_width() as f64;
        let mut slots = counts;
        for shift in 0..=3u32 {
            let start = if shift == 0 { phase } else { 0.0 };
            let whole = slots[0] + slots[1];
            if whole + cost <= limit {
                let fade = if slots[2] > 0.0 {
                    1.0 - (limit - cost - whole) / slots[2]
                } else {
                    0.0
                };
                let at = shift as f64 + fade.max(start);
                return Some(ceil((at - phase) * width));
            }
            slots = [0.0, slots[0], slots[1]];
        }
        // Unreachable: after three shifts every slot is empty and cost fits.
        None
    }
}

/// Rounds up to whole nanoseconds (negatives to 0) without a libm call.
fn ceil(value: f64) -> Nanos {
    let whole = value as Nanos;
    whole + ((whole as f64) < value) as Nanos
}

/// Time until every counted unit has left the window.
fn reset_after(counts: &[f64; 3], phase: f64, width: Nanos) -> Nanos {
    let rest_of_slot = (1.0 - phase) * width as f64;
    let newest = counts.iter().position(|&count| count > 0.0);
    match newest {
        Some(age) => ceil(rest_of_slot + (2 - age) as f64 * width as f64),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{MILLI, SECOND};
    use crate::limiter::{take, Limit};

    fn window(rate: &str) -> Limit {
        Limit::SlidingWindow(SlidingWindow::new(rate.parse().unwrap()))
    }

    const T0: Nanos = 1_700_000_040 * SECOND;

    #[test]
    fn denies_the_request_after_the_limit_is_reached() {
        let limit = window("5/m");
        let mut state = limit.new_state();
        for i in 0..5 {
            let outcome = take(&limit, &mut state, T0, 1);
            assert!(outcome.allowed);
            assert_eq!(outcome.remaining, 4 - i);
        }
        let denied = take(&limit, &mut state, T0, 1);
        assert!(!denied.allowed);
        // All five sit in the current 30 s slot. A minute on they are the
        // oldest slot at full weight; one fits once a fifth has faded (66 s),
        // and all have left once the oldest slot has passed (90 s).
        assert!(denied.retry_after.unwrap().abs_diff(66 * SECOND) < MILLI);
        assert!(denied.reset_after.abs_diff(90 * SECOND) < MILLI);
    }

    #[test]
    fn the_oldest_slot_fades_as_the_window_slides() {
        let limit = window("10/m");
        let mut state = limit.new_state();
        assert!(take(&limit, &mut state, T0, 10).allowed);
        // One minute later those 10 sit in the oldest slot at full weight.
        assert!(!take(&limit, &mut state, T0 + 60 * SECOND, 1).allowed);
        // A quarter into the slot, a quarter of them have faded.
        let outcome = take(&limit, &mut state, T0 + 67_500 * MILLI, 0);
        assert_eq!(outcome.remaining, 2);
    }

    #[test]
    fn a_retry_at_retry_after_succeeds() {
        let limit = window("7/10s");
        let mut state = limit.new_state();
        let mut now = T0 + 3 * MILLI;
        for _ in 0..200 {
            let outcome = take(&limit, &mut state, now, 2);
            if let Some(wait) = outcome.retry_after {
                assert!(take(&limit, &mut state, now + wait, 2).allowed, "after {wait}");
                now += wait;
            }
            now += 250 * MILLI;
        }
    }

    #[test]
    fn a_cost_above_the_limit_can_never_pass() {
        let limit = window("3/s");
        let outcome = take(&limit, &mut limit.new_state(), T0, 4);
        assert_eq!((outcome.allowed, outcome.retry_after), (false, None));
    }

    #[test]
    fn an_idle_key_resets_completely() {
        let limit = window("3/s");
        let mut state = limit.new_state();
        assert!(take(&limit, &mut state, T0, 3).allowed);
        let outcome = take(&limit, &mut state, T0 + 2 * SECOND, 0);
        assert_eq!((outcome.remaining, outcome.reset_after), (3, 0));
        assert!(state.counter().is_empty());
    }
}
