//! The domain's words, shared by the config file, the HTTP and binary
//! requests and the engine: which attributes form a key, which algorithms
//! a limit can use, and a limit as written. Defined here, below the config
//! layer, so that nothing under it needs `config`.

use serde::{Deserialize, Serialize};

pub use crate::key::KeyAttr;
pub use crate::limiter::AlgorithmName;

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
