//! From a request to what to count: the policy, the tier, the endpoint rule,
//! the limits, the cost, and the store key.
//!
//! The store key is written into a caller's buffer, so that a check on a
//! known key allocates nothing; its text is [`crate::key`]'s.

use std::borrow::Cow;

use super::request::{CheckError, CheckRequest, Target};
use super::tiers::{Subject, TierOverlay};
use crate::clock::Nanos;
use crate::config::Config;
use crate::key::{Key, Scope};
use crate::policy::{
    compile_limits, is_valid_name, KeyAttr, KeySet, NamedLimit, Observer, Policy, QuotaRule, Tier,
    TierLimits, MAX_COST,
};

/// Where a check's tier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierSource {
    /// Named in the request.
    Request,
    /// A runtime assignment (`PUT /v1/tiers/...`).
    Assignment,
    /// An assignment declared in the config.
    Config,
    /// The policy's default tier.
    Default,
}

/// A request, resolved against a config.
pub(super) struct Resolved<'c> {
    /// Whose limits: the scope of the key, whose text is in the caller's
    /// buffer.
    pub scope: Scope<'c>,
    /// `None` for inline checks, which have no tiers.
    pub tier_source: Option<TierSource>,
    /// Alert rules counting this check's key.
    pub observers: Cow<'c, [Observer]>,
    /// Alert rules watching the key's use of its quotas.
    pub quota_rules: &'c [QuotaRule],
    /// Some limit is a shadow limit: the check reports which would deny.
    pub shadows: bool,
    /// `None` for an unlimited or deny tier.
    pub limits: Option<Cow<'c, [NamedLimit]>>,
    /// A deny tier: nothing passes.
    pub deny: Option<Denial>,
    pub cost: u32,
    /// A policy, or an inline namespace the config names (see
    /// [`CheckEvent::named`](super::CheckEvent::named)).
    pub named: bool,
}

/// A check in a deny tier: denied until the assignment that put the key
/// there lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// When the assignment lapses (Unix ns); `None` for good, or for a
    /// deny tier reached otherwise (a request, the config, the default).
    pub until: Option<Nanos>,
}

/// Resolves `request` against `config`, writing its store key into `key`.
pub(super) fn resolve<'c>(
    config: &'c Config,
    overlay: &TierOverlay,
    request: &'c CheckRequest,
    key: &mut String,
    now: Nanos,
) -> Result<Resolved<'c>, CheckError> {
    request.key.validate()?;
    if let Some(cost) = request.cost.filter(|cost| *cost > MAX_COST) {
        return Err(CheckError::CostTooLarge { cost });
    }
    match &request.target {
        Target::Policy(name) => resolve_policy(config, overlay, name, request, key, now),
        Target::Inline { namespace, limits } => {
            if !is_valid_name(namespace) {
                return Err(CheckError::InvalidNamespace(namespace.clone()));
            }
            if request.tier.is_some() {
                return Err(CheckError::InvalidLimits(
                    "tier applies to policy checks only; inline limits have no tiers".into(),
                ));
            }
            let limits = compile_limits(limits).map_err(CheckError::InvalidLimits)?;
            let present = request.key.present();
            if present.is_empty() {
                return Err(CheckError::EmptyKey);
            }
            let scope = Scope::Inline { namespace };
            let counted = Key {
                scope,
                endpoint_rule: None,
                attrs: request.key.attrs(present),
            };
            counted.encode(key);
            Ok(Resolved {
                scope,
                tier_source: None,
                quota_rules: &[],
                shadows: limits.iter().any(|limit| limit.shadow),
                observers: match config.alerts.inline_observers.is_empty() {
                    true => Cow::Borrowed(&[]),
                    false => Cow::Owned(config.alerts.inline(namespace).cloned().collect()),
                },
                limits: Some(Cow::Owned(limits.into_vec())),
                deny: None,
                cost: request.cost.unwrap_or(1),
                named: config.alerts.named_namespaces.contains(namespace.as_str()),
            })
        }
    }
}

fn resolve_policy<'c>(
    config: &'c Config,
    overlay: &TierOverlay,
    name: &str,
    request: &'c CheckRequest,
    key: &mut String,
    now: Nanos,
) -> Result<Resolved<'c>, CheckError> {
    let policy = config.policy(name).ok_or_else(|| {
        let known: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
        CheckError::UnknownPolicy {
            policy: name.into(),
            known: known.join(", "),
        }
    })?;
    check_attrs(policy, request.key.present())?;
    let (tier, tier_source, lapses) = resolve_tier(config, overlay, policy, request, now)?;
    let rule = request
        .key
        .endpoint
        .as_deref()
        .and_then(|e| policy.endpoint_rule(e));
    let endpoint_tier = rule.and_then(|rule| rule.tiers.iter().find(|t| t.name == tier.name));

    let scope = Scope::Policy {
        policy: &policy.name,
        tier: &tier.name,
    };
    let counted = Key {
        scope,
        // Limits of its own for the endpoint: counted apart.
        endpoint_rule: endpoint_tier
            .and(request.key.endpoint.as_deref())
            .filter(|_| !policy.key.contains(KeyAttr::Endpoint)),
        attrs: request.key.attrs(policy.key),
    };
    counted.encode_with(&tier.key_prefix, key);

    let (limits, deny) = match &endpoint_tier.unwrap_or(tier).limits {
        TierLimits::Unlimited => (None, None),
        TierLimits::Deny => (None, Some(Denial { until: lapses })),
        // A customer's own quota, where the config gives one.
        TierLimits::Limited(limits) => match config.quota_overrides.is_empty() {
            true => (Some(Cow::Borrowed(&limits[..])), None),
            false => match config.quota_overrides.apply(limits, &request.key, now) {
                Some(own) => (Some(Cow::Owned(own)), None),
                None => (Some(Cow::Borrowed(&limits[..])), None),
            },
        },
    };
    Ok(Resolved {
        scope,
        tier_source: Some(tier_source),
        observers: Cow::Borrowed(&tier.observers),
        quota_rules: &endpoint_tier.unwrap_or(tier).quota_rules,
        shadows: limits
            .as_deref()
            .is_some_and(|limits| limits.iter().any(|limit| limit.shadow)),
        limits,
        deny,
        cost: request.cost.or(rule.and_then(|rule| rule.cost)).unwrap_or(1),
        named: true,
    })
}

fn check_attrs(policy: &Policy, present: KeySet) -> Result<(), CheckError> {
    let accepted = policy.accepted_attrs();
    if let Some(attr) = present.without(accepted).first() {
        return Err(CheckError::UnusedAttribute {
            policy: policy.name.to_string(),
            attr: attr.name(),
            uses: accepted.describe(),
        });
    }
    if let Some(attr) = policy.key.without(present).first() {
        return Err(CheckError::MissingAttribute {
            policy: policy.name.to_string(),
            attr: attr.name(),
        });
    }
    Ok(())
}

/// The tier of a check, in this order:
/// 1. a penalty tier assigned to the key (at runtime, then in the config):
///    a penalty holds whatever tier the check names;
/// 2. the tier the check names, if the policy marks it requestable;
/// 3. a runtime assignment in force (token, user, IP, endpoint, in that
///    order), else one from the config (the same order), else the policy's
///    default.
///
/// An assigned tier the policy does not have is passed over. The third
/// value is when a runtime assignment lapses.
fn resolve_tier<'c>(
    config: &Config,
    overlay: &TierOverlay,
    policy: &'c Policy,
    request: &CheckRequest,
    now: Nanos,
) -> Result<(&'c Tier, TierSource, Option<Nanos>), CheckError> {
    // Both are usually empty: then a check looks at neither.
    let runtime = (!overlay.is_empty())
        .then(|| {
            Subject::ALL.into_iter().find_map(|subject| {
                let assigned = overlay.assigned(subject, request.key.get(subject.attr())?, now)?;
                Some((policy.tier(&assigned.tier)?, assigned.until))
            })
        })
        .flatten();
    let declared = (!config.assignments.is_empty())
        .then(|| {
            Subject::ALL.into_iter().find_map(|subject| {
                let table = config.assignments.table(subject);
                let id = request.key.get(subject.attr()).filter(|_| !table.is_empty())?;
                policy.tier(table.get(id)?)
            })
        })
        .flatten();
    match (runtime, declared) {
        (Some((tier, until)), _) if tier.penalty => return Ok((tier, TierSource::Assignment, until)),
        (_, Some(tier)) if tier.penalty => return Ok((tier, TierSource::Config, None)),
        _ => {}
    }
    if let Some(name) = &request.tier {
        let tier = policy.tier(name).ok_or_else(|| CheckError::UnknownTier {
            policy: policy.name.to_string(),
            tier: name.clone(),
            tiers: policy.tier_names(),
        })?;
        if !tier.requestable {
            let requestable: Vec<&str> = policy
                .tiers
                .iter()
                .filter(|t| t.requestable)
                .map(|t| t.name.as_str())
                .collect();
            return Err(CheckError::TierNotRequestable {
                policy: policy.name.to_string(),
                tier: name.clone(),
                requestable: match requestable.is_empty() {
                    true => "none".into(),
                    false => requestable.join(", "),
                },
            });
        }
        return Ok((tier, TierSource::Request, None));
    }
    if let Some((tier, until)) = runtime {
        return Ok((tier, TierSource::Assignment, until));
    }
    if let Some(tier) = declared {
        return Ok((tier, TierSource::Config, None));
    }
    Ok((policy.default_tier(), TierSource::Default, None))
}
