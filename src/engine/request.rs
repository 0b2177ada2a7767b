//! What a caller asks: a policy (or inline limits), the key's attributes, an
//! optional tier and cost. Also the errors a request can earn, each with a
//! stable code for API clients.

use serde::{Deserialize, Serialize};

use crate::key::Attrs;
use crate::policy::{KeyAttr, KeySet, LimitSpec, MAX_COST};

/// Longest value of one key attribute, in bytes.
pub const MAX_VALUE: usize = 256;

/// Most checks in one atomic batch.
pub const MAX_BATCH: usize = 32;

/// The attributes of a request that can form a key. Serialized (absent
/// ones left out) where usage and alerts report a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestKey {
    /// The authenticated user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The client IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The endpoint, such as `GET /orders`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl RequestKey {
    /// The value of `attr`, if present.
    pub fn get(&self, attr: KeyAttr) -> Option<&str> {
        match attr {
            KeyAttr::User => self.user.as_deref(),
            KeyAttr::Ip => self.ip.as_deref(),
            KeyAttr::Token => self.token.as_deref(),
            KeyAttr::Endpoint => self.endpoint.as_deref(),
        }
    }

    /// A key of `attr` alone.
    pub fn only(attr: KeyAttr, value: String) -> Self {
        let mut key = Self::default();
        *match attr {
            KeyAttr::User => &mut key.user,
            KeyAttr::Ip => &mut key.ip,
            KeyAttr::Token => &mut key.token,
            KeyAttr::Endpoint => &mut key.endpoint,
        } = Some(value);
        key
    }

    /// The values of the attributes in `set` that the request has.
    pub fn attrs(&self, set: KeySet) -> Attrs<'_> {
        let pick = |attr| self.get(attr).filter(|_| set.contains(attr));
        Attrs::new(KeyAttr::ALL.map(pick))
    }

    /// The attributes present.
    pub fn present(&self) -> KeySet {
        let mut set = KeySet::default();
        for attr in KeyAttr::ALL {
            if self.get(attr).is_some() {
                set.insert(attr);
            }
        }
        set
    }

    /// Checks every present value: not empty, not too long, no NUL (the
    /// separator inside store keys).
    ///
    /// # Errors
    /// [`CheckError::BadValue`] naming the attribute.
    pub fn validate(&self) -> Result<(), CheckError> {
        for attr in KeyAttr::ALL {
            if let Some(value) = self.get(attr) {
                let problem = if value.is_empty() {
                    "is empty"
                } else if value.len() > MAX_VALUE {
                    "is longer than 256 bytes"
                } else if value.contains('\0') {
                    "contains a NUL character"
                } else {
                    continue;
                };
                return Err(CheckError::BadValue {
                    attr: attr.name(),
                    problem,
                });
            }
        }
        Ok(())
    }
}

/// Whose limits a check counts against.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A policy from the config.
    Policy(String),
    /// Limits carried by the request itself, counted under a namespace the
    /// caller chooses (such as `drf:anon`).
    Inline {
        /// Keeps one caller's keys apart from another's.
        namespace: String,
        /// Validated like config limits.
        limits: Vec<LimitSpec>,
    },
}

/// One check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRequest {
    /// Policy or inline limits.
    pub target: Target,
    /// The key's attributes.
    pub key: RequestKey,
    /// The tier, when the caller knows it.
    pub tier: Option<String>,
    /// Units this request costs; 0 peeks without counting. Defaults to the
    /// endpoint rule's cost, else 1.
    pub cost: Option<u32>,
}

impl CheckRequest {
    /// A check of `policy` for `key` at the default cost.
    pub fn policy(policy: &str, key: RequestKey) -> Self {
        Self {
            target: Target::Policy(policy.into()),
            key,
            tier: None,
            cost: None,
        }
    }
}

/// Why a request cannot be checked. A denial is not an error: it is a
/// [`Decision`](super::Decision) with `allowed: false`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No policy of that name.
    #[error("unknown policy {policy:?}; known policies: {known}")]
    UnknownPolicy {
        /// The name asked for.
        policy: String,
        /// The names there are.
        known: String,
    },
    /// The policy has no tier of that name.
    #[error("policy {policy:?} has no tier {tier:?}; its tiers: {tiers}")]
    UnknownTier {
        /// The policy.
        policy: String,
        /// The tier asked for.
        tier: String,
        /// The tiers there are.
        tiers: String,
    },
    /// The check names a tier the policy does not let checks name.
    #[error("policy {policy:?}: a check may not name tier {tier:?} (only tiers marked requestable = true: {requestable}); assign it with PUT /v1/tiers or [assignments] instead")]
    TierNotRequestable {
        /// The policy.
        policy: String,
        /// The tier asked for.
        tier: String,
        /// The tiers a check may name.
        requestable: String,
    },
    /// The key carries an attribute the policy does not use.
    #[error("policy {policy:?} does not use key attribute {attr:?}; it uses: {uses}")]
    UnusedAttribute {
        /// The policy.
        policy: String,
        /// The attribute sent.
        attr: &'static str,
        /// The attributes it accepts.
        uses: String,
    },
    /// The key lacks an attribute the policy needs.
    #[error("policy {policy:?} needs key attribute {attr:?}")]
    MissingAttribute {
        /// The policy.
        policy: String,
        /// The attribute missing.
        attr: &'static str,
    },
    /// An inline check's key has no attributes.
    #[error("key needs at least one of user, ip, token, endpoint")]
    EmptyKey,
    /// A key attribute's value is unusable.
    #[error("key.{attr} {problem}")]
    BadValue {
        /// The attribute.
        attr: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The cost is out of range.
    #[error("cost {cost} is larger than the maximum of {MAX_COST}")]
    CostTooLarge {
        /// The cost asked for.
        cost: u32,
    },
    /// Inline limits that do not validate.
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    /// An inline namespace that does not validate.
    #[error("namespace {0:?} must be 1-64 characters of A-Z a-z 0-9 _ - . : /")]
    InvalidNamespace(String),
    /// A batch with no checks, or too many.
    #[error("a batch holds 1 to {MAX_BATCH} checks, got {0}")]
    BatchSize(usize),
    /// One check of a batch is invalid; nothing was counted.
    #[error("check {index}: {source}")]
    InBatch {
        /// Position in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        source: Box<CheckError>,
    },
}

impl CheckError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CheckError::UnknownPolicy { .. } => "unknown_policy",
            CheckError::UnknownTier { .. } => "unknown_tier",
            CheckError::TierNotRequestable { .. } => "tier_not_requestable",
            CheckError::UnusedAttribute { .. } => "unused_key_attribute",
            CheckError::MissingAttribute { .. } => "missing_key_attribute",
            CheckError::EmptyKey => "empty_key",
            CheckError::BadValue { .. } => "bad_key_value",
            CheckError::CostTooLarge { .. } => "cost_too_large",
            CheckError::InvalidLimits(_) => "invalid_limits",
            CheckError::InvalidNamespace(_) => "invalid_namespace",
            CheckError::BatchSize(_) => "batch_size",
            CheckError::InBatch { source, .. } => source.code(),
        }
    }
}
