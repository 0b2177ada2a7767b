//! Runtime changes: the config (`GET`/`PUT /v1/config`) and tier
//! assignments (`/v1/tiers`); customers' own quotas are in
//! [`own_quotas`](super::own_quotas). Every change needs `Authorization: Bearer
//! <admin token>`; with no admin token configured, changes are disabled and
//! say so.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::error::{ApiError, JsonBody};
use super::App;
use crate::clock::{Nanos, MILLI};
use crate::config::Config;
use crate::engine::Subject;
use crate::limiter::rate::parse_period;

/// Compares in time independent of where the strings differ.
pub(super) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of `Authorization: Bearer <token>`, if given.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

/// Checks the bearer token of an admin request.
pub(super) fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = app.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "admin endpoints are disabled: start weir with --admin-token or set WEIR_ADMIN_TOKEN",
        ));
    };
    match bearer(headers) {
        Some(token) if same_secret(token.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs Authorization: Bearer <admin token>",
        )),
    }
}

/// The config in force, as JSON. Token assignments and tokens' own quotas
/// are secrets and are reported as a count only; webhook URLs show their scheme and host only
/// ([`crate::redact::url`]); the alert rules (what an abuser must stay
/// under) only to a `reader` (read or admin token), others get their count.
pub fn describe_config(app: &App, reader: bool) -> Value {
    let config = app.engine.config();
    let mut file = serde_json::to_value(&config.file).unwrap_or(Value::Null);
    file["assignments"]["tokens"] = json!({ "count": config.file.assignments.tokens.len() });
    if !config.file.quota_overrides.tokens.is_empty() {
        file["quota_overrides"]["tokens"] = json!({ "count": config.file.quota_overrides.tokens.len() });
    }
    if let Some(rules) = file["alerts"]["rules"].as_array_mut() {
        for url in rules
            .iter_mut()
            .filter_map(|rule| rule["notify"].as_array_mut())
            .flatten()
        {
            *url = json!(url.as_str().map(crate::redact::url));
        }
        if !reader {
            let count = rules.len();
            file["alerts"]["rules"] = json!({ "count": count });
        }
    }
    json!({
        "version": app.engine.config_version(),
        "fingerprint": crate::config::hex(config.fingerprint),
        "file_fingerprint": crate::config::hex(config.base),
        "config": file,
    })
}

/// `GET /v1/config`: open to all; the alert rules only to readers.
pub async fn get_config(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    uri: axum::http::Uri,
) -> Json<Value> {
    let reader = super::usage::authorize(&app, &headers, &extensions, &uri).is_ok();
    Json(describe_config(&app, reader))
}

/// `PUT /v1/config`: the whole config as TOML, validated, then swapped in.
pub async fn put_config(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let body = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_config", "the config must be UTF-8 TOML text"))?;
    // An empty TOML document is a valid config with no policies: sent by
    // mistake, it would drop every limit in the cluster.
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_config",
            "the body is empty; PUT the whole config (GET /v1/config shows the one in force)",
        ));
    }
    adopt(&app, text)?;
    Ok(Json(describe_config(&app, true)))
}

/// Puts `text` in force as a runtime change of the config (replicated to a
/// cluster and kept by snapshots like any other); returns its version.
pub(super) fn adopt(app: &App, text: &str) -> Result<u64, ApiError> {
    if let Some(node) = app.cluster.get() {
        let size = crate::cluster::config_sync::gossiped_size(text, node.node_id());
        let most = crate::cluster::config_sync::MAX_GOSSIPED_CONFIG;
        if size > most {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "config_too_large_for_cluster",
                format!(
                    "this config takes {size} bytes gossiped; a cluster replicates configs of up to {most}, \
                     so it would stay on this node: put it in every node's --config file instead \
                     (large assignment tables belong in the runtime API, PUT /v1/tiers)"
                ),
            ));
        }
    }
    // An edit of the config in force: it keeps that config's file as its
    // base, so the cluster tells it from a node started with another file.
    let config = Config::parse(text)?.made_over(app.engine.config().base);
    let version = app.engine.replace_config(config);
    info!(version, source = "api", "config replaced");
    Ok(version)
}

/// `POST /v1/cluster/keyring`: reads the cluster keyring's file again and
/// puts it in force, as SIGHUP does; what the keyring holds afterwards.
pub async fn reload_keyring(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let conflict = |code, message: String| ApiError::new(StatusCode::CONFLICT, code, message);
    let Some(node) = app.cluster.get() else {
        return Err(conflict(
            "not_clustered",
            "this node is not part of a cluster".into(),
        ));
    };
    if !node.keyring_reloads() {
        return Err(conflict(
            "no_keyring_file",
            "this node's keyring has no file to reload: start it with --cluster-secret-file".into(),
        ));
    }
    let ring = node
        .reload_keyring()
        .map_err(|problem| conflict("invalid_keyring", format!("{problem}; the running keyring stays")))?;
    Ok(Json(json!({
        "keys": ring.keys,
        "retiring": ring.retiring,
        "retiring_ms": ring.retiring_for.as_millis() as u64,
    })))
}

/// `PUT /v1/tiers/{subject}/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    tier: String,
    /// How long the assignment lasts (`"15m"`, `"2h"`); for good without.
    #[serde(default, rename = "for")]
    lasting: Option<String>,
}

pub(super) fn subject(kind: &str) -> Result<Subject, ApiError> {
    Subject::parse(kind).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_subject",
            format!("tiers are assigned to a token, user, ip or endpoint, not {kind:?}"),
        )
    })
}

fn millis(nanos: Option<Nanos>) -> Option<u64> {
    nanos.map(|n| n.div_ceil(MILLI))
}

/// `PUT /v1/tiers/{subject}/{id}`.
pub async fn put_tier(
    State(app): State<Arc<App>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AssignBody>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let subject = subject(&kind)?;
    let lasting = match body.lasting.as_deref() {
        Some(text) => Some(
            parse_period(text, "duration")
                .map_err(|problem| ApiError::bad_request("invalid_duration", format!("\"for\": {problem}")))?
                .get(),
        ),
        None => None,
    };
    let until = app.engine.assign_tier(subject, &id, &body.tier, lasting)?;
    info!(
        subject = kind,
        tier = body.tier,
        until_ms = millis(until),
        "tier assigned"
    );
    Ok(Json(
        json!({ "subject": kind, "id": id, "tier": body.tier, "until_ms": millis(until) }),
    ))
}

/// `DELETE /v1/tiers/{subject}/{id}`.
pub async fn delete_tier(
    State(app): State<Arc<App>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&app, &headers)?;
    match app.engine.tier_overlay().remove(subject(&kind)?, &id) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_assigned",
            "no runtime assignment for that id",
        )),
    }
}

/// `GET /v1/tiers`: the runtime assignments in force (admin only): id to
/// tier per subject, and those that lapse with their time. Tokens show
/// redacted, as everywhere else ([`crate::redact`]).
pub async fn list_tiers(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let overlay = app.engine.tier_overlay();
    let now = app.engine.now();
    let mut answer = serde_json::Map::new();
    let mut lapsing = Vec::new();
    for subject in Subject::ALL {
        let shown = |id: String| match subject {
            Subject::Token => crate::redact::token(&id),
            _ => id,
        };
        let assigned: Vec<(String, _)> = overlay
            .list(subject, now)
            .into_iter()
            .map(|(id, a)| (shown(id), a))
            .collect();
        for (id, a) in assigned.iter().filter(|(_, a)| a.until.is_some()) {
            lapsing.push(
                json!({ "subject": subject.name(), "id": id, "tier": a.tier, "until_ms": millis(a.until) }),
            );
        }
        let tiers: serde_json::Map<String, Value> =
            assigned.into_iter().map(|(id, a)| (id, json!(a.tier))).collect();
        answer.insert(format!("{}s", subject.name()), Value::Object(tiers));
    }
    answer.insert("lapsing".into(), Value::Array(lapsing));
    Ok(Json(Value::Object(answer)))
}
