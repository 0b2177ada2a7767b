//! Denials as RFC 9457 problem details, for clients that ask for them with
//! `Accept: application/problem+json`: the problem types of the IETF
//! RateLimit header draft (`quota-exceeded` with `violated-policies`, the
//! names the `RateLimit-Policy` header gives the limits that denied; and
//! `abnormal-usage-detected` when a penalty tier decided), with weir's own
//! decision as an extension member, so nothing a JSON client reads is lost.
//! Other clients get the decision as ever.

use axum::extract::FromRequestParts;
use axum::http::header::ACCEPT;
use axum::http::request::Parts;
use serde::Serialize;

use crate::config::Config;
use crate::engine::Decision;

/// Media type of a problem document.
pub const MEDIA_TYPE: &str = "application/problem+json";

const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";
const ABNORMAL_USAGE: &str = "https://iana.org/assignments/http-problem-types#abnormal-usage-detected";

/// Whether the request's `Accept` names [`MEDIA_TYPE`]: read from the
/// request's parts, so the headers are not copied on every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantsProblem(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for WantsProblem {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let wants = parts.headers.get_all(ACCEPT).iter().any(|value| {
            value.to_str().is_ok_and(|accept| {
                accept.split(',').any(|range| {
                    range
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .eq_ignore_ascii_case(MEDIA_TYPE)
                })
            })
        });
        Ok(Self(wants))
    }
}

/// A denial as a problem document.
#[derive(Debug, Serialize)]
pub struct Problem<'a, T> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(rename = "violated-policies")]
    violated_policies: Vec<&'a str>,
    /// weir's decision (or batch), as `application/json` would carry it.
    decision: &'a T,
}

impl<'a, T> Problem<'a, T> {
    /// The problem for `denied` (the decision that headers describe),
    /// carrying `body`, under `config` (which says whether its tier is a
    /// penalty).
    pub fn of<S: AsRef<str>>(denied: &'a Decision<S>, body: &'a T, config: &Config) -> Self {
        let violated: Vec<&str> = denied
            .enforced()
            .filter(|limit| !limit.allowed)
            .map(|limit| limit.name.as_str())
            .collect();
        let penalty = denied
            .policy
            .as_ref()
            .zip(denied.tier.as_ref())
            .and_then(|(policy, tier)| config.policy(policy.as_ref())?.tier(tier.as_ref()))
            .is_some_and(|tier| tier.penalty);
        let (kind, title) = match penalty {
            true => (ABNORMAL_USAGE, "Request denied: abnormal usage was detected"),
            false => (
                QUOTA_EXCEEDED,
                "Request cannot be satisfied as assigned quota has been exceeded",
            ),
        };
        let detail = match (penalty, denied.tier.as_ref()) {
            (true, Some(tier)) => format!("this client is in the penalty tier {:?}", tier.as_ref()),
            _ => format!("denied by {}", violated.join(", ")),
        };
        Self {
            kind,
            title,
            status: 429,
            detail,
            violated_policies: violated,
            decision: body,
        }
    }
}

/// The problem details of `denied` carrying `body`, as JSON text: what
/// the binary protocol's version 2 sends a client that asks.
pub fn text<S: AsRef<str>, T: Serialize>(denied: &Decision<S>, body: &T, config: &Config) -> String {
    // Serializing our own types into a String cannot fail.
    serde_json::to_string(&Problem::of(denied, body, config)).unwrap_or_default()
}
