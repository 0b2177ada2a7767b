//! Token bucket, kept exactly as GCRA: the state is the time at which the
//! bucket will be full again (the theoretical arrival time, `tat`).
//!
//! - level at `now` = `burst - rate * max(0, tat - now)`;
//! - a request of `cost` fits if `max(tat, now) + cost / rate - now` is at
//!   most `burst / rate`, and counting it moves `tat` to that sum.
//!
//! This is exact: any interval of length `t` admits at most
//! `burst + rate * t`, and a client pacing exactly at the rate is never
//! refused. The slot counter still records every unit spent, per slot and
//! node, so peers learn of the consumption; units counted by a peer are
//! charged to `tat` when they merge in.
//!
//! (The design brief proposed a level folded over slot totals. The fold
//! cannot know when within a slot a request came, so it must either forgive
//! or forfeit up to a slot's refill; forfeiting, the safe choice, refused
//! a third of the requests of a client pacing at exactly the rate. See
//! docs/algorithms.md.)

use std::num::NonZeroU32;

use super::{FullAt, LimitState, Outcome, Rate};
use crate::clock::{Nanos, SECOND};

/// Slot width for buckets: it only sets how consumption is grouped for
/// replication, not how precise the bucket is.
pub const SLOT: Nanos = SECOND;

/// Refills `rate` units per period up to `burst` units.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate: Rate,
    burst: NonZeroU32,
    /// Time to fill from empty, worked out once.
    fill_time: Nanos,
    /// Time for one unit to refill, worked out once: most requests cost 1.
    unit_time: Nanos,
}

impl TokenBucket {
    /// A bucket that starts full with `burst` units and refills at `rate`.
    pub fn new(rate: Rate, burst: NonZeroU32) -> Self {
        Self {
            rate,
            burst,
            fill_time: refill_time(rate, burst.get()),
            unit_time: refill_time(rate, 1),
        }
    }

    /// The refill rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The capacity of the bucket.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Width of one counter slot.
    pub fn slot_width(&self) -> Nanos {
        SLOT
    }

    /// Time for `units` to refill, rounded up so that rounding never
    /// grants a token early.
    pub fn refill_time(&self, units: u32) -> Nanos {
        match units {
            1 => self.unit_time,
            _ => refill_time(self.rate, units),
        }
    }

    /// Time to fill from empty.
    pub fn fill_time(&self) -> Nanos {
        self.fill_time
    }

    fn level(&self, tat: Nanos, now: Nanos) -> f64 {
        let owed = tat.saturating_sub(now) as f64;
        self.burst() as f64 - owed * self.rate.per_nano()
    }

    /// Time `cost` units hold the bucket for. Under a `scale` below 1 (a
    /// node cut off from part of its cluster) each unit holds it longer, so
    /// that the node admits only `scale` of the rate and of the burst.
    fn hold_time(&self, cost: u32, scale: f64) -> Nanos {
        let time = self.refill_time(cost);
        if scale >= 1.0 {
            return time;
        }
        (time as f64 / scale.max(1e-3)) as Nanos
    }

    pub(super) fn evaluate(&self, state: &mut LimitState, now: Nanos, cost: u32, scale: f64) -> Outcome {
        state.counter.advance(now / SLOT, |_, _| {});
        self.absorb_merged(state, now, scale);
        let start = state.tat.get().max(now);
        let after = start.saturating_add(self.hold_time(cost, scale));
        let allowed = after - now <= self.fill_time();
        let tat = if allowed { after } else { state.tat.get() };
        Outcome {
            allowed,
            // Requests of one unit still admitted: under a `scale` below 1
            // each holds the bucket longer. A float-to-int cast truncates,
            // and saturates negatives to 0.
            remaining: (self.level(tat, now) * scale.min(1.0)) as u64,
            reset_after: tat.saturating_sub(now),
            retry_after: match allowed {
                true => None,
                false => (cost <= self.burst()).then(|| after - now - self.fill_time()),
            },
        }
    }

    /// Charges what peers counted since the last check (merged in where
    /// the limit is unknown), as if it was spent now, at the same `scale` as
    /// this node's own units: the nodes on one side of a partition share
    /// that side's fraction.
    fn absorb_merged(&self, state: &mut LimitState, now: Nanos, scale: f64) {
        match state.counter.take_merged() {
            0 => {}
            grew if grew > 0 => self.charge(state, now, grew.min(u32::MAX as i64) as u32, scale),
            shrank => self.give_back(
                state,
                now,
                shrank.unsigned_abs().min(u32::MAX as u64) as u32,
                scale,
            ),
        }
    }

    /// Moves `tat` for `units` counted now, held at `scale` (see
    /// [`hold_time`](Self::hold_time)).
    pub(super) fn charge(&self, state: &mut LimitState, now: Nanos, units: u32, scale: f64) {
        let tat = state.tat.get();
        state.tat = FullAt::new(tat.max(now).saturating_add(self.hold_time(units, scale)));
    }

    /// Gives `units` back; the bucket never holds more than its burst.
    pub(super) fn give_back(&self, state: &mut LimitState, now: Nanos, units: u32, scale: f64) {
        let tat = state.tat.get();
        state.tat = FullAt::new(tat.saturating_sub(self.hold_time(units, scale)).max(now.min(tat)));
    }
}

fn refill_time(rate: Rate, units: u32) -> Nanos {
    let (period, count) = (rate.period(), rate.count() as u64);
    match (units as u64).checked_mul(period) {
        // The common case, without 128-bit division.
        Some(nanos) => nanos.div_ceil(count),
        None => (units as u128 * period as u128)
            .div_ceil(count as u128)
            .min(Nanos::MAX as u128) as Nanos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MILLI;
    use crate::limiter::{take, Limit};

    fn bucket(rate: &str, burst: u32) -> Limit {
        Limit::TokenBucket(TokenBucket::new(
            rate.parse().unwrap(),
            NonZeroU32::new(burst).unwrap(),
        ))
    }

    const T0: Nanos = 1_700_000_000 * SECOND;

    #[test]
    fn denies_the_request_after_the_burst_is_spent() {
        let limit = bucket("10/s", 20);
        let mut state = limit.new_state();
        for i in 0..20 {
            let outcome = take(&limit, &mut state, T0, 1);
            assert!(outcome.allowed, "request {i}");
            assert_eq!(outcome.remaining, 19 - i);
        }
        let denied = take(&limit, &mut state, T0, 1);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Some(100 * MILLI));
        assert_eq!(denied.reset_after, 2 * SECOND);
    }

    #[test]
    fn refills_at_the_rate_once_drained() {
        let limit = bucket("10/s", 20);
        let mut state = limit.new_state();
        assert!(take(&limit, &mut state, T0, 20).allowed);
        let later = take(&limit, &mut state, T0 + SECOND, 0);
        assert_eq!((later.remaining, later.reset_after), (10, SECOND));
    }

    #[test]
    fn a_client_pacing_at_exactly_the_rate_is_never_refused() {
        let limit = bucket("1/s", 1);
        let mut state = limit.new_state();
        for second in 0..100 {
            assert!(
                take(&limit, &mut state, T0 + second * SECOND, 1).allowed,
                "at {second} s"
            );
        }
    }

    #[test]
    fn a_retry_at_retry_after_succeeds_and_not_a_nanosecond_before() {
        let limit = bucket("3/s", 5);
        let mut state = limit.new_state();
        let mut now = T0 + 7 * MILLI;
        for _ in 0..50 {
            let outcome = take(&limit, &mut state, now, 2);
            if let Some(wait) = outcome.retry_after {
                assert!(!take(&limit, &mut state, now + wait - 1, 2).allowed);
                assert!(take(&limit, &mut state, now + wait, 2).allowed);
                now += wait;
            }
            now += 13 * MILLI;
        }
    }

    #[test]
    fn a_cost_above_the_burst_can_never_pass() {
        let limit = bucket("10/s", 5);
        let outcome = take(&limit, &mut limit.new_state(), T0, 6);
        assert!(!outcome.allowed);
        assert_eq!(outcome.retry_after, None);
    }

    #[test]
    fn a_peek_counts_nothing() {
        let limit = bucket("1/s", 2);
        let mut state = limit.new_state();
        for _ in 0..5 {
            assert!(take(&limit, &mut state, T0, 0).allowed);
        }
        assert_eq!(take(&limit, &mut state, T0, 0).remaining, 2);
    }

    #[test]
    fn a_refund_gives_the_units_back_up_to_the_burst() {
        let limit = bucket("1/m", 3);
        let mut state = limit.new_state();
        assert!(take(&limit, &mut state, T0, 3).allowed);
        assert!(!take(&limit, &mut state, T0, 1).allowed);
        assert_eq!(limit.refund(&mut state, T0, 2), 2);
        assert_eq!(take(&limit, &mut state, T0, 0).remaining, 2);
        limit.refund(&mut state, T0, 1);
        limit.refund(&mut state, T0, 1);
        assert_eq!(take(&limit, &mut state, T0, 0).remaining, 3);
    }

    #[test]
    fn undoing_a_commit_restores_the_level() {
        let limit = bucket("1/m", 3);
        let mut state = limit.new_state();
        take(&limit, &mut state, T0, 1);
        take(&limit, &mut state, T0, 2);
        limit.undo_commit(&mut state, T0, 2, 1.0);
        assert_eq!(take(&limit, &mut state, T0, 0).remaining, 2);
    }

    #[test]
    fn long_idle_refills_to_the_burst_and_no_further() {
        let limit = bucket("10/s", 20);
        let mut state = limit.new_state();
        assert!(take(&limit, &mut state, T0, 20).allowed);
        let outcome = take(&limit, &mut state, T0 + 3600 * SECOND, 0);
        assert_eq!((outcome.remaining, outcome.reset_after), (20, 0));
    }

    #[test]
    fn sustained_overload_is_held_to_the_rate() {
        let limit = bucket("100/s", 100);
        let mut state = limit.new_state();
        let mut admitted = 0;
        for ms in 0..10_000 {
            // 200 requests a second: one every 5 ms.
            if ms % 5 == 0 && take(&limit, &mut state, T0 + ms * MILLI, 1).allowed {
                admitted += 1;
            }
        }
        // Arrivals span 9.995 s: burst + 999.5 refilled, whole tokens only.
        assert_eq!(admitted, 1099);
    }
}
