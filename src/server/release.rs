//! Concurrency limits over HTTP: an allowed check of a tier with a
//! concurrency limit answers with a `lease`, and `POST /v1/release` frees
//! its slot when the request is done. A lease nobody releases lapses with
//! the limit's `lease` time. Lease ids are [`tickets`](super::tickets).
//!
//! In a cluster each node counts the slots its own checks took, and only
//! that node can give one back: a release made elsewhere is handed to the
//! node that granted the lease, and made here only when that node cannot be
//! reached (then it frees a slot only if this node holds one for the key).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, JsonBody};
use super::tickets::{Kind, Ticket};
use super::App;
use crate::engine::{CheckRequest, Decision};
use crate::policy::AlgorithmName;

/// Whether `decision` holds a slot of a concurrency limit, so that its
/// check needs a lease.
pub(super) fn needs_lease<S>(decision: &Decision<S>) -> bool {
    decision.allowed
        && decision.cost > 0
        && decision
            .enforced()
            .any(|limit| limit.algorithm == AlgorithmName::Concurrency)
}

/// A lease on the slots `request` took, valid as long as its longest
/// concurrency limit may still count it: one and a half leases (the
/// window's weighted oldest slot).
pub(super) fn lease<S>(app: &App, request: &CheckRequest, decision: &Decision<S>) -> String {
    let lasting = decision
        .enforced()
        .filter(|limit| limit.algorithm == AlgorithmName::Concurrency)
        .map(|limit| limit.window_ms * crate::clock::MILLI * 3 / 2)
        .max()
        .unwrap_or(0);
    let ticket = Ticket::new(Kind::Lease, request, 1, app.engine.now(), lasting);
    app.tickets.issue(app, ticket)
}

/// `POST /v1/release` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The id an allowed check returned.
    lease: String,
}

/// What a release answers.
#[derive(Debug, Serialize)]
pub struct Released {
    /// The key's state afterwards, as a peek.
    pub decision: Decision,
}

/// `POST /v1/release`.
pub async fn release(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<ReleaseBody>,
) -> Result<Response, ApiError> {
    match release_lease(&app, &body.lease).await? {
        Release::HandedOn(answer) => {
            let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
            Ok((json, answer).into_response())
        }
        Release::Here(decision) => Ok(Json(Released { decision: *decision }).into_response()),
    }
}

/// Where a release was made.
pub(super) enum Release {
    /// By the node that granted the lease: its answer, a [`Released`] as
    /// JSON.
    HandedOn(Bytes),
    /// Here: the key's state afterwards.
    Here(Box<Decision>),
}

/// Releases `lease`: what both servers do.
///
/// # Errors
/// An unknown, released or lapsed lease.
pub(super) async fn release_lease(app: &App, lease: &str) -> Result<Release, ApiError> {
    let ticket = app
        .tickets
        .redeem(app, Kind::Lease, lease, app.engine.now())
        .map_err(|refused| refused.error(Kind::Lease))?;
    if let Some(answer) = hand_to_granter(app, &ticket, lease).await? {
        return Ok(Release::HandedOn(answer));
    }
    let decision = app.engine.release(&ticket.request(1))?;
    Ok(Release::Here(Box::new(decision)))
}

/// How long the granting node may take to answer a handed-on release.
const HAND_ON_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Hands a release to the node that granted the lease, when that is
/// another live node: its answer (a [`Released`] as JSON), or `None` to
/// release here.
async fn hand_to_granter(app: &App, ticket: &Ticket, lease: &str) -> Result<Option<Bytes>, ApiError> {
    let (Some(cluster), Some(granter)) = (app.cluster.get(), ticket.node.as_deref()) else {
        return Ok(None);
    };
    if granter == cluster.node_id() {
        return Ok(None);
    }
    let peers = cluster.peers();
    let Some(addr) = peers
        .iter()
        .find(|(id, _, live)| id == granter && *live)
        .and_then(|p| p.1)
    else {
        return Ok(None);
    };
    let body = serde_json::to_vec(&serde_json::json!({ "lease": lease })).unwrap_or_default();
    match crate::cluster::peer_http::post_json(
        cluster,
        (granter, addr),
        "/v1/release",
        body,
        HAND_ON_DEADLINE,
    )
    .await
    {
        Ok(answer) => Ok(Some(answer)),
        // The granter's own refusal stands (it was released or lapsed there).
        Err(status) if status == "status 409" => Err(super::tickets::Refused::Used.error(Kind::Lease)),
        Err(status) if status == "status 410" => Err(super::tickets::Refused::Lapsed.error(Kind::Lease)),
        Err(error) => {
            tracing::debug!(%granter, %error, "release not handed on; releasing here");
            Ok(None)
        }
    }
}
