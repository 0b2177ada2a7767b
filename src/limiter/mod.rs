//! Pure rate-limit algorithms over replicated slot counters.
//!
//! Nothing here reads a clock or takes a lock: the caller passes `now` and a
//! `&mut LimitState`, and gets an [`Outcome`]. A denial is a value, not an
//! error. Both algorithms keep their state in a
//! [`SlotCounter`](weir_cluster::SlotCounter), so a node's counts merge with
//! its peers' like any other CRDT.
//!
//! - [`TokenBucket`]: `rate` with `burst`, exact (GCRA); the slot counter
//!   records consumption so that peers can charge it too.
//! - [`SlidingWindow`]: `count` per `window`, the oldest slot weighted by how
//!   much of it still overlaps the window.
//! - [`Quota`]: `limit` per calendar day, week or month in a time zone, one
//!   slot per period.

mod algorithm;
mod quota;
pub mod rate;
mod sliding_window;
mod token_bucket;

pub use algorithm::AlgorithmName;
pub use quota::{Calendar, Period, Quota};
pub use rate::{Rate, RateError};
pub use sliding_window::SlidingWindow;
pub use token_bucket::TokenBucket;

use std::hash::BuildHasher;
use std::num::NonZeroU64;

use weir_cluster::nodes::ME;
use weir_cluster::{Column, Epoch, NodeIdx, SlotCounter};

use crate::clock::Nanos;

/// The state of one limit of one key.
#[derive(Clone, Debug, Default)]
pub struct LimitState {
    counter: SlotCounter,
    /// Token bucket only: when the bucket will be full again.
    tat: FullAt,
}

/// A time kept one above its value, so that zero is never stored: that
/// spare value is where [`States`](crate::store::States) keeps whether it
/// holds one state inline or several on the heap, at no extra size. The
/// last nanosecond of `u64` (in the year 2554) reads as the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FullAt(NonZeroU64);

impl FullAt {
    const ZERO: Self = Self(NonZeroU64::MIN);

    fn new(at: Nanos) -> Self {
        Self(NonZeroU64::MIN.saturating_add(at))
    }

    fn get(self) -> Nanos {
        self.0.get() - 1
    }
}

impl Default for FullAt {
    fn default() -> Self {
        Self::ZERO
    }
}

impl LimitState {
    /// The counts behind this state, for replication and inspection.
    pub fn counter(&self) -> &SlotCounter {
        &self.counter
    }

    /// A state for a limit with fingerprint `spec` that this node has not
    /// checked yet: made when a peer's counts for it arrive first.
    pub fn for_spec(spec: u16) -> Self {
        Self {
            counter: SlotCounter::with_tag(spec),
            tat: FullAt::ZERO,
        }
    }

    /// Merges a peer's column (its ring ending at `head`). A token bucket
    /// charges the growth when the key is next checked.
    pub fn merge_peer(&mut self, node: NodeIdx, head: Epoch, column: &Column) {
        self.counter.merge_column(ME, node, head, column, |_, _| {});
    }

    /// When a token bucket is full again (engine time; 0 for a window):
    /// the part of a bucket's state its columns do not hold, for snapshots.
    pub fn refill_at(&self) -> Nanos {
        self.tat.get()
    }

    /// Takes in a snapshot of this state: the later refill time, and the
    /// saved columns merged by max. A bucket does not charge the columns
    /// again: the saved refill time already counts them.
    pub fn restore(&mut self, refill_at: Nanos, head: Epoch, columns: &[(NodeIdx, Column)]) {
        self.tat = FullAt::new(self.tat.get().max(refill_at));
        for (node, column) in columns {
            self.counter.restore_column(ME, *node, head, column);
        }
    }

    /// Notes `units` spent by this node in sync interval `interval`.
    pub fn note_spent(&mut self, interval: u32, units: u32) {
        self.counter.note_spent(interval, units);
    }

    /// Quota only: which alert marks this node has passed in the period
    /// starting at Unix second `period` (one bit per quota rule of the
    /// tier; see `engine::transaction`). Kept where a token bucket keeps
    /// its refill time, so a quota's state stays 40 bytes and a snapshot
    /// keeps the marks too.
    pub fn quota_marks(&self, period: u64) -> u8 {
        let word = self.tat.get();
        match word >> 8 == period {
            true => word as u8,
            false => 0,
        }
    }

    /// Quota only: sets the marks passed in `period` (see
    /// [`quota_marks`](Self::quota_marks)).
    pub fn set_quota_marks(&mut self, period: u64, marks: u8) {
        self.tat = FullAt::new(period << 8 | marks as u64);
    }

    /// The layout fingerprint this state was built for (kept as the
    /// counter's tag, where it costs no space).
    pub fn spec(&self) -> u16 {
        self.counter.tag()
    }
}

/// What one limit says about one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// The request fits.
    pub allowed: bool,
    /// Units left after this request (if it is allowed and committed).
    pub remaining: u64,
    /// Time until the limit is back to full, with no further requests.
    pub reset_after: Nanos,
    /// When denied: time until a request of the same cost would fit; `None`
    /// when it never can (its cost exceeds the limit's capacity).
    pub retry_after: Option<Nanos>,
}

/// An algorithm with its parameters, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Limit {
    /// See [`TokenBucket`].
    TokenBucket(TokenBucket),
    /// See [`SlidingWindow`].
    SlidingWindow(SlidingWindow),
    /// See [`Quota`].
    Quota(Quota),
    /// At most `max` requests in flight: a window of `max` per lease, each
    /// request one unit whatever its cost, given back when released (a
    /// lease nobody releases lapses with the window).
    Concurrency(SlidingWindow),
}

impl Limit {
    /// Width of one counter slot; a quota's slots are its periods, of the
    /// period's nominal length.
    pub fn slot_width(&self) -> Nanos {
        match self {
            Limit::TokenBucket(bucket) => bucket.slot_width(),
            Limit::SlidingWindow(window) => window.slot_width(),
            Limit::Quota(quota) => quota.window(),
            Limit::Concurrency(window) => window.slot_width(),
        }
    }

    /// The most units this limit can ever grant at once: the burst or the
    /// window's count.
    pub fn capacity(&self) -> u32 {
        match self {
            Limit::TokenBucket(bucket) => bucket.burst(),
            Limit::SlidingWindow(window) => window.limit(),
            Limit::Quota(quota) => quota.limit(),
            Limit::Concurrency(window) => window.limit(),
        }
    }

    /// The time over which [`capacity`](Self::capacity) units are granted:
    /// the window, or the time a bucket takes to fill from empty.
    pub fn window(&self) -> Nanos {
        match self {
            Limit::TokenBucket(bucket) => bucket.fill_time(),
            Limit::SlidingWindow(window) => window.window(),
            Limit::Quota(quota) => quota.window(),
            Limit::Concurrency(window) => window.window(),
        }
    }

    /// Which algorithm this is.
    pub fn algorithm(&self) -> AlgorithmName {
        match self {
            Limit::TokenBucket(_) => AlgorithmName::TokenBucket,
            Limit::SlidingWindow(_) => AlgorithmName::SlidingWindow,
            Limit::Quota(_) => AlgorithmName::Quota,
            Limit::Concurrency(_) => AlgorithmName::Concurrency,
        }
    }

    /// The units a request of `cost` takes: its cost, but one for a
    /// concurrency limit (a request in flight is one, whatever it costs).
    fn units(&self, cost: u32) -> u32 {
        match self {
            Limit::Concurrency(_) => cost.min(1),
            _ => cost,
        }
    }

    /// A fingerprint of what the counts mean (algorithm and slot width).
    /// State built for another fingerprint is reset; a changed count or rate
    /// with the same slot width keeps its counts across a config change.
    pub fn spec_id(&self) -> u16 {
        // The name, not the enum: the fingerprint is part of the sync and
        // snapshot formats and must not move.
        let name = self.algorithm().as_str();
        let fingerprint = foldhash::quality::FixedState::with_seed(0x77e1);
        let hash = match self {
            // What a quota's slots mean is its calendar: a changed limit
            // keeps the period's count, a changed calendar starts afresh.
            Limit::Quota(quota) => fingerprint.hash_one((name, quota.calendar().identity())),
            _ => fingerprint.hash_one((name, self.slot_width())),
        };
        // Never 0, so that a default state never matches a real limit.
        (hash as u16).max(1)
    }

    /// How long a state stays meaningful without requests; after that it is
    /// equal to a fresh state and can be dropped.
    pub fn retention(&self) -> Nanos {
        if let Limit::Quota(quota) = self {
            // The period's count, for as long as the longest period.
            return quota.longest_period();
        }
        // Saturating: a bucket with a huge burst and a slow rate takes
        // longer to fill than a u64 of nanoseconds holds (found by fuzzing).
        let ring = (weir_cluster::RING as Nanos).saturating_mul(self.slot_width());
        self.window().saturating_add(ring)
    }

    /// A fresh state: a full bucket, an empty window.
    pub fn new_state(&self) -> LimitState {
        LimitState {
            counter: SlotCounter::with_tag(self.spec_id()),
            tat: FullAt::ZERO,
        }
    }

    /// Decides whether `cost` units fit at `now`. Moves the state's slots
    /// forward in time but counts nothing: call [`commit`](Self::commit) for
    /// that once every limit of the request has allowed it. A cost of 0 is a
    /// peek: allowed unless the key is already over its limit.
    pub fn evaluate(&self, state: &mut LimitState, now: Nanos, cost: u32) -> Outcome {
        self.evaluate_scaled(state, now, cost, 1.0)
    }

    /// [`evaluate`](Self::evaluate) for a node that reaches only `scale` of
    /// its cluster: it admits only that fraction of the limit, so that the
    /// sides of a partition together admit no more than the whole limit.
    pub fn evaluate_scaled(&self, state: &mut LimitState, now: Nanos, cost: u32, scale: f64) -> Outcome {
        match self {
            Limit::TokenBucket(bucket) => bucket.evaluate(state, now, cost, scale),
            Limit::SlidingWindow(window) => window.evaluate(state, now, cost, scale),
            Limit::Quota(quota) => quota.evaluate(state, now, cost, scale),
            Limit::Concurrency(window) => window.evaluate(state, now, self.units(cost), scale),
        }
    }

    /// Counts `cost` units at `now`; call after [`evaluate`](Self::evaluate)
    /// allowed it, so that the state's slots are current.
    pub fn commit(&self, state: &mut LimitState, now: Nanos, cost: u32) {
        self.commit_scaled(state, now, cost, 1.0);
    }

    /// [`commit`](Self::commit) after [`evaluate_scaled`](Self::evaluate_scaled).
    pub fn commit_scaled(&self, state: &mut LimitState, now: Nanos, cost: u32, scale: f64) {
        state.counter.add(self.units(cost));
        if let Limit::TokenBucket(bucket) = self {
            bucket.charge(state, now, cost, scale);
        }
    }

    /// Takes back a [`commit_scaled`](Self::commit_scaled) of `cost` made at
    /// `now` that no one else has seen: the rollback of an atomic batch.
    pub fn undo_commit(&self, state: &mut LimitState, now: Nanos, cost: u32, scale: f64) {
        state.counter.undo_add(self.units(cost));
        if let Limit::TokenBucket(bucket) = self {
            bucket.give_back(state, now, cost, scale);
        }
    }

    /// Gives back up to `units` counted earlier; returns how many. A window
    /// can give back what its ring still holds (about two windows); a bucket
    /// gives back any amount, up to full.
    pub fn refund(&self, state: &mut LimitState, now: Nanos, units: u32) -> u32 {
        let counted = state.counter.refund(units);
        match self {
            Limit::TokenBucket(bucket) => {
                bucket.give_back(state, now, units, 1.0);
                units
            }
            Limit::SlidingWindow(_) | Limit::Quota(_) | Limit::Concurrency(_) => counted,
        }
    }
}

/// Evaluates and, if allowed, commits: one request, as the engine makes it.
#[cfg(test)]
pub(crate) fn take(limit: &Limit, state: &mut LimitState, now: Nanos, cost: u32) -> Outcome {
    let outcome = limit.evaluate(state, now, cost);
    if outcome.allowed {
        limit.commit(state, now, cost);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SECOND;

    #[test]
    fn a_refill_time_reads_back_as_set_up_to_the_last_nanosecond() {
        for at in [0, 1, SECOND, Nanos::MAX - 1] {
            assert_eq!(FullAt::new(at).get(), at);
        }
        assert_eq!(FullAt::new(Nanos::MAX).get(), Nanos::MAX - 1);
        assert_eq!(FullAt::default().get(), 0);
    }

    #[test]
    fn spec_id_changes_with_the_slot_width_only() {
        let a = Limit::SlidingWindow(SlidingWindow::new("10/m".parse().unwrap()));
        let b = Limit::SlidingWindow(SlidingWindow::new("500/m".parse().unwrap()));
        let c = Limit::SlidingWindow(SlidingWindow::new("10/h".parse().unwrap()));
        assert_eq!(a.spec_id(), b.spec_id());
        assert_ne!(a.spec_id(), c.spec_id());
    }

    #[test]
    fn a_state_is_40_bytes() {
        assert_eq!(std::mem::size_of::<LimitState>(), 40);
    }

    #[test]
    fn a_bucket_slower_than_a_u64_of_nanoseconds_is_kept_for_ever_not_wrapped() {
        let bucket = Limit::TokenBucket(TokenBucket::new(
            "1/31d".parse().unwrap(),
            std::num::NonZeroU32::new(u32::MAX).unwrap(),
        ));
        assert_eq!(bucket.retention(), Nanos::MAX);
    }

    #[test]
    fn retention_covers_the_window_and_the_ring() {
        let window = Limit::SlidingWindow(SlidingWindow::new("10/m".parse().unwrap()));
        assert_eq!(window.retention(), 60 * SECOND + 4 * 30 * SECOND);
    }
}
