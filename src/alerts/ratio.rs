//! `denied_ratio` rules: denied over all checks of a policy (or namespace,
//! or everything), cluster-wide, over the rule's window. Every few seconds
//! the rule's owner (rendezvous over the live nodes, by rule name) reads the
//! cluster's usage and fires if the ratio is at or past the threshold with
//! at least `min_checks` checks counted.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::Alerts;
use crate::clock::SECOND;
use crate::config::alerts::{AlertRule, RuleTarget};
use crate::config::file::RuleWhen;
use crate::usage::{Filter, Range, UsageReport};

/// How often ratios are read.
const EVERY: Duration = Duration::from_secs(5);

/// The shortest usage range covering `within`.
fn covering(within_s: u64) -> Range {
    [Range::FiveMinutes, Range::Hour, Range::Day]
        .into_iter()
        .find(|r| r.seconds() >= within_s)
        .unwrap_or(Range::Day)
}

/// Allowed and denied checks in `report` over the `within_s` seconds before
/// `now_s`, leaving out exempt tiers.
pub fn counts_within(report: &UsageReport, rule: &AlertRule, now_s: u64) -> (u64, u64) {
    let since = now_s.saturating_sub(rule.within / SECOND);
    let step = report.step_s.max(1);
    let mut sums = (0, 0);
    for scope in &report.scopes {
        if scope
            .tier
            .as_deref()
            .is_some_and(|t| rule.exempt_tiers.iter().any(|e| e == t))
        {
            continue;
        }
        for (i, (a, d)) in scope.allowed.iter().zip(&scope.denied).enumerate() {
            if report.start + (i as u64 + 1) * step > since {
                sums.0 += a;
                sums.1 += d;
            }
        }
    }
    sums
}

/// Reads every ratio rule this node owns, every [`EVERY`], forever.
pub async fn watch(alerts: Arc<Alerts>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut warned = false;
    loop {
        ticks.tick().await;
        let config = alerts.engine.config();
        let is_ratio = |r: &&AlertRule| r.when == RuleWhen::DeniedRatio;
        let Some(usage) = alerts.usage.get().cloned() else {
            if config.alerts.rules.iter().any(|r| is_ratio(&r)) && !warned {
                warn!("denied_ratio rules read the usage analytics, which --no-usage turned off: they will not fire");
                warned = true;
            }
            continue;
        };
        let rules = config.alerts.rules.iter().filter(is_ratio);
        for rule in rules.filter(|r| alerts.owns(&r.name)) {
            let filter = Filter {
                policy: match &rule.target {
                    RuleTarget::Policy(name) | RuleTarget::Namespace(name) => Some(name.to_string()),
                    RuleTarget::Any => None,
                },
                tier: None,
            };
            let range = covering(rule.within / SECOND);
            let cluster = alerts.cluster();
            let report = usage
                .cluster_report(alerts.node_id(), cluster.as_ref(), range, &filter, 0)
                .await;
            let (allowed, denied) = counts_within(&report, rule, alerts.engine.now() / SECOND);
            let checks = allowed + denied;
            if checks >= rule.min_checks && denied as f64 >= rule.threshold * checks as f64 {
                alerts.fire(rule, "", denied as f64 / checks as f64);
            }
        }
    }
}
