//! What `GET /v1/usage` answers, built from one node's [`History`] and
//! merged across nodes.
//!
//! A local report carries each policy's whole heavy-hitter summary and its
//! floor, so that merging reports from several nodes keeps the Space-Saving
//! bounds; the merged report is then cut to the number of keys asked for.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::history::{Filter, History, Range};
use super::tally::{Counts, ScopeId};
use super::top::{Counted, TopK};
pub use crate::cluster::peer_http::MissingNode;
use crate::engine::RequestKey;
use crate::key::{Key, KeyAttr};

/// Whose a store key is: policy and tier, or namespace; and its attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLabel {
    /// Policy, for policy keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Tier, for policy keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Namespace, for inline keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The attributes.
    pub key: RequestKey,
}

impl KeyLabel {
    /// Reads store key text ([`crate::key`]); an endpoint rule's part shows
    /// as the endpoint. Text that is no key (from a confused peer) reads
    /// as an empty label.
    pub fn of_store_key(store_key: &str) -> Self {
        let Some(key) = Key::parse(store_key) else {
            return KeyLabel::default();
        };
        let owned = |value: Option<&str>| value.map(String::from);
        KeyLabel {
            policy: owned(key.scope.policy()),
            // Empty in an alert identity, which has no tier.
            tier: owned(key.scope.tier().filter(|tier| !tier.is_empty())),
            namespace: owned(key.scope.namespace()),
            key: RequestKey {
                user: owned(key.attrs.get(KeyAttr::User)),
                ip: owned(key.attrs.get(KeyAttr::Ip)),
                token: owned(key.attrs.get(KeyAttr::Token)),
                endpoint: owned(key.attrs.get(KeyAttr::Endpoint).or(key.endpoint_rule)),
            },
        }
    }

    /// The label as people see it: an API token redacted
    /// ([`crate::redact`]).
    pub fn shown(mut self) -> Self {
        if let Some(token) = self.key.token.as_mut() {
            *token = crate::redact::token(token);
        }
        self
    }

    /// The policy or namespace: top keys are kept per group.
    fn group(&self) -> &str {
        self.policy
            .as_deref()
            .or(self.namespace.as_deref())
            .unwrap_or_default()
    }
}

/// A heavy hitter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopEntry {
    /// Whose key, decoded.
    #[serde(flatten)]
    pub label: KeyLabel,
    /// The store key, which identifies it across nodes.
    pub key_id: String,
    /// Checks counted, at least the true number.
    pub count: u64,
    /// At most this much of `count` may belong to other keys.
    pub error: u64,
    /// Nodes whose summaries listed the key.
    pub nodes: u32,
}

/// Floors of one group's summaries: a key not listed had at most this many.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupFloor {
    /// Policy or namespace.
    pub group: String,
    /// For allowed checks.
    pub allowed: u64,
    /// For denied checks.
    pub denied: u64,
    /// For allowed checks a shadow limit would have denied.
    #[serde(default)]
    pub shadow_denied: u64,
}

/// One scope's counts over the range.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopeReport {
    /// Policy, for policy scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Tier, for policy scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Inline namespace; `*` for namespaces past the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Over the whole range.
    pub counts: Counts,
    /// Allowed checks per step.
    pub allowed: Vec<u64>,
    /// Denied checks per step.
    pub denied: Vec<u64>,
}

impl ScopeReport {
    fn same_scope(&self, other: &ScopeReport) -> bool {
        (&self.policy, &self.tier, &self.namespace) == (&other.policy, &other.tier, &other.namespace)
    }
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageReport {
    /// `local` or `cluster`.
    pub scope: String,
    /// `5m`, `1h` or `24h`.
    pub range: String,
    /// Unix second of the first point.
    pub start: u64,
    /// Seconds per point.
    pub step_s: u64,
    /// Nodes whose counts are included.
    pub nodes: Vec<String>,
    /// Live nodes that did not answer in time.
    pub missing: Vec<MissingNode>,
    /// Over the range and every covered scope.
    pub totals: Counts,
    /// Allowed checks per step, every covered scope.
    pub allowed: Vec<u64>,
    /// Denied checks per step, every covered scope.
    pub denied: Vec<u64>,
    /// Per scope.
    pub scopes: Vec<ScopeReport>,
    /// Keys with the most allowed checks.
    pub top_allowed: Vec<TopEntry>,
    /// Keys with the most denied checks.
    pub top_denied: Vec<TopEntry>,
    /// Keys a shadow limit would have denied most (allowed checks only).
    #[serde(default)]
    pub top_shadow_denied: Vec<TopEntry>,
    /// Per policy: how many checks a key left out of the lists may have had.
    pub floors: Vec<GroupFloor>,
    /// Bytes the analytics hold, summed over nodes.
    pub memory_bytes: u64,
}

fn scope_report(id: &ScopeId, counts: Counts, points: &[Counts]) -> ScopeReport {
    let (policy, tier, namespace) = match id {
        ScopeId::Policy { policy, tier } => (Some(policy.to_string()), Some(tier.to_string()), None),
        ScopeId::Namespace(name) => (None, None, Some(name.to_string())),
        ScopeId::OtherNamespaces => (None, None, Some("*".to_string())),
    };
    ScopeReport {
        policy,
        tier,
        namespace,
        counts,
        allowed: points.iter().map(|p| p.allowed).collect(),
        denied: points.iter().map(|p| p.denied).collect(),
    }
}

fn entries(top: &TopK, tier: Option<&str>) -> Vec<TopEntry> {
    top.ranked()
        .into_iter()
        .map(|(key, counted)| TopEntry {
            label: KeyLabel::of_store_key(key).shown(),
            key_id: crate::redact::store_key(key).into_owned(),
            count: counted.count,
            error: counted.error,
            nodes: 1,
        })
        .filter(|e| tier.is_none_or(|t| e.label.tier.as_deref() == Some(t)))
        .collect()
}

impl UsageReport {
    /// This node's usage over `range` ending at `now` (Unix seconds).
    pub fn local(history: &History, node: &str, range: Range, now: u64, filter: &Filter) -> Self {
        let series = history.series(range, now, filter);
        let points = (range.seconds() / range.step()) as usize;
        let mut report = UsageReport {
            scope: "local".into(),
            range: range.name().into(),
            start: History::series_start(range, now),
            step_s: range.step(),
            nodes: vec![node.to_string()],
            missing: Vec::new(),
            totals: Counts::default(),
            allowed: vec![0; points],
            denied: vec![0; points],
            scopes: Vec::new(),
            top_allowed: Vec::new(),
            top_denied: Vec::new(),
            top_shadow_denied: Vec::new(),
            floors: Vec::new(),
            memory_bytes: history.bytes() as u64,
        };
        for scope in &series {
            report.totals.add(&scope.counts);
            report
                .scopes
                .push(scope_report(&scope.id, scope.counts, &scope.points));
        }
        report.sum_series();
        let tier = filter.tier.as_deref();
        for (id, pair) in history.tops(range, now, filter) {
            let group = match &id {
                ScopeId::Policy { policy, .. } => policy.to_string(),
                ScopeId::Namespace(name) => name.to_string(),
                ScopeId::OtherNamespaces => "*".into(),
            };
            report.top_allowed.extend(entries(&pair.allowed, tier));
            report.top_denied.extend(entries(&pair.denied, tier));
            report
                .top_shadow_denied
                .extend(entries(&pair.shadow_denied, tier));
            report.floors.push(GroupFloor {
                group,
                allowed: pair.allowed.floor(),
                denied: pair.denied.floor(),
                shadow_denied: pair.shadow_denied.floor(),
            });
        }
        report.rank();
        report
    }

    fn sum_series(&mut self) {
        self.allowed.iter_mut().for_each(|v| *v = 0);
        self.denied.iter_mut().for_each(|v| *v = 0);
        for scope in &self.scopes {
            for (sum, v) in self.allowed.iter_mut().zip(&scope.allowed) {
                *sum += v;
            }
            for (sum, v) in self.denied.iter_mut().zip(&scope.denied) {
                *sum += v;
            }
        }
    }

    fn rank(&mut self) {
        let order = |a: &TopEntry, b: &TopEntry| b.count.cmp(&a.count).then_with(|| a.key_id.cmp(&b.key_id));
        self.top_allowed.sort_by(order);
        self.top_denied.sort_by(order);
        self.top_shadow_denied.sort_by(order);
    }

    /// Keeps the `n` heaviest keys of each list.
    pub fn truncate_tops(&mut self, n: usize) {
        self.top_allowed.truncate(n);
        self.top_denied.truncate(n);
        self.top_shadow_denied.truncate(n);
    }

    /// Adds another node's report for the same range in. Series are aligned
    /// by their start; heavy hitters are merged per policy as summaries of
    /// up to `k` keys, so the bounds hold for the cluster.
    pub fn merge(&mut self, other: UsageReport, k: usize) {
        let shift = other.start as i64 - self.start as i64;
        let step = self.step_s.max(1) as i64;
        let offset = shift / step;
        self.nodes.extend(other.nodes);
        self.missing.extend(other.missing);
        self.totals.add(&other.totals);
        self.memory_bytes += other.memory_bytes;
        for scope in other.scopes {
            let at = self.scopes.iter().position(|s| s.same_scope(&scope));
            let target = match at {
                Some(i) => &mut self.scopes[i],
                None => {
                    let points = self.allowed.len();
                    self.scopes.push(ScopeReport {
                        counts: Counts::default(),
                        allowed: vec![0; points],
                        denied: vec![0; points],
                        ..scope.clone()
                    });
                    self.scopes.last_mut().expect("just pushed")
                }
            };
            target.counts.add(&scope.counts);
            add_shifted(&mut target.allowed, &scope.allowed, offset);
            add_shifted(&mut target.denied, &scope.denied, offset);
        }
        self.sum_series();
        self.top_allowed = merge_tops(
            &self.top_allowed,
            &other.top_allowed,
            &self.floors,
            &other.floors,
            k,
            |f| f.allowed,
        );
        self.top_denied = merge_tops(
            &self.top_denied,
            &other.top_denied,
            &self.floors,
            &other.floors,
            k,
            |f| f.denied,
        );
        self.top_shadow_denied = merge_tops(
            &self.top_shadow_denied,
            &other.top_shadow_denied,
            &self.floors,
            &other.floors,
            k,
            |f| f.shadow_denied,
        );
        for floor in other.floors {
            match self.floors.iter_mut().find(|f| f.group == floor.group) {
                Some(mine) => {
                    mine.allowed += floor.allowed;
                    mine.denied += floor.denied;
                    mine.shadow_denied += floor.shadow_denied;
                }
                None => self.floors.push(floor),
            }
        }
        self.rank();
    }
}

fn add_shifted(into: &mut [u64], from: &[u64], offset: i64) {
    for (i, v) in from.iter().enumerate() {
        let at = i as i64 + offset;
        if (0..into.len() as i64).contains(&at) {
            into[at as usize] += v;
        }
    }
}

/// Merges two nodes' lists group by group as [`TopK`] summaries.
fn merge_tops(
    mine: &[TopEntry],
    theirs: &[TopEntry],
    my_floors: &[GroupFloor],
    their_floors: &[GroupFloor],
    k: usize,
    floor_of: impl Fn(&GroupFloor) -> u64,
) -> Vec<TopEntry> {
    let floor =
        |floors: &[GroupFloor], group: &str| floors.iter().find(|f| f.group == group).map_or(0, &floor_of);
    let mut groups: BTreeMap<String, (Vec<&TopEntry>, Vec<&TopEntry>)> = BTreeMap::new();
    for entry in mine {
        groups
            .entry(entry.label.group().to_string())
            .or_default()
            .0
            .push(entry);
    }
    for entry in theirs {
        groups
            .entry(entry.label.group().to_string())
            .or_default()
            .1
            .push(entry);
    }
    let mut merged = Vec::new();
    for (group, (a, b)) in groups {
        let summary = |list: &[&TopEntry], floor: u64| {
            let parts = list.iter().map(|e| {
                let counted = Counted {
                    count: e.count,
                    error: e.error,
                };
                (Arc::<str>::from(e.key_id.as_str()), counted)
            });
            TopK::from_parts(k, parts, floor)
        };
        let mut top = summary(&a, floor(my_floors, &group));
        top.merge(&summary(&b, floor(their_floors, &group)));
        let nodes = |id: &str| {
            let listed = |list: &[&TopEntry]| list.iter().find(|e| e.key_id == id).map_or(0, |e| e.nodes);
            listed(&a) + listed(&b)
        };
        for mut entry in entries(&top, None) {
            entry.nodes = nodes(&entry.key_id);
            merged.push(entry);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_policy_and_inline_store_keys() {
        let policy = KeyLabel::of_store_key("per_ip\0free\0i203.0.113.7");
        assert_eq!(policy.policy.as_deref(), Some("per_ip"));
        assert_eq!(policy.tier.as_deref(), Some("free"));
        assert_eq!(policy.key.ip.as_deref(), Some("203.0.113.7"));
        let inline = KeyLabel::of_store_key("\u{1}drf:anon\0ualice\0ePOST /orders");
        assert_eq!(inline.namespace.as_deref(), Some("drf:anon"));
        assert_eq!(inline.key.user.as_deref(), Some("alice"));
        assert_eq!(inline.key.endpoint.as_deref(), Some("POST /orders"));
    }
}
