//! Says loudly when a node cannot be part of its cluster, instead of
//! running alone in silence (and enforcing every limit in full).
//!
//! Two symptoms, seen from either side of a wrong `--cluster-secret` (or
//! `--cluster-id`):
//! - gossip arrives that fails authentication: a node with another secret
//!   is trying to join, or this node has the wrong one;
//! - a node given seeds has heard from no peer for [`ALONE_AFTER`]: its
//!   seeds are down or unreachable, or they cannot read its gossip (nor it
//!   theirs, were they to answer).
//!
//! A pure state machine: [`JoinWatch::step`] takes what one gossip round saw
//! and returns what to log; the membership loop does the logging. A node in
//! trouble stays ready: a StatefulSet starts its first pod alone, and a node
//! cut off from its peers still serves (each node then enforcing the whole
//! limit) rather than failing every request. `/readyz` and `/v1/cluster`
//! show the problem, `weir_cluster_alone` and
//! `weir_gossip_rejected_total{reason="auth"}` count it.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::clock::{Nanos, MILLI, SECOND};

/// How long a node with seeds may hear no peer before it says so.
pub const ALONE_AFTER: Nanos = 5 * SECOND;
/// The same problem is logged again at most this often.
const RELOG: Nanos = 60 * SECOND;

/// What one gossip round saw.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Engine time.
    pub now: Nanos,
    /// Peers live now, this node not included.
    pub live_peers: usize,
    /// Gossip datagrams that failed authentication, since the start.
    pub foreign: u64,
    /// The sender of the last of those.
    pub foreign_from: Option<SocketAddr>,
}

/// A problem to log at ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// Gossip from `from` fails authentication.
    Foreign {
        /// Its sender.
        from: Option<SocketAddr>,
    },
    /// No peer heard from since the start, or for a while.
    Alone {
        /// For how long, in seconds.
        seconds: u64,
    },
}

/// The watch of one node.
#[derive(Debug)]
pub struct JoinWatch {
    has_seeds: bool,
    /// Since when this node has heard no peer.
    alone_since: Option<Nanos>,
    foreign_seen: u64,
    last_foreign: Option<(Option<SocketAddr>, Nanos)>,
    logged_foreign: Option<Nanos>,
    logged_alone: Option<Nanos>,
}

impl JoinWatch {
    /// A watch for a node started at `now`, with seeds or without.
    pub fn new(now: Nanos, has_seeds: bool) -> Self {
        Self {
            has_seeds,
            alone_since: Some(now),
            foreign_seen: 0,
            last_foreign: None,
            logged_foreign: None,
            logged_alone: None,
        }
    }

    /// Takes one round; returns the problems to log now.
    pub fn step(&mut self, round: Round) -> Vec<Trouble> {
        let now = round.now;
        let mut troubles = Vec::new();
        if round.foreign > self.foreign_seen {
            self.foreign_seen = round.foreign;
            self.last_foreign = Some((round.foreign_from, now));
            if self
                .logged_foreign
                .is_none_or(|at| now.saturating_sub(at) >= RELOG)
            {
                self.logged_foreign = Some(now);
                troubles.push(Trouble::Foreign {
                    from: round.foreign_from,
                });
            }
        }
        match round.live_peers {
            0 => {
                let since = *self.alone_since.get_or_insert(now);
                let alone_for = now.saturating_sub(since);
                let due = self.logged_alone.is_none_or(|at| now.saturating_sub(at) >= RELOG);
                if self.has_seeds && alone_for >= ALONE_AFTER && due {
                    self.logged_alone = Some(now);
                    troubles.push(Trouble::Alone {
                        seconds: alone_for / SECOND,
                    });
                }
            }
            _ => {
                self.alone_since = None;
                self.logged_alone = None;
            }
        }
        troubles
    }

    /// Whether this node has seeds but has heard no peer for
    /// [`ALONE_AFTER`] at `now`.
    pub fn alone(&self, now: Nanos) -> bool {
        self.has_seeds
            && self
                .alone_since
                .is_some_and(|since| now.saturating_sub(since) >= ALONE_AFTER)
    }

    /// What `/readyz` and `/v1/cluster` show.
    pub fn describe(&self, now: Nanos) -> Value {
        let foreign = self.last_foreign.map(|(from, at)| {
            json!({
                "from": from.map(|a| a.to_string()),
                "datagrams": self.foreign_seen,
                "last_ms_ago": now.saturating_sub(at) / MILLI,
            })
        });
        json!({ "alone": self.alone(now), "foreign_gossip": foreign })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(now: Nanos, live_peers: usize, foreign: u64) -> Round {
        Round {
            now,
            live_peers,
            foreign,
            foreign_from: Some("127.0.0.1:9000".parse().unwrap()),
        }
    }

    #[test]
    fn a_node_with_seeds_that_hears_no_peer_says_so_after_a_while_and_then_each_minute() {
        let mut watch = JoinWatch::new(0, true);
        assert!(watch.step(round(SECOND, 0, 0)).is_empty());
        assert_eq!(
            watch.step(round(ALONE_AFTER, 0, 0)),
            [Trouble::Alone { seconds: 5 }]
        );
        assert!(watch.alone(ALONE_AFTER));
        assert!(watch.step(round(ALONE_AFTER + SECOND, 0, 0)).is_empty());
        assert_eq!(watch.step(round(ALONE_AFTER + RELOG, 0, 0)).len(), 1);
        // A peer answers: no longer alone.
        assert!(watch.step(round(100 * SECOND, 1, 0)).is_empty());
        assert!(!watch.alone(100 * SECOND));
    }

    #[test]
    fn the_first_node_of_a_cluster_without_seeds_is_not_in_trouble() {
        let mut watch = JoinWatch::new(0, false);
        assert!(watch.step(round(100 * SECOND, 0, 0)).is_empty());
        assert_eq!(watch.describe(100 * SECOND)["alone"], false);
    }

    #[test]
    fn gossip_that_fails_authentication_is_reported_with_its_sender_once_a_minute() {
        let mut watch = JoinWatch::new(0, false);
        let troubles = watch.step(round(SECOND, 2, 3));
        assert_eq!(
            troubles,
            [Trouble::Foreign {
                from: Some("127.0.0.1:9000".parse().unwrap())
            }]
        );
        assert!(
            watch.step(round(2 * SECOND, 2, 9)).is_empty(),
            "within the minute"
        );
        assert!(watch.step(round(3 * SECOND, 2, 9)).is_empty(), "nothing new");
        assert_eq!(watch.step(round(70 * SECOND, 2, 10)).len(), 1);
        let shown = watch.describe(71 * SECOND);
        assert_eq!(shown["foreign_gossip"]["datagrams"], 10);
        assert_eq!(shown["foreign_gossip"]["from"], "127.0.0.1:9000");
    }
}
