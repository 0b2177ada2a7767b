//! A customer's own quota terms (admin token): their own quota, for good
//! or until a date (`PUT`/`DELETE /v1/quotas/{subject}/{id}`), a credit
//! for the current period (`POST …/credit`), and a reset of what they used
//! this period (`POST …/reset`, a credit of exactly that). Each edits
//! `[quota_overrides]` of the config in force and puts it in force: a
//! runtime config change, replicated to every node and kept by snapshots
//! like `PUT /v1/config`. The config is written anew from its parsed form.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::{adopt, authorize, subject};
use super::error::{ApiError, JsonBody};
use super::App;
use crate::clock::Nanos;
use crate::config::file::{OwnQuota, OwnTerms, QuotaOverridesSection};
use crate::config::overrides::{compile_terms, quota_limits};
use crate::engine::{CheckRequest, RequestKey, ResetAt, Subject};
use crate::limiter::Quota;
use crate::policy::AlgorithmName;

/// `PUT /v1/quotas/{subject}/{id}` body: limit name to the subject's own
/// quota for it: a number, or `{"quota": 250000, "until": "<RFC 3339>"}`.
pub type OwnQuotasBody = BTreeMap<String, OwnQuota>;

/// `PUT /v1/quotas/{subject}/{id}`: gives a token, user, IP or endpoint its
/// own quotas, replacing any it had; its credits stay.
pub async fn put_own_quotas(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
    JsonBody(quotas): JsonBody<OwnQuotasBody>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let subject = subject(&kind)?;
    if quotas.is_empty() {
        return Err(ApiError::bad_request(
            "no_quotas",
            "name at least one quota limit and its quota, such as {\"monthly\": 250000}; DELETE removes them",
        ));
    }
    if quotas
        .values()
        .any(|own| own.terms().credit.is_some() || own.terms().granted.is_some())
    {
        return Err(ApiError::bad_request(
            "credit_not_here",
            "credits are given with POST /v1/quotas/{subject}/{id}/credit",
        ));
    }
    for (limit, own) in &quotas {
        compile_terms(&own.terms())
            .map_err(|problem| ApiError::bad_request("invalid_quota", format!("{limit:?}: {problem}")))?;
    }
    let shown = json!(quotas);
    let version = edit(&app, subject, &id, |terms| {
        // Credits stay; own quotas are the ones given now.
        for terms in terms.values_mut() {
            (terms.quota, terms.until) = (None, None);
        }
        for (limit, own) in quotas {
            let given = own.terms();
            let terms = terms.entry(limit).or_default();
            (terms.quota, terms.until) = (given.quota, given.until);
        }
    })?;
    Ok(Json(
        json!({ "subject": subject.name(), "quotas": shown, "version": version }),
    ))
}

/// `DELETE /v1/quotas/{subject}/{id}`: the subject's quotas are its tier's
/// again, and its credits are gone.
pub async fn delete_own_quotas(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let subject = subject(&kind)?;
    if !table(&mut app.engine.config().file.quota_overrides.clone(), subject).contains_key(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_own_quotas",
            format!("this {} has no quotas of its own", subject.name()),
        ));
    }
    let version = edit(&app, subject, &id, BTreeMap::clear)?;
    Ok(Json(json!({ "subject": subject.name(), "version": version })))
}

/// `POST /v1/quotas/{subject}/{id}/credit` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditBody {
    /// The quota limit's name.
    limit: String,
    /// Extra units for the current period.
    units: u32,
}

/// `POST /v1/quotas/{subject}/{id}/credit`: extra units of a quota for the
/// current period, added to any credit given earlier in it; they lapse
/// when it ends.
pub async fn post_credit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<CreditBody>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let subject = subject(&kind)?;
    if body.units == 0 {
        return Err(ApiError::bad_request(
            "invalid_credit",
            "a credit is at least 1 unit",
        ));
    }
    let quota = quota_named(&app, &body.limit)?;
    let now = app.engine.now();
    let mut credit = 0;
    let version = edit(&app, subject, &id, |terms| {
        let terms = terms.entry(body.limit.clone()).or_default();
        credit = credit_now(terms, &quota, now).saturating_add(body.units);
        grant(terms, credit, now);
    })?;
    Ok(Json(json!({
        "subject": subject.name(),
        "limit": body.limit,
        "credit": credit,
        "lapses_at": ResetAt(quota.period_at(now).1),
        "version": version,
    })))
}

/// `POST /v1/quotas/{subject}/{id}/reset` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// The policy whose key is the subject alone.
    policy: String,
    /// One quota limit; all of the key's tier when absent.
    #[serde(default)]
    limit: Option<String>,
}

/// `POST /v1/quotas/{subject}/{id}/reset`: what the subject used this
/// period of its quotas in `policy` is given back, as a credit of exactly
/// that: the period goes on, and the count is whole again.
pub async fn post_reset(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ResetBody>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers)?;
    let subject = subject(&kind)?;
    let key = RequestKey::only(subject.attr(), id.clone());
    let request = CheckRequest::policy(body.policy.as_str(), key);
    let decision = app.engine.explain(&request)?.decision;
    let used: Vec<(String, u64)> = decision
        .enforced()
        .filter(|report| report.algorithm == AlgorithmName::Quota)
        .filter(|report| body.limit.as_deref().is_none_or(|limit| report.name == limit))
        .map(|report| {
            (
                report.name.to_string(),
                report.limit.saturating_sub(report.remaining),
            )
        })
        .collect();
    if used.is_empty() {
        let what = body
            .limit
            .as_deref()
            .map_or("no quota".to_string(), |l| format!("no quota {l:?}"));
        return Err(ApiError::bad_request(
            "no_quota",
            format!("this {}'s tier in {:?} has {what}", subject.name(), body.policy),
        ));
    }
    let now = app.engine.now();
    let quotas: Vec<Quota> = used
        .iter()
        .map(|(limit, _)| quota_named(&app, limit))
        .collect::<Result<_, _>>()?;
    let mut reset = Vec::new();
    let version = edit(&app, subject, &id, |terms| {
        for ((limit, used), quota) in used.iter().zip(&quotas) {
            let terms = terms.entry(limit.clone()).or_default();
            let credit = credit_now(terms, quota, now).saturating_add(*used as u32);
            if credit > 0 {
                grant(terms, credit, now);
            }
            reset.push(json!({ "limit": limit, "used": used, "credit": credit }));
        }
    })?;
    Ok(Json(json!({
        "subject": subject.name(),
        "policy": body.policy,
        "reset": reset,
        "version": version,
    })))
}

/// The credit of `terms` that counts at `now` under `quota`'s calendar.
fn credit_now(terms: &OwnTerms, quota: &Quota, now: Nanos) -> u32 {
    compile_terms(terms).map_or(0, |terms| terms.credit_at(quota, now))
}

/// Sets `terms`' credit to `credit`, given at `now`.
fn grant(terms: &mut OwnTerms, credit: u32, now: Nanos) {
    let second = (now / crate::clock::SECOND).min(i64::MAX as u64) as i64;
    terms.credit = Some(credit);
    terms.granted = jiff::Timestamp::from_second(second).ok().map(|at| at.to_string());
}

/// The first quota limit of the config named `limit`: its calendar says
/// which period a credit falls in.
fn quota_named(app: &App, limit: &str) -> Result<Quota, ApiError> {
    let config = app.engine.config();
    let found = quota_limits(&config.policies).find(|(name, _)| *name == limit);
    found.map(|(_, quota)| quota.clone()).ok_or_else(|| {
        ApiError::bad_request(
            "unknown_quota",
            format!("no tier has a quota limit named {limit:?}"),
        )
    })
}

fn table(
    overrides: &mut QuotaOverridesSection,
    subject: Subject,
) -> &mut BTreeMap<String, crate::config::file::OwnQuotas> {
    match subject {
        Subject::Token => &mut overrides.tokens,
        Subject::User => &mut overrides.users,
        Subject::Ip => &mut overrides.ips,
        Subject::Endpoint => &mut overrides.endpoints,
    }
}

/// The config in force with `edit` made to the terms of subject `id`
/// (limit name to terms), put in force; its version. A subject left with
/// no terms is removed.
fn edit(
    app: &App,
    subject: Subject,
    id: &str,
    edit: impl FnOnce(&mut BTreeMap<String, OwnTerms>),
) -> Result<u64, ApiError> {
    let mut file = app.engine.config().file.clone();
    let entries = table(&mut file.quota_overrides, subject);
    let mut terms: BTreeMap<String, OwnTerms> = entries
        .get(id)
        .map(|own| {
            own.get_ref()
                .iter()
                .map(|(limit, own)| (limit.clone(), own.terms()))
                .collect()
        })
        .unwrap_or_default();
    edit(&mut terms);
    terms.retain(|_, terms| *terms != OwnTerms::default());
    match terms.is_empty() {
        true => entries.remove(id),
        false => {
            let own = terms
                .into_iter()
                .map(|(limit, terms)| (limit, OwnQuota::from_terms(terms)));
            entries.insert(id.to_string(), toml::Spanned::new(0..0, own.collect()))
        }
    };
    let text = toml::to_string(&file).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("writing the config: {e}"),
        )
    })?;
    adopt(app, &text)
}
