//! Post-response cost: a check that reserves an estimated cost
//! (`"reserve": true`) gets a reservation id, and `POST /v1/settle` later
//! charges the actual cost: more than reserved is charged (whatever room
//! the key has left), less is given back. A reservation nobody settles
//! within [`LIFETIME`] lapses as charged: the estimate stands. Reservation
//! ids are [`tickets`](super::tickets).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, JsonBody};
use super::tickets::{Kind, Ticket};
use super::App;
use crate::clock::{Nanos, SECOND};
use crate::engine::{CheckRequest, Decision};

/// How long a reservation can be settled.
pub const LIFETIME: Nanos = 3600 * SECOND;

/// The reservation of a check that asked for one: `None` unless it was
/// allowed and counted units (`counted`: its own cost, or its endpoint
/// rule's).
pub(super) fn reserve(app: &App, request: &CheckRequest, allowed: bool, counted: u32) -> Option<String> {
    if !allowed || counted == 0 {
        return None;
    }
    let ticket = Ticket::new(Kind::Reservation, request, counted, app.engine.now(), LIFETIME);
    Some(app.tickets.issue(app, ticket))
}

/// `POST /v1/settle` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleBody {
    /// The id a reserving check returned.
    reservation: String,
    /// The cost the request turned out to have.
    cost: u32,
}

/// What a settle did.
#[derive(Debug, Serialize)]
pub struct Settled {
    /// Units the check reserved.
    pub reserved: u32,
    /// The actual cost.
    pub cost: u32,
    /// Units charged beyond the reservation.
    pub charged: u32,
    /// Units given back.
    pub refunded: u32,
    /// The key's state afterwards, as a peek.
    pub decision: Decision,
}

/// `POST /v1/settle`.
pub async fn settle(
    State(app): State<Arc<App>>,
    JsonBody(body): JsonBody<SettleBody>,
) -> Result<Json<Settled>, ApiError> {
    settle_reservation(&app, &body.reservation, body.cost).map(Json)
}

/// Settles `reservation` at its actual `cost`: what both servers do.
///
/// # Errors
/// A cost over the maximum; an unknown, settled or lapsed reservation.
pub(super) fn settle_reservation(app: &App, reservation: &str, cost: u32) -> Result<Settled, ApiError> {
    if cost > crate::policy::MAX_COST {
        return Err(crate::engine::CheckError::CostTooLarge { cost }.into());
    }
    let reserved = app
        .tickets
        .redeem(app, Kind::Reservation, reservation, app.engine.now())
        .map_err(|refused| refused.error(Kind::Reservation))?;
    let (charged, refunded) = (
        cost.saturating_sub(reserved.cost),
        reserved.cost.saturating_sub(cost),
    );
    let decision = match (charged, refunded) {
        (0, 0) => app.engine.explain(&reserved.request(0))?.decision,
        (0, refund) => app.engine.refund(&reserved.request(refund))?,
        (charge, _) => app.engine.charge(&reserved.request(charge))?,
    };
    Ok(Settled {
        reserved: reserved.cost,
        cost,
        charged,
        refunded,
        decision,
    })
}
