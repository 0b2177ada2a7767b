//! Frame bodies: plain structs, encoded by bincode 2 with fixed-size
//! little-endian integers. In that encoding a `u8`/`bool` is 1 byte, `u32`
//! 4, `u64` 8; an `Option` is a 1-byte tag (0 none, 1 some) then the value;
//! a `String` or `Vec` is a `u64` length then its bytes or items; an enum is
//! a `u32` variant index then its fields. docs/protocol.md spells out each.
//!
//! Version 2 keeps every version 1 layout and appends fields: a check's
//! `reserve` and `problem` flags; a report's mode and quota reset; a
//! decision's shadow denials, lease, reservation and problem details. A
//! server answers each frame in the version it came in.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::frame::MAX_FRAME;
use crate::clock::MILLI;
use crate::engine::{
    BatchDecision, CheckError, CheckRequest, Decision, LimitReport, RequestKey, ResetAt, Target,
};
use crate::policy::{AlgorithmName, LimitSpec, Mode};

/// Body of Hello: the highest protocol version the client speaks.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Hello {
    /// Highest version the client speaks.
    pub version: u8,
    /// Free text naming the client, for logs.
    pub client: String,
}

/// Body of HelloReply: the version to speak and the server's limits.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct HelloReply {
    /// The version both sides speak from now on.
    pub version: u8,
    /// Free text naming the server.
    pub server: String,
    /// Largest length prefix accepted.
    pub max_frame: u32,
    /// Requests a connection may have unanswered before the server stops
    /// reading from it.
    pub max_in_flight: u32,
}

/// The key attributes of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireKey {
    /// The user.
    pub user: Option<String>,
    /// The client IP.
    pub ip: Option<String>,
    /// The API token.
    pub token: Option<String>,
    /// The endpoint, such as `GET /orders`.
    pub endpoint: Option<String>,
}

/// An inline limit. `algorithm`: 0 token bucket, 1 sliding window.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireLimit {
    /// 0 token bucket, 1 sliding window.
    pub algorithm: u8,
    /// A rate string such as `100/minute`.
    pub rate: String,
    /// Token bucket only.
    pub burst: Option<u32>,
    /// Shown in decisions and headers.
    pub name: Option<String>,
}

/// A named policy (variant 0) or inline limits (variant 1).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum WireTarget {
    /// A policy from the config.
    Policy(String),
    /// Limits carried by the check, under a namespace.
    Inline {
        /// The namespace.
        namespace: String,
        /// The limits.
        limits: Vec<WireLimit>,
    },
}

/// Body of Check, Peek and Refund (and each item of CheckMany).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireCheck {
    /// Policy or inline limits.
    pub target: WireTarget,
    /// The key.
    pub key: WireKey,
    /// The tier, when the client knows it.
    pub tier: Option<String>,
    /// Units; default the endpoint rule's cost, else 1.
    pub cost: Option<u32>,
}

/// Body of Check, Peek and Refund in version 2 (and each item of
/// CheckMany): version 1's fields, then two flags.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireCheck2 {
    /// Version 1's fields.
    #[serde(flatten)]
    pub check: WireCheck,
    /// Reserve the cost, to settle the actual cost later (Check only).
    pub reserve: bool,
    /// A denial carries weir's problem details as JSON text.
    pub problem: bool,
}

/// Body of Release (version 2).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireRelease {
    /// The id an allowed check returned.
    pub lease: String,
}

/// Body of Settle (version 2).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireSettle {
    /// The id a reserving check returned.
    pub reservation: String,
    /// The cost the request turned out to have.
    pub cost: u32,
}

/// One limit's answer. `algorithm`: 0 token bucket, 1 sliding window, 2 a
/// deny tier.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireReport {
    /// The limit's name.
    pub name: String,
    /// 0 token bucket, 1 sliding window, 2 a deny tier.
    pub algorithm: u8,
    /// Capacity.
    pub limit: u64,
    /// Window, or a bucket's fill time.
    pub window_ms: u64,
    /// This limit had room.
    pub allowed: bool,
    /// Units left.
    pub remaining: u64,
    /// Until full again.
    pub reset_after_ms: u64,
    /// When denied by this limit: until the request would fit.
    pub retry_after_ms: Option<u64>,
}

/// Body of Decision, PeekReply and RefundReply: the same fields as the HTTP
/// API's decision.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireDecision {
    /// Every limit had room and the cost was counted.
    pub allowed: bool,
    /// The policy; none for inline limits.
    pub policy: Option<String>,
    /// The namespace; none for policies.
    pub namespace: Option<String>,
    /// The tier; none for inline limits.
    pub tier: Option<String>,
    /// Units counted.
    pub cost: u32,
    /// Capacity of the limit closest to denying; none when unlimited.
    pub limit: Option<u64>,
    /// Units left under it; none when unlimited.
    pub remaining: Option<u64>,
    /// Until it is full again.
    pub reset_after_ms: u64,
    /// When denied: until the request would fit.
    pub retry_after_ms: Option<u64>,
    /// Every limit's answer.
    pub limits: Vec<WireReport>,
}

/// One limit's answer in version 2: version 1's fields, then its mode and
/// a quota's reset.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireReport2 {
    /// Version 1's fields.
    #[serde(flatten)]
    pub report: WireReport,
    /// A shadow limit: counted and reported, never deciding.
    pub shadow: bool,
    /// A quota's next reset, Unix ms.
    pub reset_at_ms: Option<u64>,
}

/// Body of Decision, PeekReply and RefundReply in version 2: version 1's
/// fields (with every limit, shadow ones included), then what version 2
/// adds.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireDecision2 {
    /// Every enforced limit had room and the cost was counted.
    pub allowed: bool,
    /// The policy; none for inline limits.
    pub policy: Option<String>,
    /// The namespace; none for policies.
    pub namespace: Option<String>,
    /// The tier; none for inline limits.
    pub tier: Option<String>,
    /// Units counted.
    pub cost: u32,
    /// Capacity of the enforced limit closest to denying.
    pub limit: Option<u64>,
    /// Units left under it.
    pub remaining: Option<u64>,
    /// Until it is full again.
    pub reset_after_ms: u64,
    /// When denied: until the request would fit.
    pub retry_after_ms: Option<u64>,
    /// Every limit's answer, shadow limits included.
    pub limits: Vec<WireReport2>,
    /// When the limit reported is a quota: its next reset, Unix ms.
    pub reset_at_ms: Option<u64>,
    /// The shadow limits that would have denied.
    pub shadow_denied: Vec<String>,
    /// Releases the slot this check holds in its concurrency limits.
    pub lease: Option<String>,
    /// Settles the actual cost of a reserving check.
    pub reservation: Option<String>,
    /// A denial as RFC 9457 problem details (JSON text), when asked for.
    pub problem: Option<String>,
}

/// Body of Batch in version 2.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireBatch2 {
    /// All were allowed and counted.
    pub allowed: bool,
    /// One per check, in order; those of an allowed batch carry leases.
    pub decisions: Vec<WireDecision2>,
    /// A denied batch as problem details (JSON text), when asked for.
    pub problem: Option<String>,
}

/// Body of SettleReply (version 2).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireSettled {
    /// Units the check reserved.
    pub reserved: u32,
    /// The actual cost.
    pub cost: u32,
    /// Units charged beyond the reservation.
    pub charged: u32,
    /// Units given back.
    pub refunded: u32,
    /// The key's state afterwards, as a peek.
    pub decision: WireDecision2,
}

/// Body of Batch.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireBatch {
    /// All were allowed and counted.
    pub allowed: bool,
    /// One per check, in order.
    pub decisions: Vec<WireDecision>,
}

/// Body of Error: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct WireError {
    /// Machine-readable, as in the HTTP API.
    pub code: String,
    /// For people.
    pub message: String,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<MAX_FRAME>()
}

/// Decoding's budget: bincode counts each length and allocation against it
/// as well as the bytes, so a body that fills a whole frame needs more than
/// the frame's size. The frame itself is what bounds the input.
fn decode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<{ 2 * MAX_FRAME }>()
}

/// Encodes a body.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec fails only past the size limit, which no reply of
    // at most 32 decisions reaches; an empty body is the safe fallback.
    bincode::encode_to_vec(value, config()).unwrap_or_default()
}

/// Encodes a body at the end of `out`.
pub fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) {
    let start = out.len();
    // As in `encode`: only past the size limit, never reached by a reply;
    // a partly written body is taken back, leaving it empty.
    if bincode::encode_into_std_write(value, out, config()).is_err() {
        out.truncate(start);
    }
}

/// Decodes a body, refusing trailing bytes.
///
/// # Errors
/// A message saying what is wrong with the bytes.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::decode_from_slice(bytes, decode_config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} bytes after the end of the body", bytes.len() - used));
    }
    Ok(value)
}

/// The algorithm's byte on the wire.
fn algorithm_code(algorithm: AlgorithmName) -> u8 {
    match algorithm {
        AlgorithmName::TokenBucket => 0,
        AlgorithmName::SlidingWindow => 1,
        AlgorithmName::Deny => 2,
        AlgorithmName::Quota => 3,
        AlgorithmName::Concurrency => 4,
    }
}

impl TryFrom<WireCheck> for CheckRequest {
    type Error = CheckError;

    fn try_from(check: WireCheck) -> Result<Self, CheckError> {
        let target = match check.target {
            WireTarget::Policy(name) => Target::Policy(name),
            WireTarget::Inline { namespace, limits } => {
                let limits = limits
                    .into_iter()
                    .map(|limit| {
                        let algorithm = match limit.algorithm {
                            0 => AlgorithmName::TokenBucket,
                            1 => AlgorithmName::SlidingWindow,
                            other => {
                                return Err(CheckError::InvalidLimits(format!(
                                    "algorithm {other} is neither 0 (token bucket) nor 1 (sliding window); quotas are for policies and HTTP inline checks"
                                )))
                            }
                        };
                        Ok(LimitSpec {
                            name: limit.name,
                            burst: limit.burst,
                            ..LimitSpec::rated(algorithm, &limit.rate)
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Target::Inline { namespace, limits }
            }
        };
        Ok(CheckRequest {
            target,
            key: RequestKey {
                user: check.key.user,
                ip: check.key.ip,
                token: check.key.token,
                endpoint: check.key.endpoint,
            },
            tier: check.tier,
            cost: check.cost,
        })
    }
}

impl From<&LimitReport> for WireReport {
    fn from(report: &LimitReport) -> Self {
        Self {
            name: report.name.to_string(),
            algorithm: algorithm_code(report.algorithm),
            limit: report.limit,
            window_ms: report.window_ms,
            allowed: report.allowed,
            remaining: report.remaining,
            reset_after_ms: report.reset_after_ms,
            retry_after_ms: report.retry_after_ms,
        }
    }
}

impl From<&LimitReport> for WireReport2 {
    fn from(report: &LimitReport) -> Self {
        Self {
            report: WireReport::from(report),
            shadow: report.mode == Mode::Shadow,
            reset_at_ms: report.reset_at.map(unix_ms),
        }
    }
}

fn owned<S: AsRef<str>>(name: &Option<S>) -> Option<String> {
    name.as_ref().map(|s| s.as_ref().to_string())
}

impl<S: AsRef<str>> From<&Decision<S>> for WireDecision {
    fn from(decision: &Decision<S>) -> Self {
        Self {
            allowed: decision.allowed,
            policy: owned(&decision.policy),
            namespace: owned(&decision.namespace),
            tier: owned(&decision.tier),
            cost: decision.cost,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after_ms: decision.reset_after_ms,
            retry_after_ms: decision.retry_after_ms,
            limits: decision.enforced().map(WireReport::from).collect(),
        }
    }
}

impl<S: AsRef<str>> From<&Decision<S>> for WireDecision2 {
    /// The decision alone: no lease, reservation or problem details.
    fn from(decision: &Decision<S>) -> Self {
        Self {
            allowed: decision.allowed,
            policy: owned(&decision.policy),
            namespace: owned(&decision.namespace),
            tier: owned(&decision.tier),
            cost: decision.cost,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after_ms: decision.reset_after_ms,
            retry_after_ms: decision.retry_after_ms,
            limits: decision.limits.iter().map(WireReport2::from).collect(),
            reset_at_ms: decision.reset_at.map(unix_ms),
            shadow_denied: decision
                .shadow_denied
                .iter()
                .map(|s| s.as_ref().to_string())
                .collect(),
            lease: None,
            reservation: None,
            problem: None,
        }
    }
}

/// An instant as Unix milliseconds.
fn unix_ms(at: ResetAt) -> u64 {
    at.0 / MILLI
}

/// What a version 2 decision carries beside the engine's decision: the ids
/// of later calls about it, and the problem details of a denial.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// Releases a concurrency slot.
    pub lease: Option<&'a str>,
    /// Settles a reserved cost.
    pub reservation: Option<&'a str>,
    /// Problem details, as JSON text.
    pub problem: Option<&'a str>,
}

/// A decision encoded as a [`WireDecision`] (version 1) or
/// [`WireDecision2`] body, byte for byte, straight from the engine's
/// borrowed decision: no owned copy, no allocation.
pub struct DecisionBody<'d, S> {
    decision: &'d Decision<S>,
    version: u8,
    extras: Extras<'d>,
}

impl<'d, S> DecisionBody<'d, S> {
    /// `decision` in protocol `version`, with no extras.
    pub fn new(decision: &'d Decision<S>, version: u8) -> Self {
        Self {
            decision,
            version,
            extras: Extras::default(),
        }
    }

    /// With `extras` (version 2 only; version 1 has no place for them).
    pub fn with(self, extras: Extras<'d>) -> Self {
        Self { extras, ..self }
    }
}

impl<S: AsRef<str>> Encode for DecisionBody<'_, S> {
    fn encode<E: bincode::enc::Encoder>(&self, e: &mut E) -> Result<(), bincode::error::EncodeError> {
        let d = self.decision;
        d.allowed.encode(e)?;
        for name in [&d.policy, &d.namespace, &d.tier] {
            name.as_ref().map(AsRef::as_ref).encode(e)?;
        }
        d.cost.encode(e)?;
        d.limit.encode(e)?;
        d.remaining.encode(e)?;
        d.reset_after_ms.encode(e)?;
        d.retry_after_ms.encode(e)?;
        // Sequences: a length as a u64, then the items (as `Vec`).
        // Version 1 answers with the enforced limits only.
        let v1 = self.version < 2;
        let reports = || d.limits.iter().filter(move |r| !v1 || r.mode == Mode::Enforce);
        (reports().count() as u64).encode(e)?;
        for report in reports() {
            report.name.as_str().encode(e)?;
            algorithm_code(report.algorithm).encode(e)?;
            report.limit.encode(e)?;
            report.window_ms.encode(e)?;
            report.allowed.encode(e)?;
            report.remaining.encode(e)?;
            report.reset_after_ms.encode(e)?;
            report.retry_after_ms.encode(e)?;
            if !v1 {
                (report.mode == Mode::Shadow).encode(e)?;
                report.reset_at.map(unix_ms).encode(e)?;
            }
        }
        if v1 {
            return Ok(());
        }
        d.reset_at.map(unix_ms).encode(e)?;
        (d.shadow_denied.len() as u64).encode(e)?;
        for name in &d.shadow_denied {
            name.as_ref().encode(e)?;
        }
        self.extras.lease.encode(e)?;
        self.extras.reservation.encode(e)?;
        self.extras.problem.encode(e)
    }
}

/// A batch encoded as a [`WireBatch`] (version 1) or [`WireBatch2`] body,
/// byte for byte, without copies.
pub struct BatchBody<'d> {
    batch: &'d BatchDecision,
    version: u8,
    extras: &'d [Extras<'d>],
    problem: Option<&'d str>,
}

impl<'d> BatchBody<'d> {
    /// `batch` in protocol `version`, with no extras or problem details.
    pub fn new(batch: &'d BatchDecision, version: u8) -> Self {
        Self {
            batch,
            version,
            extras: &[],
            problem: None,
        }
    }

    /// With each decision's extras (in order; version 2 only) and the
    /// batch's problem details.
    pub fn with(self, extras: &'d [Extras<'d>], problem: Option<&'d str>) -> Self {
        Self {
            extras,
            problem,
            ..self
        }
    }
}

impl Encode for BatchBody<'_> {
    fn encode<E: bincode::enc::Encoder>(&self, e: &mut E) -> Result<(), bincode::error::EncodeError> {
        self.batch.allowed.encode(e)?;
        (self.batch.decisions.len() as u64).encode(e)?;
        for (i, decision) in self.batch.decisions.iter().enumerate() {
            let extras = self.extras.get(i).copied().unwrap_or_default();
            DecisionBody::new(decision, self.version).with(extras).encode(e)?;
        }
        if self.version >= 2 {
            self.problem.encode(e)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{ManualClock, SECOND};
    use crate::config::Config;
    use crate::engine::{CheckRequest, Engine};

    const CONFIG: &str = r#"
[policies.p]
key = ["user"]
default_tier = "free"
[policies.p.tiers.free]
limits = [
  { name = "burst", algorithm = "token_bucket", rate = "1/s", burst = 2 },
  { algorithm = "sliding_window", rate = "100/day" },
]
[policies.p.tiers.open]
unlimited = true
requestable = true
"#;

    fn requests() -> Vec<CheckRequest> {
        let user = |name: &str| RequestKey {
            user: Some(name.into()),
            ..RequestKey::default()
        };
        let mut open = CheckRequest::policy("p", user("b"));
        open.tier = Some("open".into());
        let inline = CheckRequest {
            target: Target::Inline {
                namespace: "drf:anon".into(),
                limits: vec![LimitSpec::rated(AlgorithmName::SlidingWindow, "1/minute")],
            },
            key: user("c"),
            tier: None,
            cost: None,
        };
        // Allowed twice, then denied; unlimited; inline, allowed then denied.
        let a = CheckRequest::policy("p", user("a"));
        vec![a.clone(), a.clone(), a, open, inline.clone(), inline]
    }

    #[test]
    fn borrowed_decisions_encode_and_serialize_as_owned_ones_do() {
        let engine = Engine::new(
            Config::parse(CONFIG).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        );
        for request in requests() {
            let (v1, v2, view_json, owned) = engine
                .check_with(&request, |verdict| {
                    let view = verdict.view();
                    let v1 = encode(&DecisionBody::new(&view, 1));
                    let v2 = encode(&DecisionBody::new(&view, 2));
                    (
                        v1,
                        v2,
                        serde_json::to_value(&view).unwrap(),
                        verdict.to_decision(),
                    )
                })
                .unwrap();
            assert_eq!(v1, encode(&WireDecision::from(&owned)), "{owned:?}");
            assert_eq!(v2, encode(&WireDecision2::from(&owned)), "{owned:?}");
            assert_eq!(view_json, serde_json::to_value(&owned).unwrap());
        }
        let batch = engine.check_batch(&requests()[..2]).unwrap();
        let owned = WireBatch {
            allowed: batch.allowed,
            decisions: batch.decisions.iter().map(WireDecision::from).collect(),
        };
        assert_eq!(encode(&BatchBody::new(&batch, 1)), encode(&owned));
        let extras = [Extras {
            lease: Some("a lease"),
            ..Extras::default()
        }];
        let mut owned = WireBatch2 {
            allowed: batch.allowed,
            decisions: batch.decisions.iter().map(WireDecision2::from).collect(),
            problem: Some("{}".into()),
        };
        owned.decisions[0].lease = Some("a lease".into());
        let body = BatchBody::new(&batch, 2).with(&extras, Some("{}"));
        assert_eq!(encode(&body), encode(&owned));
    }

    #[test]
    fn version_2_appends_to_version_1() {
        let engine = Engine::new(
            Config::parse(CONFIG).unwrap(),
            Arc::new(ManualClock::new(1_800_000_000 * SECOND)),
        );
        let decision = engine.check(&requests()[0]).unwrap();
        let extras = Extras {
            lease: Some("l"),
            reservation: Some("r"),
            problem: None,
        };
        let bytes = encode(&DecisionBody::new(&decision, 2).with(extras));
        let wire: WireDecision2 = decode(&bytes).unwrap();
        assert_eq!(wire.lease.as_deref(), Some("l"));
        assert_eq!(wire.reservation.as_deref(), Some("r"));
        assert!(wire.limits.iter().all(|limit| !limit.shadow));
        // Extras have no place in version 1: its bytes are the same.
        let v1 = encode(&DecisionBody::new(&decision, 1).with(extras));
        assert_eq!(v1, encode(&DecisionBody::new(&decision, 1)));
    }
}
