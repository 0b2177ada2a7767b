//! Liveness, readiness and Prometheus metrics.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::App;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: ready for traffic until shutdown begins.
pub async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<serde_json::Value>) {
    if app.ready.load(Ordering::SeqCst) {
        let version = app.engine.config_version();
        (
            StatusCode::OK,
            Json(json!({ "status": "ready", "config_version": version })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting down" })),
        )
    }
}

/// `GET /v1/cluster`: the members this node sees, with liveness, last sync
/// and lag; a node started without a cluster reports itself alone.
pub async fn cluster(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    match app.cluster.get() {
        Some(node) => Json(node.status()),
        None => Json(json!({
            "mode": "standalone",
            "live": 1,
            "expected": 1,
            "members": [],
        })),
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let stats = app.engine.stats();
    let config = app.engine.config();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "weir_tracked_keys",
        "gauge",
        "Keys tracked now.",
        &[("", stats.keys)],
    );
    metric(
        "weir_max_keys",
        "gauge",
        "Most keys tracked before the idlest are evicted.",
        &[("", config.max_keys)],
    );
    metric(
        "weir_decisions_total",
        "counter",
        "Checks decided, by result.",
        &[
            ("{result=\"allowed\"}", stats.allowed),
            ("{result=\"denied\"}", stats.denied),
        ],
    );
    metric(
        "weir_keys_expired_total",
        "counter",
        "Keys dropped after their limits forgot them.",
        &[("", stats.expired)],
    );
    metric(
        "weir_keys_evicted_total",
        "counter",
        "Keys evicted, idlest first, because the store was full.",
        &[("", stats.evicted)],
    );
    metric(
        "weir_config_version",
        "gauge",
        "Version of the config in force.",
        &[("", app.engine.config_version())],
    );
    let open = app.connections.get().map_or(0, |gauge| gauge.open() as u64);
    metric(
        "weir_http_connections",
        "gauge",
        "Open HTTP connections.",
        &[("", open)],
    );
    if let Some(node) = app.cluster.get() {
        let shape = node.shape();
        metric(
            "weir_cluster_nodes",
            "gauge",
            "Nodes this node reaches (live) and counts as the cluster (expected).",
            &[
                ("{state=\"live\"}", shape.map_or(1, |s| s.live as u64)),
                ("{state=\"expected\"}", shape.map_or(1, |s| s.expected as u64)),
            ],
        );
        let (counters, rejected) = node.stats().snapshot();
        let kinds = labelled("kind", &counters);
        metric(
            "weir_sync_total",
            "counter",
            "Counter-sync frames and entries, by kind.",
            &borrowed(&kinds),
        );
        let reasons = labelled("reason", &rejected);
        metric(
            "weir_sync_rejected_total",
            "counter",
            "Counter-sync datagrams dropped, by reason.",
            &borrowed(&reasons),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Samples labelled `{label="name"}`.
fn labelled(label: &str, counts: &[(&str, u64)]) -> Vec<(String, u64)> {
    counts
        .iter()
        .map(|(name, value)| (format!("{{{label}=\"{name}\"}}"), *value))
        .collect()
}

fn borrowed(samples: &[(String, u64)]) -> Vec<(&str, u64)> {
    samples
        .iter()
        .map(|(labels, value)| (labels.as_str(), *value))
        .collect()
}
