//! Abuse alerts: rules from the config's `[alerts]`, fired once per key per
//! cooldown across the whole cluster, delivered by signed webhook, and
//! optionally a penalty: the key moved to another tier for a while.
//!
//! How an alert comes about:
//! 1. The engine counts each watched check in the rule's replicated window
//!    (`config::alerts`) and, at or past the threshold, hands an
//!    [`Alarm`] to [`Alerts`] (the [`AlarmSink`]): a non-blocking send.
//! 2. The alarm goes to the key's owner, picked by rendezvous hashing over
//!    the live nodes ([`owner`]); another node forwards it over signed
//!    HTTP, and falls back to the next node if the owner cannot be reached.
//! 3. The owner fires unless the key is in its cooldown: it records the
//!    alert ([`record`]), applies the penalty (a runtime tier assignment
//!    with an expiry, replicated like any other), queues the webhooks
//!    ([`webhook`]), and tells its live peers the cooldown, so that a node
//!    that takes the key over does not fire again.
//!
//! `denied_ratio` rules watch a whole policy: the rule's owner reads the
//! cluster's usage every few seconds ([`ratio`]).

pub mod owner;
pub mod ratio;
pub mod record;
pub mod webhook;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::clock::{Nanos, MILLI, SECOND};
use crate::cluster::{peer_http, ClusterNode};
use crate::config::alerts::AlertRule;
use crate::config::file::WebhookFormat;
use crate::engine::{Alarm, AlarmSink, CheckRequest, Engine, Subject};
use crate::policy::KeyAttr;
use crate::usage::{KeyLabel, Usage};
use record::{rfc3339, AlertRecord, PenaltyApplied};
use webhook::{Delivery, Webhooks};

/// Alarms waiting to be handled; past this they are dropped and counted.
const PENDING: usize = 4096;
/// Alerts kept for `GET /v1/alerts`.
pub const RECENT: usize = 1000;
/// Cooldowns remembered at most; expired ones go first.
const MAX_COOLDOWNS: usize = 100_000;
/// A node hands on an alarm for a key at most this often.
const RESEND: Nanos = SECOND;
/// How long forwarding to one node may take.
const FORWARD_DEADLINE: Duration = Duration::from_secs(1);
/// The path peers forward alarms to.
pub const FORWARD_PATH: &str = "/v1/internal/alarm";

/// An alarm handed to the owner: the body of `POST /v1/internal/alarm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forwarded {
    /// The rule.
    pub rule: String,
    /// The key's alert identity (its store key without the tier).
    pub key: String,
    /// The count seen.
    pub count: u64,
}

/// A cooldown the firing node tells its peers about: the body of
/// `POST /v1/internal/cooldown`. A peer that becomes the key's owner later
/// (the firing node died or left) then does not fire again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cooldown {
    /// The rule.
    pub rule: String,
    /// The key's alert identity (empty for a whole-policy rule).
    pub key: String,
    /// When the cooldown ends, Unix ms.
    pub until_ms: u64,
}

/// The path cooldowns are told to peers on.
pub const COOLDOWN_PATH: &str = "/v1/internal/cooldown";

/// Counters for metrics.
#[derive(Debug, Default)]
struct AlertStats {
    fired: Mutex<BTreeMap<String, u64>>,
    alarms_dropped: AtomicU64,
    forwarded: AtomicU64,
    unsigned: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// (rule, key) to the end of its cooldown, on the node that fired.
    cooldowns: HashMap<(CompactString, String), Nanos>,
    /// (rule, key) to when this node may hand it on again.
    handed_on: HashMap<(CompactString, String), Nanos>,
    /// Newest first.
    recent: VecDeque<AlertRecord>,
    sequence: u64,
}

/// The alerts room of one node.
pub struct Alerts {
    engine: Arc<Engine>,
    /// Weak: the node must be the cluster's only owner when it leaves.
    cluster: OnceLock<Weak<ClusterNode>>,
    usage: OnceLock<Arc<Usage>>,
    node_id: OnceLock<String>,
    alarms: mpsc::Sender<Forwarded>,
    inbox: Mutex<Option<mpsc::Receiver<Forwarded>>>,
    state: Mutex<State>,
    stats: AlertStats,
    /// Webhook deliveries.
    pub webhooks: Arc<Webhooks>,
}

thread_local! {
    /// The last alarm this thread handed on: its (room, rule, key) hash and
    /// time.
    /// An abuser past a threshold raises an alarm on every check; repeats
    /// within [`RESEND`] stop here, before anything is allocated.
    static LAST_ALARM: std::cell::Cell<(u64, Nanos)> = const { std::cell::Cell::new((0, 0)) };
}

impl AlarmSink for Alerts {
    fn alarm(&self, alarm: &Alarm<'_>) {
        use std::hash::BuildHasher;
        // The room's address too: several engines may share a thread.
        let room = self as *const Self as usize;
        let hash = foldhash::fast::FixedState::with_seed(0xa1a2).hash_one((room, alarm.rule, alarm.key));
        let (last, at) = LAST_ALARM.get();
        if last == hash && alarm.at.saturating_sub(at) < RESEND {
            return;
        }
        LAST_ALARM.set((hash, alarm.at));
        let forwarded = Forwarded {
            rule: alarm.rule.into(),
            key: alarm.key.into(),
            count: alarm.count,
        };
        if self.alarms.try_send(forwarded).is_err() {
            self.stats.alarms_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Alerts {
    /// Starts receiving `engine`'s alarms. Call [`run`](Self::run) to
    /// handle them.
    pub fn install(engine: Arc<Engine>) -> Arc<Self> {
        let (alarms, inbox) = mpsc::channel(PENDING);
        let alerts = Arc::new(Self {
            engine: engine.clone(),
            cluster: OnceLock::new(),
            usage: OnceLock::new(),
            node_id: OnceLock::new(),
            alarms,
            inbox: Mutex::new(Some(inbox)),
            state: Mutex::default(),
            stats: AlertStats::default(),
            webhooks: Arc::default(),
        });
        engine.set_alarm_sink(alerts.clone());
        alerts
    }

    /// The cluster, for owners and forwarding; a node without one owns
    /// every key.
    pub fn set_cluster(&self, node: &Arc<ClusterNode>) {
        let _ = self.cluster.set(Arc::downgrade(node));
        let _ = self.node_id.set(node.node_id().to_string());
    }

    fn cluster(&self) -> Option<Arc<ClusterNode>> {
        self.cluster.get().and_then(Weak::upgrade)
    }

    /// The usage analytics, for `denied_ratio` rules.
    pub fn set_usage(&self, usage: Arc<Usage>) {
        let _ = self.usage.set(usage);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a whole-value insert or push.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        self.node_id.get().map_or("local", String::as_str)
    }

    /// Handles alarms, delivers webhooks and watches ratios until aborted.
    pub async fn run(self: Arc<Self>) {
        let taken = self.inbox.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut inbox) = taken else {
            return;
        };
        // Dropped (so aborted) with this future when the node stops.
        let mut helpers = tokio::task::JoinSet::new();
        helpers.spawn(self.webhooks.clone().run());
        helpers.spawn(ratio::watch(self.clone()));
        while let Some(alarm) = inbox.recv().await {
            self.hand_on(alarm);
        }
    }

    /// Sends an alarm to its owner (this node, or forwarded), at most once
    /// a second per key while the key stays past the threshold.
    fn hand_on(self: &Arc<Self>, alarm: Forwarded) {
        let now = self.engine.now();
        {
            let mut state = self.state();
            let id = (CompactString::from(alarm.rule.as_str()), alarm.key.clone());
            if state.handed_on.get(&id).is_some_and(|until| *until > now) {
                return;
            }
            if state.handed_on.len() >= MAX_COOLDOWNS {
                state.handed_on.retain(|_, until| *until > now);
            }
            state.handed_on.insert(id, now + RESEND);
        }
        let Some(cluster) = self.cluster() else {
            self.fire_named(&alarm.rule, &alarm.key, alarm.count as f64);
            return;
        };
        let peers = cluster.peers();
        let me = cluster.node_id().to_string();
        let order = owner::ranked(&alarm.key, &me, &peers);
        if order.first() == Some(&me) {
            self.fire_named(&alarm.rule, &alarm.key, alarm.count as f64);
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let body = serde_json::to_vec(&alarm).unwrap_or_default();
            for id in order {
                if id == me {
                    this.fire_named(&alarm.rule, &alarm.key, alarm.count as f64);
                    return;
                }
                let Some(addr) = peers.iter().find(|p| p.0 == id).and_then(|p| p.1) else {
                    continue;
                };
                let to = (id.as_str(), addr);
                match peer_http::post_json(&cluster, to, FORWARD_PATH, body.clone(), FORWARD_DEADLINE).await {
                    Ok(_) => {
                        this.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(error) => debug!(owner = %id, %error, "alarm not forwarded; trying the next node"),
                }
            }
        });
    }

    /// Fires `rule` for `key` unless the key is in the rule's cooldown here;
    /// true if it fired. Unknown rules (a config changed meanwhile) are
    /// ignored.
    pub fn fire_named(&self, rule: &str, key: &str, count: f64) -> bool {
        let config = self.engine.config();
        match config.alerts.rule(rule) {
            Some(rule) => self.fire(rule, key, count),
            None => false,
        }
    }

    /// Whether this node fires the whole-policy rule `name`: its owner
    /// among the live nodes.
    fn owns(&self, name: &str) -> bool {
        let Some(cluster) = self.cluster() else {
            return true;
        };
        let ranked = owner::ranked(name, cluster.node_id(), &cluster.peers());
        ranked.first().map(String::as_str) == Some(cluster.node_id())
    }

    /// Fires `rule` for `key` (empty for a whole-policy rule).
    fn fire(&self, rule: &AlertRule, key: &str, count: f64) -> bool {
        let now = self.engine.now();
        let sequence = {
            let mut state = self.state();
            let id = (rule.name.clone(), key.to_string());
            if state.cooldowns.get(&id).is_some_and(|until| *until > now) {
                return false;
            }
            if state.cooldowns.len() >= MAX_COOLDOWNS {
                state.cooldowns.retain(|_, until| *until > now);
            }
            state.cooldowns.insert(id, now + rule.cooldown);
            state.sequence += 1;
            state.sequence
        };
        self.tell_peers(Cooldown {
            rule: rule.name.to_string(),
            key: key.to_string(),
            until_ms: (now + rule.cooldown) / MILLI,
        });
        let label = match key.is_empty() {
            true => None,
            false => Some(self.label_now(key)),
        };
        let mut penalty = label.as_ref().and_then(|label| self.penalize(rule, label, now));
        // Records go to people (webhooks, the API, the dashboard): tokens
        // show redacted from here on.
        let label = label.map(KeyLabel::shown);
        if let Some(applied) = penalty.as_mut().filter(|p| p.subject == "token") {
            applied.id = crate::redact::token(&applied.id);
        }
        let fired_at_ms = now / MILLI;
        let (policy, namespace, tier, attrs) = match label {
            Some(l) => (l.policy, l.namespace, l.tier, l.key),
            None => (rule_policy(rule), None, None, Default::default()),
        };
        let record = AlertRecord {
            id: format!("{}-{}-{sequence}", self.node_id(), fired_at_ms),
            rule: rule.name.to_string(),
            severity: rule.severity,
            when: rule.when,
            policy,
            namespace,
            tier,
            key: attrs,
            count,
            threshold: rule.threshold,
            window_s: rule.within as f64 / SECOND as f64,
            node: self.node_id().to_string(),
            fired_at_ms,
            fired_at: rfc3339(fired_at_ms),
            penalty,
        };
        // Token values are secrets: the log names the rule and policy only.
        let policy = record
            .policy
            .as_deref()
            .or(record.namespace.as_deref())
            .unwrap_or("*");
        info!(rule = %rule.name, %policy, penalty = record.penalty.is_some(), "alert fired");
        *self
            .stats
            .fired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(record.rule.clone())
            .or_default() += 1;
        self.notify(rule, &record);
        let mut state = self.state();
        state.recent.push_front(record);
        state.recent.truncate(RECENT);
        true
    }

    /// Whose an alert key is, with the tier it resolves to now, before any
    /// penalty of this alert: the tier the abuser was in when the rule fired.
    fn label_now(&self, key: &str) -> KeyLabel {
        let mut label = KeyLabel::of_store_key(key);
        if let Some(policy) = &label.policy {
            let request = CheckRequest::policy(policy, label.key.clone());
            label.tier = self
                .engine
                .explain(&request)
                .ok()
                .and_then(|e| e.decision.tier)
                .map(String::from);
        }
        label
    }

    /// Moves the key's first attribute (token, user, IP, endpoint) to the
    /// rule's penalty tier for the penalty's time, unless that penalty is
    /// already in force: for good, or set within the rule's cooldown (by
    /// this rule for another key of the same subject, on any node). Returns
    /// the penalty in force either way.
    fn penalize(&self, rule: &AlertRule, label: &KeyLabel, now: Nanos) -> Option<PenaltyApplied> {
        let penalty = rule.penalty.as_ref()?;
        let (subject, id) = Subject::ALL
            .into_iter()
            .find_map(|s| Some((s, label.key.get(s.attr())?.to_string())))?;
        let in_force = self.engine.tier_overlay().assigned(subject, &id, now);
        if let Some(assigned) = in_force.filter(|a| a.tier == penalty.tier) {
            let recent = |until: Nanos| {
                until
                    .saturating_sub(penalty.lasting)
                    .saturating_add(rule.cooldown)
                    > now
            };
            if assigned.until.is_none_or(recent) {
                return Some(PenaltyApplied {
                    subject: subject.name().into(),
                    id,
                    tier: penalty.tier.to_string(),
                    until_ms: assigned.until.map_or(0, |u| u.div_ceil(MILLI)),
                });
            }
        }
        match self
            .engine
            .assign_tier(subject, &id, &penalty.tier, Some(penalty.lasting))
        {
            Ok(until) => Some(PenaltyApplied {
                subject: subject.name().into(),
                id,
                tier: penalty.tier.to_string(),
                until_ms: until.map_or(0, |u| u.div_ceil(MILLI)),
            }),
            Err(error) => {
                warn!(rule = %rule.name, %error, "penalty not applied");
                None
            }
        }
    }

    /// Queues the rule's webhooks for `record`.
    fn notify(&self, rule: &AlertRule, record: &AlertRecord) {
        if rule.notify.is_empty() {
            return;
        }
        let config = self.engine.config();
        let secret = config
            .alerts
            .webhook_secret_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|s| !s.is_empty());
        let Some(secret) = secret else {
            self.stats.unsigned.fetch_add(1, Ordering::Relaxed);
            let variable = config.alerts.webhook_secret_env.as_deref().unwrap_or_default();
            warn!(rule = %rule.name, %variable, "webhooks not sent: the webhook secret's environment variable is unset or empty");
            return;
        };
        let body = match rule.format {
            WebhookFormat::Json => serde_json::to_vec(record),
            WebhookFormat::Slack => serde_json::to_vec(&serde_json::json!({ "text": slack_text(record) })),
        }
        .unwrap_or_default();
        let secret: Arc<[u8]> = Arc::from(secret.into_bytes());
        for url in &rule.notify {
            self.webhooks.enqueue(Delivery {
                url: url.clone(),
                body: body.clone(),
                secret: secret.clone(),
            });
        }
    }

    /// Tells every live peer about a cooldown, best effort, in the
    /// background.
    fn tell_peers(&self, cooldown: Cooldown) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        let body = serde_json::to_vec(&cooldown).unwrap_or_default();
        for (id, addr, live) in cluster.peers() {
            let Some(addr) = addr.filter(|_| live) else {
                continue;
            };
            let (cluster, body) = (cluster.clone(), body.clone());
            tokio::spawn(async move {
                let told =
                    peer_http::post_json(&cluster, (&id, addr), COOLDOWN_PATH, body, FORWARD_DEADLINE).await;
                if let Err(error) = told {
                    debug!(peer = %id, %error, "cooldown not told");
                }
            });
        }
    }

    /// Takes a cooldown a peer fired: this node will not fire the rule for
    /// the key before it ends.
    pub fn note_cooldown(&self, cooldown: &Cooldown) {
        let until = cooldown.until_ms.saturating_mul(MILLI);
        let mut state = self.state();
        if state.cooldowns.len() >= MAX_COOLDOWNS {
            let now = self.engine.now();
            state.cooldowns.retain(|_, end| *end > now);
        }
        let id = (CompactString::from(cooldown.rule.as_str()), cooldown.key.clone());
        let end = state.cooldowns.entry(id).or_insert(0);
        *end = (*end).max(until);
    }

    /// Cooldowns still running at `now`, fired here or told by peers: what
    /// a snapshot keeps, so that a restart does not page again.
    pub fn cooldowns(&self, now: Nanos) -> Vec<Cooldown> {
        let state = self.state();
        let running = state.cooldowns.iter().filter(|(_, until)| **until > now);
        running
            .map(|((rule, key), until)| Cooldown {
                rule: rule.to_string(),
                key: key.clone(),
                until_ms: until.div_ceil(MILLI),
            })
            .collect()
    }

    /// Recent alerts fired on this node, newest first.
    pub fn recent(&self, limit: usize) -> Vec<AlertRecord> {
        self.state().recent.iter().take(limit).cloned().collect()
    }

    /// Alerts fired here, by rule.
    pub fn fired(&self) -> Vec<(String, u64)> {
        let fired = self.stats.fired.lock().unwrap_or_else(PoisonError::into_inner);
        fired.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Webhook deliveries by result, and those never sent for want of a
    /// secret (`unsigned`).
    pub fn deliveries(&self) -> Vec<(&'static str, u64)> {
        let mut deliveries = self.webhooks.stats.snapshot().to_vec();
        deliveries.push(("unsigned", self.stats.unsigned.load(Ordering::Relaxed)));
        deliveries
    }

    /// Alarms dropped because the queue was full, and alarms forwarded.
    pub fn pipeline(&self) -> (u64, u64) {
        (
            self.stats.alarms_dropped.load(Ordering::Relaxed),
            self.stats.forwarded.load(Ordering::Relaxed),
        )
    }
}

fn rule_policy(rule: &AlertRule) -> Option<String> {
    match &rule.target {
        crate::config::alerts::RuleTarget::Policy(p) => Some(p.to_string()),
        _ => None,
    }
}

/// A one-line summary for Slack's incoming webhooks.
fn slack_text(record: &AlertRecord) -> String {
    let key: Vec<String> = KeyAttr::ALL
        .into_iter()
        .filter_map(|attr| {
            let value = record.key.get(attr)?;
            // A chat channel is no place for an API token: its start is enough.
            let shown = match attr {
                KeyAttr::Token => format!("{}…", value.chars().take(4).collect::<String>()),
                _ => value.to_string(),
            };
            Some(format!("{}={shown}", attr.name()))
        })
        .collect();
    let scope = record
        .policy
        .as_deref()
        .or(record.namespace.as_deref())
        .unwrap_or("*");
    let penalty = record.penalty.as_ref().map_or(String::new(), |p| {
        format!("; moved to tier {} until {}", p.tier, rfc3339(p.until_ms))
    });
    if record.when == crate::config::file::RuleWhen::Quota {
        return format!(
            "weir alert *{}* ({:?}): {scope} {} used {} units, {}% of a quota, on node {}{penalty}",
            record.rule,
            record.severity,
            key.join(" "),
            record.count,
            record.threshold * 100.0,
            record.node
        );
    }
    format!(
        "weir alert *{}* ({:?}): {scope} {} reached {} ({:?}, threshold {} per {} s) on node {}{penalty}",
        record.rule,
        record.severity,
        key.join(" "),
        record.count,
        record.when,
        record.threshold,
        record.window_s,
        record.node
    )
}
