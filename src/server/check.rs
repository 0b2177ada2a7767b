//! `POST /v1/check`, `POST /v1/check/batch`, `POST /v1/refund`: JSON in,
//! decision out, 200 when allowed and 429 when denied, with rate-limit
//! headers on both; a denial as problem details for a client that accepts
//! them ([`super::problem`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, JsonBody};
use super::headers::add_rate_limit_headers;
use super::problem::{self, Problem, WantsProblem};
use super::App;
use crate::engine::{BatchDecision, CheckRequest, Decision, RequestKey, Target};
use crate::policy::LimitSpec;

/// A check as sent over HTTP: a policy, or a namespace with inline limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    policy: Option<String>,
    namespace: Option<String>,
    limits: Option<Vec<LimitSpec>>,
    #[serde(default)]
    key: RequestKey,
    tier: Option<String>,
    cost: Option<u32>,
    /// Reserve `cost` now, to settle the actual cost later
    /// (`POST /v1/settle`): checks and batches, not refunds.
    #[serde(default)]
    reserve: bool,
}

impl TryFrom<CheckBody> for CheckRequest {
    type Error = ApiError;

    fn try_from(body: CheckBody) -> Result<Self, ApiError> {
        if body.reserve {
            return Err(ApiError::bad_request(
                "reserve_not_here",
                "reserve applies to checks (POST /v1/check and /v1/check/batch), not to refunds",
            ));
        }
        let target = match (body.policy, body.namespace, body.limits) {
            (Some(policy), None, None) => Target::Policy(policy),
            (None, Some(namespace), Some(limits)) => Target::Inline { namespace, limits },
            _ => {
                return Err(ApiError::bad_request(
                    "bad_target",
                    "give either \"policy\", or \"namespace\" together with \"limits\"",
                ))
            }
        };
        Ok(CheckRequest {
            target,
            key: body.key,
            tier: body.tier,
            cost: body.cost,
        })
    }
}

/// Headers a decision reply can carry: content type and length, five
/// rate-limit headers and `Retry-After`, with room to spare.
const REPLY_HEADERS: usize = 12;

/// JSON bytes a two-limit decision takes, so one buffer usually holds it.
const REPLY_BYTES: usize = 640;

/// A decision reply built in one go: the body serialized into a buffer of
/// its likely size and a header map with room for every header, so neither
/// grows on the hot path (growing them took about a tenth of weir's CPU
/// under a check load).
///
/// A denial goes out as problem details when `problem` (the client asked)
/// and a decision heads it.
fn respond<T: Serialize, S: AsRef<str>>(
    app: &App,
    allowed: bool,
    headline: Option<&Decision<S>>,
    body: &T,
    problem: WantsProblem,
) -> Response {
    match (allowed, headline, problem) {
        (false, Some(denied), WantsProblem(true)) => {
            let problem = Problem::of(denied, body, &app.engine.config());
            encode(
                StatusCode::TOO_MANY_REQUESTS,
                problem::MEDIA_TYPE,
                headline,
                &problem,
            )
        }
        (true, ..) => encode(StatusCode::OK, "application/json", headline, body),
        (false, ..) => encode(StatusCode::TOO_MANY_REQUESTS, "application/json", headline, body),
    }
}

fn encode<T: Serialize, S>(
    status: StatusCode,
    media_type: &'static str,
    headline: Option<&Decision<S>>,
    body: &T,
) -> Response {
    let mut json = Vec::with_capacity(REPLY_BYTES);
    if let Err(error) = serde_json::to_writer(&mut json, body) {
        // Only a failing Serialize impl can get here; ours cannot fail.
        let message = format!("encoding the reply: {error}");
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message).into_response();
    }
    let mut headers = HeaderMap::with_capacity(REPLY_HEADERS);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(json.len()));
    if let Some(decision) = headline {
        add_rate_limit_headers(&mut headers, decision);
    }
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `POST /v1/check`.
pub async fn check(
    State(app): State<Arc<App>>,
    problem: WantsProblem,
    JsonBody(mut body): JsonBody<CheckBody>,
) -> Result<Response, ApiError> {
    let reserve = std::mem::take(&mut body.reserve);
    let request = CheckRequest::try_from(body)?;
    // Encoded straight from the engine's verdict, names borrowed.
    let response = app.engine.check_with(&request, |verdict| {
        let decision = verdict.view();
        let issued = Issued::for_check(&app, &request, &decision, reserve);
        if issued.is_empty() {
            return respond(&app, decision.allowed, Some(&decision), &decision, problem);
        }
        let body = WithTickets {
            decision: &decision,
            reservation: issued.reservation,
            lease: issued.lease,
        };
        respond(&app, decision.allowed, Some(&decision), &body, problem)
    })?;
    Ok(response)
}

/// The ids an answered check hands out for later calls about it, the same
/// over HTTP and the binary protocol.
#[derive(Debug, Default)]
pub(super) struct Issued {
    /// Settles the actual cost: when the check reserved and was counted.
    pub reservation: Option<String>,
    /// Releases its concurrency slots: when it holds one.
    pub lease: Option<String>,
}

impl Issued {
    /// What a check of `request` that asked to `reserve` hands out.
    pub fn for_check<S>(app: &App, request: &CheckRequest, decision: &Decision<S>, reserve: bool) -> Self {
        Self {
            reservation: reserve
                .then(|| super::settle::reserve(app, request, decision.allowed, decision.cost))
                .flatten(),
            lease: super::release::needs_lease(decision)
                .then(|| super::release::lease(app, request, decision)),
        }
    }

    /// What each decision of an allowed batch hands out, in order (checks
    /// that asked to `reserve` get reservations); `None` when nothing is.
    pub fn for_batch(
        app: &App,
        requests: &[CheckRequest],
        reserves: &[bool],
        batch: &BatchDecision,
    ) -> Option<Vec<Issued>> {
        let issues = |(i, decision): (usize, &Decision)| {
            reserves.get(i).copied().unwrap_or(false) || super::release::needs_lease(decision)
        };
        if !batch.allowed || !batch.decisions.iter().enumerate().any(issues) {
            return None;
        }
        let issued = batch.decisions.iter().zip(requests).zip(reserves);
        Some(
            issued
                .map(|((decision, request), reserve)| Self::for_check(app, request, decision, *reserve))
                .collect(),
        )
    }

    /// The ids as the binary protocol's version 2 carries them.
    pub fn extras(&self) -> crate::protocol::Extras<'_> {
        crate::protocol::Extras {
            lease: self.lease.as_deref(),
            reservation: self.reservation.as_deref(),
            problem: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.reservation.is_none() && self.lease.is_none()
    }
}

/// A decision with the ids of later calls about it: the reservation to
/// settle, the lease to release.
#[derive(Serialize)]
struct WithTickets<'a, T> {
    #[serde(flatten)]
    decision: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<String>,
}

/// An allowed batch whose decisions carry their reservations and leases.
#[derive(Serialize)]
struct IssuedBatch<'a> {
    allowed: bool,
    decisions: Vec<WithTickets<'a, Decision>>,
}

/// `POST /v1/check/batch` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    checks: Vec<CheckBody>,
}

/// `POST /v1/check/batch`: all consume or none does. Headers describe the
/// first denied check, or else the one with the fewest units left.
pub async fn check_batch(
    State(app): State<Arc<App>>,
    problem: WantsProblem,
    JsonBody(mut body): JsonBody<BatchBody>,
) -> Result<Response, ApiError> {
    let reserves: Vec<bool> = body
        .checks
        .iter_mut()
        .map(|check| std::mem::take(&mut check.reserve))
        .collect();
    let requests = body
        .checks
        .into_iter()
        .map(CheckRequest::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let batch = app.engine.check_batch(&requests)?;
    let headline = match batch.allowed {
        false => batch.decisions.iter().find(|d| !d.allowed),
        true => batch
            .decisions
            .iter()
            .filter(|d| d.remaining.is_some())
            .min_by_key(|d| d.remaining),
    };
    // An allowed batch hands out a reservation for each check that asked,
    // and a lease for each that holds a slot of a concurrency limit.
    if let Some(issued) = Issued::for_batch(&app, &requests, &reserves, &batch) {
        let decisions = batch
            .decisions
            .iter()
            .zip(issued)
            .map(|(decision, issued)| WithTickets {
                decision,
                reservation: issued.reservation,
                lease: issued.lease,
            })
            .collect();
        let issued = IssuedBatch {
            allowed: true,
            decisions,
        };
        return Ok(respond(&app, true, headline, &issued, problem));
    }
    Ok(respond(&app, batch.allowed, headline, &batch, problem))
}

/// `POST /v1/refund`: gives `cost` units back; answers with the key's state.
pub async fn refund(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Response, ApiError> {
    let request = CheckRequest::try_from(body)?;
    let decision = app.engine.refund(&request)?;
    // Always 200: the refund was made, whatever the key's state.
    Ok(respond(
        &app,
        true,
        Some(&decision),
        &decision,
        WantsProblem(false),
    ))
}
