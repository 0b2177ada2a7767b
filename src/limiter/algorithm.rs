//! The algorithms' names, as config files, the APIs and metrics write them.

use serde::{Deserialize, Serialize};

/// The algorithms a limit can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmName {
    /// Rate plus burst.
    TokenBucket,
    /// Count per window.
    SlidingWindow,
    /// Count per calendar period.
    Quota,
    /// Requests in flight.
    Concurrency,
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
            AlgorithmName::Quota => "quota",
            AlgorithmName::Concurrency => "concurrency",
            AlgorithmName::Deny => "deny",
        }
    }
}
