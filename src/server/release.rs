//! Concurrency limits over HTTP: an allowed check of a tier with a
//! concurrency limit answers with a `lease`, and `POST /v1/release` frees
//! its slot when the request is done. A lease nobody releases lapses with
//! the limit's `lease` time. Lease ids are [`tickets`](super::tickets).

use std::sync::Arc;

use axum::extract::State;
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
/// concurrency limit holds it.
pub(super) fn lease<S>(app: &App, request: &CheckRequest, decision: &Decision<S>) -> String {
    let lasting = decision
        .enforced()
        .filter(|limit| limit.algorithm == AlgorithmName::Concurrency)
        .map(|limit| limit.window_ms * crate::clock::MILLI)
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
) -> Result<Json<Released>, ApiError> {
    let ticket = app
        .tickets
        .redeem(&app, Kind::Lease, &body.lease, app.engine.now())
        .map_err(|refused| refused.error(Kind::Lease))?;
    let decision = app.engine.release(&ticket.request(1))?;
    Ok(Json(Released { decision }))
}
