//! `[alerts]` compiled: abuse rules checked against the policies, each
//! problem with its line, and the observers the engine counts for them.
//!
//! A per-key rule (`when = "denied"` or `"requests"`) becomes an
//! [`Observer`] on every tier it watches: a sliding window of `threshold`
//! per `within`, counted in a replicated store entry of its own, so that the
//! count is the cluster's. `denied_ratio` rules watch a whole policy through
//! the usage analytics instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use compact_str::CompactString;
use toml::Spanned;

use super::compile::Problems;
use super::file::{
    AlertsSection, PenaltySection, PolicySection, RuleSection, RuleWhen, Severity, WebhookFormat,
};
use crate::clock::{Nanos, SECOND};
use crate::limiter::rate::parse_period;
use crate::limiter::{Limit, Rate, SlidingWindow};
use crate::policy::{is_valid_name, AlgorithmName, NamedLimit, Observed, Observer, Policy, QuotaRule};

/// Most rules in a config.
pub const MAX_RULES: usize = 64;

/// Most quota rules watching one policy.
pub const MAX_QUOTA_RULES: usize = 8;

/// Most webhook URLs per rule.
pub const MAX_NOTIFY: usize = 8;

/// The cooldown when a rule gives none.
const DEFAULT_COOLDOWN: Nanos = 600 * SECOND;

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTarget {
    /// One policy.
    Policy(CompactString),
    /// One inline namespace.
    Namespace(CompactString),
    /// Every policy and namespace (`policy = "*"`).
    Any,
}

/// Moving a key to a tier for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Penalty {
    /// The tier.
    pub tier: CompactString,
    /// For how long, in ns.
    pub lasting: Nanos,
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Its name.
    pub name: CompactString,
    /// What it watches.
    pub target: RuleTarget,
    /// What it counts.
    pub when: RuleWhen,
    /// Count per key, or a fraction for `denied_ratio`.
    pub threshold: f64,
    /// The window, in ns.
    pub within: Nanos,
    /// The quiet time after firing, per key (or per rule for ratios), in ns.
    pub cooldown: Nanos,
    /// Tiers ignored.
    pub exempt_tiers: Vec<CompactString>,
    /// Webhook URLs.
    pub notify: Vec<String>,
    /// The penalty, if any.
    pub penalty: Option<Penalty>,
    /// How loud.
    pub severity: Severity,
    /// Webhook body shape.
    pub format: WebhookFormat,
    /// `denied_ratio`: fewest checks before the ratio counts.
    pub min_checks: u64,
}

impl AlertRule {
    /// Whether the rule watches checks of `policy` (or inline `namespace`)
    /// at `tier`.
    pub fn watches(&self, policy: Option<&str>, namespace: Option<&str>, tier: Option<&str>) -> bool {
        let target = match &self.target {
            RuleTarget::Any => true,
            RuleTarget::Policy(name) => policy == Some(name.as_str()),
            RuleTarget::Namespace(name) => namespace == Some(name.as_str()),
        };
        target && !tier.is_some_and(|t| self.exempt_tiers.iter().any(|e| e == t))
    }
}

/// Every rule, and where webhooks find their key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRules {
    /// In config order.
    pub rules: Vec<AlertRule>,
    /// The environment variable holding the webhook HMAC key.
    pub webhook_secret_env: Option<String>,
    /// Observers for inline checks, by namespace (`None`: every namespace).
    pub inline_observers: HashMap<Option<CompactString>, Box<[Observer]>>,
    /// Every per-key rule's observer, by rule name.
    pub observers: HashMap<CompactString, Observer>,
    /// Inline namespaces some rule names: named in the config, they keep
    /// their usage scope however many other namespaces checks make up.
    pub named_namespaces: BTreeSet<CompactString>,
}

impl AlertRules {
    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&AlertRule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The webhook secret's environment variable, when some rule sends
    /// webhooks and the variable is unset or empty in this process: they
    /// would not be sent.
    pub fn unset_secret(&self) -> Option<&str> {
        let name = self.webhook_secret_env.as_deref()?;
        let notifies = self.rules.iter().any(|rule| !rule.notify.is_empty());
        let unset = std::env::var(name).map_or(true, |value| value.is_empty());
        (notifies && unset).then_some(name)
    }

    /// Observers for an inline check in `namespace`.
    pub fn inline(&self, namespace: &str) -> impl Iterator<Item = &Observer> {
        let named = self.inline_observers.get(&Some(namespace.into())).into_iter();
        let any = self.inline_observers.get(&None).into_iter();
        named.chain(any).flat_map(|o| o.iter())
    }
}

fn duration(text: &Spanned<String>, what: &str, problems: &mut Problems<'_>) -> Option<Nanos> {
    match parse_period(text.get_ref(), what) {
        Ok(d) => Some(d.get()),
        Err(problem) => {
            problems.push(text.span(), problem);
            None
        }
    }
}

fn is_webhook_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty() && url.parse::<hyper::Uri>().is_ok()
}

/// Checks `[alerts]` against the policies the file `declares` (so that a
/// policy with a problem of its own does not look unknown to its rules);
/// adds observers to the tiers of the compiled `policies`.
pub(super) fn compile(
    section: &AlertsSection,
    declared: &BTreeMap<String, Spanned<PolicySection>>,
    policies: &mut [Policy],
    problems: &mut Problems<'_>,
) -> AlertRules {
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    if section.rules.len() > MAX_RULES {
        problems.push(
            section.rules[MAX_RULES].span(),
            format!("at most {MAX_RULES} alert rules"),
        );
    }
    for spanned in section.rules.iter().take(MAX_RULES) {
        let rule = spanned.get_ref();
        if !names.insert(rule.name.get_ref().clone()) {
            problems.push(
                rule.name.span(),
                format!("a second rule called {:?}", rule.name.get_ref()),
            );
        }
        if let Some(compiled) = compile_rule(rule, spanned, declared, problems) {
            rules.push(compiled);
        }
    }
    // A key's quota state notes the marks it passed in one byte.
    for policy in declared.keys() {
        let mut quota_rules = section.rules.iter().filter(|rule| {
            let rule = rule.get_ref();
            let watched = rule
                .policy
                .as_ref()
                .is_some_and(|p| p.get_ref() == policy || p.get_ref() == "*");
            *rule.when.get_ref() == RuleWhen::Quota && watched
        });
        if let Some(ninth) = quota_rules.nth(MAX_QUOTA_RULES) {
            problems.push(
                ninth.span(),
                format!("at most {MAX_QUOTA_RULES} quota rules may watch policy {policy:?}"),
            );
        }
    }
    let any_notify = section.rules.iter().any(|r| !r.get_ref().notify.is_empty());
    let secret = section.webhook_secret_env.as_ref();
    if let Some(env) = secret.filter(|e| e.get_ref().is_empty()) {
        problems.push(env.span(), "webhook_secret_env must name an environment variable");
    }
    if any_notify && secret.is_none() {
        let span = section.rules.first().map_or(0..0, |r| r.span());
        problems.push(
            span,
            "rules with notify need [alerts] webhook_secret_env: webhooks are always signed",
        );
    }
    let named_namespaces = rules
        .iter()
        .filter_map(|rule| match &rule.target {
            RuleTarget::Namespace(namespace) => Some(namespace.clone()),
            _ => None,
        })
        .collect();
    let mut compiled = AlertRules {
        rules,
        webhook_secret_env: secret.map(|e| e.get_ref().clone()),
        inline_observers: HashMap::new(),
        observers: HashMap::new(),
        named_namespaces,
    };
    attach_observers(&mut compiled, policies);
    compiled
}

fn compile_rule(
    rule: &RuleSection,
    spanned: &Spanned<RuleSection>,
    declared: &BTreeMap<String, Spanned<PolicySection>>,
    problems: &mut Problems<'_>,
) -> Option<AlertRule> {
    let before = problems.len();
    let name = rule.name.get_ref();
    if !is_valid_name(name) {
        problems.push(
            rule.name.span(),
            format!("rule name {name:?} must be 1-64 characters of A-Z a-z 0-9 _ - . : /"),
        );
    }
    let target = match (&rule.policy, &rule.namespace) {
        (Some(p), None) if p.get_ref() == "*" => Some(RuleTarget::Any),
        (Some(p), None) => match declared.contains_key(p.get_ref()) {
            true => Some(RuleTarget::Policy(p.get_ref().as_str().into())),
            false => {
                let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                let message = format!(
                    "unknown policy {:?}; the policies are: {}",
                    p.get_ref(),
                    known.join(", ")
                );
                problems.push(p.span(), message);
                None
            }
        },
        (None, Some(ns)) if is_valid_name(ns.get_ref()) => Some(RuleTarget::Namespace(ns.get_ref().into())),
        (None, Some(ns)) => {
            problems.push(
                ns.span(),
                format!("namespace {:?} is not a valid name", ns.get_ref()),
            );
            None
        }
        _ => {
            problems.push(
                spanned.span(),
                "a rule names either a policy (or \"*\") or a namespace",
            );
            None
        }
    };
    let when = *rule.when.get_ref();
    let threshold = *rule.threshold.get_ref();
    let valid = match when {
        RuleWhen::DeniedRatio | RuleWhen::Quota => threshold > 0.0 && threshold <= 1.0,
        _ => threshold >= 1.0 && threshold <= u32::MAX as f64 && threshold.fract() == 0.0,
    };
    if !valid {
        let message = match when {
            RuleWhen::DeniedRatio => "threshold of a denied_ratio rule must be a fraction above 0, at most 1",
            RuleWhen::Quota => "threshold of a quota rule is the share of the quota used: above 0, at most 1",
            _ => "threshold must be a whole number of checks, at least 1",
        };
        problems.push(rule.threshold.span(), message);
    }
    let within = match (&rule.within, when) {
        (Some(text), RuleWhen::Quota) => {
            problems.push(
                text.span(),
                "a quota rule counts over the quota's period: leave out within",
            );
            None
        }
        (None, RuleWhen::Quota) => Some(0),
        (Some(text), _) => duration(text, "within", problems),
        (None, _) => {
            problems.push(spanned.span(), "within is required, such as within = \"1m\"");
            None
        }
    };
    if when == RuleWhen::Quota {
        quota_rule_problems(rule, spanned, &target, declared, problems);
    }
    let cooldown = match &rule.cooldown {
        Some(text) => duration(text, "cooldown", problems),
        None => Some(DEFAULT_COOLDOWN),
    };
    let tier_known = |tier: &str| match &target {
        Some(RuleTarget::Policy(p)) => declared
            .get(p.as_str())
            .is_some_and(|x| x.get_ref().tiers.contains_key(tier)),
        _ => super::compile::declared_tier(declared, tier),
    };
    let penalty_tier = |tier: &str| {
        let marked = |policy: &Spanned<PolicySection>| {
            let section = policy.get_ref().tiers.get(tier);
            section.is_some_and(|t| t.get_ref().penalty || t.get_ref().deny)
        };
        match &target {
            Some(RuleTarget::Policy(p)) => declared.get(p.as_str()).is_some_and(marked),
            _ => declared
                .values()
                .filter(|p| p.get_ref().tiers.contains_key(tier))
                .all(marked),
        }
    };
    for tier in &rule.exempt_tiers {
        if !tier_known(tier.get_ref()) {
            problems.push(
                tier.span(),
                format!(
                    "exempt tier {:?} is not a tier of the rule's policy",
                    tier.get_ref()
                ),
            );
        }
    }
    if rule.notify.len() > MAX_NOTIFY {
        problems.push(
            rule.notify[MAX_NOTIFY].span(),
            format!("at most {MAX_NOTIFY} notify URLs per rule"),
        );
    }
    for url in &rule.notify {
        if !is_webhook_url(url.get_ref()) {
            problems.push(
                url.span(),
                format!("notify {:?} is not an http:// or https:// URL", url.get_ref()),
            );
        }
    }
    let penalty = rule.penalty.as_ref().and_then(|p| {
        let PenaltySection { tier, lasting } = p.get_ref();
        if when == RuleWhen::DeniedRatio {
            problems.push(
                p.span(),
                "a denied_ratio rule watches a whole policy; it has no key to penalize",
            );
        }
        if !tier_known(tier.get_ref()) {
            let message = format!(
                "penalty tier {:?} is not a tier of the rule's policy",
                tier.get_ref()
            );
            problems.push(tier.span(), message);
        } else if !penalty_tier(tier.get_ref()) {
            let message = format!(
                "penalty tier {:?} must be marked penalty = true (or deny = true): otherwise a check that names its own tier escapes the penalty",
                tier.get_ref()
            );
            problems.push(tier.span(), message);
        }
        Some(Penalty {
            tier: tier.get_ref().into(),
            lasting: duration(lasting, "penalty duration", problems)?,
        })
    });
    if let Some(min) = rule.min_checks.as_ref().filter(|m| *m.get_ref() == 0) {
        problems.push(min.span(), "min_checks must be at least 1");
    }
    if problems.len() > before {
        return None;
    }
    Some(AlertRule {
        name: name.into(),
        target: target?,
        when,
        threshold,
        within: within?,
        cooldown: cooldown?,
        exempt_tiers: rule.exempt_tiers.iter().map(|t| t.get_ref().into()).collect(),
        notify: rule.notify.iter().map(|u| u.get_ref().clone()).collect(),
        penalty,
        severity: rule.severity.as_ref().map(|s| *s.get_ref()).unwrap_or_default(),
        format: rule.format.as_ref().map(|f| *f.get_ref()).unwrap_or_default(),
        min_checks: rule.min_checks.as_ref().map_or(100, |m| *m.get_ref()),
    })
}

/// A quota rule watches a policy (or every policy) that has quotas.
fn quota_rule_problems(
    rule: &RuleSection,
    spanned: &Spanned<RuleSection>,
    target: &Option<RuleTarget>,
    declared: &BTreeMap<String, Spanned<PolicySection>>,
    problems: &mut Problems<'_>,
) {
    let has_quota = |policy: &Spanned<PolicySection>| {
        let tiers = policy.get_ref().tiers.values();
        tiers
            .flat_map(|tier| &tier.get_ref().limits)
            .any(|limit| limit.get_ref().algorithm == AlgorithmName::Quota)
    };
    match target {
        Some(RuleTarget::Namespace(_)) => {
            let span = rule.namespace.as_ref().map_or(spanned.span(), |n| n.span());
            problems.push(
                span,
                "a quota rule watches a policy's quotas, not an inline namespace",
            );
        }
        Some(RuleTarget::Policy(name)) if !declared.get(name.as_str()).is_some_and(has_quota) => {
            let span = rule.policy.as_ref().map_or(spanned.span(), |p| p.span());
            problems.push(
                span,
                format!("policy {name:?} has no quota limit for this rule to watch"),
            );
        }
        _ => {}
    }
}

fn observer(rule: &AlertRule) -> Option<Observer> {
    let counts = match rule.when {
        RuleWhen::Denied => Observed::Denied,
        RuleWhen::Requests => Observed::Requests,
        RuleWhen::DeniedRatio | RuleWhen::Quota => return None,
    };
    // A period validated above; a capacity no count reaches.
    let within = std::num::NonZeroU64::new(rule.within)?;
    let capacity = std::num::NonZeroU32::new(u32::MAX)?;
    let window = Limit::SlidingWindow(SlidingWindow::new(Rate::new(capacity, within)));
    Some(Observer {
        rule: rule.name.clone(),
        counts,
        threshold: rule.threshold as u64,
        window: NamedLimit::new(rule.name.clone(), window),
    })
}

fn attach_observers(rules: &mut AlertRules, policies: &mut [Policy]) {
    for rule in &rules.rules {
        if rule.when == RuleWhen::Quota {
            attach_quota_rule(rule, policies);
            continue;
        }
        let Some(observer) = observer(rule) else {
            continue;
        };
        rules.observers.insert(rule.name.clone(), observer.clone());
        for policy in policies.iter_mut() {
            let name = policy.name.clone();
            for tier in policy.tiers.iter_mut() {
                if rule.watches(Some(&name), None, Some(&tier.name)) {
                    let mut observers = std::mem::take(&mut tier.observers).into_vec();
                    observers.push(observer.clone());
                    tier.observers = observers.into();
                }
            }
        }
        let namespace = match &rule.target {
            RuleTarget::Namespace(ns) => Some(ns.clone()),
            RuleTarget::Any => None,
            RuleTarget::Policy(_) => continue,
        };
        let entry = rules.inline_observers.entry(namespace).or_default();
        let mut observers = std::mem::take(entry).into_vec();
        observers.push(observer);
        *entry = observers.into();
    }
}

/// Puts a quota rule on every tier it watches (endpoint rules' tiers
/// included: their quotas are the tier's too).
fn attach_quota_rule(rule: &AlertRule, policies: &mut [Policy]) {
    let watcher = QuotaRule {
        rule: rule.name.clone(),
        share: rule.threshold,
    };
    for policy in policies.iter_mut() {
        let name = policy.name.clone();
        let endpoint_tiers = policy.endpoints.values_mut().flat_map(|e| e.tiers.iter_mut());
        for tier in policy.tiers.iter_mut().chain(endpoint_tiers) {
            if rule.watches(Some(&name), None, Some(&tier.name)) {
                let mut watchers = std::mem::take(&mut tier.quota_rules).into_vec();
                watchers.push(watcher.clone());
                tier.quota_rules = watchers.into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::file::RuleWhen;
    use crate::config::Config;

    const POLICY: &str = r#"
[policies.per_ip]
key = ["ip"]
default_tier = "free"
[policies.per_ip.tiers.free]
limits = [{ algorithm = "token_bucket", rate = "10/s", burst = 20 }]
[policies.per_ip.tiers.blocked]
limits = [{ algorithm = "sliding_window", rate = "1/day" }]
penalty = true
[policies.per_ip.tiers.trusted]
unlimited = true
"#;

    fn problems(alerts: &str) -> Vec<(usize, String)> {
        let source = format!("{POLICY}{alerts}");
        let error = Config::parse(&source).unwrap_err();
        error.problems.into_iter().map(|p| (p.line, p.message)).collect()
    }

    #[test]
    fn a_rule_compiles_into_observers_on_the_tiers_it_watches() {
        let source = format!(
            "{POLICY}{}",
            r#"
[alerts]
webhook_secret_env = "WEIR_WEBHOOK_SECRET"
[[alerts.rules]]
name = "hammering"
policy = "per_ip"
when = "denied"
threshold = 100
within = "1m"
cooldown = "10m"
exempt_tiers = ["trusted"]
notify = ["https://hooks.example.com/weir"]
penalty = { tier = "blocked", for = "15m" }
"#
        );
        let config = Config::parse(&source).unwrap();
        let rule = config.alerts.rule("hammering").unwrap();
        assert_eq!(
            (rule.when, rule.threshold, rule.within),
            (RuleWhen::Denied, 100.0, 60_000_000_000)
        );
        assert_eq!(rule.penalty.as_ref().unwrap().tier, "blocked");
        let policy = config.policy("per_ip").unwrap();
        assert_eq!(policy.tier("free").unwrap().observers.len(), 1);
        assert_eq!(policy.tier("free").unwrap().observers[0].threshold, 100);
        assert!(policy.tier("trusted").unwrap().observers.is_empty(), "exempt");
    }

    #[test]
    fn every_bad_field_is_reported_with_its_line() {
        let found = problems(
            r#"
[alerts]
webhook_secret_env = "S"
[[alerts.rules]]
name = "a"
policy = "per_user"
when = "denied"
threshold = 0
within = "1m"
notify = ["ftp://example.com/x"]
penalty = { tier = "jail", for = "15m" }
[[alerts.rules]]
name = "b"
policy = "per_ip"
when = "denied_ratio"
threshold = 1.5
within = "forever"
"#,
        );
        let expect = [
            (17, "unknown policy \"per_user\""),
            (19, "whole number of checks"),
            (21, "not an http:// or https:// URL"),
            (22, "penalty tier \"jail\""),
            (27, "a fraction above 0"),
            (28, "unknown within \"forever\""),
        ];
        for (line, text) in expect {
            assert!(
                found.iter().any(|(l, m)| *l == line && m.contains(text)),
                "{line} {text}: {found:?}"
            );
        }
    }

    #[test]
    fn webhooks_need_a_secret_and_rules_need_a_target() {
        let found = problems(
            "[[alerts.rules]]\nname = \"a\"\nwhen = \"requests\"\nthreshold = 5\nwithin = \"1m\"\nnotify = [\"http://x/y\"]\n",
        );
        let text: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
        assert!(text.iter().any(|m| m.contains("webhook_secret_env")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("either a policy")), "{text:?}");
        let unknown = problems("[[alerts.rules]]\nname = \"a\"\npolicy = \"*\"\nwhen = \"sometimes\"\nthreshold = 5\nwithin = \"1m\"\n");
        assert!(
            unknown[0].1.contains("unknown variant `sometimes`"),
            "{unknown:?}"
        );
    }

    #[test]
    fn a_penalty_must_name_a_penalty_tier() {
        let source = format!("{POLICY}{}", "[[alerts.rules]]\nname = \"r\"\npolicy = \"per_ip\"\nwhen = \"denied\"\nthreshold = 3\nwithin = \"1m\"\npenalty = { tier = \"free\", for = \"5m\" }\n");
        let error = Config::parse(&source).unwrap_err();
        assert!(
            error.problems[0]
                .message
                .contains("must be marked penalty = true"),
            "{error}"
        );
        assert!(Config::parse(&source.replace("tier = \"free\", for", "tier = \"blocked\", for")).is_ok());
    }

    #[test]
    fn a_quota_rule_watches_the_quotas_of_a_policy_and_says_what_is_wrong() {
        let plans = "[policies.api]\nkey = [\"token\"]\ndefault_tier = \"free\"\n[policies.api.tiers.free]\nlimits = [{ algorithm = \"quota\", limit = 100, period = \"month\" }]\n";
        let rule =
            "[[alerts.rules]]\nname = \"eighty\"\npolicy = \"api\"\nwhen = \"quota\"\nthreshold = 0.8\n";
        let config = Config::parse(&format!("{plans}{POLICY}[alerts]\n{rule}")).unwrap();
        let free = config.policy("api").unwrap().tier("free").unwrap();
        assert_eq!(free.quota_rules.len(), 1);
        assert_eq!(free.quota_rules[0].share, 0.8);
        assert!(free.observers.is_empty(), "no window of its own");

        for (change, problem) in [
            (rule.replace("0.8", "80"), "share of the quota used"),
            (format!("{rule}within = \"1m\"\n"), "leave out within"),
            (
                rule.replace("policy = \"api\"", "policy = \"per_ip\""),
                "no quota limit",
            ),
            (
                rule.replace("policy = \"api\"", "namespace = \"drf\""),
                "not an inline namespace",
            ),
            (rule.replace("quota", "denied"), "within is required"),
        ] {
            let error = Config::parse(&format!("{plans}{POLICY}[alerts]\n{change}")).unwrap_err();
            let messages: Vec<String> = error.problems.into_iter().map(|p| p.message).collect();
            assert!(
                messages.iter().any(|m| m.contains(problem)),
                "{change}: {messages:?}"
            );
        }
    }
}
