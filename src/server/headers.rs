//! Rate-limit response headers from a [`Decision`].
//!
//! - `RateLimit-Policy` and `RateLimit` as in draft-ietf-httpapi-ratelimit-
//!   headers (structured-field lists, one item per limit):
//!   `RateLimit-Policy: "burst";q=20;w=2, "hourly";q=1000;w=3600` and
//!   `RateLimit: "burst";r=19;t=1, "hourly";r=999;t=3600`.
//!   A token bucket's `q` is its burst and `w` the seconds it takes to refill
//!   from empty; a concurrency limit's item adds `qu="concurrent-requests"`.
//! - `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
//!   (seconds from now) for the limit closest to denying.
//! - `Retry-After` (seconds) on a denial that can succeed later.
//!
//! Shadow limits are not in them (they decide nothing); an unlimited tier
//! gets none of them.

use std::fmt::Write;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::engine::Decision;

fn seconds(millis: u64) -> u64 {
    millis.div_ceil(1000)
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    // Names are restricted to a header-safe alphabet at config time and
    // everything else is digits, so the value is always valid.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn insert_number(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
}

/// Adds the rate-limit headers for `decision` to `headers`.
pub fn add_rate_limit_headers<S>(headers: &mut HeaderMap, decision: &Decision<S>) {
    let enforced = decision.enforced().count();
    if enforced == 0 {
        return;
    }
    // About 40 bytes per limit in each list.
    let mut policy = String::with_capacity(48 * enforced);
    let mut state = String::with_capacity(48 * enforced);
    for (i, limit) in decision.enforced().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        let window = seconds(limit.window_ms).max(1);
        // Writing to a String cannot fail.
        let _ = write!(
            policy,
            "{separator}\"{}\";q={};w={window}",
            limit.name, limit.limit
        );
        // The draft's quota unit for requests in flight.
        if limit.algorithm == crate::policy::AlgorithmName::Concurrency {
            policy.push_str(";qu=\"concurrent-requests\"");
        }
        let reset = seconds(limit.reset_after_ms);
        let _ = write!(
            state,
            "{separator}\"{}\";r={};t={reset}",
            limit.name, limit.remaining
        );
    }
    insert(headers, "ratelimit-policy", policy);
    insert(headers, "ratelimit", state);
    if let (Some(limit), Some(remaining)) = (decision.limit, decision.remaining) {
        insert_number(headers, "x-ratelimit-limit", limit);
        insert_number(headers, "x-ratelimit-remaining", remaining);
        insert_number(headers, "x-ratelimit-reset", seconds(decision.reset_after_ms));
    }
    if let (false, Some(retry)) = (decision.allowed, decision.retry_after_ms) {
        insert_number(headers, "retry-after", seconds(retry).max(1));
    }
}
