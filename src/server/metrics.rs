//! `GET /metrics`: Prometheus exposition through `prometheus-client`.
//!
//! Series come from three places: [`SERVER`], which the servers update as
//! they go (check latency, open connections); state read at scrape
//! time (store, usage, cluster, process), written by a [`Snapshot`]
//! collector; nothing else. Labels stay low-cardinality: policy, tier,
//! result, reason, kind; inline namespaces are capped by the usage settings.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::latency::LatencyHistogram;
use super::App;
use crate::engine::Subject;
use crate::usage::ScopeId;

/// Metrics the servers update as they serve.
pub struct ServerMetrics {
    /// Seconds from a check request read to its reply built, HTTP.
    pub http_check_seconds: LatencyHistogram,
    /// The same for binary-protocol check frames.
    pub binary_check_seconds: LatencyHistogram,
    /// HTTP connections open now.
    pub http_connections: Gauge,
    /// Binary-protocol connections open now.
    pub binary_connections: Gauge,
}

/// The process's server metrics.
pub static SERVER: LazyLock<ServerMetrics> = LazyLock::new(|| ServerMetrics {
    http_check_seconds: LatencyHistogram::default(),
    binary_check_seconds: LatencyHistogram::default(),
    http_connections: Gauge::default(),
    binary_connections: Gauge::default(),
});

type Labels = Vec<(&'static str, String)>;

/// A family of samples read at scrape time.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

/// Everything read at scrape time, encoded as one collector.
#[derive(Debug, Default)]
struct Snapshot(Vec<Family>);

impl Snapshot {
    fn add(&mut self, name: &'static str, kind: MetricType, help: &'static str, samples: Vec<(Labels, f64)>) {
        self.0.push(Family {
            name,
            help,
            kind,
            samples,
        });
    }

    fn one(&mut self, name: &'static str, kind: MetricType, help: &'static str, value: f64) {
        self.add(name, kind, help, vec![(Vec::new(), value)]);
    }
}

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                // Whole numbers print as such: "2", not "2.0".
                let whole = value.fract() == 0.0 && value.abs() < 2f64.powi(53);
                match (family.kind, whole) {
                    (MetricType::Counter, true) => ConstCounter::new(*value as u64).encode(sample)?,
                    (MetricType::Counter, false) => ConstCounter::new(*value).encode(sample)?,
                    (_, true) => ConstGauge::new(*value as i64).encode(sample)?,
                    (_, false) => ConstGauge::new(*value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

fn labelled(label: &'static str, counts: &[(&str, u64)]) -> Vec<(Labels, f64)> {
    counts
        .iter()
        .map(|(name, value)| (vec![(label, name.to_string())], *value as f64))
        .collect()
}

/// `policy`/`tier` labels of a usage scope: inline namespaces show as their
/// name with tier `inline`, those past the cap as `*`.
fn scope_labels(id: &ScopeId) -> (String, String) {
    match id {
        ScopeId::Policy { policy, tier } => (policy.to_string(), tier.to_string()),
        ScopeId::Namespace(name) => (name.to_string(), "inline".into()),
        ScopeId::OtherNamespaces => ("*".into(), "inline".into()),
    }
}

fn engine_series(app: &App, snapshot: &mut Snapshot) {
    use MetricType::{Counter, Gauge};
    let stats = app.engine.stats();
    let config = app.engine.config();
    snapshot.one("weir_tracked_keys", Gauge, "Keys tracked now", stats.keys as f64);
    snapshot.one(
        "weir_max_keys",
        Gauge,
        "Most keys tracked before the idlest are evicted",
        config.max_keys as f64,
    );
    let decisions = [("allowed", stats.allowed), ("denied", stats.denied)];
    snapshot.add(
        "weir_decisions",
        Counter,
        "Checks decided, by result",
        labelled("result", &decisions),
    );
    snapshot.one(
        "weir_store_bytes",
        Gauge,
        "Memory the tracked keys take: slots, index, key text and states",
        stats.bytes as f64,
    );
    snapshot.one(
        "weir_store_max_bytes",
        Gauge,
        "Most memory the tracked keys may take (store.max_memory); the idlest are evicted past it",
        config.max_memory as f64,
    );
    snapshot.one(
        "weir_keys_expired",
        Counter,
        "Keys dropped after their limits forgot them",
        stats.expired as f64,
    );
    snapshot.one(
        "weir_keys_evicted",
        Counter,
        "Keys evicted, idlest first, because the store was full",
        stats.evicted as f64,
    );
    snapshot.one(
        "weir_config_version",
        Gauge,
        "Version of the config in force",
        app.engine.config_version() as f64,
    );
    snapshot.one(
        "weir_config_reload_failures",
        Counter,
        "Reloads of the config file (SIGHUP) that failed; the running config was kept",
        app.config_source.failures() as f64,
    );
}

fn usage_series(app: &App, snapshot: &mut Snapshot) {
    let Some(usage) = app.usage.get() else {
        return;
    };
    let mut checks = Vec::new();
    let mut units = Vec::new();
    for (id, counts) in usage.totals() {
        let (policy, tier) = scope_labels(&id);
        let labels = |result: &str| {
            vec![
                ("policy", policy.clone()),
                ("tier", tier.clone()),
                ("result", result.to_string()),
            ]
        };
        checks.push((labels("allowed"), counts.allowed as f64));
        checks.push((labels("denied"), counts.denied as f64));
        units.push((labels("allowed"), counts.allowed_cost as f64));
        units.push((labels("denied"), counts.denied_cost as f64));
    }
    snapshot.add(
        "weir_checks",
        MetricType::Counter,
        "Checks by policy (or inline namespace), tier and result; counted once a second",
        checks,
    );
    let shadow = usage
        .shadow_totals()
        .into_iter()
        .map(|(id, limit, count)| {
            let (policy, tier) = scope_labels(&id);
            (
                vec![("policy", policy), ("tier", tier), ("limit", limit.to_string())],
                count as f64,
            )
        })
        .collect();
    snapshot.add(
        "weir_shadow_denied",
        MetricType::Counter,
        "Checks the enforced limits allowed that a shadow limit would have denied, by policy, tier and shadow limit",
        shadow,
    );
    snapshot.add(
        "weir_check_units",
        MetricType::Counter,
        "Cost units asked for, by policy, tier and result",
        units,
    );
    let (bytes, scopes) = usage.footprint();
    snapshot.one(
        "weir_usage_memory_bytes",
        MetricType::Gauge,
        "Bytes the usage analytics hold",
        bytes as f64,
    );
    snapshot.one(
        "weir_usage_scopes",
        MetricType::Gauge,
        "Policy tiers and inline namespaces the analytics track",
        scopes as f64,
    );
}

fn alert_series(app: &App, snapshot: &mut Snapshot) {
    let Some(alerts) = app.alerts.get() else {
        return;
    };
    let (mut fired, deliveries) = (alerts.fired(), alerts.deliveries());
    // Every rule in force shows, at 0 until it fires.
    for rule in &app.engine.config().alerts.rules {
        if !fired.iter().any(|(name, _)| *name == rule.name) {
            fired.push((rule.name.to_string(), 0));
        }
    }
    fired.sort();
    let fired = fired
        .into_iter()
        .map(|(rule, n)| (vec![("rule", rule)], n as f64))
        .collect();
    snapshot.add(
        "weir_alerts",
        MetricType::Counter,
        "Alerts fired on this node, by rule",
        fired,
    );
    let help = "Webhook deliveries by result (retried counts attempts; unsigned: no secret, not sent)";
    snapshot.add(
        "weir_webhook_deliveries",
        MetricType::Counter,
        help,
        labelled("result", &deliveries),
    );
    let (dropped, forwarded) = alerts.pipeline();
    snapshot.one(
        "weir_alarms_dropped",
        MetricType::Counter,
        "Alarms dropped because too many waited",
        dropped as f64,
    );
    snapshot.one(
        "weir_alarms_forwarded",
        MetricType::Counter,
        "Alarms handed to the key's owner on another node",
        forwarded as f64,
    );
    let now = app.engine.now();
    let overlay = app.engine.tier_overlay();
    let active: usize = Subject::ALL
        .into_iter()
        .map(|s| {
            overlay
                .list(s, now)
                .values()
                .filter(|a| a.until.is_some())
                .count()
        })
        .sum();
    let help = "Tier assignments in force that lapse: penalties, from rules or from operators";
    snapshot.one("weir_penalties_active", MetricType::Gauge, help, active as f64);
}

fn cluster_series(app: &App, snapshot: &mut Snapshot) {
    let Some(node) = app.cluster.get() else {
        return;
    };
    let shape = node.shape();
    let nodes = vec![
        (
            vec![("state", "live".to_string())],
            shape.map_or(1, |s| s.live) as f64,
        ),
        (
            vec![("state", "expected".to_string())],
            shape.map_or(1, |s| s.expected) as f64,
        ),
    ];
    let help = "Nodes this node reaches (live) and counts as the cluster (expected)";
    snapshot.add("weir_cluster_nodes", MetricType::Gauge, help, nodes);
    snapshot.one(
        "weir_cluster_alone",
        MetricType::Gauge,
        "1 while this node has seeds but has heard no peer for 5 s: seeds down, or another cluster secret or id",
        node.alone() as u8 as f64,
    );
    let (counters, rejected) = node.stats().snapshot();
    snapshot.add(
        "weir_sync",
        MetricType::Counter,
        "Counter-sync frames and entries, by kind",
        labelled("kind", &counters),
    );
    let help = "Counter-sync datagrams dropped, by reason";
    snapshot.add(
        "weir_sync_rejected",
        MetricType::Counter,
        help,
        labelled("reason", &rejected),
    );
    let gossip = node.gossip_stats();
    snapshot.add(
        "weir_gossip",
        MetricType::Counter,
        "Sealed gossip datagrams sent and messages received",
        labelled("kind", &gossip.counts()),
    );
    let help = "Gossip datagrams dropped, by reason (header: unsealed, as from plain chitchat; auth: another secret or cluster; stale: replayed or a clock far off)";
    snapshot.add(
        "weir_gossip_rejected",
        MetricType::Counter,
        help,
        labelled("reason", &gossip.rejected.snapshot()),
    );
    // A frame comes from every live peer each sync interval: an age well
    // past it means the peer is slow or cut off. Never heard: +Inf.
    let ages = node
        .sync_ages()
        .into_iter()
        .map(|(peer, age)| (vec![("peer", peer)], age.unwrap_or(f64::INFINITY)))
        .collect();
    let help = "Seconds since the last counter-sync frame from each peer in the member list";
    snapshot.add("weir_sync_last_frame_age_seconds", MetricType::Gauge, help, ages);
}

fn snapshot_series(app: &App, snapshot: &mut Snapshot) {
    let Some(snapshots) = app.snapshots.get() else {
        return;
    };
    let numbers = snapshots.metrics();
    snapshot.one(
        "weir_snapshot_saves",
        MetricType::Counter,
        "Snapshots saved",
        numbers.saves as f64,
    );
    let failures = [
        ("save", numbers.save_failures),
        ("restore", numbers.restore_failures),
    ];
    snapshot.add(
        "weir_snapshot_failures",
        MetricType::Counter,
        "Snapshot saves that failed, and reads of the store that failed or were refused",
        labelled("stage", &failures),
    );
    let gauges = [
        (
            "weir_snapshot_last_success_timestamp_seconds",
            "Unix time of the last snapshot saved; 0 before the first",
            numbers.last_success,
        ),
        (
            "weir_snapshot_duration_seconds",
            "Seconds the last snapshot saved took, taking and writing",
            numbers.last_duration,
        ),
        (
            "weir_snapshot_bytes",
            "Bytes of the last snapshot saved",
            numbers.last_bytes as f64,
        ),
        (
            "weir_snapshot_keys",
            "Keys in the last snapshot saved",
            numbers.last_keys as f64,
        ),
        (
            "weir_snapshot_restored_keys",
            "Keys merged in from the snapshot at start",
            numbers.restored_keys as f64,
        ),
        (
            "weir_snapshot_restore_duration_seconds",
            "Seconds the restore at start took",
            numbers.restore_duration,
        ),
    ];
    for (name, help, value) in gauges {
        snapshot.one(name, MetricType::Gauge, help, value);
    }
    let states = numbers
        .phases
        .iter()
        .map(|phase| {
            (
                vec![("state", phase.to_string())],
                (*phase == numbers.phase) as u8 as f64,
            )
        })
        .collect();
    let help = "Where the snapshot restore stands: 1 for the current state";
    snapshot.add("weir_snapshot_state", MetricType::Gauge, help, states);
}

/// The whole exposition, as Prometheus (OpenMetrics text) reads it.
pub fn render(app: &App) -> String {
    let mut snapshot = Snapshot::default();
    engine_series(app, &mut snapshot);
    usage_series(app, &mut snapshot);
    alert_series(app, &mut snapshot);
    cluster_series(app, &mut snapshot);
    snapshot_series(app, &mut snapshot);
    super::process::series(&mut |name, kind, help, value| snapshot.one(name, kind, help, value));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let server = &*SERVER;
    let help = "Seconds from a check request read to its reply built, HTTP API";
    registry.register(
        "weir_http_check_duration_seconds",
        help,
        server.http_check_seconds.clone(),
    );
    let help = "Seconds from a check frame read to its reply built, binary protocol";
    registry.register(
        "weir_binary_check_duration_seconds",
        help,
        server.binary_check_seconds.clone(),
    );
    registry.register(
        "weir_http_connections",
        "Open HTTP connections",
        server.http_connections.clone(),
    );
    registry.register(
        "weir_binary_connections",
        "Open binary-protocol connections",
        server.binary_connections.clone(),
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], render(&app))
}

/// Times the HTTP check endpoints (middleware).
pub async fn time_checks(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let start = quanta::Instant::now();
    let response = next.run(request).await;
    SERVER.http_check_seconds.observe(start.elapsed());
    response
}
