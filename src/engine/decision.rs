//! The answer to a check: allowed or not, and everything rate-limit headers
//! need, for the request as a whole and for each limit.
//!
//! Built without heap allocation in the common case (short names, one or two
//! limits), since it is made on every request.

use compact_str::CompactString;
use serde::Serialize;
use smallvec::SmallVec;

use crate::clock::{Nanos, MILLI};
use crate::limiter::Outcome;
use crate::policy::NamedLimit;

/// What one limit said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitReport {
    /// The limit's name.
    pub name: CompactString,
    /// `token_bucket` or `sliding_window`.
    pub algorithm: &'static str,
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
}

/// The answer to one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Every limit had room, and the cost was counted.
    pub allowed: bool,
    /// The policy checked; null for inline limits.
    pub policy: Option<CompactString>,
    /// The inline namespace; absent for policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<CompactString>,
    /// The tier applied; null for inline limits.
    pub tier: Option<CompactString>,
    /// Units this check cost.
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
    /// Every limit's own answer.
    pub limits: SmallVec<[LimitReport; 2]>,
}

fn millis(nanos: Nanos) -> u64 {
    nanos.div_ceil(MILLI)
}

/// Who a decision is about: the policy and tier, or the inline namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// Policy name, for policy checks.
    pub policy: Option<CompactString>,
    /// Namespace, for inline checks.
    pub namespace: Option<CompactString>,
    /// Tier, for policy checks.
    pub tier: Option<CompactString>,
}

impl Decision {
    /// An unlimited tier's answer: allowed, nothing counted, no limits.
    pub fn unlimited(scope: Scope) -> Self {
        Self {
            allowed: true,
            policy: scope.policy,
            namespace: scope.namespace,
            tier: scope.tier,
            cost: 0,
            limit: None,
            remaining: None,
            reset_after_ms: 0,
            retry_after_ms: None,
            limits: SmallVec::new(),
        }
    }

    /// Combines the limits' outcomes. The reported limit is, when denied, the
    /// one that makes the caller wait longest; when allowed, the one with the
    /// fewest units left.
    pub fn from_outcomes(scope: Scope, cost: u32, limits: &[NamedLimit], outcomes: &[Outcome]) -> Self {
        let reports: SmallVec<[LimitReport; 2]> = limits
            .iter()
            .zip(outcomes)
            .map(|(limit, outcome)| LimitReport {
                name: limit.name.clone(),
                algorithm: limit.limit.algorithm(),
                limit: limit.limit.capacity() as u64,
                window_ms: millis(limit.limit.window()),
                allowed: outcome.allowed,
                remaining: outcome.remaining,
                reset_after_ms: millis(outcome.reset_after),
                retry_after_ms: (!outcome.allowed)
                    .then_some(outcome.retry_after.map(millis))
                    .flatten(),
            })
            .collect();
        let allowed = outcomes.iter().all(|o| o.allowed);
        let binding = if allowed {
            reports.iter().min_by_key(|r| (r.remaining, r.limit))
        } else {
            // A denial that can never pass (no retry time) outranks any wait.
            reports
                .iter()
                .filter(|r| !r.allowed)
                .max_by_key(|r| r.retry_after_ms.unwrap_or(u64::MAX))
        };
        let mut decision = Self::unlimited(scope);
        decision.allowed = allowed;
        decision.cost = if allowed { cost } else { 0 };
        if let Some(binding) = binding {
            decision.limit = Some(binding.limit);
            decision.remaining = Some(binding.remaining);
            decision.reset_after_ms = binding.reset_after_ms;
            decision.retry_after_ms = binding.retry_after_ms;
        }
        decision.limits = reports;
        decision
    }

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
