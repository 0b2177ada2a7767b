//! Liveness, readiness and the member list; metrics are in `metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
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
