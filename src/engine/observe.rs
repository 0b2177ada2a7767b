//! Alert-rule observation: each check counted in the windows of the rules
//! that watch its key, an alarm raised where the cluster's count reached a
//! rule's threshold. Beside the check, not inside its transaction: a rule's
//! window is a store entry of its own, under the key's alert identity.

use std::cell::RefCell;

use super::hook::Alarm;
use super::resolve::Resolved;
use super::transaction::{fresh, reconcile, QuotaAlarms};
use super::Engine;
use crate::clock::Nanos;
use crate::key::{self, Key};
use crate::policy::Observed;

thread_local! {
    /// Reused for every window's store key on this thread.
    static OBSERVED: RefCell<String> = RefCell::new(String::with_capacity(160));
}

impl Engine {
    /// Counts a check on `key` (its text) in the windows of the alert rules
    /// that watch it (denials only, or every check), each in a replicated
    /// store entry of its own under the key's alert identity (the key
    /// without its tier: [`Key::encode_identity`]); raises an alarm where
    /// the cluster's count has reached the rule's threshold. Nothing
    /// happens until an alarm sink is set.
    pub(super) fn observe(&self, resolved: &Resolved<'_>, key: &str, allowed: bool, now: Nanos) {
        let observers = &resolved.observers;
        let Some(sink) = self.alarms.get().filter(|_| !observers.is_empty()) else {
            return;
        };
        // Read back from the text: only checks that rules watch pay for it.
        let Some(key) = Key::parse(key) else {
            return;
        };
        let shares = self.cluster.shares();
        for observer in observers
            .iter()
            .filter(|o| o.counts == Observed::Requests || !allowed)
        {
            OBSERVED.with_borrow_mut(|observed| {
                observed.clear();
                let identity_at = key::observed::start(&observer.rule, observed);
                key.encode_identity(observed);
                let window = std::slice::from_ref(&observer.window);
                let hash = self.store.hash(observed);
                let mut locked = self.store.lock(&[hash]);
                let entry = locked.entry(hash, observed, now, observer.window.retention, || fresh(window));
                reconcile(entry, window);
                let count = observer.count(&mut entry.limits[0], now, 1);
                if shares.is_some() && entry.mark_changed() {
                    locked.queue_changed(hash, observed);
                }
                drop(locked);
                if count >= observer.threshold {
                    sink.alarm(&Alarm {
                        rule: &observer.rule,
                        key: &observed[identity_at..],
                        count,
                        at: now,
                    });
                }
            });
        }
    }
}

impl Engine {
    /// Looks again at an alert rule's count after peers' counts were merged
    /// into it (`observed_key` as [`observe`](Self::observe) builds it), and
    /// raises an alarm if the cluster's count has reached the threshold: a
    /// key whose checks stop right at the threshold still fires.
    pub fn recheck_observed(&self, observed_key: &str) {
        let Some(sink) = self.alarms.get() else {
            return;
        };
        let Some((rule, key)) = key::observed::parse(observed_key) else {
            return;
        };
        let now = self.clock.now();
        let reached = self.with_config(|config| {
            let observer = config.alerts.observers.get(rule)?;
            let hash = self.store.hash(observed_key);
            let mut locked = self.store.lock(&[hash]);
            let entry = locked.get(hash, observed_key)?;
            reconcile(entry, std::slice::from_ref(&observer.window));
            let count = observer.count(&mut entry.limits[0], now, 0);
            (count >= observer.threshold).then_some(count)
        });
        if let Some(count) = reached {
            sink.alarm(&Alarm {
                rule,
                key,
                count,
                at: now,
            });
        }
    }
}

impl Engine {
    /// Raises an alarm for each quota rule (`when = "quota"`) whose mark
    /// the key's use reached for the first time this period on this node
    /// ([`mark_quotas`](super::transaction::mark_quotas)): each node raises
    /// it at most once per key and period, and the alerts room fires it once
    /// for the cluster within the rule's cooldown.
    pub(super) fn raise_quota_alarms(
        &self,
        resolved: &Resolved<'_>,
        key: &str,
        passed: &QuotaAlarms,
        now: Nanos,
    ) {
        let Some(sink) = self.alarms.get().filter(|_| !passed.is_empty()) else {
            return;
        };
        let mut identity = String::new();
        if let Some(key) = Key::parse(key) {
            key.encode_identity(&mut identity);
        }
        for &(rule, used) in passed {
            sink.alarm(&Alarm {
                rule: &resolved.quota_rules[rule].rule,
                key: &identity,
                count: used,
                at: now,
            });
        }
    }
}
