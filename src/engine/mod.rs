//! The decision path: request in, [`Decision`] out.
//!
//! [`Engine::check`] resolves the request against the current config
//! (policy, tier, endpoint rule, limits, cost), finds the key's state in the
//! [`Store`], asks every limit, and counts the cost only if all the enforced
//! ones have room (shadow limits are counted as though enforced too, and
//! never decide). Batches do the same across several keys under one set of
//! locks, so that they count all or nothing.
//!
//! This file is the facade; the parts, top to bottom:
//! - `resolve`: request to policy, tier, limits, cost and key text;
//! - `config_cell`: the config in force, read through a copy per thread;
//! - `transaction`: on one locked key, every limit decides and the cost is
//!   counted in all or none (or given back, charged, or looked at);
//! - `observe`: alert-rule windows and quota warnings, after the lock;
//! - `decision`: the verdict and the decision callers get.
//!
//! The config is swapped atomically ([`Engine::replace_config`]); a check sees
//! either the old config or the new one, never a mix. Counters survive a swap
//! wherever the key and the meaning of its slots stay the same.

mod config_cell;
mod decision;
pub mod hook;
mod observe;
pub mod request;
mod resolve;
pub mod share;
pub mod tiers;
mod transaction;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use weir_cluster::nodes::NodeRegistry;

pub use crate::key::Scope;
pub use decision::{BatchDecision, Decision, LimitReport, ResetAt, Verdict};
pub use hook::{Alarm, AlarmSink, CheckEvent, Recorder, RecorderFactory};
pub use request::{CheckError, CheckRequest, RequestKey, Target, MAX_BATCH};
pub use resolve::{Denial, TierSource};
pub use share::{ClusterView, Shares};
pub use tiers::{AssignError, Assigned, Subject, TierChange, TierOverlay};

use crate::clock::{Clock, Nanos};
use crate::config::Config;
use crate::store::{Store, StoreStats};
use config_cell::ConfigCell;
use transaction::{enforced_allow, limits_of, mark_quotas, shadow_denied, At, Intent};

thread_local! {
    /// Reused for every single check on this thread: building a key
    /// allocates nothing once the buffer has grown.
    static KEY: RefCell<String> = RefCell::new(String::with_capacity(128));
}

/// The limiter: config, key store, clock.
pub struct Engine {
    config: ConfigCell,
    /// The version shown to users; in a cluster, the cluster-wide version.
    version: AtomicU64,
    overlay: TierOverlay,
    store: Store,
    clock: Arc<dyn Clock>,
    cluster: ClusterView,
    /// Where alarms go; alert rules are counted only once one is set.
    alarms: std::sync::OnceLock<Arc<dyn AlarmSink>>,
    /// This incarnation: start time in Unix ms. Its counts are a column of
    /// their own, apart from those of earlier runs (see [`NodeRegistry`]).
    generation: u64,
    /// Which column stands for which node incarnation: peers', and this
    /// node's earlier runs restored from a snapshot.
    nodes: NodeRegistry,
}

impl Engine {
    /// An engine enforcing `config`, reading time from `clock`.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Self {
        Self {
            store: Store::new(config.capacity(), clock.now()),
            config: ConfigCell::new(config),
            version: AtomicU64::new(1),
            overlay: TierOverlay::default(),
            cluster: ClusterView::default(),
            alarms: std::sync::OnceLock::new(),
            generation: clock.now() / crate::clock::MILLI,
            nodes: NodeRegistry::default(),
            clock,
        }
    }

    /// This incarnation's generation: its start time, Unix ms.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Column indices of node incarnations other than this one.
    pub fn nodes(&self) -> &NodeRegistry {
        &self.nodes
    }

    /// Starts counting alert rules, sending alarms to `sink` (once; a second
    /// sink is ignored).
    pub fn set_alarm_sink(&self, sink: Arc<dyn AlarmSink>) {
        let _ = self.alarms.set(sink);
    }

    /// The cluster as the accuracy rules see it; a standalone node leaves it
    /// empty.
    pub fn cluster_view(&self) -> &ClusterView {
        &self.cluster
    }

    /// The key store, for replication.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock checks read.
    pub fn now(&self) -> Nanos {
        self.clock.now()
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
    /// still exist are kept. Checks see the new config from the moment the
    /// version moves.
    pub fn replace_config(&self, config: Config) -> u64 {
        self.store.set_capacity(config.capacity());
        self.config.replace(config);
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Swaps in a config with a given version: one adopted from a peer.
    pub fn replace_config_at(&self, config: Config, version: u64) {
        self.store.set_capacity(config.capacity());
        self.config.replace(config);
        self.version.store(version, Ordering::SeqCst);
    }

    /// Runs `f` with the config in force (see [`ConfigCell::with`]).
    fn with_config<R>(&self, f: impl FnOnce(&Config) -> R) -> R {
        self.config.with(f)
    }

    /// Runtime tier assignments.
    pub fn tier_overlay(&self) -> &TierOverlay {
        &self.overlay
    }

    /// Assigns `tier` to a token, user, IP or endpoint at runtime, for good
    /// or for a while (`lasting`, from now). Returns when it lapses (Unix
    /// ns), if it does.
    ///
    /// # Errors
    /// [`AssignError`] for a bad id, a tier no policy has, or a full table.
    pub fn assign_tier(
        &self,
        subject: Subject,
        id: &str,
        tier: &str,
        lasting: Option<Nanos>,
    ) -> Result<Option<Nanos>, AssignError> {
        let exists =
            self.with_config(|config| config.policies.iter().any(|policy| policy.tier(tier).is_some()));
        let until = lasting.map(|d| self.clock.now().saturating_add(d));
        self.overlay.set(subject, id, tier, exists, until)?;
        Ok(until)
    }

    /// Shows every decision from now on to a recorder per store shard
    /// (see [`hook`]).
    pub fn install_recorders(&self, make: &RecorderFactory) {
        self.store.install_recorders(make);
    }

    /// Hands each shard's recorder to `visit`, one shard locked at a time.
    pub fn visit_recorders(&self, visit: impl FnMut(&mut dyn Recorder)) {
        self.store.visit_recorders(visit);
    }

    /// Counts for metrics.
    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// Drops keys that have expired, and tier assignments that lapsed;
    /// returns how many keys.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        self.overlay.sweep(now);
        self.store.sweep(now)
    }

    /// Checks one request and counts its cost if every limit has room.
    ///
    /// # Errors
    /// [`CheckError`] when the request cannot be checked at all (unknown
    /// policy or tier, wrong key attributes, bad inline limits). A denial is
    /// `Ok` with `allowed: false`.
    pub fn check(&self, request: &CheckRequest) -> Result<Decision, CheckError> {
        self.check_with(request, |verdict| verdict.to_decision())
    }

    /// [`check`](Self::check) for the hot path: hands the borrowed
    /// [`Verdict`] to `read` instead of building an owned decision. `read`
    /// runs after the key's lock is released.
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub fn check_with<R>(
        &self,
        request: &CheckRequest,
        read: impl FnOnce(&Verdict<'_>) -> R,
    ) -> Result<R, CheckError> {
        self.with_config(|config| {
            let now = self.clock.now();
            let (resolved, outcomes, allowed) = KEY.with_borrow_mut(|key| {
                key.clear();
                let resolved = resolve::resolve(config, &self.overlay, request, key, now)?;
                let hash = self.store.hash(key);
                let at = At {
                    key,
                    hash,
                    now,
                    shares: self.cluster.shares(),
                };
                let mut locked = self.store.lock(&[hash]);
                let outcomes = self.transact(&mut locked, &at, &resolved, Intent::Take);
                let limits = limits_of(&resolved);
                let allowed = resolved.deny.is_none() && enforced_allow(limits, &outcomes);
                if resolved.shadows || !resolved.quota_rules.is_empty() {
                    let passed = mark_quotas(&mut locked, &at, &resolved, &outcomes);
                    let shadow_denied = shadow_denied(limits, &outcomes, allowed);
                    locked.count(&at.event(&resolved, allowed, &shadow_denied));
                    drop(locked);
                    self.raise_quota_alarms(&resolved, key, &passed, now);
                } else {
                    locked.count(&at.event(&resolved, allowed, &[]));
                    drop(locked);
                }
                self.observe(&resolved, key, allowed, now);
                Ok::<_, CheckError>((resolved, outcomes, allowed))
            })?;
            Ok(read(&Verdict {
                scope: resolved.scope,
                limits: limits_of(&resolved),
                outcomes: &outcomes,
                cost: resolved.cost,
                deny: resolved.deny,
                // Read again rather than carried out of the closure: a
                // larger value to move costs every check a memcpy.
                scale: self.cluster.shares().map_or(1.0, |s| s.scale()),
                now,
                allowed,
            }))
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
        self.with_config(|config| {
            let now = self.clock.now();
            let mut keys = Vec::with_capacity(requests.len());
            let mut resolved = Vec::with_capacity(requests.len());
            for (index, request) in requests.iter().enumerate() {
                let mut key = String::new();
                let item = resolve::resolve(config, &self.overlay, request, &mut key, now).map_err(|e| {
                    CheckError::InBatch {
                        index,
                        source: Box::new(e),
                    }
                })?;
                keys.push(key);
                resolved.push(item);
            }
            // One view of the cluster for the whole batch, rollback included.
            let shares = self.cluster.shares();
            let at: Vec<At<'_>> = keys
                .iter()
                .map(|key| At {
                    key,
                    hash: self.store.hash(key),
                    now,
                    shares,
                })
                .collect();
            let hashes: Vec<u64> = at.iter().map(|at| at.hash).collect();
            let mut locked = self.store.lock(&hashes);
            // Each check's outcomes, for the quota rules once it is known
            // whether the batch counted.
            let mut outcomes_of = Vec::with_capacity(requests.len());
            let mut decisions: Vec<Decision> = resolved
                .iter()
                .zip(&at)
                .map(|(item, at)| {
                    let outcomes = self.transact(&mut locked, at, item, Intent::Take);
                    let verdict = Verdict {
                        scope: item.scope,
                        limits: limits_of(item),
                        outcomes: &outcomes,
                        cost: item.cost,
                        deny: item.deny,
                        scale: at.scale(),
                        now,
                        allowed: item.deny.is_none() && enforced_allow(limits_of(item), &outcomes),
                    };
                    let decision = verdict.to_decision();
                    outcomes_of.push(outcomes);
                    decision
                })
                .collect();
            let allowed = decisions.iter().all(|d| d.allowed);
            if !allowed {
                // Later checks first, so a key repeated in the batch is
                // given back in the reverse order it was taken.
                let taken = decisions.iter_mut().zip(&resolved).zip(&at).zip(&outcomes_of);
                for (((decision, item), at), outcomes) in taken.rev() {
                    if decision.allowed && decision.cost > 0 {
                        Self::roll_back(&mut locked, at, item, outcomes, decision.cost);
                        decision.roll_back();
                    }
                }
            }
            let mut passed = Vec::with_capacity(requests.len());
            for ((item, at), outcomes) in resolved.iter().zip(&at).zip(&outcomes_of).rev() {
                let shadow_denied = shadow_denied(limits_of(item), outcomes, allowed);
                locked.count(&at.event(item, allowed, &shadow_denied));
                // A denied batch changed nothing.
                if allowed {
                    passed.push(mark_quotas(&mut locked, at, item, outcomes));
                }
            }
            passed.reverse();
            drop(locked);
            for (i, (item, at)) in resolved.iter().zip(&at).enumerate() {
                self.observe(item, at.key, allowed, now);
                if let Some(passed) = passed.get(i) {
                    self.raise_quota_alarms(item, at.key, passed, now);
                }
            }
            Ok(BatchDecision { allowed, decisions })
        })
    }

    /// Gives back `cost` units (the request's cost, default 1) to every
    /// limit of the key, as when the work a request paid for did not happen.
    /// Returns the key's state afterwards, as a peek.
    ///
    /// # Errors
    /// The same as [`check`](Self::check).
    pub fn refund(&self, request: &CheckRequest) -> Result<Decision, CheckError> {
        self.settle(request, Intent::Give)
            .map(|explained| explained.decision)
    }

    /// Counts `cost` units (the request's cost, default 1) in every limit of
    /// the key whatever room they have: what a request used beyond what its
    /// check reserved. Returns the key's state afterwards, as a peek.
    ///
    /// # Errors
    /// The same as [`check`](Self::check).
    pub fn charge(&self, request: &CheckRequest) -> Result<Decision, CheckError> {
        self.settle(request, Intent::Charge)
            .map(|explained| explained.decision)
    }

    /// Frees one slot of every concurrency limit of the key: a request in
    /// flight is done. Returns the key's state afterwards, as a peek.
    ///
    /// # Errors
    /// The same as [`check`](Self::check).
    pub fn release(&self, request: &CheckRequest) -> Result<Decision, CheckError> {
        let mut one = request.clone();
        one.cost = Some(1);
        self.settle(&one, Intent::Release)
            .map(|explained| explained.decision)
    }

    /// Looks at a key without counting or recording anything: its tier and
    /// where that came from, and each limit's remaining and reset.
    ///
    /// # Errors
    /// The same as [`check`](Self::check).
    pub fn explain(&self, request: &CheckRequest) -> Result<Explained, CheckError> {
        self.settle(request, Intent::Look)
    }

    /// The key's state as a peek, after giving back (`Give`) or charging
    /// (`Charge`) the request's cost, and queueing the change for peers.
    fn settle(&self, request: &CheckRequest, intent: Intent) -> Result<Explained, CheckError> {
        self.with_config(|config| {
            let mut key = String::new();
            let now = self.clock.now();
            let resolved = resolve::resolve(config, &self.overlay, request, &mut key, now)?;
            let hash = self.store.hash(&key);
            let at = At {
                key: &key,
                hash,
                now,
                shares: self.cluster.shares(),
            };
            let outcomes = self.transact(&mut self.store.lock(&[hash]), &at, &resolved, intent);
            let verdict = Verdict {
                scope: resolved.scope,
                limits: limits_of(&resolved),
                outcomes: &outcomes,
                cost: 0,
                deny: resolved.deny,
                scale: at.scale(),
                now,
                allowed: resolved.deny.is_none() && enforced_allow(limits_of(&resolved), &outcomes),
            };
            Ok(Explained {
                decision: verdict.to_decision(),
                tier_source: resolved.tier_source,
                store_key: key.clone(),
            })
        })
    }
}

/// What a key view shows (see [`Engine::explain`]).
#[derive(Debug, Clone)]
pub struct Explained {
    /// What a peek decides now: remaining and reset per limit.
    pub decision: Decision,
    /// Where the tier came from; `None` for inline checks.
    pub tier_source: Option<TierSource>,
    /// The key in the store (and in usage summaries).
    pub store_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SECOND};
    use crate::policy::KeyAttr;

    const ONE: &str = "[policies.p]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.p.tiers.t]\nlimits = [{ algorithm = \"sliding_window\", rate = \"1/m\" }]\n";

    fn engine() -> Engine {
        Engine::new(
            Config::parse(ONE).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        )
    }

    fn user(name: &str) -> CheckRequest {
        by(KeyAttr::User, "p", name)
    }

    /// A check of `policy` for the key whose `attr` is `value`.
    fn by(attr: KeyAttr, policy: &str, value: &str) -> CheckRequest {
        let mut key = RequestKey::default();
        match attr {
            KeyAttr::User => key.user = Some(value.into()),
            KeyAttr::Token => key.token = Some(value.into()),
            KeyAttr::Ip => key.ip = Some(value.into()),
            KeyAttr::Endpoint => key.endpoint = Some(value.into()),
        }
        CheckRequest::policy(policy, key)
    }

    #[test]
    fn a_swapped_config_applies_to_the_next_check_on_the_same_thread() {
        let engine = engine();
        assert_eq!(engine.check(&user("a")).unwrap().limit, Some(1));
        engine.replace_config(Config::parse(&ONE.replace("1/m", "7/m")).unwrap());
        assert_eq!(engine.check(&user("a")).unwrap().limit, Some(7));
    }

    #[test]
    fn two_engines_on_one_thread_keep_their_own_configs() {
        let (first, second) = (engine(), engine());
        second.replace_config(Config::parse(&ONE.replace("1/m", "7/m")).unwrap());
        for _ in 0..3 {
            assert_eq!(first.check(&user("a")).unwrap().limit, Some(1));
            assert_eq!(second.check(&user("a")).unwrap().limit, Some(7));
        }
    }

    #[derive(Default)]
    struct Collect(std::sync::Mutex<Vec<(String, String, u64)>>);

    impl AlarmSink for Collect {
        fn alarm(&self, alarm: &Alarm<'_>) {
            let seen = (alarm.rule.to_string(), alarm.key.to_string(), alarm.count);
            self.0.lock().unwrap().push(seen);
        }
    }

    #[test]
    fn denials_past_a_rules_threshold_raise_alarms_with_the_count() {
        let rule = "[alerts]\n[[alerts.rules]]\nname = \"hammering\"\npolicy = \"p\"\nwhen = \"denied\"\nthreshold = 3\nwithin = \"1m\"\n";
        let engine = Engine::new(
            Config::parse(&format!("{ONE}{rule}")).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        );
        let sink = Arc::new(Collect::default());
        engine.set_alarm_sink(sink.clone());
        let allowed = (0..6)
            .filter(|_| engine.check(&user("mallory")).unwrap().allowed)
            .count();
        assert_eq!(allowed, 1, "1/m lets one through");
        engine.check(&user("alice")).unwrap();
        let alarms = sink.0.lock().unwrap().clone();
        let counts: Vec<u64> = alarms.iter().map(|a| a.2).collect();
        assert_eq!(counts, [3, 4, 5], "from the third denial on");
        assert!(alarms
            .iter()
            .all(|(rule, key, _)| rule == "hammering" && key.ends_with("umallory")));
    }

    #[test]
    fn a_key_moved_to_another_tier_keeps_its_alert_count_and_identity() {
        let blocked =
            "[policies.p.tiers.blocked]\nlimits = [{ algorithm = \"sliding_window\", rate = \"1/day\" }]\n";
        let rule = "[alerts]\n[[alerts.rules]]\nname = \"hammering\"\npolicy = \"p\"\nwhen = \"denied\"\nthreshold = 4\nwithin = \"1m\"\n";
        let engine = Engine::new(
            Config::parse(&format!("{ONE}{blocked}{rule}")).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        );
        let sink = Arc::new(Collect::default());
        engine.set_alarm_sink(sink.clone());
        // Two denials in tier t, then three in the penalty tier (after the
        // one check its 1/day lets through).
        for _ in 0..3 {
            engine.check(&user("mallory")).unwrap();
        }
        engine
            .assign_tier(Subject::User, "mallory", "blocked", None)
            .unwrap();
        for _ in 0..4 {
            assert_eq!(
                engine.check(&user("mallory")).unwrap().tier.as_deref(),
                Some("blocked")
            );
        }
        let alarms = sink.0.lock().unwrap().clone();
        let counts: Vec<u64> = alarms.iter().map(|a| a.2).collect();
        assert_eq!(counts, [4, 5], "the count goes on across the tier change");
        assert!(
            alarms.iter().all(|(_, key, _)| key == "p\0\0umallory"),
            "one identity, no tier in it: {alarms:?}"
        );
    }

    #[test]
    fn a_node_that_lost_a_third_of_its_cluster_reports_the_limit_it_enforces() {
        let bucket = "[policies.b]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.b.tiers.t]\nlimits = [{ algorithm = \"token_bucket\", rate = \"1/h\", burst = 30 }, { algorithm = \"sliding_window\", rate = \"30/h\" }]\n";
        let clock = Arc::new(ManualClock::new(1_800_000_000 * SECOND));
        let engine = Engine::new(Config::parse(bucket).unwrap(), clock.clone());
        let shape = weir_cluster::membership::ClusterShape {
            live: 2,
            expected: 3,
            rank: 0,
        };
        // A sync interval per check, so that the share rule (one interval's
        // part of what remains) does not stand in the way.
        engine.cluster_view().update(shape, crate::clock::MILLI);
        let request = by(KeyAttr::User, "b", "u");
        let first = engine.check(&request).unwrap();
        let reported: Vec<(u64, u64)> = first.limits.iter().map(|l| (l.limit, l.remaining)).collect();
        assert_eq!(reported, [(20, 19), (20, 19)], "two thirds of 30, one spent");
        assert_eq!((first.limit, first.remaining), (Some(20), Some(19)));
        // What the headers say is what the node then admits.
        let admitted = 1
            + (0..40)
                .filter(|_| {
                    clock.advance(std::time::Duration::from_millis(1));
                    engine.check(&request).unwrap().allowed
                })
                .count();
        assert_eq!(admitted, 20);
    }

    #[test]
    fn a_check_from_inside_a_verdict_reader_works() {
        let engine = engine();
        let inner = engine
            .check_with(&user("a"), |outer| {
                engine.replace_config(Config::parse(&ONE.replace("1/m", "7/m")).unwrap());
                (outer.allowed(), engine.check(&user("b")).unwrap().limit)
            })
            .unwrap();
        assert_eq!(inner, (true, Some(7)));
    }

    #[test]
    fn a_monthly_quota_in_new_york_resets_at_local_midnight_after_a_daylight_saving_month() {
        let plans = "[policies.api]\nkey = [\"token\"]\ndefault_tier = \"free\"\n[policies.api.tiers.free]\nlimits = [{ name = \"monthly\", algorithm = \"quota\", limit = 3, period = \"month\", reset = { timezone = \"America/New_York\" } }]\n";
        // 2027-03-31 23:59 in New York (EDT, UTC-4 since the 14th).
        let before = 1_806_551_940 * SECOND;
        let clock = Arc::new(ManualClock::new(before));
        let engine = Engine::new(Config::parse(plans).unwrap(), clock.clone());
        let check = by(KeyAttr::Token, "api", "tk");
        for _ in 0..3 {
            assert!(engine.check(&check).unwrap().allowed);
        }
        let denied = engine.check(&check).unwrap();
        assert!(!denied.allowed);
        assert_eq!(
            denied.retry_after_ms,
            Some(60_000),
            "one minute to April, local time"
        );
        let shown = serde_json::to_value(&denied).unwrap();
        assert_eq!(shown["reset_at"], "2027-04-01T04:00:00Z", "{shown}");
        clock.advance(std::time::Duration::from_secs(59));
        assert!(!engine.check(&check).unwrap().allowed, "still March in New York");
        clock.advance(std::time::Duration::from_secs(1));
        let april = engine.check(&check).unwrap();
        assert!(april.allowed);
        assert_eq!(april.remaining, Some(2));
        // A raised quota counts what this month already used.
        engine.replace_config(Config::parse(&plans.replace("limit = 3", "limit = 5")).unwrap());
        assert_eq!(engine.check(&check).unwrap().remaining, Some(3));
        // A new calendar is a new count.
        engine.replace_config(Config::parse(&plans.replace("America/New_York", "UTC")).unwrap());
        assert_eq!(engine.check(&check).unwrap().remaining, Some(2));
    }

    #[test]
    fn quota_rules_fire_once_as_a_keys_use_crosses_each_share_and_again_next_period() {
        let plans = "[policies.api]\nkey = [\"token\"]\ndefault_tier = \"free\"\n[policies.api.tiers.free]\nlimits = [{ name = \"daily\", algorithm = \"quota\", limit = 10, period = \"day\" }]\n[alerts]\n[[alerts.rules]]\nname = \"half\"\npolicy = \"api\"\nwhen = \"quota\"\nthreshold = 0.5\n[[alerts.rules]]\nname = \"all\"\npolicy = \"api\"\nwhen = \"quota\"\nthreshold = 1.0\n";
        // 2027-01-10 12:00 UTC.
        let clock = Arc::new(ManualClock::new(1_799_582_400 * SECOND));
        let engine = Engine::new(Config::parse(plans).unwrap(), clock.clone());
        let sink = Arc::new(Collect::default());
        engine.set_alarm_sink(sink.clone());
        let mut check = by(KeyAttr::Token, "api", "tk");
        check.cost = Some(3);
        for _ in 0..3 {
            assert!(engine.check(&check).unwrap().allowed);
        }
        check.cost = Some(1);
        assert!(engine.check(&check).unwrap().allowed, "the tenth unit");
        assert!(!engine.check(&check).unwrap().allowed);
        let fired = |sink: &Collect| -> Vec<(String, u64)> {
            sink.0
                .lock()
                .unwrap()
                .iter()
                .map(|(rule, _, count)| (rule.clone(), *count))
                .collect()
        };
        // 3, 6 (past 5: "half"), 9, 10 ("all"); a denial fires nothing.
        assert_eq!(fired(&sink), [("half".to_string(), 6), ("all".to_string(), 10)]);
        assert!(sink
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|(_, key, _)| key == "api\0\0ttk"));
        clock.advance(std::time::Duration::from_secs(12 * 3600));
        for _ in 0..5 {
            assert!(engine.check(&check).unwrap().allowed);
        }
        assert_eq!(fired(&sink).len(), 3, "a new day, a new crossing");
    }

    #[test]
    fn a_customers_own_quota_replaces_the_tiers_and_keeps_what_they_used() {
        let plans = "[policies.api]\nkey = [\"token\"]\ndefault_tier = \"free\"\n[policies.api.tiers.free]\nlimits = [{ name = \"monthly\", algorithm = \"quota\", limit = 3, period = \"month\" }]\n";
        let engine = Engine::new(
            Config::parse(plans).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        );
        let token = |token: &str| by(KeyAttr::Token, "api", token);
        for _ in 0..3 {
            assert!(engine.check(&token("acme")).unwrap().allowed);
        }
        assert!(!engine.check(&token("acme")).unwrap().allowed);
        let own = format!("{plans}[quota_overrides.tokens]\nacme = {{ monthly = 10 }}\n");
        engine.replace_config(Config::parse(&own).unwrap());
        let acme = engine.check(&token("acme")).unwrap();
        assert_eq!(
            (acme.allowed, acme.limit, acme.remaining),
            (true, Some(10), Some(6))
        );
        let other = engine.check(&token("other")).unwrap();
        assert_eq!((other.limit, other.remaining), (Some(3), Some(2)));
        let unknown = Config::parse(&own.replace("monthly = 10", "yearly = 10")).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("\"yearly\" is no quota limit's name; the quota limits are: monthly"),
            "{unknown}"
        );
    }

    #[test]
    fn a_shadow_limit_counts_as_if_enforced_beside_the_others_and_never_decides() {
        let tiers = "[policies.p]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.p.tiers.t]\nlimits = [{ name = \"real\", algorithm = \"sliding_window\", rate = \"3/m\" }, { name = \"strict\", algorithm = \"sliding_window\", rate = \"1/m\", mode = \"shadow\" }]\n";
        let engine = Engine::new(
            Config::parse(tiers).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        );
        let first = engine.check(&user("a")).unwrap();
        assert!(first.allowed && first.shadow_denied.is_empty());
        assert_eq!(
            (first.limit, first.remaining),
            (Some(3), Some(2)),
            "the enforced limit reports"
        );
        assert_eq!(first.limits[1].mode, crate::policy::Mode::Shadow);
        assert_eq!(first.limits[1].remaining, 0, "counted in the shadow limit too");
        for remaining in [1, 0] {
            let next = engine.check(&user("a")).unwrap();
            assert!(next.allowed, "a shadow limit never denies");
            assert_eq!(next.remaining, Some(remaining));
            assert_eq!(next.shadow_denied, ["strict"]);
        }
        let denied = engine.check(&user("a")).unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.shadow_denied, ["strict"], "it would deny too");
        // Enforced at last: it kept its count (one check, the first).
        engine.replace_config(Config::parse(&tiers.replace(", mode = \"shadow\"", "")).unwrap());
        let enforced = engine.check(&user("a")).unwrap();
        assert!(!enforced.allowed);
        assert!(enforced.shadow_denied.is_empty());
        let fresh = engine.check(&user("b")).unwrap();
        assert!(fresh.allowed);
        assert_eq!(fresh.remaining, Some(0), "the strict limit binds now");
    }

    #[test]
    fn a_denied_batch_takes_back_only_what_its_shadow_limits_counted() {
        let tiers = "[policies.p]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.p.tiers.t]\nlimits = [{ name = \"real\", algorithm = \"token_bucket\", rate = \"1/h\", burst = 5 }, { name = \"strict\", algorithm = \"token_bucket\", rate = \"1/h\", burst = 1, mode = \"shadow\" }]\n[policies.q]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.q.tiers.t]\nlimits = [{ algorithm = \"token_bucket\", rate = \"1/h\", burst = 1 }]\n";
        let engine = Engine::new(
            Config::parse(tiers).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        );
        let other = by(KeyAttr::User, "q", "a");
        engine.check(&other).unwrap();
        // Two checks of p (the second one over the shadow burst), then q, which is empty: all rolled back.
        let batch = engine
            .check_batch(&[by(KeyAttr::User, "p", "a"), by(KeyAttr::User, "p", "a"), other])
            .unwrap();
        assert!(!batch.allowed);
        let peek = engine.explain(&by(KeyAttr::User, "p", "a")).unwrap();
        let remaining: Vec<u64> = peek.decision.limits.iter().map(|l| l.remaining).collect();
        assert_eq!(remaining, [5, 1], "nothing kept, nothing taken back twice");
    }
}
