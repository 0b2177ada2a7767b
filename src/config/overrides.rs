//! `[quota_overrides]` compiled: a customer's own terms for a quota limit
//! of their tier (their own quota, for good or until a date, and a credit
//! for one period), found by their token, user, IP or endpoint (in that
//! order), and applied to a check's limits.
//!
//! Overrides are part of the config, so a runtime change (`PUT /v1/config`)
//! reaches every node of a cluster and a snapshot keeps it, like any other
//! config change. An override keeps the quota's calendar, so the count
//! used so far this period stays: raising a customer's quota mid-month
//! gives them the difference at once. A credit counts in the period that
//! holds the instant it was given, and lapses with that period.

use std::collections::{BTreeMap, HashMap};

use compact_str::CompactString;

use super::compile::Problems;
use super::file::{OwnQuotas, OwnTerms, QuotaOverridesSection};
use crate::clock::Nanos;
use crate::engine::{RequestKey, Subject};
use crate::limiter::{Limit, Quota};
use crate::policy::{NamedLimit, Policy};

/// Subject's id to its own terms, by limit name.
type Table = HashMap<String, Box<[(CompactString, Terms)]>>;

/// A subject's terms for one quota limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Terms {
    /// Its own units per period, and when they lapse (Unix ns).
    pub quota: Option<(u32, Option<Nanos>)>,
    /// Extra units, and when they were given (Unix ns): they count in the
    /// period that holds that instant.
    pub credit: Option<(u32, Nanos)>,
}

impl Terms {
    /// Its own quota, while in force at `now`.
    pub fn own_quota_at(&self, now: Nanos) -> Option<u32> {
        let (quota, until) = self.quota?;
        until.is_none_or(|until| now < until).then_some(quota)
    }

    /// The credit that counts at `now` under `quota`'s calendar.
    pub fn credit_at(&self, quota: &Quota, now: Nanos) -> u32 {
        let Some((units, granted)) = self.credit else {
            return 0;
        };
        let (start, end) = quota.period_at(now);
        match (start..end).contains(&granted) {
            true => units,
            false => 0,
        }
    }

    /// Units per period at `now` for `quota` (the tier's): the subject's
    /// own, or the tier's, plus this period's credit.
    pub fn limit_at(&self, quota: &Quota, now: Nanos) -> u32 {
        let base = self.own_quota_at(now).unwrap_or(quota.limit());
        base.saturating_add(self.credit_at(quota, now))
    }
}

/// Every override, by subject.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaOverrides {
    tokens: Table,
    users: Table,
    ips: Table,
    endpoints: Table,
    /// No table has an entry: one load on the check path.
    none: bool,
}

impl Default for QuotaOverrides {
    fn default() -> Self {
        Self {
            tokens: Table::new(),
            users: Table::new(),
            ips: Table::new(),
            endpoints: Table::new(),
            none: true,
        }
    }
}

/// The terms found for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// Whose they are.
    pub subject: Subject,
    /// What they say.
    pub terms: Terms,
}

impl QuotaOverrides {
    /// No override at all: checks look no further.
    pub fn is_empty(&self) -> bool {
        self.none
    }

    fn table(&self, subject: Subject) -> &Table {
        match subject {
            Subject::Token => &self.tokens,
            Subject::User => &self.users,
            Subject::Ip => &self.ips,
            Subject::Endpoint => &self.endpoints,
        }
    }

    /// The terms for limit `name` of a check with `key`: its token's,
    /// else its user's, IP's or endpoint's.
    pub fn find(&self, key: &RequestKey, name: &str) -> Option<Override> {
        Subject::ALL.into_iter().find_map(|subject| {
            let own = self.table(subject).get(key.get(subject.attr())?)?;
            let terms = own.iter().find(|(limit, _)| limit == name)?.1;
            Some(Override { subject, terms })
        })
    }

    /// `limits` with the terms in force at `now` for `key`, or `None` when
    /// none changes a limit (the common case: nothing is copied).
    pub fn apply(&self, limits: &[NamedLimit], key: &RequestKey, now: Nanos) -> Option<Vec<NamedLimit>> {
        let mut changed: Option<Vec<NamedLimit>> = None;
        for (i, limit) in limits.iter().enumerate() {
            let Limit::Quota(quota) = &limit.limit else {
                continue;
            };
            let Some(own) = self.find(key, &limit.name) else {
                continue;
            };
            let units = own.terms.limit_at(quota, now);
            if units == quota.limit() {
                continue;
            }
            let owned = changed.get_or_insert_with(|| limits.to_vec());
            owned[i] = NamedLimit::new(limit.name.clone(), Limit::Quota(quota.with_limit(units)));
        }
        changed
    }
}

/// Every quota limit of `policies`' tiers (endpoint rules' included), in
/// config order: its name and the quota.
pub fn quota_limits(policies: &[Policy]) -> impl Iterator<Item = (&str, &Quota)> {
    policies
        .iter()
        .flat_map(|policy| {
            policy
                .tiers
                .iter()
                .chain(policy.endpoints.values().flat_map(|e| &e.tiers))
        })
        .filter_map(|tier| match &tier.limits {
            crate::policy::TierLimits::Limited(limits) => Some(limits.iter()),
            _ => None,
        })
        .flatten()
        .filter_map(|limit| match &limit.limit {
            Limit::Quota(quota) => Some((limit.name.as_str(), quota)),
            _ => None,
        })
}

/// Checks `[quota_overrides]` against the compiled policies: every limit
/// named must be a quota limit of some tier, every quota at least 1.
pub(super) fn compile(
    section: &QuotaOverridesSection,
    policies: &[Policy],
    problems: &mut Problems<'_>,
) -> QuotaOverrides {
    let quota_names: Vec<&str> = quota_limits(policies).map(|(name, _)| name).collect();
    let mut table = |name: &str, entries: &BTreeMap<String, OwnQuotas>| -> Table {
        let mut checked = Table::new();
        for (id, own) in entries {
            let mut compiled = Vec::new();
            for (limit, terms) in own.get_ref() {
                if !quota_names.contains(&limit.as_str()) {
                    let known = match quota_names.is_empty() {
                        true => "no tier has a quota".to_string(),
                        false => format!("the quota limits are: {}", quota_names.join(", ")),
                    };
                    problems.push(
                        own.span(),
                        format!("quota_overrides.{name}: {limit:?} is no quota limit's name; {known}"),
                    );
                }
                match compile_terms(&terms.terms()) {
                    Ok(terms) => compiled.push((CompactString::from(limit.as_str()), terms)),
                    Err(problem) => problems.push(
                        own.span(),
                        format!("quota_overrides.{name}: {limit:?}: {problem}"),
                    ),
                }
            }
            checked.insert(id.clone(), compiled.into());
        }
        checked
    };
    let mut overrides = QuotaOverrides {
        tokens: table("tokens", &section.tokens),
        users: table("users", &section.users),
        ips: table("ips", &section.ips),
        endpoints: table("endpoints", &section.endpoints),
        none: true,
    };
    overrides.none = Subject::ALL
        .into_iter()
        .all(|subject| overrides.table(subject).is_empty());
    overrides
}

/// One limit's terms as the config writes them, checked.
///
/// # Errors
/// What is wrong with them, for people.
pub fn compile_terms(terms: &OwnTerms) -> Result<Terms, String> {
    let instant = |field: &str, text: &str| -> Result<Nanos, String> {
        let at: jiff::Timestamp = text
            .parse()
            .map_err(|e| format!("{field} {text:?} is not an RFC 3339 instant: {e}"))?;
        u64::try_from(at.as_nanosecond()).map_err(|_| format!("{field} {text:?} is before 1970"))
    };
    let quota = match (terms.quota, &terms.until) {
        (Some(0), _) => return Err("a quota must be at least 1".into()),
        (Some(quota), until) => Some((quota, until.as_deref().map(|u| instant("until", u)).transpose()?)),
        (None, Some(_)) => return Err("until says when an own quota lapses: give the quota too".into()),
        (None, None) => None,
    };
    let credit = match (terms.credit, &terms.granted) {
        (Some(0), _) => return Err("a credit must be at least 1".into()),
        (Some(credit), Some(granted)) => Some((credit, instant("granted", granted)?)),
        (Some(_), None) | (None, Some(_)) => {
            return Err(
                "a credit counts in the period it was granted in: give credit and granted together".into(),
            )
        }
        (None, None) => None,
    };
    if quota.is_none() && credit.is_none() {
        return Err("give a quota, a credit, or both".into());
    }
    Ok(Terms { quota, credit })
}
