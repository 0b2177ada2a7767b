//! An alert as weir keeps it, serves it (`GET /v1/alerts`) and sends it
//! (the webhook body).

use serde::{Deserialize, Serialize};

use crate::config::file::{RuleWhen, Severity};
use crate::engine::RequestKey;

/// A penalty an alert applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PenaltyApplied {
    /// `token`, `user`, `ip` or `endpoint`.
    pub subject: String,
    /// Its value.
    pub id: String,
    /// The tier it was moved to.
    pub tier: String,
    /// When it lapses, Unix ms.
    pub until_ms: u64,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Unique in the cluster: the firing node and a sequence number.
    pub id: String,
    /// The rule that fired.
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// What the rule counts.
    pub when: RuleWhen,
    /// The policy, for policy checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The inline namespace, for inline checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The key's tier when it fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The key's attributes; empty for a `denied_ratio` rule.
    pub key: RequestKey,
    /// The count that crossed the threshold (a ratio for `denied_ratio`).
    pub count: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// The rule's window, in seconds.
    pub window_s: f64,
    /// The node that fired it.
    pub node: String,
    /// When, Unix ms.
    pub fired_at_ms: u64,
    /// When, RFC 3339 in UTC.
    pub fired_at: String,
    /// The penalty applied, if the rule has one.
    pub penalty: Option<PenaltyApplied>,
}

/// `unix_ms` as RFC 3339 in UTC, e.g. `2026-11-30T16:40:01.250Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let (days, ms) = (unix_ms / 86_400_000, unix_ms % 86_400_000);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_unix_time_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_056_801_250), "2026-11-30T16:40:01.250Z");
    }
}
