//! Policies, tiers and limits as the engine uses them: validated, compiled,
//! immutable. A policy names the request attributes that form its key and
//! the limits of each tier; endpoint rules add a cost or limits of their own.
//!
//! Built from the config file by [`crate::config`], and from the `limits` of
//! an inline check by [`compile_limits`].

use std::collections::HashMap;
use std::num::NonZeroU32;

use compact_str::CompactString;

mod vocabulary;

use crate::limiter::{Calendar, Limit, Quota, Rate, SlidingWindow, TokenBucket};
pub use vocabulary::{AlgorithmName, KeyAttr, LimitSpec, Mode, ResetDay, ResetSpec};

/// Most limits one tier (or one inline check) may have.
pub const MAX_LIMITS: usize = 8;

/// Most units one request may cost.
pub const MAX_COST: u32 = 1_000_000;

/// Longest name of a policy, tier, limit or namespace.
pub const MAX_NAME: usize = 64;

/// A set of key attributes, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeySet(u8);

impl KeySet {
    /// Adds `attr`; false if it was already there.
    pub fn insert(&mut self, attr: KeyAttr) -> bool {
        let had = self.contains(attr);
        self.0 |= 1 << attr as u8;
        !had
    }

    /// True if `attr` is in the set.
    pub fn contains(self, attr: KeyAttr) -> bool {
        self.0 & (1 << attr as u8) != 0
    }

    /// True if no attribute is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The attributes of `self` that `other` lacks.
    pub fn without(self, other: KeySet) -> KeySet {
        KeySet(self.0 & !other.0)
    }

    /// The first attribute in key order, if any.
    pub fn first(self) -> Option<KeyAttr> {
        self.iter().next()
    }

    /// The attributes in key order.
    pub fn iter(self) -> impl Iterator<Item = KeyAttr> {
        KeyAttr::ALL.into_iter().filter(move |attr| self.contains(*attr))
    }

    /// Names of the attributes, comma separated, for messages.
    pub fn describe(self) -> String {
        self.iter().map(KeyAttr::name).collect::<Vec<_>>().join(", ")
    }
}

/// A limit with the name it shows in headers and decisions, and the facts
/// the decision path needs on every check, worked out once.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedLimit {
    /// From config, or the rate string.
    pub name: CompactString,
    /// The algorithm and its parameters.
    pub limit: Limit,
    /// [`Limit::spec_id`].
    pub spec: u16,
    /// [`Limit::retention`].
    pub retention: crate::clock::Nanos,
    /// A shadow limit: counted and reported, never deciding. Not part of
    /// [`spec`](Self::spec), so a limit switched between modes keeps its
    /// counts.
    pub shadow: bool,
}

impl NamedLimit {
    /// `limit` called `name`, enforced.
    pub fn new(name: CompactString, limit: Limit) -> Self {
        Self {
            name,
            spec: limit.spec_id(),
            retention: limit.retention(),
            limit,
            shadow: false,
        }
    }

    /// Whether it is reported as `enforce` or `shadow`.
    pub fn mode(&self) -> Mode {
        match self.shadow {
            true => Mode::Shadow,
            false => Mode::Enforce,
        }
    }
}

/// What a tier allows.
#[derive(Clone, Debug, PartialEq)]
pub enum TierLimits {
    /// Everything passes and nothing is counted.
    Unlimited,
    /// Nothing passes and nothing is counted: a penalty tier. A denial waits
    /// for the key's assignment to the tier to lapse.
    Deny,
    /// All of these must have room.
    Limited(Box<[NamedLimit]>),
}

/// A named tier of a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    /// Such as `free`, `paid`, `trusted`.
    pub name: CompactString,
    /// Its limits.
    pub limits: TierLimits,
    /// The text its keys start with ([`crate::key::Scope::prefix`]), made
    /// once rather than on every check.
    pub key_prefix: Box<str>,
    /// A check may name this tier itself.
    pub requestable: bool,
    /// An assignment to this tier wins over the tier a check names.
    pub penalty: bool,
    /// Alert rules counting this tier's keys (see `config::alerts`).
    pub observers: Box<[Observer]>,
    /// Alert rules watching how much of its quotas a key has used.
    pub quota_rules: Box<[QuotaRule]>,
}

/// An alert rule (`when = "quota"`) on a tier's quotas: it fires when a
/// check takes a key's use of a quota to `share` of it or past.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaRule {
    /// The rule's name.
    pub rule: CompactString,
    /// The share of the quota (above 0, at most 1).
    pub share: f64,
}

impl Observer {
    /// Counts `units` (0 to only look) in the window's `state` at `now`;
    /// returns the window's count with them.
    pub fn count(&self, state: &mut crate::limiter::LimitState, now: crate::clock::Nanos, units: u32) -> u64 {
        let limit = &self.window.limit;
        // `remaining` assumes the units counted: capacity minus it is the
        // count with them.
        let outcome = limit.evaluate(state, now, units);
        if units > 0 {
            limit.commit(state, now, units);
        }
        (limit.capacity() as u64).saturating_sub(outcome.remaining)
    }
}

/// What an [`Observer`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Denied checks.
    Denied,
    /// Every check.
    Requests,
}

/// A per-key alert rule's window: counted, never enforced. Its count lives
/// in a store entry of its own (key: SOH-free prefix STX, rule, NUL, the
/// checked key), replicated like any other, so it is the cluster's count.
#[derive(Clone, Debug, PartialEq)]
pub struct Observer {
    /// The rule's name.
    pub rule: CompactString,
    /// What it counts.
    pub counts: Observed,
    /// Checks per key that fire the rule.
    pub threshold: u64,
    /// A sliding window over the rule's `within`, of a capacity no count
    /// reaches, so that what it has left tells the count.
    pub window: NamedLimit,
}

/// Cost and limits for one endpoint of a policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointRule {
    /// Units a request costs unless the request says otherwise.
    pub cost: Option<u32>,
    /// Tiers with limits of their own for this endpoint, counted apart.
    pub tiers: Vec<Tier>,
    /// Whether a check has matched it since this config was built.
    pub matched: Seen,
}

/// A flag set once, by the first check that sees something, and then only
/// read: one load per check, no shared write after the first. Not part of
/// what a config means: a copy starts unset, and any two are equal.
#[derive(Debug, Default)]
pub struct Seen(std::sync::atomic::AtomicBool);

impl Seen {
    /// Sets the flag, writing only the first time.
    pub fn note(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.0.load(Relaxed) {
            self.0.store(true, Relaxed);
        }
    }

    /// Whether it was set.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Clone for Seen {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Seen {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The first endpoint a check of a policy named that matched none of its
/// endpoint rules: a sample for the warning about rules that never match.
#[derive(Debug, Default)]
pub struct UnmatchedEndpoint(std::sync::OnceLock<Box<str>>);

impl UnmatchedEndpoint {
    /// Keeps `endpoint` unless one is kept already.
    pub fn note(&self, endpoint: &str) {
        if self.0.get().is_none() {
            let _ = self.0.set(endpoint.into());
        }
    }

    /// The endpoint kept, if any.
    pub fn get(&self) -> Option<&str> {
        self.0.get().map(|e| &**e)
    }
}

impl Clone for UnmatchedEndpoint {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for UnmatchedEndpoint {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A named policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Its name, as requests refer to it.
    pub name: CompactString,
    /// Attributes that form the key.
    pub key: KeySet,
    /// Index in `tiers` of the tier used when nothing else names one.
    pub default_tier: usize,
    /// Every tier, few enough that a linear search wins.
    pub tiers: Vec<Tier>,
    /// Rules per endpoint (exact match on the request's `endpoint`).
    pub endpoints: HashMap<String, EndpointRule>,
    /// An endpoint checks named that matched no rule.
    pub unmatched: UnmatchedEndpoint,
}

impl Policy {
    /// The endpoint rule for `endpoint`, noting that it matched; an
    /// endpoint that matches none is kept as a sample (see
    /// [`Policy::never_matched`]).
    pub fn endpoint_rule(&self, endpoint: &str) -> Option<&EndpointRule> {
        if self.endpoints.is_empty() {
            return None;
        }
        let rule = self.endpoints.get(endpoint);
        match rule {
            Some(rule) => rule.matched.note(),
            None => self.unmatched.note(endpoint),
        }
        rule
    }

    /// Endpoint rules no check has matched, while checks named an endpoint
    /// that matches no rule (the sample, second): most likely a rule spelled
    /// otherwise than the adapters send (`METHOD /route/{param}`).
    pub fn never_matched(&self) -> Option<(Vec<&str>, &str)> {
        let sample = self.unmatched.get()?;
        let mut rules: Vec<&str> = self
            .endpoints
            .iter()
            .filter(|(_, rule)| !rule.matched.get())
            .map(|(endpoint, _)| endpoint.as_str())
            .collect();
        rules.sort_unstable();
        (!rules.is_empty()).then_some((rules, sample))
    }

    /// The tier called `name`.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|tier| tier.name == name)
    }

    /// The tier used when nothing else names one.
    pub fn default_tier(&self) -> &Tier {
        &self.tiers[self.default_tier]
    }

    /// Attributes a request may carry: the key, plus the endpoint.
    pub fn accepted_attrs(&self) -> KeySet {
        // The endpoint is always welcome: it picks the endpoint rule (cost,
        // limits of its own), so an adapter can send it with every check;
        // it is part of the key only when the policy keys on it.
        let mut accepted = self.key;
        accepted.insert(KeyAttr::Endpoint);
        accepted
    }

    /// Names of the tiers, for messages.
    pub fn tier_names(&self) -> String {
        let names: Vec<&str> = self.tiers.iter().map(|tier| tier.name.as_str()).collect();
        names.join(", ")
    }
}

/// True if `name` is usable as a policy, tier, limit or namespace name: it
/// ends up inside quoted header values, so it stays within a safe alphabet.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
}

/// Checks and compiles one limit.
///
/// # Errors
/// A message saying what is wrong: a bad rate, a zero burst, a burst on a
/// sliding window, or a bad name.
pub fn compile_limit(spec: &LimitSpec) -> Result<NamedLimit, String> {
    let mut limit = compile_algorithm(spec)?;
    limit.shadow = spec.mode == Some(Mode::Shadow);
    Ok(limit)
}

fn compile_algorithm(spec: &LimitSpec) -> Result<NamedLimit, String> {
    if spec.algorithm == AlgorithmName::Quota {
        return compile_quota(spec);
    }
    if spec.algorithm == AlgorithmName::Concurrency {
        return compile_concurrency(spec);
    }
    if spec.limit.is_some() || spec.period.is_some() || spec.reset.is_some() {
        return Err("limit, period and reset apply to quota limits only".into());
    }
    if spec.max.is_some() || spec.lease.is_some() {
        return Err("max and lease apply to concurrency limits only".into());
    }
    let rate: Rate = spec
        .rate
        .as_deref()
        .ok_or("rate is required, such as \"100/minute\"")?
        .parse()
        .map_err(|e: crate::limiter::RateError| e.to_string())?;
    let limit = match (spec.algorithm, spec.burst) {
        (AlgorithmName::TokenBucket, burst) => {
            let burst = burst.unwrap_or(rate.count());
            let burst = NonZeroU32::new(burst).ok_or("burst must be at least 1")?;
            Limit::TokenBucket(TokenBucket::new(rate, burst))
        }
        (AlgorithmName::SlidingWindow, None) => Limit::SlidingWindow(SlidingWindow::new(rate)),
        (AlgorithmName::SlidingWindow, Some(_)) => {
            return Err("burst applies to token_bucket limits only".into());
        }
        // Not deserialized: only built in code.
        (AlgorithmName::Deny, _) => {
            return Err("deny is a tier option (deny = true), not an algorithm".into())
        }
        (AlgorithmName::Quota | AlgorithmName::Concurrency, _) => {
            unreachable!("compiled by compile_quota and compile_concurrency")
        }
    };
    Ok(NamedLimit::new(limit_name(spec, || rate.to_string())?, limit))
}

/// A quota: `limit` per `period`, starting as `reset` says.
fn compile_quota(spec: &LimitSpec) -> Result<NamedLimit, String> {
    if spec.rate.is_some() || spec.burst.is_some() {
        return Err("a quota takes limit and period, not rate or burst".into());
    }
    let count = spec.limit.ok_or("a quota needs limit: the units per period")?;
    if count == 0 {
        return Err("a quota's limit must be at least 1".into());
    }
    let period = spec
        .period
        .ok_or("a quota needs period: \"day\", \"week\" or \"month\"")?;
    let reset = spec.reset.clone().unwrap_or_default();
    let day = reset.day.as_ref().map_or(Ok(1), ResetDay::number)?;
    let zone = reset.timezone.as_deref().unwrap_or("UTC");
    let calendar = Calendar::new(period, day, reset.hour.unwrap_or(0), zone)?;
    let name = limit_name(spec, || format!("{count}/{}", period.as_str()))?;
    Ok(NamedLimit::new(name, Limit::Quota(Quota::new(count, calendar))))
}

/// A concurrency limit: `max` requests in flight, each holding its slot
/// until released or for `lease` at most.
fn compile_concurrency(spec: &LimitSpec) -> Result<NamedLimit, String> {
    if spec.rate.is_some()
        || spec.burst.is_some()
        || spec.limit.is_some()
        || spec.period.is_some()
        || spec.reset.is_some()
    {
        return Err("a concurrency limit takes max and lease only".into());
    }
    let max = spec
        .max
        .ok_or("a concurrency limit needs max: requests in flight at most")?;
    let max = NonZeroU32::new(max).ok_or("a concurrency limit's max must be at least 1")?;
    let lease = spec.lease.as_deref().ok_or(
        "a concurrency limit needs lease: how long an unreleased request holds its slot, such as \"30s\"",
    )?;
    let lease = crate::limiter::rate::parse_period(lease, "lease")?;
    let window = SlidingWindow::new(Rate::new(max, lease));
    let name = limit_name(spec, || format!("concurrent:{max}"))?;
    Ok(NamedLimit::new(name, Limit::Concurrency(window)))
}

/// The limit's name as given, checked, or else the one `default` makes.
fn limit_name(spec: &LimitSpec, default: impl FnOnce() -> String) -> Result<CompactString, String> {
    match &spec.name {
        Some(name) if !is_valid_name(name) => Err(format!(
            "limit name {name:?} must be 1-{MAX_NAME} characters of A-Z a-z 0-9 _ - . : /"
        )),
        Some(name) => Ok(CompactString::from(name.as_str())),
        None => Ok(CompactString::from(default())),
    }
}

/// Checks and compiles a list of limits, as a tier or an inline check has.
///
/// # Errors
/// A message naming the first bad limit (counted from 1), or saying the list
/// is empty or too long.
pub fn compile_limits(specs: &[LimitSpec]) -> Result<Box<[NamedLimit]>, String> {
    if specs.is_empty() {
        return Err("at least one limit is needed".into());
    }
    if specs.len() > MAX_LIMITS {
        return Err(format!(
            "at most {MAX_LIMITS} limits are allowed, got {}",
            specs.len()
        ));
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| compile_limit(spec).map_err(|e| format!("limit {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(algorithm: AlgorithmName, rate: &str, burst: Option<u32>) -> LimitSpec {
        LimitSpec {
            burst,
            ..LimitSpec::rated(algorithm, rate)
        }
    }

    fn quota(toml: &str) -> Result<NamedLimit, String> {
        compile_limit(&toml::from_str::<LimitSpec>(toml).unwrap())
    }

    #[test]
    fn a_quota_compiles_from_limit_period_and_reset() {
        let monthly = quota("algorithm = \"quota\"\nlimit = 1000\nperiod = \"month\"\nreset = { day = 1, hour = 0, timezone = \"America/New_York\" }").unwrap();
        assert_eq!(
            (monthly.name.as_str(), monthly.limit.capacity()),
            ("1000/month", 1000)
        );
        let weekly =
            quota("algorithm = \"quota\"\nlimit = 5\nperiod = \"week\"\nreset = { day = \"friday\" }")
                .unwrap();
        assert_eq!(weekly.limit.algorithm(), AlgorithmName::Quota);
        for (toml, problem) in [
            ("algorithm = \"quota\"\nperiod = \"day\"", "needs limit"),
            ("algorithm = \"quota\"\nlimit = 5", "needs period"),
            ("algorithm = \"quota\"\nlimit = 0\nperiod = \"day\"", "at least 1"),
            ("algorithm = \"quota\"\nlimit = 5\nperiod = \"day\"\nrate = \"5/d\"", "not rate or burst"),
            ("algorithm = \"quota\"\nlimit = 5\nperiod = \"week\"\nreset = { day = \"someday\" }", "no weekday"),
            ("algorithm = \"quota\"\nlimit = 5\nperiod = \"month\"\nreset = { timezone = \"Nowhere/Town\" }", "unknown time zone"),
            ("algorithm = \"sliding_window\"\nrate = \"5/m\"\nperiod = \"day\"", "quota limits only"),
            ("algorithm = \"sliding_window\"", "rate is required"),
        ] {
            let error = quota(toml).unwrap_err();
            assert!(error.contains(problem), "{toml}: {error}");
        }
    }

    #[test]
    fn a_bucket_without_burst_takes_the_rate_count() {
        let limit = compile_limit(&spec(AlgorithmName::TokenBucket, "30/m", None)).unwrap();
        assert_eq!(limit.limit.capacity(), 30);
        assert_eq!(limit.name, "30/m");
    }

    #[test]
    fn rejects_a_burst_on_a_window_and_a_zero_burst() {
        let window = spec(AlgorithmName::SlidingWindow, "30/m", Some(5));
        assert!(compile_limit(&window)
            .unwrap_err()
            .contains("token_bucket limits only"));
        let bucket = spec(AlgorithmName::TokenBucket, "30/m", Some(0));
        assert!(compile_limit(&bucket).unwrap_err().contains("at least 1"));
    }

    #[test]
    fn names_the_bad_limit_in_a_list() {
        let specs = [
            spec(AlgorithmName::SlidingWindow, "30/m", None),
            spec(AlgorithmName::SlidingWindow, "30/eon", None),
        ];
        let error = compile_limits(&specs).unwrap_err();
        assert!(error.starts_with("limit 2: invalid rate"), "{error}");
        assert!(compile_limits(&[]).is_err());
    }

    #[test]
    fn names_stay_within_the_header_safe_alphabet() {
        assert!(is_valid_name("drf:anon/v1.2_x-y"));
        assert!(!is_valid_name("has space"));
        assert!(!is_valid_name("quote\""));
        assert!(!is_valid_name(""));
    }
}
