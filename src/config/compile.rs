//! Turns a parsed [`ConfigFile`] into validated policies, collecting every
//! problem with the line it was found on rather than stopping at the first.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use compact_str::CompactString;
use toml::Spanned;

use super::file::{ConfigFile, EndpointSection, PolicySection, TierSection};
use super::{Assignments, Problem};
use crate::policy::{
    compile_limit, is_valid_name, EndpointRule, KeySet, Mode, NamedLimit, Policy, Tier, TierLimits, MAX_COST,
    MAX_LIMITS, MAX_NAME,
};
use crate::store::Capacity;

/// Most keys a node may be configured to track.
pub const MAX_KEYS_LIMIT: u64 = 100_000_000;

/// Collects problems, locating each by its byte span in the source.
pub(super) struct Problems<'s> {
    source: &'s str,
    found: Vec<Problem>,
}

impl<'s> Problems<'s> {
    pub(super) fn new(source: &'s str) -> Self {
        Self {
            source,
            found: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.found.push(Problem::at(self.source, span, message.into()));
    }

    /// Problems so far.
    pub(super) fn len(&self) -> usize {
        self.found.len()
    }

    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.found
    }
}

/// The least `store.max_memory`: what a few thousand keys take.
pub const MIN_MEMORY: u64 = 1 << 20;

/// Compiled policies and assignments, or nothing if anything was wrong.
pub(super) fn compile(
    file: &ConfigFile,
    problems: &mut Problems<'_>,
) -> (Vec<Policy>, Assignments, Capacity) {
    let max_keys = *file.store.max_keys.get_ref();
    if !(1..=MAX_KEYS_LIMIT).contains(&max_keys) {
        problems.push(
            file.store.max_keys.span(),
            format!("store.max_keys must be between 1 and {MAX_KEYS_LIMIT}"),
        );
    }
    let max_memory = match file.store.max_memory.get_ref().bytes() {
        Ok(bytes) if bytes >= MIN_MEMORY => bytes,
        Ok(_) => {
            problems.push(
                file.store.max_memory.span(),
                "store.max_memory must be at least 1MiB",
            );
            MIN_MEMORY
        }
        Err(problem) => {
            problems.push(
                file.store.max_memory.span(),
                format!("store.max_memory: {problem}"),
            );
            MIN_MEMORY
        }
    };
    // The file's map is sorted by name, and so is this.
    let policies: Vec<Policy> = file
        .policies
        .iter()
        .filter_map(|(name, section)| compile_policy(name, section, problems))
        .collect();
    // Checked against the tiers the file declares, so that a policy with a
    // problem of its own does not make its tiers look unknown here too.
    let assignments = Assignments {
        tokens: check_assignments("tokens", &file.assignments.tokens, &file.policies, problems),
        users: check_assignments("users", &file.assignments.users, &file.policies, problems),
        ips: check_assignments("ips", &file.assignments.ips, &file.policies, problems),
        endpoints: check_assignments("endpoints", &file.assignments.endpoints, &file.policies, problems),
    };
    (policies, assignments, Capacity { max_keys, max_memory })
}

fn compile_policy(
    name: &str,
    section: &Spanned<PolicySection>,
    problems: &mut Problems<'_>,
) -> Option<Policy> {
    let span = section.span();
    let section = section.get_ref();
    let before = problems.found.len();
    if !is_valid_name(name) {
        problems.push(
            span.clone(),
            format!("policy name {name:?} must be 1-{MAX_NAME} characters of A-Z a-z 0-9 _ - . : /"),
        );
    }
    let mut key = KeySet::default();
    for attr in section.key.get_ref() {
        if !key.insert(*attr) {
            problems.push(
                section.key.span(),
                format!("policy {name:?}: key names {:?} twice", attr.name()),
            );
        }
    }
    if key.is_empty() {
        problems.push(
            section.key.span(),
            format!("policy {name:?}: key needs at least one of user, ip, token, endpoint"),
        );
    }
    let tiers = compile_tiers(
        name,
        section.mode,
        &format!("policy {name:?}"),
        &section.tiers,
        problems,
    );
    if section.tiers.is_empty() {
        problems.push(span.clone(), format!("policy {name:?} has no tiers"));
    }
    let default_tier = section.default_tier.get_ref();
    if !section.tiers.contains_key(default_tier) {
        problems.push(
            section.default_tier.span(),
            format!("policy {name:?}: default_tier {default_tier:?} is not one of its tiers"),
        );
    }
    let mut endpoints = HashMap::new();
    for endpoint in &section.endpoints {
        let rule = compile_endpoint(name, section.mode, endpoint, &section.tiers, problems);
        let endpoint_name = endpoint.get_ref().endpoint.clone();
        if endpoints.insert(endpoint_name.clone(), rule).is_some() {
            problems.push(
                endpoint.span(),
                format!("policy {name:?}: endpoint {endpoint_name:?} is listed twice"),
            );
        }
    }
    (problems.found.len() == before).then(|| Policy {
        name: name.into(),
        key,
        // Present: checked above, and any failed tier fails the policy.
        default_tier: tiers
            .iter()
            .position(|t| t.name == default_tier.as_str())
            .unwrap_or(0),
        tiers,
        endpoints,
        unmatched: Default::default(),
    })
}

fn compile_endpoint(
    policy: &str,
    mode: Option<Mode>,
    section: &Spanned<EndpointSection>,
    policy_tiers: &BTreeMap<String, Spanned<TierSection>>,
    problems: &mut Problems<'_>,
) -> EndpointRule {
    let span = section.span();
    let section = section.get_ref();
    let context = format!("policy {policy:?}: endpoint {:?}", section.endpoint);
    if section.endpoint.is_empty() || section.endpoint.len() > 256 {
        problems.push(
            span.clone(),
            format!("{context}: endpoint must be 1-256 characters"),
        );
    }
    if let Some(cost) = section.cost {
        if !(1..=MAX_COST).contains(&cost) {
            problems.push(
                span.clone(),
                format!("{context}: cost must be between 1 and {MAX_COST}"),
            );
        }
    }
    for tier in section.tiers.keys() {
        if !policy_tiers.contains_key(tier) {
            problems.push(
                span.clone(),
                format!("{context}: tier {tier:?} is not a tier of the policy"),
            );
        }
    }
    EndpointRule {
        cost: section.cost,
        tiers: compile_tiers(policy, mode, &context, &section.tiers, problems),
        matched: Default::default(),
    }
}

fn compile_tiers(
    policy: &str,
    mode: Option<Mode>,
    context: &str,
    sections: &BTreeMap<String, Spanned<TierSection>>,
    problems: &mut Problems<'_>,
) -> Vec<Tier> {
    sections
        .iter()
        .filter_map(|(name, section)| {
            let context = format!("{context}: tier {name:?}");
            if !is_valid_name(name) {
                problems.push(
                    section.span(),
                    format!("{context}: tier names must be 1-{MAX_NAME} characters of A-Z a-z 0-9 _ - . : /"),
                );
            }
            let limits = compile_tier_limits(&context, mode, section, problems)?;
            let options = section.get_ref();
            let penalty = options.penalty || options.deny;
            if penalty && options.requestable {
                problems.push(
                    section.span(),
                    format!("{context}: a penalty (or deny) tier cannot also be requestable"),
                );
            }
            Some(Tier {
                name: CompactString::from(name.as_str()),
                limits,
                key_prefix: crate::key::Scope::Policy { policy, tier: name }.prefix(),
                requestable: options.requestable,
                penalty,
                observers: Box::new([]),
                quota_rules: Box::new([]),
            })
        })
        .collect()
}

fn compile_tier_limits(
    context: &str,
    mode: Option<Mode>,
    section: &Spanned<TierSection>,
    problems: &mut Problems<'_>,
) -> Option<TierLimits> {
    let span = section.span();
    let section = section.get_ref();
    match (section.unlimited, section.deny, section.limits.len()) {
        (true, false, 0) => return Some(TierLimits::Unlimited),
        (false, true, 0) => return Some(TierLimits::Deny),
        (true, true, _) => {
            problems.push(span, format!("{context}: a tier is unlimited or deny, not both"));
            return None;
        }
        (true, false, _) | (false, true, _) => {
            let kind = if section.unlimited {
                "an unlimited"
            } else {
                "a deny"
            };
            problems.push(span, format!("{context}: {kind} tier cannot also have limits"));
            return None;
        }
        (false, false, 0) => {
            problems.push(
                span,
                format!("{context}: needs limits, or unlimited = true, or deny = true"),
            );
            return None;
        }
        (false, false, n) if n > MAX_LIMITS => {
            problems.push(
                span,
                format!("{context}: at most {MAX_LIMITS} limits are allowed, got {n}"),
            );
            return None;
        }
        _ => {}
    }
    let mut limits: Vec<NamedLimit> = Vec::new();
    for (i, spec) in section.limits.iter().enumerate() {
        match compile_limit(spec.get_ref()) {
            Ok(limit) if limits.iter().any(|other| other.name == limit.name) => problems.push(
                spec.span(),
                format!(
                    "{context}: limit {}: name {:?} is used twice; give each limit its own name",
                    i + 1,
                    limit.name
                ),
            ),
            Ok(mut limit) => {
                // The policy's mode, where the limit gives none.
                limit.shadow |= spec.get_ref().mode.is_none() && mode == Some(Mode::Shadow);
                limits.push(limit)
            }
            Err(message) => problems.push(spec.span(), format!("{context}: limit {}: {message}", i + 1)),
        }
    }
    (limits.len() == section.limits.len()).then(|| TierLimits::Limited(limits.into()))
}

/// Whether any policy the file declares has a tier called `tier`.
pub(super) fn declared_tier(policies: &BTreeMap<String, Spanned<PolicySection>>, tier: &str) -> bool {
    policies
        .values()
        .any(|policy| policy.get_ref().tiers.contains_key(tier))
}

fn check_assignments(
    table: &str,
    entries: &BTreeMap<String, Spanned<String>>,
    policies: &BTreeMap<String, Spanned<PolicySection>>,
    problems: &mut Problems<'_>,
) -> HashMap<String, CompactString> {
    let mut checked = HashMap::new();
    for (id, tier) in entries {
        if !declared_tier(policies, tier.get_ref()) {
            problems.push(
                tier.span(),
                format!(
                    "assignments.{table}: {id:?} is assigned tier {:?}, which no policy defines",
                    tier.get_ref()
                ),
            );
        }
        checked.insert(id.clone(), CompactString::from(tier.get_ref().as_str()));
    }
    checked
}
