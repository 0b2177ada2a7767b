//! What one store shard records between two drains: counts per scope and
//! the shard's heavy hitters, allowed and denied apart.
//!
//! It runs on the check path under the shard's lock, so it is kept small:
//! find the scope (usually the one before), add two numbers, update a
//! [`ShardTop`]. The number of scopes a shard tracks is capped; inline
//! namespaces past the cap fold into one [`ScopeId::OtherNamespaces`].

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::top::{ShardTop, TopK};
use crate::engine::{CheckEvent, Recorder, Scope};

/// Most scopes one shard tracks between drains.
pub const MAX_SHARD_SCOPES: usize = 64;

/// Who counts are about: a policy's tier, an inline namespace, or every
/// namespace past the cap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeId {
    /// A policy and tier.
    Policy {
        /// Policy name.
        policy: CompactString,
        /// Tier name.
        tier: CompactString,
    },
    /// An inline namespace.
    Namespace(CompactString),
    /// Namespaces past the cap on tracked ones.
    OtherNamespaces,
}

impl ScopeId {
    /// The policy or namespace part: top keys are kept per policy.
    pub fn group(&self) -> ScopeId {
        match self {
            ScopeId::Policy { policy, .. } => ScopeId::Policy {
                policy: policy.clone(),
                tier: CompactString::default(),
            },
            other => other.clone(),
        }
    }

    fn matches(&self, scope: &Scope<'_>) -> bool {
        match (self, *scope) {
            (ScopeId::Policy { policy, tier }, Scope::Policy { policy: p, tier: t }) => {
                policy == p && tier == t
            }
            (ScopeId::Namespace(name), Scope::Inline { namespace }) => name == namespace,
            _ => false,
        }
    }

    fn of(scope: &Scope<'_>) -> Self {
        match *scope {
            Scope::Inline { namespace } => ScopeId::Namespace(namespace.into()),
            Scope::Policy { policy, tier } => ScopeId::Policy {
                policy: policy.into(),
                tier: tier.into(),
            },
        }
    }
}

/// Checks and units, allowed and denied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Checks allowed.
    pub allowed: u64,
    /// Checks denied.
    pub denied: u64,
    /// Units counted by allowed checks.
    pub allowed_cost: u64,
    /// Units denied checks asked for.
    pub denied_cost: u64,
    /// Allowed checks that a shadow limit would have denied: what
    /// enforcing the shadow limits would have changed.
    #[serde(default)]
    pub shadow_denied: u64,
}

impl Counts {
    /// Adds `other` in.
    pub fn add(&mut self, other: &Counts) {
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.allowed_cost += other.allowed_cost;
        self.denied_cost += other.denied_cost;
        self.shadow_denied += other.shadow_denied;
    }

    /// Nothing counted.
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// One scope's tally on one shard.
#[derive(Debug)]
struct ScopeTally {
    id: ScopeId,
    named: bool,
    counts: Counts,
    top_allowed: ShardTop,
    top_denied: ShardTop,
    top_shadow_denied: ShardTop,
    shadow_limits: ShadowCounts,
}

/// Per shadow limit (by name), the allowed checks it would have denied.
pub type ShadowCounts = Vec<(CompactString, u64)>;

/// Adds `count` for `limit` to `counts`.
pub fn add_shadow(counts: &mut ShadowCounts, limit: &str, count: u64) {
    match counts.iter_mut().find(|(name, _)| name == limit) {
        Some((_, sum)) => *sum += count,
        None => counts.push((limit.into(), count)),
    }
}

impl ScopeTally {
    fn new(id: ScopeId, named: bool) -> Self {
        Self {
            id,
            named,
            counts: Counts::default(),
            top_allowed: ShardTop::default(),
            top_denied: ShardTop::default(),
            top_shadow_denied: ShardTop::default(),
            shadow_limits: ShadowCounts::new(),
        }
    }
}

/// A drained scope: its counts and its heavy hitters.
#[derive(Debug)]
pub struct Drained {
    /// Whose.
    pub id: ScopeId,
    /// Counted since the last drain.
    pub counts: Counts,
    /// Heaviest allowed keys.
    pub top_allowed: TopK,
    /// Heaviest denied keys.
    pub top_denied: TopK,
    /// Heaviest keys a shadow limit would have denied.
    pub top_shadow_denied: TopK,
    /// Per shadow limit, the allowed checks it would have denied.
    pub shadow_limits: ShadowCounts,
    /// Named in the config: never folded past the cap.
    pub named: bool,
}

/// The recorder installed on each store shard.
#[derive(Default)]
pub struct ShardTally {
    /// Few (the policy tiers and namespaces in use), so a scan beats a hash;
    /// `last` makes a run of checks on one scope one comparison each.
    scopes: Vec<ScopeTally>,
    last: usize,
}

impl ShardTally {
    /// The tally of `scope`; past the cap, a namespace the config does not
    /// name (`named`) is counted with the other such namespaces.
    fn tally(&mut self, scope: &Scope<'_>, named: bool) -> &mut ScopeTally {
        if self.scopes.get(self.last).is_some_and(|t| t.id.matches(scope)) {
            return &mut self.scopes[self.last];
        }
        let index = match self.scopes.iter().position(|t| t.id.matches(scope)) {
            Some(index) => index,
            None if self.scopes.len() < MAX_SHARD_SCOPES || named || scope.namespace().is_none() => {
                self.scopes.push(ScopeTally::new(ScopeId::of(scope), named));
                self.scopes.len() - 1
            }
            None => match self.scopes.iter().position(|t| t.id == ScopeId::OtherNamespaces) {
                Some(index) => index,
                None => {
                    self.scopes.push(ScopeTally::new(ScopeId::OtherNamespaces, false));
                    self.scopes.len() - 1
                }
            },
        };
        self.last = index;
        &mut self.scopes[index]
    }

    /// Everything since the last drain, with heavy hitters as summaries of
    /// up to `k` keys; starts again, keeping only scopes still in use.
    pub fn drain(&mut self, k: usize, mut out: impl FnMut(Drained)) {
        self.scopes.retain(|t| !t.counts.is_zero());
        for tally in self.scopes.iter_mut() {
            out(Drained {
                id: tally.id.clone(),
                counts: std::mem::take(&mut tally.counts),
                top_allowed: tally.top_allowed.take(k),
                top_denied: tally.top_denied.take(k),
                top_shadow_denied: tally.top_shadow_denied.take(k),
                shadow_limits: std::mem::take(&mut tally.shadow_limits),
                named: tally.named,
            });
        }
    }
}

impl Recorder for ShardTally {
    fn record(&mut self, event: &CheckEvent<'_>) {
        let tally = self.tally(&event.scope, event.named);
        let cost = event.cost as u64;
        if !event.shadow_denied.is_empty() {
            tally.counts.shadow_denied += 1;
            tally.top_shadow_denied.add(event.key_hash, event.key);
            for limit in event.shadow_denied {
                add_shadow(&mut tally.shadow_limits, limit, 1);
            }
        }
        if event.allowed {
            tally.counts.allowed += 1;
            tally.counts.allowed_cost += cost;
            tally.top_allowed.add(event.key_hash, event.key);
        } else {
            tally.counts.denied += 1;
            tally.counts.denied_cost += cost;
            tally.top_denied.add(event.key_hash, event.key);
        }
    }
}
