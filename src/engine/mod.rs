//! The decision path: request in, [`Decision`] out.
//!
//! [`Engine::check`] resolves the request against the current config
//! (policy, tier, endpoint rule, limits, cost), finds the key's state in the
//! [`Store`], asks every limit, and counts the cost only if all of them have
//! room. Batches do the same across several keys under one set of locks, so
//! that they count all or nothing.
//!
//! The config is swapped atomically ([`Engine::replace_config`]); a check sees
//! either the old config or the new one, never a mix. Counters survive a swap
//! wherever the key and the meaning of its slots stay the same.

mod decision;
pub mod request;
mod resolve;
pub mod tiers;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use smallvec::SmallVec;

pub use decision::{BatchDecision, Decision, LimitReport, Scope};
pub use request::{CheckError, CheckRequest, RequestKey, Target, MAX_BATCH};
pub use tiers::{AssignError, Subject, TierOverlay};

use crate::clock::{Clock, Nanos};
use crate::config::Config;
use crate::limiter::{LimitState, Outcome};
use crate::policy::NamedLimit;
use crate::store::{Entry, Store, StoreStats};

thread_local! {
    /// Reused for every single check on this thread: building a key
    /// allocates nothing once the buffer has grown.
    static KEY: RefCell<String> = RefCell::new(String::with_capacity(128));
}

/// The limiter: config, key store, clock.
pub struct Engine {
    config: ArcSwap<Config>,
    version: AtomicU64,
    overlay: TierOverlay,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Engine {
    /// An engine enforcing `config`, reading time from `clock`.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Self {
        Self {
            store: Store::new(config.max_keys, clock.now()),
            config: ArcSwap::from_pointee(config),
            version: AtomicU64::new(1),
            overlay: TierOverlay::default(),
            clock,
        }
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Starts at 1 and grows by one with every config swap.
    pub fn config_version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Swaps in a new config; returns its version. Counters of keys that
    /// still exist are kept.
    pub fn replace_config(&self, config: Config) -> u64 {
        self.store.set_max_keys(config.max_keys);
        self.config.store(Arc::new(config));
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Runtime tier assignments.
    pub fn tier_overlay(&self) -> &TierOverlay {
        &self.overlay
    }

    /// Assigns `tier` to a token or user at runtime.
    ///
    /// # Errors
    /// [`AssignError`] for a bad id, a tier no policy has, or a full table.
    pub fn assign_tier(&self, subject: Subject, id: &str, tier: &str) -> Result<(), AssignError> {
        let config = self.config.load();
        let exists = config.policies.values().any(|policy| policy.tier(tier).is_some());
        self.overlay.set(subject, id, tier, exists)
    }

    /// Counts for metrics.
    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// Drops keys that have expired; returns how many.
    pub fn sweep(&self) -> usize {
        self.store.sweep(self.clock.now())
    }

    /// Checks one request and counts its cost if every limit has room.
    ///
    /// # Errors
    /// [`CheckError`] when the request cannot be checked at all (unknown
    /// policy or tier, wrong key attributes, bad inline limits). A denial is
    /// `Ok` with `allowed: false`.
    pub fn check(&self, request: &CheckRequest) -> Result<Decision, CheckError> {
        let config = self.config.load();
        KEY.with_borrow_mut(|key| {
            key.clear();
            let resolved = resolve::resolve(&config, &self.overlay, request, key)?;
            let Some(limits) = resolved.limits.as_deref() else {
                return Ok(Decision::unlimited(resolved.scope));
            };
            let now = self.clock.now();
            let hash = self.store.hash(key);
            let mut locked = self.store.lock(&[hash]);
            let entry = locked.entry(hash, key, now, retention(limits), || fresh(limits));
            let outcomes = decide(entry, limits, now, resolved.cost);
            let decision = Decision::from_outcomes(resolved.scope, resolved.cost, limits, &outcomes);
            locked.count(hash, decision.allowed);
            Ok(decision)
        })
    }

    /// Checks several requests atomically: if every one is allowed all are
    /// counted, otherwise none is.
    ///
    /// # Errors
    /// [`CheckError::BatchSize`] for an empty or oversized batch, or
    /// [`CheckError::InBatch`] naming the first invalid check; nothing is
    /// counted then.
    pub fn check_batch(&self, requests: &[CheckRequest]) -> Result<BatchDecision, CheckError> {
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(CheckError::BatchSize(requests.len()));
        }
        let config = self.config.load();
        let mut keys = Vec::with_capacity(requests.len());
        let mut resolved = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let mut key = String::new();
            let item = resolve::resolve(&config, &self.overlay, request, &mut key).map_err(|e| {
                CheckError::InBatch {
                    index,
                    source: Box::new(e),
                }
            })?;
            keys.push(key);
            resolved.push(item);
        }
        let hashes: Vec<u64> = keys.iter().map(|key| self.store.hash(key)).collect();
        let now = self.clock.now();
        let mut locked = self.store.lock(&hashes);
        let mut decisions = Vec::with_capacity(requests.len());
        for (i, item) in resolved.iter().enumerate() {
            let scope = item.scope.clone();
            let decision = match item.limits.as_deref() {
                None => Decision::unlimited(scope),
                Some(limits) => {
                    let entry = locked.entry(hashes[i], &keys[i], now, retention(limits), || fresh(limits));
                    let outcomes = decide(entry, limits, now, item.cost);
                    Decision::from_outcomes(scope, item.cost, limits, &outcomes)
                }
            };
            decisions.push(decision);
        }
        let allowed = decisions.iter().all(|d| d.allowed);
        for (i, decision) in decisions.iter_mut().enumerate().rev() {
            if !allowed && decision.allowed && decision.cost > 0 {
                if let Some(entry) = locked.get(hashes[i], &keys[i]) {
                    for (state, limit) in entry.limits.iter_mut().zip(limits_of(&resolved[i])) {
                        limit.limit.undo_commit(state, now, decision.cost);
                    }
                }
                decision.roll_back();
            }
            locked.count(hashes[i], allowed);
        }
        Ok(BatchDecision { allowed, decisions })
    }

    /// Gives back `cost` units (the request's cost, default 1) to every
    /// limit of the key, as when the work a request paid for did not happen.
    /// Returns the key's state afterwards, as a peek.
    ///
    /// # Errors
    /// The same as [`check`](Self::check).
    pub fn refund(&self, request: &CheckRequest) -> Result<Decision, CheckError> {
        let config = self.config.load();
        let mut key = String::new();
        let resolved = resolve::resolve(&config, &self.overlay, request, &mut key)?;
        let Some(limits) = resolved.limits.as_deref() else {
            return Ok(Decision::unlimited(resolved.scope));
        };
        let now = self.clock.now();
        let hash = self.store.hash(&key);
        let mut locked = self.store.lock(&[hash]);
        let outcomes = match locked.get(hash, &key) {
            Some(entry) => {
                reconcile(entry, limits);
                for (state, limit) in entry.limits.iter_mut().zip(limits) {
                    limit.limit.refund(state, now, resolved.cost);
                }
                decide(entry, limits, now, 0)
            }
            None => {
                let mut states = fresh(limits);
                evaluate_all(&mut states, limits, now, 0)
            }
        };
        Ok(Decision::from_outcomes(resolved.scope, 0, limits, &outcomes))
    }
}

type Outcomes = SmallVec<[Outcome; 2]>;

fn limits_of<'a>(resolved: &'a resolve::Resolved<'_>) -> &'a [NamedLimit] {
    resolved.limits.as_deref().unwrap_or(&[])
}

fn fresh(limits: &[NamedLimit]) -> Box<[LimitState]> {
    limits.iter().map(|l| l.limit.new_state()).collect()
}

fn retention(limits: &[NamedLimit]) -> Nanos {
    limits.iter().map(|l| l.limit.retention()).max().unwrap_or(0)
}

/// Makes the entry's states match `limits` after a config change: a state
/// whose layout still matches a limit is kept, others start fresh.
fn reconcile(entry: &mut Entry, limits: &[NamedLimit]) {
    let matches = entry.limits.len() == limits.len()
        && entry
            .limits
            .iter()
            .zip(limits)
            .all(|(s, l)| s.spec() == l.limit.spec_id());
    if matches {
        return;
    }
    let mut old: Vec<LimitState> = std::mem::take(&mut entry.limits).into_vec();
    entry.limits = limits
        .iter()
        .map(|limit| {
            let spec = limit.limit.spec_id();
            match old.iter().position(|s| s.spec() == spec) {
                Some(i) => old.swap_remove(i),
                None => limit.limit.new_state(),
            }
        })
        .collect();
}

fn evaluate_all(states: &mut [LimitState], limits: &[NamedLimit], now: Nanos, cost: u32) -> Outcomes {
    limits
        .iter()
        .zip(states.iter_mut())
        .map(|(limit, state)| limit.limit.evaluate(state, now, cost))
        .collect()
}

/// Asks every limit, and counts the cost in all of them only if all allow.
fn decide(entry: &mut Entry, limits: &[NamedLimit], now: Nanos, cost: u32) -> Outcomes {
    reconcile(entry, limits);
    let mut outcomes = evaluate_all(&mut entry.limits, limits, now, cost);
    if outcomes.iter().all(|o| o.allowed) {
        for (state, limit) in entry.limits.iter_mut().zip(limits) {
            limit.limit.commit(state, now, cost);
        }
        return outcomes;
    }
    // Denied: limits that had room report what they hold, since their
    // outcome assumed the cost would be counted and it was not.
    for ((outcome, limit), state) in outcomes.iter_mut().zip(limits).zip(entry.limits.iter_mut()) {
        if outcome.allowed {
            let held = limit.limit.evaluate(state, now, 0);
            outcome.remaining = held.remaining;
            outcome.reset_after = held.reset_after;
        }
    }
    outcomes
}
