//! Liveness, readiness, the member list and the API's OpenAPI document;
//! metrics are in `metrics`.

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

/// `GET /readyz`: ready for traffic once the snapshot restore (if any) is
/// done, until shutdown begins. With snapshots on, `snapshot` says how the
/// restore went and how saving goes. `config` shows the config file and its
/// last reload: a failed one leaves the node ready (it keeps the running
/// config) and says why here.
pub async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<serde_json::Value>) {
    let snapshot = app.snapshots.get();
    let (status, mut body) = if !app.ready.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "shutting down" }),
        )
    } else if snapshot.is_some_and(|s| !s.ready()) {
        (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "restoring" }))
    } else {
        let version = app.engine.config_version();
        (
            StatusCode::OK,
            json!({ "status": "ready", "config_version": version }),
        )
    };
    if let Some(snapshot) = snapshot {
        body["snapshot"] = snapshot.describe();
    }
    if let Some(node) = app.cluster.get() {
        body["cluster"] = node.joining();
    }
    let mut config = app.config_source.describe();
    config["fingerprint"] = json!(crate::config::hex(app.engine.config().fingerprint));
    body["config"] = config;
    (status, Json(body))
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

/// The HTTP API's OpenAPI 3.1 document, written by hand beside
/// docs/http-api.md; `make api-tests` holds the server to it.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// `GET /v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
