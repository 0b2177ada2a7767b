//! The per-key transaction: on one key, its shard locked, every limit
//! decides, and the cost is counted in all of them or in none (or given
//! back, or only looked at). The facade in `engine/mod.rs` resolves the
//! request and locks; this module decides.

use smallvec::SmallVec;

use super::hook::CheckEvent;
use super::resolve::Resolved;
use super::share::Shares;
use super::Engine;
use crate::clock::Nanos;
use crate::limiter::{Limit, LimitState, Outcome};
use crate::policy::NamedLimit;
use crate::store::{Entry, Locked, States};

impl Engine {
    /// The decision transaction on one key, its shard locked: every limit
    /// decides, and then, by `intent`, the cost is counted in all of them
    /// or in none ([`Intent::Take`]), given back ([`Intent::Give`]), or
    /// nothing changes ([`Intent::Look`]). When this node's counts moved
    /// and it has peers, the key is marked changed and queued for the next
    /// counter sync.
    pub(super) fn transact(
        &self,
        locked: &mut Locked<'_>,
        at: &At<'_>,
        resolved: &Resolved<'_>,
        intent: Intent,
    ) -> Outcomes {
        let limits = limits_of(resolved);
        if limits.is_empty() {
            return Outcomes::new();
        }
        let (now, cost, shares) = (at.now, resolved.cost, at.shares);
        let entry = match intent {
            Intent::Take | Intent::Charge => {
                locked.entry(at.hash, at.key, now, retention(limits), || fresh(limits))
            }
            Intent::Give | Intent::Release | Intent::Look => match locked.get(at.hash, at.key) {
                Some(entry) => entry,
                // Nothing counted yet: what a fresh key would answer.
                None => return evaluate_all(&mut fresh(limits), limits, now, 0, 1.0),
            },
        };
        let (outcomes, changed) = match intent {
            Intent::Take => {
                let outcomes = decide(entry, limits, now, cost, shares);
                let counted = cost > 0 && enforced_allow(limits, &outcomes);
                (outcomes, counted)
            }
            Intent::Give | Intent::Release => {
                reconcile(entry, limits);
                for (state, limit) in entry.limits.iter_mut().zip(limits) {
                    // A refund gives units back; a release frees a slot in
                    // flight; neither does the other's work.
                    let concurrency = matches!(limit.limit, Limit::Concurrency(_));
                    if concurrency == (intent == Intent::Release) {
                        limit.limit.refund(state, now, cost);
                    }
                }
                (decide(entry, limits, now, 0, shares), true)
            }
            Intent::Charge => {
                reconcile(entry, limits);
                let scale = at.scale();
                let charged = entry.limits.iter_mut().zip(limits);
                for (state, limit) in charged.filter(|(_, l)| !matches!(l.limit, Limit::Concurrency(_))) {
                    // Brings the state's slots up to now, then counts the
                    // cost whatever room there is.
                    limit.limit.evaluate_scaled(state, now, cost, scale);
                    limit.limit.commit_scaled(state, now, cost, scale);
                    if let Some(shares) = shares.filter(|_| cost > 0) {
                        state.note_spent(shares.interval_of(now), cost);
                    }
                }
                (decide(entry, limits, now, 0, shares), cost > 0)
            }
            Intent::Look => (decide(entry, limits, now, 0, shares), false),
        };
        if changed && shares.is_some() && entry.mark_changed() {
            locked.queue_changed(at.hash, at.key);
        }
        outcomes
    }

    /// Takes back what [`transact`](Self::transact) counted for a batch that
    /// was denied as a whole; no one else has seen it, the locks are held.
    /// `outcomes` are the transaction's: a shadow limit that would have
    /// denied counted nothing to take back.
    pub(super) fn roll_back(
        locked: &mut Locked<'_>,
        at: &At<'_>,
        resolved: &Resolved<'_>,
        outcomes: &[Outcome],
        cost: u32,
    ) {
        let scale = at.scale();
        if let Some(entry) = locked.get(at.hash, at.key) {
            let counted = entry.limits.iter_mut().zip(limits_of(resolved)).zip(outcomes);
            for ((state, limit), outcome) in counted {
                if !limit.shadow || outcome.allowed {
                    limit.limit.undo_commit(state, at.now, cost, scale);
                }
            }
        }
    }
}

/// Quota rules whose mark a check found passed, on this node and for the
/// first time this period: the rule's index in the tier's quota rules, and
/// the units used.
pub(super) type QuotaAlarms = SmallVec<[(usize, u64); 2]>;

/// Notes, in the key's quota states, the quota rules' marks (a share of a
/// quota) that its use has reached, and returns those reached for the first
/// time this period on this node. Use, not a crossing: counts merged from
/// peers can carry a key past a mark between two of its checks here. Call
/// after [`Engine::transact`] on the same key, its shard still locked.
pub(super) fn mark_quotas(
    locked: &mut Locked<'_>,
    at: &At<'_>,
    resolved: &Resolved<'_>,
    outcomes: &[Outcome],
) -> QuotaAlarms {
    let mut passed = QuotaAlarms::new();
    let rules = resolved.quota_rules;
    if rules.is_empty() {
        return passed;
    }
    let Some(entry) = locked.get(at.hash, at.key) else {
        return passed;
    };
    let states = entry.limits.iter_mut().zip(limits_of(resolved)).zip(outcomes);
    for ((state, limit), outcome) in states {
        let Limit::Quota(quota) = &limit.limit else {
            continue;
        };
        if limit.shadow {
            continue;
        }
        // The quota this node enforces, and what is left of it.
        let enforced = (quota.limit() as f64 * at.scale().min(1.0)) as u64;
        let used = enforced.saturating_sub(outcome.remaining);
        let period = quota.period_at(at.now).0 / crate::clock::SECOND;
        let mut marks = state.quota_marks(period);
        for (i, rule) in rules
            .iter()
            .enumerate()
            .take(crate::config::alerts::MAX_QUOTA_RULES)
        {
            let mark = ((rule.share * enforced as f64).ceil() as u64).max(1);
            if used >= mark && marks & (1 << i) == 0 {
                marks |= 1 << i;
                passed.push((i, used));
            }
        }
        state.set_quota_marks(period, marks);
    }
    passed
}

/// What a transaction does with the request's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// A check: count it in every limit if all have room, else in none.
    Take,
    /// A refund: give it back to every limit.
    Give,
    /// A charge settled after the fact: count it in every limit, whatever
    /// room they have (a key over its limit then waits longer); requests in
    /// flight stay as they are.
    Charge,
    /// A request in flight is done: free its slot in every concurrency
    /// limit.
    Release,
    /// A peek or key view: change nothing.
    Look,
}

/// A key in the store at a moment, with the cluster as seen then: where a
/// transaction happens.
pub(super) struct At<'k> {
    pub key: &'k str,
    pub hash: u64,
    pub now: Nanos,
    pub shares: Option<Shares>,
}

impl At<'_> {
    /// The fraction of every limit enforced here (see [`Shares::scale`]).
    pub fn scale(&self) -> f64 {
        self.shares.map_or(1.0, |s| s.scale())
    }

    /// The decision as the shard's recorder sees it.
    pub fn event<'e>(
        &'e self,
        resolved: &Resolved<'e>,
        allowed: bool,
        shadow_denied: &'e [&'e str],
    ) -> CheckEvent<'e> {
        CheckEvent {
            shadow_denied,
            scope: resolved.scope,
            key: self.key,
            key_hash: self.hash,
            allowed,
            cost: resolved.cost,
            named: resolved.named,
        }
    }
}

pub(super) type Outcomes = SmallVec<[Outcome; 2]>;

pub(super) fn limits_of<'a>(resolved: &'a Resolved<'_>) -> &'a [NamedLimit] {
    resolved.limits.as_deref().unwrap_or_default()
}

pub(super) fn fresh(limits: &[NamedLimit]) -> States {
    limits.iter().map(|l| l.limit.new_state()).collect()
}

pub(super) fn retention(limits: &[NamedLimit]) -> Nanos {
    limits.iter().map(|l| l.retention).max().unwrap_or(0)
}

/// Makes the entry's states match `limits` after a config change: a state
/// whose layout still matches a limit is kept, others start fresh.
pub(super) fn reconcile(entry: &mut Entry, limits: &[NamedLimit]) {
    let matches = entry.limits.len() == limits.len()
        && entry.limits.iter().zip(limits).all(|(s, l)| s.spec() == l.spec);
    if matches {
        return;
    }
    let mut old: Vec<LimitState> = std::mem::take(&mut entry.limits).into_vec();
    entry.limits = limits
        .iter()
        .map(|limit| {
            let spec = limit.spec;
            match old.iter().position(|s| s.spec() == spec) {
                Some(i) => old.swap_remove(i),
                None => limit.limit.new_state(),
            }
        })
        .collect();
}

pub(super) fn evaluate_all(
    states: &mut [LimitState],
    limits: &[NamedLimit],
    now: Nanos,
    cost: u32,
    scale: f64,
) -> Outcomes {
    // Pushed one by one: collecting the zipped iterator costs the SmallVec
    // more than the bucket decision itself (callgrind).
    let mut outcomes = Outcomes::new();
    for (limit, state) in limits.iter().zip(states.iter_mut()) {
        outcomes.push(limit.limit.evaluate_scaled(state, now, cost, scale));
    }
    outcomes
}

/// Asks every limit, and counts the cost in all of them only if all allow.
/// In a cluster (`shares`), a limit with room also needs this node's share
/// of it (see [`share`]).
/// The shadow limits that would have denied a check the enforced limits
/// allowed: what enforcing them would change. Empty, without a look at the
/// outcomes, for a denied check.
pub(super) fn shadow_denied<'l>(
    limits: &'l [NamedLimit],
    outcomes: &[Outcome],
    allowed: bool,
) -> ShadowDenied<'l> {
    let mut denied = ShadowDenied::new();
    if allowed {
        for (limit, outcome) in limits.iter().zip(outcomes) {
            if limit.shadow && !outcome.allowed {
                denied.push(limit.name.as_str());
            }
        }
    }
    denied
}

/// Names of shadow limits, on the stack for up to two.
pub(super) type ShadowDenied<'l> = SmallVec<[&'l str; 2]>;

/// Whether every enforced limit allows: the answer. Shadow limits never
/// change it.
pub(super) fn enforced_allow(limits: &[NamedLimit], outcomes: &[Outcome]) -> bool {
    limits
        .iter()
        .zip(outcomes)
        .all(|(limit, outcome)| limit.shadow || outcome.allowed)
}

pub(super) fn decide(
    entry: &mut Entry,
    limits: &[NamedLimit],
    now: Nanos,
    cost: u32,
    shares: Option<Shares>,
) -> Outcomes {
    reconcile(entry, limits);
    let scale = shares.map_or(1.0, |s| s.scale());
    let mut outcomes = evaluate_all(&mut entry.limits, limits, now, cost, scale);
    // Limits that had room but not for this node's share (one bit each).
    let mut share_denied = 0u64;
    if let Some(shares) = shares.filter(|_| cost > 0) {
        for (i, (outcome, state)) in outcomes.iter_mut().zip(entry.limits.iter()).enumerate() {
            let available = outcome.remaining + cost as u64;
            if outcome.allowed && !shares.allows(state.counter(), available, cost, now) {
                outcome.allowed = false;
                outcome.retry_after = Some(shares.until_next_interval(now));
                share_denied |= 1 << (i % 64);
            }
        }
    }
    // The common case first: every limit has room, so every limit counts.
    if outcomes.iter().all(|o| o.allowed) {
        for (state, limit) in entry.limits.iter_mut().zip(limits) {
            limit.limit.commit_scaled(state, now, cost, scale);
            if let Some(shares) = shares.filter(|_| cost > 0) {
                state.note_spent(shares.interval_of(now), cost);
            }
        }
        return outcomes;
    }
    // Counted where the enforced limits all allow: in each of them, and in
    // each shadow limit that would allow too, as though it were enforced
    // beside them. A limit whose outcome assumed the cost but did not
    // count it reports what it holds instead (one bit each).
    let allowed = enforced_allow(limits, &outcomes);
    let mut held = 0u64;
    let counted = entry.limits.iter_mut().zip(limits).zip(outcomes.iter());
    for (i, ((state, limit), outcome)) in counted.enumerate() {
        if allowed && outcome.allowed {
            limit.limit.commit_scaled(state, now, cost, scale);
            if let Some(shares) = shares.filter(|_| cost > 0) {
                state.note_spent(shares.interval_of(now), cost);
            }
        } else if outcome.allowed || share_denied & (1 << (i % 64)) != 0 {
            held |= 1 << (i % 64);
        }
    }
    if held != 0 {
        let limits_and_states = limits.iter().zip(entry.limits.iter_mut());
        for (i, (outcome, (limit, state))) in outcomes.iter_mut().zip(limits_and_states).enumerate() {
            if held & (1 << (i % 64)) != 0 {
                let held = limit.limit.evaluate_scaled(state, now, 0, scale);
                outcome.remaining = held.remaining;
                outcome.reset_after = held.reset_after;
            }
        }
    }
    outcomes
}
