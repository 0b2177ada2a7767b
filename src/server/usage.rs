//! The usage API: `GET /v1/usage` (totals, series, top keys) and
//! `GET /v1/usage/key` (one key's tier, limits and recent counts).
//!
//! Any node answers for the whole cluster: it asks its live peers for their
//! local reports (signed with the cluster secret) and merges them; a peer
//! that does not answer within the deadline is listed under `missing`.
//! `scope=local` answers for this node alone.
//!
//! Usage data names users, IPs and tokens, so it needs the read token (or
//! the admin token); with neither configured only loopback clients are
//! answered.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::admin::{bearer, same_secret};
use super::error::ApiError;
use super::{App, ClientAddr};
use crate::clock::MILLI;
use crate::cluster::{peer_http, ClusterNode};
use crate::engine::{CheckRequest, RequestKey, Subject, TierSource};
use crate::usage::report::MissingNode;
use crate::usage::PEER_DEADLINE;
use crate::usage::{Filter, Range, Recent, Usage, UsageReport};

/// Most keys in each top list of an answer.
const DEFAULT_TOP: usize = 20;

/// Checks that the caller may read usage data.
pub(super) fn authorize(
    app: &App,
    headers: &HeaderMap,
    extensions: &Extensions,
    uri: &Uri,
) -> Result<(), ApiError> {
    if let Some(node) = app.cluster.get() {
        let what = uri.path_and_query().map_or("", |p| p.as_str());
        if peer_http::is_signed_by_peer(node, "GET", headers, what, &[]) {
            return Ok(());
        }
    }
    let tokens: Vec<&str> = [app.read_token.as_deref(), app.admin_token.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if tokens.is_empty() {
        let peer = extensions.get::<ConnectInfo<ClientAddr>>().map(|c| c.0 .0.ip());
        return match peer {
            Some(ip) if ip.is_loopback() => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "read_token_required",
                "usage data is served to loopback clients only while no read token is configured: \
                 start weir with --read-token (WEIR_READ_TOKEN) and send Authorization: Bearer <token>",
            )),
        };
    }
    let needs = match app.read_token {
        Some(_) => "usage data needs Authorization: Bearer <read token or admin token>",
        // Loopback reads without a token end once any token is set: say so.
        None => {
            "this node has an admin token and no read token (--read-token), so usage data needs the admin token, \
             from loopback clients too: send Authorization: Bearer <admin token>"
        }
    };
    match bearer(headers) {
        Some(given) if tokens.iter().any(|t| same_secret(given.as_bytes(), t.as_bytes())) => Ok(()),
        _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", needs)),
    }
}

fn usage(app: &App) -> Result<&Arc<Usage>, ApiError> {
    app.usage.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "usage_disabled",
            "usage analytics are off on this node (started with --no-usage)",
        )
    })
}

fn parse_range(text: Option<&str>) -> Result<Range, ApiError> {
    let text = text.unwrap_or("5m");
    Range::parse(text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_range",
            format!("range must be 5m, 1h or 24h, not {text:?}"),
        )
    })
}

/// Whether to merge peers' reports.
pub(super) fn cluster_wide<'a>(
    app: &'a App,
    scope: Option<&str>,
) -> Result<Option<&'a Arc<ClusterNode>>, ApiError> {
    match scope {
        None | Some("cluster") => Ok(app.cluster.get()),
        Some("local") => Ok(None),
        Some(other) => Err(ApiError::bad_request(
            "invalid_scope",
            format!("scope must be cluster or local, not {other:?}"),
        )),
    }
}

fn node_name(app: &App) -> String {
    app.cluster
        .get()
        .map_or_else(|| "local".to_string(), |n| n.node_id().to_string())
}

/// `GET /v1/usage` query.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// Keys per top list.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
}

/// `GET /v1/usage`.
pub async fn get_usage(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    extensions: Extensions,
    uri: Uri,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UsageReport>, ApiError> {
    authorize(&app, &headers, &extensions, &uri)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let usage = usage(&app)?;
    let range = parse_range(query.range.as_deref())?;
    let filter = Filter {
        policy: query.policy.clone(),
        tier: query.tier.clone(),
    };
    let cluster = cluster_wide(&app, query.scope.as_deref())?;
    let top = query.limit.unwrap_or(DEFAULT_TOP);
    Ok(Json(
        usage
            .cluster_report(&node_name(&app), cluster, range, &filter, top)
            .await,
    ))
}

/// `GET /v1/usage/key` query: the key as a check would give it.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// A key's recent counts over each range.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RecentByRange {
    #[serde(rename = "5m")]
    five_minutes: Recent,
    #[serde(rename = "1h")]
    hour: Recent,
    #[serde(rename = "24h")]
    day: Recent,
}

impl RecentByRange {
    fn add(&mut self, other: &RecentByRange) {
        let add = |a: &mut Recent, b: &Recent| {
            for (mine, theirs) in [(&mut a.allowed, b.allowed), (&mut a.denied, b.denied)] {
                if let Some(theirs) = theirs {
                    let sum = mine.get_or_insert_with(Default::default);
                    sum.count += theirs.count;
                    sum.error += theirs.error;
                }
            }
        };
        add(&mut self.five_minutes, &other.five_minutes);
        add(&mut self.hour, &other.hour);
        add(&mut self.day, &other.day);
    }
}

/// `GET /v1/usage/key` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyReport {
    /// What a peek decides now on the answering node (nothing counted), as
    /// `POST /v1/check` reports a decision.
    pub decision: serde_json::Value,
    /// Where the tier came from: request, assignment, config or default.
    pub tier_source: Option<TierSource>,
    /// The runtime assignment that set the tier, when one did: subject, id,
    /// tier and when it lapses (Unix ms; null for never).
    pub assignment: Option<serde_json::Value>,
    /// Allowed and denied checks where the key's policy summaries list it,
    /// summed over the nodes that answered.
    pub recent: RecentByRange,
    /// Nodes whose counts are included.
    pub nodes: Vec<String>,
    /// Live nodes that did not answer in time.
    pub missing: Vec<MissingNode>,
}

/// `GET /v1/usage/key`.
pub async fn get_key(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    extensions: Extensions,
    uri: Uri,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyReport>, ApiError> {
    authorize(&app, &headers, &extensions, &uri)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let usage = usage(&app)?;
    let mut request = CheckRequest::policy(
        query.policy.as_str(),
        RequestKey {
            user: query.user.clone(),
            ip: query.ip.clone(),
            token: query.token.clone(),
            endpoint: query.endpoint.clone(),
        },
    );
    request.tier = query.tier.clone();
    let explained = app.engine.explain(&request)?;
    let assignment = (explained.tier_source == Some(TierSource::Assignment))
        .then(|| assignment_of(&app, &request, explained.decision.tier.as_deref()))
        .flatten();
    let recent = |range| usage.recent(&explained.store_key, range);
    let mut report = KeyReport {
        decision: serde_json::to_value(&explained.decision).unwrap_or_default(),
        tier_source: explained.tier_source,
        assignment,
        recent: RecentByRange {
            five_minutes: recent(Range::FiveMinutes),
            hour: recent(Range::Hour),
            day: recent(Range::Day),
        },
        nodes: vec![node_name(&app)],
        missing: Vec::new(),
    };
    if let Some(node) = cluster_wide(&app, query.scope.as_deref())? {
        let local = KeyQuery {
            scope: Some("local".into()),
            ..query
        };
        let path = format!(
            "/v1/usage/key?{}",
            serde_urlencoded::to_string(&local).unwrap_or_default()
        );
        let (answers, missing) = peer_http::ask_peers::<KeyReport>(node, path, PEER_DEADLINE).await;
        for answer in answers {
            report.recent.add(&answer.recent);
            report.nodes.extend(answer.nodes);
        }
        report.missing = missing;
    }
    Ok(Json(report))
}

/// The runtime assignment that gives `request` its `tier`, as a check
/// consults them (token, user, IP, endpoint).
fn assignment_of(app: &App, request: &CheckRequest, tier: Option<&str>) -> Option<serde_json::Value> {
    let now = app.engine.now();
    Subject::ALL.into_iter().find_map(|subject| {
        let id = request.key.get(subject.attr())?;
        let assigned = app.engine.tier_overlay().assigned(subject, id, now)?;
        (Some(assigned.tier.as_str()) == tier).then(|| {
            let until_ms = assigned.until.map(|n| n.div_ceil(MILLI));
            let id = match subject {
                Subject::Token => crate::redact::token(id),
                _ => id.to_string(),
            };
            serde_json::json!({ "subject": subject.name(), "id": id, "tier": assigned.tier, "until_ms": until_ms })
        })
    })
}
