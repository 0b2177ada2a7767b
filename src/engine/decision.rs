//! The answer to a check, in two forms.
//!
//! - [`Verdict`]: what the engine hands a caller on the hot path. It borrows
//!   names and limits from the config the check used and the outcomes from
//!   the stack, so making one copies nothing.
//! - [`Decision`]: an owned, serializable copy, for the HTTP API and tests.
//!
//! Both carry everything rate-limit headers need, for the request as a whole
//! and for each limit.

use compact_str::CompactString;
use serde::Serialize;
use smallvec::SmallVec;

use super::Denial;
use crate::clock::{Nanos, MILLI};
use crate::key::Scope;
use crate::limiter::Outcome;
use crate::policy::{AlgorithmName, Mode, NamedLimit};

/// A decision as the engine made it, borrowing from the config it used.
#[derive(Debug, Clone, Copy)]
pub struct Verdict<'a> {
    /// Who it is about.
    pub scope: Scope<'a>,
    /// The limits applied, in order; empty for an unlimited tier.
    pub limits: &'a [NamedLimit],
    /// One outcome per limit.
    pub outcomes: &'a [Outcome],
    /// Units the request cost (counted only if allowed).
    pub cost: u32,
    /// A deny tier decided: nothing passes.
    pub deny: Option<Denial>,
    /// The fraction of every limit this node enforced: below 1 while it
    /// cannot reach part of its cluster. Reports show the limit enforced.
    pub scale: f64,
    /// When the check was made (engine time, Unix ns): where a quota's
    /// reset instant is counted from.
    pub now: Nanos,
    /// The answer ([`allowed`](Self::allowed)), worked out once by the
    /// transaction.
    pub allowed: bool,
}

impl Verdict<'_> {
    /// Every enforced limit had room (and the cost was counted); never in a
    /// deny tier. Shadow limits do not count.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The enforced limit to report as "the" limit: when denied, the one
    /// that makes the caller wait longest (one that can never pass outranks
    /// any wait); when allowed, the one with the fewest units left. `None`
    /// when no limit is enforced.
    pub fn binding(&self) -> Option<usize> {
        let enforced = |(i, _): &(usize, &Outcome)| !self.limits[*i].shadow;
        let indexed = self.outcomes.iter().enumerate().filter(enforced);
        if self.allowed() {
            let capacity = |i: usize| self.limits[i].limit.capacity();
            indexed
                .min_by_key(|(i, o)| (o.remaining, capacity(*i)))
                .map(|(i, _)| i)
        } else {
            indexed
                .filter(|(_, o)| !o.allowed)
                .max_by_key(|(_, o)| o.retry_after.unwrap_or(Nanos::MAX))
                .map(|(i, _)| i)
        }
    }

    /// The decision, borrowing its names from the config: what the servers
    /// encode replies from, with nothing allocated for up to two limits.
    pub fn view(&self) -> Decision<&str> {
        if let Some(deny) = self.deny {
            return self.denied(deny);
        }
        let allowed = self.allowed();
        let limits: SmallVec<[LimitReport; 2]> = self
            .limits
            .iter()
            .zip(self.outcomes)
            .map(|(limit, outcome)| LimitReport::new(limit, outcome, self.scale, self.now))
            .collect();
        let binding = self.binding().map(|i| &limits[i]);
        let shadow_denied = self
            .limits
            .iter()
            .zip(self.outcomes)
            .filter(|(limit, outcome)| limit.shadow && !outcome.allowed)
            .map(|(limit, _)| limit.name.as_str())
            .collect();
        Decision {
            allowed,
            policy: self.scope.policy(),
            namespace: self.scope.namespace(),
            tier: self.scope.tier(),
            cost: if allowed && !limits.is_empty() {
                self.cost
            } else {
                0
            },
            limit: binding.map(|b| b.limit),
            remaining: binding.map(|b| b.remaining),
            reset_after_ms: binding.map_or(0, |b| b.reset_after_ms),
            retry_after_ms: binding.and_then(|b| b.retry_after_ms),
            reset_at: binding.and_then(|b| b.reset_at),
            limits,
            shadow_denied,
        }
    }

    /// A deny tier's decision: one limit of capacity 0, named for the
    /// tier, full again (and the request let through) when the assignment
    /// lapses; no retry time when it never does.
    fn denied(&self, deny: Denial) -> Decision<&str> {
        let wait = deny.until.map(|until| millis(until.saturating_sub(self.now)));
        let report = LimitReport {
            name: self.scope.tier().unwrap_or("deny").into(),
            algorithm: AlgorithmName::Deny,
            limit: 0,
            window_ms: wait.unwrap_or(0),
            allowed: false,
            remaining: 0,
            reset_after_ms: wait.unwrap_or(0),
            retry_after_ms: wait,
            reset_at: None,
            mode: Mode::Enforce,
        };
        Decision {
            allowed: false,
            policy: self.scope.policy(),
            namespace: self.scope.namespace(),
            tier: self.scope.tier(),
            cost: 0,
            limit: Some(0),
            remaining: Some(0),
            reset_after_ms: wait.unwrap_or(0),
            retry_after_ms: wait,
            reset_at: None,
            limits: SmallVec::from_iter([report]),
            shadow_denied: Vec::new(),
        }
    }

    /// An owned copy, to keep.
    pub fn to_decision(&self) -> Decision {
        self.view().to_owned_names()
    }
}

/// What one limit said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitReport {
    /// The limit's name.
    pub name: CompactString,
    /// Which algorithm (`token_bucket` or `sliding_window` in JSON).
    pub algorithm: AlgorithmName,
    /// Capacity: the burst or the window's count.
    pub limit: u64,
    /// The window, or the time a bucket takes to fill from empty.
    pub window_ms: u64,
    /// This limit had room.
    pub allowed: bool,
    /// Units left.
    pub remaining: u64,
    /// Time until this limit is full again.
    pub reset_after_ms: u64,
    /// When denied by this limit: time until the request would fit; null if
    /// it never can (cost above capacity).
    pub retry_after_ms: Option<u64>,
    /// A quota's next reset, RFC 3339; absent for other limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<ResetAt>,
    /// `enforce`, or `shadow` for a limit that is counted and reported but
    /// never decides.
    pub mode: Mode,
}

/// An instant shown as RFC 3339 (whole seconds, UTC): when a quota resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetAt(pub Nanos);

impl Serialize for ResetAt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let second = (self.0 / crate::clock::SECOND).min(i64::MAX as u64) as i64;
        match jiff::Timestamp::from_second(second) {
            Ok(at) => serializer.collect_str(&at),
            Err(_) => serializer.serialize_none(),
        }
    }
}

/// Nanoseconds to milliseconds, rounded up.
fn millis(nanos: Nanos) -> u64 {
    nanos.div_ceil(MILLI)
}

impl LimitReport {
    /// The report of `limit` enforced at `scale` (see [`Verdict::scale`]).
    fn new(limit: &NamedLimit, outcome: &Outcome, scale: f64, now: Nanos) -> Self {
        let capacity = limit.limit.capacity() as u64;
        Self {
            name: limit.name.clone(),
            algorithm: limit.limit.algorithm(),
            limit: match scale < 1.0 {
                true => (capacity as f64 * scale) as u64,
                false => capacity,
            },
            window_ms: millis(limit.limit.window()),
            allowed: outcome.allowed,
            remaining: outcome.remaining,
            reset_after_ms: millis(outcome.reset_after),
            retry_after_ms: outcome.retry_after.filter(|_| !outcome.allowed).map(millis),
            reset_at: match limit.limit.algorithm() {
                AlgorithmName::Quota => Some(ResetAt(now.saturating_add(outcome.reset_after))),
                _ => None,
            },
            mode: limit.mode(),
        }
    }
}

/// The answer to one check: owned names by default, borrowed ones
/// (`Decision<&str>`) from [`Verdict::view`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision<S = CompactString> {
    /// Every limit had room, and the cost was counted.
    pub allowed: bool,
    /// The policy checked; null for inline limits.
    pub policy: Option<S>,
    /// The inline namespace; absent for policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<S>,
    /// The tier applied; null for inline limits.
    pub tier: Option<S>,
    /// Units this check counted.
    pub cost: u32,
    /// Capacity of the limit closest to denying (the one headers report);
    /// null when the tier is unlimited.
    pub limit: Option<u64>,
    /// Units left under that limit; null when unlimited.
    pub remaining: Option<u64>,
    /// Time until that limit is full again.
    pub reset_after_ms: u64,
    /// When denied: time until the request would fit; null if allowed or if
    /// it never can.
    pub retry_after_ms: Option<u64>,
    /// When the limit reported resets, RFC 3339, if it is a quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<ResetAt>,
    /// Every limit's own answer, shadow limits included.
    pub limits: SmallVec<[LimitReport; 2]>,
    /// The shadow limits that would have denied this check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow_denied: Vec<S>,
}

impl<S> Decision<S> {
    /// The reports of the enforced limits: what headers and the binary
    /// protocol show.
    pub fn enforced(&self) -> impl Iterator<Item = &LimitReport> {
        self.limits.iter().filter(|limit| limit.mode == Mode::Enforce)
    }
}

impl Decision<&str> {
    fn to_owned_names(&self) -> Decision {
        Decision {
            allowed: self.allowed,
            policy: self.policy.map(CompactString::from),
            namespace: self.namespace.map(CompactString::from),
            tier: self.tier.map(CompactString::from),
            cost: self.cost,
            limit: self.limit,
            remaining: self.remaining,
            reset_after_ms: self.reset_after_ms,
            retry_after_ms: self.retry_after_ms,
            reset_at: self.reset_at,
            limits: self.limits.clone(),
            shadow_denied: self
                .shadow_denied
                .iter()
                .map(|name| CompactString::from(*name))
                .collect(),
        }
    }
}

impl<S> Decision<S> {
    /// Marks an allowed decision as rolled back: the batch it belonged to was
    /// denied, so its cost was never counted.
    pub fn roll_back(&mut self) {
        if !self.allowed {
            return;
        }
        for report in &mut self.limits {
            report.remaining = (report.remaining + self.cost as u64).min(report.limit);
        }
        if let (Some(remaining), Some(limit)) = (self.remaining.as_mut(), self.limit) {
            *remaining = (*remaining + self.cost as u64).min(limit);
        }
        self.cost = 0;
    }
}

/// The answer to an atomic batch: all counted, or none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchDecision {
    /// Every check was allowed and counted.
    pub allowed: bool,
    /// One decision per check, in order. When the batch is denied, those
    /// that had room show it, but nothing was counted for any.
    pub decisions: Vec<Decision>,
}
