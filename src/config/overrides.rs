//! `[quota_overrides]` compiled: a customer's own quota for a quota limit
//! of their tier, found by their token, user, IP or endpoint (in that
//! order), and applied to a check's limits.
//!
//! Overrides are part of the config, so a runtime change (`PUT /v1/config`)
//! reaches every node of a cluster and a snapshot keeps it, like any other
//! config change. An override keeps the quota's calendar, so the count
//! used so far this period stays: raising a customer's quota mid-month
//! gives them the difference at once.

use std::collections::{BTreeMap, HashMap};

use compact_str::CompactString;

use super::compile::Problems;
use super::file::{OwnQuotas, QuotaOverridesSection};
use crate::engine::{RequestKey, Subject};
use crate::limiter::Limit;
use crate::policy::{NamedLimit, Policy};

/// Subject's id to its own quotas (limit name, units per period).
type Table = HashMap<String, Box<[(CompactString, u32)]>>;

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

/// An override in force for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// Whose it is.
    pub subject: Subject,
    /// The quota: units per period.
    pub quota: u32,
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

    /// The override of limit `name` for a check with `key`: its token's,
    /// else its user's, IP's or endpoint's.
    pub fn find(&self, key: &RequestKey, name: &str) -> Option<Override> {
        Subject::ALL.into_iter().find_map(|subject| {
            let own = self.table(subject).get(key.get(subject.attr())?)?;
            let quota = own.iter().find(|(limit, _)| limit == name)?.1;
            Some(Override { subject, quota })
        })
    }

    /// `limits` with the overrides in force for `key`, or `None` when none
    /// applies (the common case: nothing is copied).
    pub fn apply(&self, limits: &[NamedLimit], key: &RequestKey) -> Option<Vec<NamedLimit>> {
        let mut changed: Option<Vec<NamedLimit>> = None;
        for (i, limit) in limits.iter().enumerate() {
            let Limit::Quota(quota) = &limit.limit else {
                continue;
            };
            let Some(own) = self.find(key, &limit.name) else {
                continue;
            };
            let owned = changed.get_or_insert_with(|| limits.to_vec());
            owned[i] = NamedLimit::new(limit.name.clone(), Limit::Quota(quota.with_limit(own.quota)));
        }
        changed
    }
}

/// Checks `[quota_overrides]` against the compiled policies: every limit
/// named must be a quota limit of some tier, every quota at least 1.
pub(super) fn compile(
    section: &QuotaOverridesSection,
    policies: &[Policy],
    problems: &mut Problems<'_>,
) -> QuotaOverrides {
    let quota_names: Vec<&str> = policies
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
        .filter(|limit| matches!(limit.limit, Limit::Quota(_)))
        .map(|limit| limit.name.as_str())
        .collect();
    let mut table = |name: &str, entries: &BTreeMap<String, OwnQuotas>| -> Table {
        let mut checked = Table::new();
        for (id, own) in entries {
            for (limit, quota) in own.get_ref() {
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
                if *quota == 0 {
                    problems.push(
                        own.span(),
                        format!("quota_overrides.{name}: {limit:?} must be at least 1"),
                    );
                }
            }
            let quotas = own
                .get_ref()
                .iter()
                .map(|(limit, quota)| (CompactString::from(limit.as_str()), *quota));
            checked.insert(id.clone(), quotas.collect());
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
