//! Frame bodies: plain structs, encoded by bincode 2 with fixed-size
//! little-endian integers. In that encoding a `u8`/`bool` is 1 byte, `u32`
//! 4, `u64` 8; an `Option` is a 1-byte tag (0 none, 1 some) then the value;
//! a `String` or `Vec` is a `u64` length then its bytes or items; an enum is
//! a `u32` variant index then its fields. docs/protocol.md spells out each.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::frame::MAX_FRAME;
use crate::engine::{CheckError, CheckRequest, Decision, LimitReport, RequestKey, Target};
use crate::policy::{AlgorithmName, LimitSpec};

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

impl<S: AsRef<str>> From<&Decision<S>> for WireDecision {
    fn from(decision: &Decision<S>) -> Self {
        Self {
            allowed: decision.allowed,
            policy: decision.policy.as_ref().map(|s| s.as_ref().to_string()),
            namespace: decision.namespace.as_ref().map(|s| s.as_ref().to_string()),
            tier: decision.tier.as_ref().map(|s| s.as_ref().to_string()),
            cost: decision.cost,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after_ms: decision.reset_after_ms,
            retry_after_ms: decision.retry_after_ms,
            limits: decision.enforced().map(WireReport::from).collect(),
        }
    }
}

/// A decision encoded as a [`WireDecision`] body, byte for byte, straight
/// from the engine's borrowed decision: no owned copy, no allocation.
pub struct DecisionBody<'d, S>(pub &'d Decision<S>);

impl<S: AsRef<str>> Encode for DecisionBody<'_, S> {
    fn encode<E: bincode::enc::Encoder>(&self, e: &mut E) -> Result<(), bincode::error::EncodeError> {
        let d = self.0;
        d.allowed.encode(e)?;
        for name in [&d.policy, &d.namespace, &d.tier] {
            name.as_ref().map(AsRef::as_ref).encode(e)?;
        }
        d.cost.encode(e)?;
        d.limit.encode(e)?;
        d.remaining.encode(e)?;
        d.reset_after_ms.encode(e)?;
        d.retry_after_ms.encode(e)?;
        // A sequence: its length as a u64, then the items (as `Vec`).
        // Shadow limits are not part of this protocol version's answer.
        (d.enforced().count() as u64).encode(e)?;
        for report in d.enforced() {
            report.name.as_str().encode(e)?;
            algorithm_code(report.algorithm).encode(e)?;
            report.limit.encode(e)?;
            report.window_ms.encode(e)?;
            report.allowed.encode(e)?;
            report.remaining.encode(e)?;
            report.reset_after_ms.encode(e)?;
            report.retry_after_ms.encode(e)?;
        }
        Ok(())
    }
}

/// A batch encoded as a [`WireBatch`] body, byte for byte, without copies.
pub struct BatchBody<'d>(pub &'d crate::engine::BatchDecision);

impl Encode for BatchBody<'_> {
    fn encode<E: bincode::enc::Encoder>(&self, e: &mut E) -> Result<(), bincode::error::EncodeError> {
        self.0.allowed.encode(e)?;
        (self.0.decisions.len() as u64).encode(e)?;
        for decision in &self.0.decisions {
            DecisionBody(decision).encode(e)?;
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
            let (view_bytes, view_json, owned) = engine
                .check_with(&request, |verdict| {
                    let view = verdict.view();
                    let bytes = encode(&DecisionBody(&view));
                    (bytes, serde_json::to_value(&view).unwrap(), verdict.to_decision())
                })
                .unwrap();
            assert_eq!(view_bytes, encode(&WireDecision::from(&owned)), "{owned:?}");
            assert_eq!(view_json, serde_json::to_value(&owned).unwrap());
        }
        let batch = engine.check_batch(&requests()[..2]).unwrap();
        let owned = WireBatch {
            allowed: batch.allowed,
            decisions: batch.decisions.iter().map(WireDecision::from).collect(),
        };
        assert_eq!(encode(&BatchBody(&batch)), encode(&owned));
    }
}
