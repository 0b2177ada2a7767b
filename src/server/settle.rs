//! Post-response cost: a check that reserves an estimated cost
//! (`"reserve": true`) gets a reservation id, and `POST /v1/settle` later
//! charges the actual cost: more than reserved is charged (whatever room
//! the key has left), less is given back. A reservation nobody settles
//! within [`LIFETIME`] lapses as charged: the estimate stands.
//!
//! A reservation id carries the check it was made for and the cost
//! reserved, signed: with the cluster secret in a cluster, so that any node
//! settles it, else with a key of this process (a restart lapses what it
//! issued). Each node remembers the ids settled on it until they lapse, and
//! refuses them a second time; a reservation settled on two nodes of a
//! cluster is settled twice, so settle where you like, but once.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::error::{ApiError, JsonBody};
use super::App;
use crate::clock::{Nanos, MILLI, SECOND};
use crate::engine::{CheckRequest, Decision, RequestKey, Target};
use crate::policy::LimitSpec;

/// How long a reservation can be settled.
pub const LIFETIME: Nanos = 3600 * SECOND;

/// Most settled ids remembered at once; past this, a new settle is refused
/// until some lapse (503), rather than forgetting one and settling it twice.
pub const MAX_SETTLED: usize = 1_000_000;

/// Keeps reservation ids apart from anything else the same key signs.
const DOMAIN: &[u8] = b"weir reservation 1";

/// The check a reservation was made for, as its id carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reserved {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limits: Option<Vec<LimitSpec>>,
    key: RequestKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
    /// Units reserved.
    cost: u32,
    /// When it lapses, Unix ms.
    lapses_ms: u64,
    /// Tells two reservations of the same check apart.
    nonce: u64,
}

impl Reserved {
    fn request(&self, cost: u32) -> CheckRequest {
        let target = match (&self.policy, &self.namespace, &self.limits) {
            (Some(policy), _, _) => Target::Policy(policy.clone()),
            (None, Some(namespace), Some(limits)) => Target::Inline {
                namespace: namespace.clone(),
                limits: limits.clone(),
            },
            // Never issued so: a forged id cannot get this far unsigned.
            _ => Target::Policy(String::new()),
        };
        CheckRequest {
            target,
            key: self.key.clone(),
            tier: self.tier.clone(),
            cost: Some(cost),
        }
    }
}

/// This node's reservations: its signing key and the ids settled here.
pub struct Reservations {
    key: [u8; 32],
    next: std::sync::atomic::AtomicU64,
    settled: Mutex<HashMap<[u8; 32], u64>>,
}

impl Default for Reservations {
    fn default() -> Self {
        let mut key = [0u8; 32];
        // The kernel's randomness; a process without it still gets a key no
        // client can guess from outside (its start time and address).
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .is_err()
        {
            let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &key);
            key = sha256(seed.as_bytes());
        }
        Self {
            key,
            next: std::sync::atomic::AtomicU64::new(1),
            settled: Mutex::default(),
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(data).into()
}

/// Why a reservation cannot be settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not an id this cluster (or process) issued.
    Unknown,
    /// Settled before, on this node.
    Settled,
    /// Past its lifetime: it stood as reserved.
    Lapsed,
    /// Too many settled ids to remember.
    Full,
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Unknown => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_reservation",
                "no such reservation: not one this cluster issued, or issued by a process that has restarted since",
            ),
            Refused::Settled => ApiError::new(
                StatusCode::CONFLICT,
                "already_settled",
                "this reservation was settled already",
            ),
            Refused::Lapsed => ApiError::new(
                StatusCode::GONE,
                "reservation_lapsed",
                "this reservation lapsed (an hour after its check): the cost reserved stands",
            ),
            Refused::Full => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_settled",
                "too many reservations settled within the hour to remember another; try again later",
            ),
        }
    }
}

impl Reservations {
    fn mac(&self, app: &App, payload: &[u8]) -> String {
        if let Some(node) = app.cluster.get() {
            return node.sign_parts(&[DOMAIN, payload]);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(DOMAIN);
        mac.update(payload);
        hex(&mac.finalize().into_bytes())
    }

    fn verify(&self, app: &App, payload: &[u8], tag: &str) -> bool {
        if let Some(node) = app.cluster.get() {
            return node.verify_parts(&[DOMAIN, payload], tag);
        }
        let expected = self.mac(app, payload);
        super::admin::same_secret(expected.as_bytes(), tag.as_bytes())
    }

    /// An id for `check` (its HTTP body) reserving `cost` units.
    fn issue(&self, app: &App, mut reserved: Reserved, now: Nanos) -> String {
        reserved.nonce = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        reserved.lapses_ms = now.saturating_add(LIFETIME) / MILLI;
        let payload = serde_json::to_vec(&reserved).unwrap_or_default();
        let tag = self.mac(app, &payload);
        format!("{}.{tag}", URL_SAFE_NO_PAD.encode(payload))
    }

    /// The reservation `id` stands for, taken: it cannot be settled here
    /// again.
    fn redeem(&self, app: &App, id: &str, now: Nanos) -> Result<Reserved, Refused> {
        let (payload, tag) = id.rsplit_once('.').ok_or(Refused::Unknown)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refused::Unknown)?;
        if !self.verify(app, &payload, tag) {
            return Err(Refused::Unknown);
        }
        let reserved: Reserved = serde_json::from_slice(&payload).map_err(|_| Refused::Unknown)?;
        let now_ms = now / MILLI;
        if reserved.lapses_ms <= now_ms {
            return Err(Refused::Lapsed);
        }
        let id = sha256(&payload);
        let mut settled = self.settled.lock().unwrap_or_else(PoisonError::into_inner);
        if settled.get(&id).is_some_and(|lapses| *lapses > now_ms) {
            return Err(Refused::Settled);
        }
        if settled.len() >= MAX_SETTLED {
            settled.retain(|_, lapses| *lapses > now_ms);
            if settled.len() >= MAX_SETTLED {
                return Err(Refused::Full);
            }
        }
        settled.insert(id, reserved.lapses_ms);
        Ok(reserved)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The reservation of a check that asked for one, from its HTTP body's
/// parts: `None` unless it reserves units.
pub(super) fn reserve(app: &App, request: &CheckRequest, decision_allowed: bool) -> Option<String> {
    let cost = request.cost.unwrap_or(1);
    if !decision_allowed || cost == 0 {
        return None;
    }
    let (policy, namespace, limits) = match &request.target {
        Target::Policy(policy) => (Some(policy.clone()), None, None),
        Target::Inline { namespace, limits } => (None, Some(namespace.clone()), Some(limits.clone())),
    };
    let reserved = Reserved {
        policy,
        namespace,
        limits,
        key: request.key.clone(),
        tier: request.tier.clone(),
        cost,
        lapses_ms: 0,
        nonce: 0,
    };
    Some(app.reservations.issue(app, reserved, app.engine.now()))
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
    if body.cost > crate::policy::MAX_COST {
        return Err(crate::engine::CheckError::CostTooLarge { cost: body.cost }.into());
    }
    let reserved = app
        .reservations
        .redeem(&app, &body.reservation, app.engine.now())?;
    let (charged, refunded) = (
        body.cost.saturating_sub(reserved.cost),
        reserved.cost.saturating_sub(body.cost),
    );
    let decision = match (charged, refunded) {
        (0, 0) => app.engine.explain(&reserved.request(0))?.decision,
        (0, refund) => app.engine.refund(&reserved.request(refund))?,
        (charge, _) => app.engine.charge(&reserved.request(charge))?,
    };
    Ok(Json(Settled {
        reserved: reserved.cost,
        cost: body.cost,
        charged,
        refunded,
        decision,
    }))
}
