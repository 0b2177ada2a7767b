//! How much of a key's remaining quota this node may spend before its peers
//! hear of it: the accuracy rules of a cluster (docs/consistency.md).
//!
//! Peers learn of each other's counts once per sync interval. Without care,
//! N nodes could each admit the whole remaining quota in that time. So:
//! - **Share.** Within one sync interval a node spends at most its share of
//!   what was left when the interval began. The share is the node's part of
//!   the key's recent traffic, smoothed by one unit per live node:
//!   `(own + 1) / (all + live)`. The shares of all nodes sum to one, a key
//!   hit on one node only gets nearly all of it, and a node with no history
//!   gets an equal part. In its turn (one interval in `live`), a node that
//!   has spent nothing this interval may take one request anyway, so that
//!   rounding never starves it.
//! - **Partition.** A node that reaches only `live` of the `expected` nodes
//!   enforces `live / expected` of every limit, so the sides of a partition
//!   together admit no more than the whole limit.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use weir_cluster::membership::ClusterShape;
use weir_cluster::SlotCounter;

use crate::clock::Nanos;

/// The cluster as the engine needs it, updated by the membership loop.
#[derive(Debug, Default)]
pub struct ClusterView {
    live: AtomicU32,
    expected: AtomicU32,
    rank: AtomicU32,
    interval: AtomicU64,
}

impl ClusterView {
    /// Records the cluster's shape and the sync interval.
    pub fn update(&self, shape: ClusterShape, interval: Nanos) {
        self.interval.store(interval.max(1), Ordering::Relaxed);
        self.live.store(shape.live.max(1), Ordering::Relaxed);
        self.rank.store(shape.rank, Ordering::Relaxed);
        self.expected
            .store(shape.expected.max(shape.live), Ordering::Release);
    }

    /// The rules in force, or `None` for a node alone (which then behaves
    /// exactly as a standalone one).
    pub fn shares(&self) -> Option<Shares> {
        let expected = self.expected.load(Ordering::Acquire);
        if expected <= 1 {
            return None;
        }
        Some(Shares {
            live: self.live.load(Ordering::Relaxed).max(1),
            expected,
            rank: self.rank.load(Ordering::Relaxed),
            interval: self.interval.load(Ordering::Relaxed).max(1),
        })
    }
}

/// A copy of the cluster's shape, taken once per check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    live: u32,
    expected: u32,
    rank: u32,
    interval: Nanos,
}

impl Shares {
    /// The fraction of every limit this node enforces: below 1 only when it
    /// cannot reach part of the cluster.
    pub fn scale(&self) -> f64 {
        self.live as f64 / self.expected as f64
    }

    /// The sync interval `now` falls in.
    pub fn interval_of(&self, now: Nanos) -> u32 {
        (now / self.interval) as u32
    }

    /// Time until the next sync interval begins.
    pub fn until_next_interval(&self, now: Nanos) -> Nanos {
        self.interval - now % self.interval
    }

    /// Whether this node may spend `cost` more units of a limit with
    /// `available` units left (this request included), given what it spent
    /// this interval.
    pub fn allows(&self, counter: &SlotCounter, available: u64, cost: u32, now: Nanos) -> bool {
        let interval = self.interval_of(now);
        let spent_units = counter.spent_in(interval);
        let spent = spent_units as f64;
        // The share comes from traffic before this interval: what peers
        // have (roughly) seen too, so that all the shares sum to one.
        let (own, all) = counter.ring_totals();
        let before = spent_units as u64;
        let share = (own.saturating_sub(before) as f64 + 1.0)
            / (all.saturating_sub(before) as f64 + self.live as f64);
        if spent + cost as f64 <= share * (available as f64 + spent) + 1e-9 {
            return true;
        }
        spent == 0.0 && interval % self.live == self.rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_cluster::{Column, NodeIdx};

    fn shares(live: u32, expected: u32, rank: u32) -> Shares {
        Shares {
            live,
            expected,
            rank,
            interval: 50,
        }
    }

    #[test]
    fn a_node_alone_has_no_rules() {
        let view = ClusterView::default();
        assert_eq!(view.shares(), None);
        view.update(
            ClusterShape {
                live: 1,
                expected: 1,
                rank: 0,
            },
            50,
        );
        assert_eq!(view.shares(), None);
    }

    #[test]
    fn a_fresh_key_gets_an_equal_part_per_interval() {
        let rules = shares(4, 4, 1);
        let mut counter = SlotCounter::new();
        // 100 left, 4 live nodes, no history: 25 this interval.
        let mut admitted = 0;
        while rules.allows(&counter, 100 - admitted, 1, 0) {
            counter.add(1);
            counter.note_spent(0, 1);
            admitted += 1;
        }
        assert_eq!(admitted, 25);
    }

    #[test]
    fn a_key_busy_on_this_node_only_gets_nearly_everything() {
        let rules = shares(3, 3, 1);
        let mut counter = SlotCounter::new();
        counter.add(997);
        let mut admitted = 0;
        while rules.allows(&counter, 100 - admitted, 1, 0) {
            counter.note_spent(0, 1);
            admitted += 1;
        }
        assert_eq!(admitted, 99);
    }

    #[test]
    fn a_node_with_little_traffic_gets_little_but_is_never_starved() {
        let rules = shares(2, 2, 0);
        let mut counter = SlotCounter::new();
        let busy = Column {
            spent: [1000, 0, 0, 0],
            refunded: [0; 4],
        };
        counter.merge_column(NodeIdx(0), NodeIdx(1), 0, &busy, |_, _| {});
        // Share 1/1002 of 10: nothing by share, but one in its turn.
        assert!(rules.allows(&counter, 10, 1, 0));
        counter.note_spent(0, 1);
        assert!(!rules.allows(&counter, 9, 1, 0));
        // Not its turn in the next interval.
        assert!(!rules.allows(&counter, 9, 1, 50));
    }

    #[test]
    fn a_partition_scales_limits_by_the_reachable_fraction() {
        assert_eq!(shares(2, 3, 0).scale(), 2.0 / 3.0);
        assert_eq!(shares(3, 3, 0).scale(), 1.0);
    }
}
