//! `GET /v1/alerts` (recent alerts, cluster-wide; read token), and for
//! peers only (signed with the cluster secret, body included):
//! `POST /v1/internal/alarm` (an alarm forwarded to the key's owner) and
//! `POST /v1/internal/cooldown` (a cooldown the firing node tells the rest).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::usage::{authorize, cluster_wide};
use super::App;
use crate::alerts::record::AlertRecord;
use crate::alerts::{Alerts, Cooldown, Forwarded, COOLDOWN_PATH, FORWARD_PATH, RECENT};
use crate::cluster::peer_http::{self, MissingNode};
use crate::usage::PEER_DEADLINE;

fn alerts(app: &App) -> Result<&Arc<Alerts>, ApiError> {
    app.alerts.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "alerts_disabled",
            "alerts are not running on this node",
        )
    })
}

/// `GET /v1/alerts` query.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Most alerts returned (default 50, at most 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    /// `local` for this node alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// `GET /v1/alerts` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct AlertsAnswer {
    /// Newest first.
    pub alerts: Vec<AlertRecord>,
    /// Nodes whose alerts are included.
    pub nodes: Vec<String>,
    /// Members that did not answer.
    pub missing: Vec<MissingNode>,
}

/// `GET /v1/alerts`.
pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    extensions: Extensions,
    uri: Uri,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AlertsAnswer>, ApiError> {
    authorize(&app, &headers, &extensions, &uri)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let alerts = alerts(&app)?;
    let limit = query.limit.unwrap_or(50).min(RECENT);
    let mut answer = AlertsAnswer {
        alerts: alerts.recent(limit),
        nodes: vec![alerts.node_id().to_string()],
        missing: Vec::new(),
    };
    if let Some(node) = cluster_wide(&app, query.scope.as_deref())? {
        let local = AlertsQuery {
            limit: Some(limit),
            scope: Some("local".into()),
        };
        let path = format!(
            "/v1/alerts?{}",
            serde_urlencoded::to_string(&local).unwrap_or_default()
        );
        let (answers, missing) = peer_http::ask_peers::<AlertsAnswer>(node, path, PEER_DEADLINE).await;
        for peer in answers {
            answer.alerts.extend(peer.alerts);
            answer.nodes.extend(peer.nodes);
        }
        answer.missing = missing;
        answer
            .alerts
            .sort_by(|a, b| b.fired_at_ms.cmp(&a.fired_at_ms).then_with(|| a.id.cmp(&b.id)));
        answer.alerts.dedup_by(|a, b| a.id == b.id);
        answer.alerts.truncate(limit);
    }
    Ok(Json(answer))
}

/// Whether a POST to `path` with `body` comes from a cluster peer.
fn from_peer(app: &App, headers: &HeaderMap, path: &str, body: &[u8]) -> Result<(), ApiError> {
    let signed = app
        .cluster
        .get()
        .is_some_and(|node| peer_http::is_signed_by_peer(node, "POST", headers, path, body));
    match signed {
        true => Ok(()),
        false => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "peers_only",
            "only cluster peers call this",
        )),
    }
}

/// `POST /v1/internal/cooldown`: a peer fired; do not fire that key again
/// before the cooldown ends.
pub async fn cooldown(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    from_peer(&app, &headers, COOLDOWN_PATH, &body)?;
    let cooldown: Cooldown =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("malformed_body", e.to_string()))?;
    alerts(&app)?.note_cooldown(&cooldown);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/internal/alarm`: fires the forwarded alarm here unless the key
/// is in its cooldown.
pub async fn forwarded(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    from_peer(&app, &headers, FORWARD_PATH, &body)?;
    let alarm: Forwarded =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("malformed_body", e.to_string()))?;
    let fired = alerts(&app)?.fire_named(&alarm.rule, &alarm.key, alarm.count as f64);
    Ok(Json(serde_json::json!({ "fired": fired })))
}
