//! `GET /v1/quota`: what a customer has used of each calendar quota of
//! their key, and when each resets: what a team shows on its billing page.
//!
//! The answer is a peek (nothing counted) on the node asked, from its
//! replicated counts: in a cluster, every node's calls that have reached it
//! (within a sync interval, docs/consistency.md). It names no key, only the
//! numbers, but it is usage data all the same: the read token guards it as
//! it guards `GET /v1/usage`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::usage::authorize;
use super::App;
use crate::engine::{CheckRequest, RequestKey, ResetAt, TierSource};
use crate::limiter::Limit;
use crate::policy::{AlgorithmName, Tier, TierLimits};

/// `GET /v1/quota` query: a policy and the key's attributes (and a tier,
/// for a check that names its own).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaQuery {
    policy: String,
    user: Option<String>,
    ip: Option<String>,
    token: Option<String>,
    endpoint: Option<String>,
    tier: Option<String>,
}

/// One quota of the key.
#[derive(Debug, Serialize)]
pub struct QuotaUse {
    /// The limit's name.
    pub name: String,
    /// `day`, `week` or `month`.
    pub period: &'static str,
    /// The time zone its periods follow.
    pub timezone: String,
    /// Units per period (the part this node enforces, while it is cut off
    /// from part of its cluster).
    pub limit: u64,
    /// Units used this period.
    pub used: u64,
    /// Units left this period.
    pub remaining: u64,
    /// When the period resets, RFC 3339 UTC.
    pub resets_at: Option<ResetAt>,
    /// The customer's own quota (`[quota_overrides]`), when one is in
    /// force: by which of their attributes, and the tier's quota it
    /// replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_quota: Option<OwnQuota>,
}

/// A customer's own terms, as `GET /v1/quota` shows them.
#[derive(Debug, Serialize)]
pub struct OwnQuota {
    /// `token`, `user`, `ip` or `endpoint`.
    pub subject: &'static str,
    /// The tier's quota.
    pub tier_quota: u32,
    /// Their own quota in its place, while in force.
    pub quota: Option<u32>,
    /// When their own quota lapses; absent when it lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<ResetAt>,
    /// Extra units for this period (a credit or a reset).
    pub credit: u32,
}

/// `GET /v1/quota` answer.
#[derive(Debug, Serialize)]
pub struct QuotaReport {
    /// The policy asked about.
    pub policy: String,
    /// The tier the key is in now.
    pub tier: Option<String>,
    /// Where that tier came from.
    pub tier_source: Option<TierSource>,
    /// The tier's quotas, in config order; empty when it has none.
    pub quotas: Vec<QuotaUse>,
}

fn named<'t>(tiers: &'t [Tier], name: Option<&str>) -> Option<&'t Tier> {
    tiers.iter().find(|tier| Some(tier.name.as_str()) == name)
}

/// `GET /v1/quota`.
pub async fn get_quota(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    extensions: Extensions,
    uri: Uri,
    query: Result<Query<QuotaQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<QuotaReport>, ApiError> {
    authorize(&app, &headers, &extensions, &uri)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut request = CheckRequest::policy(
        query.policy.as_str(),
        RequestKey {
            user: query.user,
            ip: query.ip,
            token: query.token,
            endpoint: query.endpoint,
        },
    );
    request.tier = query.tier;
    // When the terms are judged: as the check is, give or take the moment.
    let now = app.engine.now();
    let explained = app.engine.explain(&request)?;
    let decision = explained.decision;
    let config = app.engine.config();
    let policy = config.policy(&query.policy);
    let name = decision.tier.as_deref();
    // An endpoint rule with limits of its own for the tier decides instead.
    let rule = request
        .key
        .endpoint
        .as_deref()
        .zip(policy)
        .and_then(|(e, p)| p.endpoint_rule(e));
    let tier = rule
        .and_then(|rule| named(&rule.tiers, name))
        .or_else(|| named(&policy?.tiers, name));
    let limits = match tier.map(|tier| &tier.limits) {
        Some(TierLimits::Limited(limits)) => &limits[..],
        _ => &[],
    };
    let quotas = decision
        .enforced()
        .filter(|report| report.algorithm == AlgorithmName::Quota)
        .filter_map(|report| {
            let named = limits.iter().find(|limit| limit.name == report.name)?;
            let Limit::Quota(quota) = &named.limit else {
                return None;
            };
            let own_quota = config
                .quota_overrides
                .find(&request.key, &report.name)
                .map(|own| OwnQuota {
                    subject: own.subject.name(),
                    tier_quota: quota.limit(),
                    quota: own.terms.own_quota_at(now),
                    until: own
                        .terms
                        .quota
                        .and_then(|(_, until)| until)
                        .filter(|_| own.terms.own_quota_at(now).is_some())
                        .map(ResetAt),
                    credit: own.terms.credit_at(quota, now),
                });
            Some(QuotaUse {
                own_quota,
                name: report.name.to_string(),
                period: quota.calendar().period().as_str(),
                timezone: quota.calendar().zone_name().to_string(),
                limit: report.limit,
                used: report.limit.saturating_sub(report.remaining),
                remaining: report.remaining,
                resets_at: report.reset_at,
            })
        })
        .collect();
    Ok(Json(QuotaReport {
        policy: query.policy,
        tier: decision.tier.map(String::from),
        tier_source: explained.tier_source,
        quotas,
    }))
}
