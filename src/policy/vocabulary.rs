//! The domain's words, shared by the config file, the HTTP and binary
//! requests and the engine: which attributes form a key, which algorithms
//! a limit can use, and a limit as written. Defined here, below the config
//! layer, so that nothing under it needs `config`.

use serde::{Deserialize, Serialize};

/// A request attribute that can form part of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAttr {
    /// The authenticated user.
    User,
    /// The client IP address.
    Ip,
    /// The API token.
    Token,
    /// The endpoint, such as `GET /orders`.
    Endpoint,
}

impl KeyAttr {
    /// Every attribute, in key order.
    pub const ALL: [KeyAttr; 4] = [KeyAttr::User, KeyAttr::Ip, KeyAttr::Token, KeyAttr::Endpoint];

    /// One letter naming the attribute inside store keys.
    pub fn tag(self) -> char {
        match self {
            KeyAttr::User => 'u',
            KeyAttr::Ip => 'i',
            KeyAttr::Token => 't',
            KeyAttr::Endpoint => 'e',
        }
    }

    /// The attribute's name in config and requests.
    pub fn name(self) -> &'static str {
        match self {
            KeyAttr::User => "user",
            KeyAttr::Ip => "ip",
            KeyAttr::Token => "token",
            KeyAttr::Endpoint => "endpoint",
        }
    }
}

/// One limit as written in config or in an inline check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Shown in headers and decisions; defaults to the rate string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which algorithm.
    pub algorithm: AlgorithmName,
    /// A rate string such as `"100/minute"`.
    pub rate: String,
    /// Token bucket only: capacity; defaults to the rate's count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The algorithms a limit can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmName {
    /// Rate plus burst.
    TokenBucket,
    /// Count per window.
    SlidingWindow,
    /// A deny tier (`deny = true`), reported as one limit of capacity 0;
    /// never a limit's algorithm in a config or a check.
    #[serde(skip_deserializing)]
    Deny,
}

impl AlgorithmName {
    /// As in config, the HTTP API and metrics: `token_bucket`,
    /// `sliding_window`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmName::TokenBucket => "token_bucket",
            AlgorithmName::SlidingWindow => "sliding_window",
            AlgorithmName::Deny => "deny",
        }
    }
}
