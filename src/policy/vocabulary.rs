//! The domain's words, shared by the config file, the HTTP and binary
//! requests and the engine: which attributes form a key, which algorithms
//! a limit can use, and a limit as written. Defined here, below the config
//! layer, so that nothing under it needs `config`.

use serde::{Deserialize, Serialize};

pub use crate::key::KeyAttr;
pub use crate::limiter::{AlgorithmName, Period};

/// One limit as written in config or in an inline check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Shown in headers and decisions; defaults to the rate string (for a
    /// quota, `limit/period`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which algorithm.
    pub algorithm: AlgorithmName,
    /// A rate string such as `"100/minute"`; every algorithm but `quota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Token bucket only: capacity; defaults to the rate's count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Quota only: units per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Quota only: `day`, `week` or `month`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// Quota only: when a period starts (default: midnight UTC; the 1st
    /// for months, Monday for weeks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<ResetSpec>,
    /// Concurrency only: requests in flight at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Concurrency only: how long a request nobody releases holds its
    /// slot, such as `"30s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// `enforce` (the default) or `shadow`: counted, reported, never
    /// deciding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// Whether a limit decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// It decides: a request passes only if it has room.
    #[default]
    Enforce,
    /// It counts each request as it would if it were enforced beside the
    /// enforced limits, and is reported, but never changes the answer.
    Shadow,
}

impl LimitSpec {
    /// A limit of `algorithm` at `rate`, as an inline check or a test
    /// writes one.
    pub fn rated(algorithm: AlgorithmName, rate: &str) -> Self {
        Self {
            name: None,
            algorithm,
            rate: Some(rate.into()),
            burst: None,
            limit: None,
            period: None,
            reset: None,
            max: None,
            lease: None,
            mode: None,
        }
    }
}

/// When a quota's period starts, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResetSpec {
    /// The day of the month (1-31) for months; a weekday (`monday` or 1 to
    /// `sunday` or 7) for weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<ResetDay>,
    /// The hour (0-23), local time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u8>,
    /// An IANA time zone name such as `America/New_York`; `UTC` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A reset day: a number, or a weekday's name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ResetDay {
    /// Day of the month, or weekday 1 (Monday) to 7 (Sunday).
    Number(u8),
    /// `monday` to `sunday`.
    Weekday(String),
}

impl ResetDay {
    /// As a number: the day of the month, or the weekday from 1, Monday.
    ///
    /// # Errors
    /// A message for a name that is no weekday.
    pub fn number(&self) -> Result<u8, String> {
        const WEEKDAYS: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        match self {
            ResetDay::Number(day) => Ok(*day),
            ResetDay::Weekday(name) => WEEKDAYS
                .iter()
                .position(|day| day.eq_ignore_ascii_case(name))
                .map(|i| i as u8 + 1)
                .ok_or_else(|| format!("reset day {name:?} is no weekday (monday to sunday)")),
        }
    }
}
