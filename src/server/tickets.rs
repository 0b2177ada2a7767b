//! Signed tickets: the ids weir hands out for later calls about a check:
//! a reservation to settle (`POST /v1/settle`) and a lease to release
//! (`POST /v1/release`).
//!
//! A ticket carries the check it was made for, what it is for, and when it
//! lapses, signed: with the cluster secret in a cluster, so that any node
//! takes it, else with a key of this process (a restart lapses what it
//! issued). Each node remembers the tickets used on it until they lapse and
//! refuses them a second time; a ticket used on two nodes of a cluster is
//! used twice, so use it where you like, but once.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::error::ApiError;
use super::App;
use crate::clock::{Nanos, MILLI};
use crate::engine::{CheckRequest, RequestKey, Target};
use crate::policy::LimitSpec;

/// Most used tickets remembered at once; past this, a new use is refused
/// until some lapse (503), rather than forgetting one and taking it twice.
pub const MAX_USED: usize = 1_000_000;

/// Keeps tickets apart from anything else the same key signs.
const DOMAIN: &[u8] = b"weir ticket 1";

/// What a ticket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Settle a reserved cost.
    Reservation,
    /// Release a request in flight.
    Lease,
}

/// The check a ticket was made for, and what for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticket {
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limits: Option<Vec<LimitSpec>>,
    key: RequestKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
    /// Units reserved (a reservation), or 1 (a lease).
    pub cost: u32,
    /// When it lapses, Unix ms.
    lapses_ms: u64,
    /// Tells two tickets of the same check apart.
    nonce: u64,
    /// The node that issued it, in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Ticket {
    /// A `kind` ticket for `request`, of `cost` units, lapsing `lasting`
    /// after `now`.
    pub fn new(kind: Kind, request: &CheckRequest, cost: u32, now: Nanos, lasting: Nanos) -> Self {
        let (policy, namespace, limits) = match &request.target {
            Target::Policy(policy) => (Some(policy.clone()), None, None),
            Target::Inline { namespace, limits } => (None, Some(namespace.clone()), Some(limits.clone())),
        };
        Self {
            kind,
            policy,
            namespace,
            limits,
            key: request.key.clone(),
            tier: request.tier.clone(),
            cost,
            lapses_ms: now.saturating_add(lasting) / MILLI,
            nonce: 0,
            node: None,
        }
    }

    /// The check again, with `cost`.
    pub fn request(&self, cost: u32) -> CheckRequest {
        let target = match (&self.policy, &self.namespace, &self.limits) {
            (Some(policy), _, _) => Target::Policy(policy.clone()),
            (None, Some(namespace), Some(limits)) => Target::Inline {
                namespace: namespace.clone(),
                limits: limits.clone(),
            },
            // Never issued so: a forged ticket cannot get this far unsigned.
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

/// This node's tickets: its signing key and the tickets used here.
pub struct Tickets {
    key: [u8; 32],
    next: AtomicU64,
    used: Mutex<HashMap<[u8; 32], u64>>,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(data).into()
}

impl Default for Tickets {
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
            next: AtomicU64::new(1),
            used: Mutex::default(),
        }
    }
}

/// Why a ticket is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a ticket of this kind this cluster (or process) issued.
    Unknown,
    /// Used before, on this node.
    Used,
    /// Past its lifetime.
    Lapsed,
    /// Too many used tickets to remember.
    Full,
}

impl Refused {
    /// The API error, in `kind`'s words.
    pub fn error(self, kind: Kind) -> ApiError {
        let (unknown, used, lapsed) = match kind {
            Kind::Reservation => (
                ("unknown_reservation", "no such reservation: not one this cluster issued, or issued by a process that has restarted since"),
                ("already_settled", "this reservation was settled already"),
                ("reservation_lapsed", "this reservation lapsed (an hour after its check): the cost reserved stands"),
            ),
            Kind::Lease => (
                ("unknown_lease", "no such lease: not one this cluster issued, or issued by a process that has restarted since"),
                ("already_released", "this lease was released already"),
                ("lease_lapsed", "this lease lapsed: its slot was freed when its time ran out"),
            ),
        };
        match self {
            Refused::Unknown => ApiError::new(StatusCode::NOT_FOUND, unknown.0, unknown.1),
            Refused::Used => ApiError::new(StatusCode::CONFLICT, used.0, used.1),
            Refused::Lapsed => ApiError::new(StatusCode::GONE, lapsed.0, lapsed.1),
            Refused::Full => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_tickets",
                "too many reservations and leases used within their lifetime to remember another; try again later",
            ),
        }
    }
}

impl Tickets {
    fn mac(&self, app: &App, payload: &[u8]) -> String {
        if let Some(node) = app.cluster.get() {
            return node.sign_parts(&[DOMAIN, payload]);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(DOMAIN);
        mac.update(payload);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn verify(&self, app: &App, payload: &[u8], tag: &str) -> bool {
        if let Some(node) = app.cluster.get() {
            return node.verify_parts(&[DOMAIN, payload], tag);
        }
        let expected = self.mac(app, payload);
        super::admin::same_secret(expected.as_bytes(), tag.as_bytes())
    }

    /// The id of `ticket`: its payload and signature.
    pub fn issue(&self, app: &App, mut ticket: Ticket) -> String {
        ticket.nonce = self.next.fetch_add(1, Ordering::Relaxed);
        ticket.node = app.cluster.get().map(|node| node.node_id().to_string());
        let payload = serde_json::to_vec(&ticket).unwrap_or_default();
        let tag = self.mac(app, &payload);
        format!("{}.{tag}", URL_SAFE_NO_PAD.encode(payload))
    }

    /// The `kind` ticket `id` stands for, taken: it cannot be used here
    /// again.
    pub fn redeem(&self, app: &App, kind: Kind, id: &str, now: Nanos) -> Result<Ticket, Refused> {
        let (payload, tag) = id.rsplit_once('.').ok_or(Refused::Unknown)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refused::Unknown)?;
        if !self.verify(app, &payload, tag) {
            return Err(Refused::Unknown);
        }
        let ticket: Ticket = serde_json::from_slice(&payload).map_err(|_| Refused::Unknown)?;
        if ticket.kind != kind {
            return Err(Refused::Unknown);
        }
        let now_ms = now / MILLI;
        if ticket.lapses_ms <= now_ms {
            return Err(Refused::Lapsed);
        }
        let id = sha256(&payload);
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        if used.get(&id).is_some_and(|lapses| *lapses > now_ms) {
            return Err(Refused::Used);
        }
        if used.len() >= MAX_USED {
            used.retain(|_, lapses| *lapses > now_ms);
            if used.len() >= MAX_USED {
                return Err(Refused::Full);
            }
        }
        used.insert(id, ticket.lapses_ms);
        Ok(ticket)
    }
}
