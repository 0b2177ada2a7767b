//! The configuration: TOML text in, validated [`Config`] out.
//!
//! A config names the policies (see [`crate::policy`]), the key-store size
//! and server-side tier assignments. It is parsed and checked as a whole;
//! every problem is reported with its line and column, so `weir check-config`
//! can print them all at once. A [`Config`] is immutable: a change builds a
//! new one and the engine swaps it in atomically.

pub mod alerts;
mod compile;
pub mod file;
pub mod overrides;
pub mod source;

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::Range;

use compact_str::CompactString;

use alerts::AlertRules;
pub use compile::MAX_KEYS_LIMIT;
use file::ConfigFile;
pub use overrides::{Override, QuotaOverrides};

use crate::policy::Policy;

/// The built-in configuration, used when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Largest config accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The TOML text it was built from.
    pub source: String,
    /// The file as parsed, for display.
    pub file: ConfigFile,
    /// Compiled policies, sorted by name. Deployments have a handful, so a
    /// scan that compares lengths first beats hashing the name.
    pub policies: Vec<Policy>,
    /// Tier assignments declared in the file.
    pub assignments: Assignments,
    /// Customers' own quotas.
    pub quota_overrides: QuotaOverrides,
    /// Most keys to track.
    pub max_keys: u64,
    /// Most bytes the tracked keys may take.
    pub max_memory: u64,
    /// Abuse alert rules.
    pub alerts: AlertRules,
    /// A stable hash of the source, to tell configs apart
    /// ([`fingerprint`]).
    pub fingerprint: u64,
    /// The fingerprint of the config file this config was made over: its
    /// own for a config read from a file (or the built-in one); for a
    /// runtime change (`PUT /v1/config`), that of the config it replaced.
    /// The cluster uses it to tell a node started with another file from a
    /// runtime edit (see `cluster::config_sync`).
    pub base: u64,
}

/// A stable hash of a config's text, the same in every process; shown as
/// 16 hex digits ([`hex`]).
pub fn fingerprint(source: &str) -> u64 {
    foldhash::quality::FixedState::with_seed(0x3e1c).hash_one(source)
}

/// A fingerprint as shown to people: 16 lower-case hex digits.
pub fn hex(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// Token, user, IP and endpoint to tier, as declared in the config file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assignments {
    /// API token to tier.
    pub tokens: HashMap<String, CompactString>,
    /// User to tier.
    pub users: HashMap<String, CompactString>,
    /// Client IP to tier.
    pub ips: HashMap<String, CompactString>,
    /// Endpoint (`METHOD /route`) to tier.
    pub endpoints: HashMap<String, CompactString>,
}

impl Assignments {
    /// No assignment in any table.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.users.is_empty() && self.ips.is_empty() && self.endpoints.is_empty()
    }

    /// The table of `subject`'s assignments.
    pub fn table(&self, subject: crate::engine::Subject) -> &HashMap<String, CompactString> {
        use crate::engine::Subject;
        match subject {
            Subject::Token => &self.tokens,
            Subject::User => &self.users,
            Subject::Ip => &self.ips,
            Subject::Endpoint => &self.endpoints,
        }
    }
}

/// One thing wrong with a config, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn at(source: &str, span: Range<usize>, message: String) -> Self {
        let before = &source[..span.start.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Self {
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// Why a config was rejected: every problem found, in source order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// What is wrong, and where.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(Problem::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl Config {
    /// Parses and validates a config.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem with its line: TOML syntax,
    /// unknown fields, bad rates, unknown tiers, values out of range.
    pub fn parse(source: &str) -> Result<Config, ConfigError> {
        let fail = |problems| Err(ConfigError { problems });
        if source.len() > MAX_CONFIG_BYTES {
            let message = format!("config is {} bytes; the most is {MAX_CONFIG_BYTES}", source.len());
            return fail(vec![Problem::at(source, 0..0, message)]);
        }
        let file: ConfigFile = match toml::from_str(source) {
            Ok(file) => file,
            Err(error) => {
                // serde stops at the first problem; look for the others
                // section by section.
                let mut found = file::shape_problems(source);
                if found.is_empty() {
                    found.push((error.span().unwrap_or(0..0), error.message().trim().to_owned()));
                }
                let mut problems: Vec<Problem> = found
                    .into_iter()
                    .map(|(span, message)| Problem::at(source, span, message))
                    .collect();
                problems.sort_by_key(|p| (p.line, p.column));
                return fail(problems);
            }
        };
        let mut problems = compile::Problems::new(source);
        let (mut policies, assignments, capacity) = compile::compile(&file, &mut problems);
        let alerts = alerts::compile(&file.alerts, &file.policies, &mut policies, &mut problems);
        let quota_overrides = overrides::compile(&file.quota_overrides, &policies, &mut problems);
        let mut problems = problems.into_vec();
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.line, p.column));
            return fail(problems);
        }
        // Read from a file: its own base (see `made_over`).
        let read_as = fingerprint(source);
        Ok(Config {
            source: source.to_owned(),
            file,
            policies,
            assignments,
            quota_overrides,
            max_keys: capacity.max_keys,
            max_memory: capacity.max_memory,
            alerts,
            fingerprint: read_as,
            base: read_as,
        })
    }

    /// This config as a runtime change made over the file with fingerprint
    /// `base`.
    pub fn made_over(mut self, base: u64) -> Self {
        self.base = base;
        self
    }

    /// The built-in configuration.
    pub fn builtin() -> Config {
        // The embedded text is checked by a unit test, so this cannot fail.
        Config::parse(DEFAULT_CONFIG).expect("the built-in config is valid")
    }

    /// How much the key store may hold.
    pub fn capacity(&self) -> crate::store::Capacity {
        crate::store::Capacity {
            max_keys: self.max_keys,
            max_memory: self.max_memory,
        }
    }

    /// The policy called `name`.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.name.len() == name.len() && p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{KeyAttr, TierLimits};

    fn problems(source: &str) -> Vec<Problem> {
        Config::parse(source).unwrap_err().problems
    }

    #[test]
    fn the_builtin_config_has_per_ip_and_per_user_policies_with_three_tiers_and_a_penalty_tier() {
        let config = Config::builtin();
        for (name, attr) in [("per_ip", KeyAttr::Ip), ("per_user", KeyAttr::User)] {
            let policy = config.policy(name).unwrap();
            assert!(policy.key.contains(attr));
            assert_eq!(policy.tier_names(), "blocked, free, paid, trusted");
            assert_eq!(policy.tier("trusted").unwrap().limits, TierLimits::Unlimited);
            assert_eq!(policy.tier("blocked").unwrap().limits, TierLimits::Deny);
            let TierLimits::Limited(free) = &policy.tier("free").unwrap().limits else {
                panic!("free is limited");
            };
            assert_eq!(free.len(), 2, "burst and sustained");
        }
        assert_eq!(
            config.policy("per_user").unwrap().endpoints["POST /orders"].cost,
            Some(5)
        );
    }

    #[test]
    fn reports_a_syntax_error_with_its_line() {
        let found = problems("[policies.api]\nkey = [\"user\"\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, 2, "{found:?}");
        assert!(found[0].message.contains("unclosed array"), "{found:?}");
    }

    #[test]
    fn reports_an_unknown_key_attribute_with_its_line() {
        let found = problems(
            "[policies.api]\ndefault_tier = \"free\"\nkey = [\"email\"]\n[policies.api.tiers.free]\nunlimited = true\n",
        );
        assert_eq!(found[0].line, 3, "{found:?}");
        assert!(found[0].message.contains("unknown variant `email`"), "{found:?}");
    }

    #[test]
    fn reports_every_semantic_problem_at_once() {
        let source = r#"
[policies.api]
key = ["user"]
default_tier = "gold"

[policies.api.tiers.free]
limits = [
  { algorithm = "token_bucket", rate = "10/fortnight" },
  { algorithm = "sliding_window", rate = "5/s", burst = 3 },
]

[policies.api.tiers.paid]
unlimited = true
limits = [{ algorithm = "sliding_window", rate = "5/s" }]
"#;
        let found = problems(source);
        let summary: Vec<(usize, &str)> = found.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(found.len(), 4, "{summary:?}");
        assert_eq!(found[0].line, 4);
        assert!(found[0].message.contains("default_tier \"gold\""));
        assert_eq!(found[1].line, 8);
        assert!(found[1].message.contains("unknown period \"fortnight\""));
        assert_eq!(found[2].line, 9);
        assert!(found[2].message.contains("token_bucket limits only"));
        assert!(found[3].message.contains("cannot also have limits"));
    }

    #[test]
    fn rejects_assignments_to_tiers_no_policy_has() {
        let source = "[policies.a]\nkey = [\"ip\"]\ndefault_tier = \"free\"\n[policies.a.tiers.free]\nunlimited = true\n[assignments.users]\nbob = \"platinum\"\n";
        let found = problems(source);
        assert_eq!(found[0].line, 7);
        assert!(found[0].message.contains("\"platinum\""));
    }

    #[test]
    fn rejects_an_endpoint_rule_for_an_unknown_tier_and_a_zero_cost() {
        let source = "[policies.a]\nkey = [\"ip\"]\ndefault_tier = \"free\"\n[policies.a.tiers.free]\nunlimited = true\n[[policies.a.endpoints]]\nendpoint = \"GET /x\"\ncost = 0\n[policies.a.endpoints.tiers.gold]\nunlimited = true\n";
        let messages: Vec<String> = problems(source).into_iter().map(|p| p.message).collect();
        assert!(
            messages.iter().any(|m| m.contains("cost must be between")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("tier \"gold\" is not a tier")),
            "{messages:?}"
        );
    }

    #[test]
    fn an_empty_config_is_valid_for_inline_limits_only() {
        let config = Config::parse("").unwrap();
        assert!(config.policies.is_empty());
        assert_eq!(config.max_keys, 1_000_000);
    }

    #[test]
    fn endpoint_rules_that_no_check_matched_are_named_with_an_endpoint_that_matched_none() {
        let config = Config::builtin();
        let policy = config.policy("per_user").unwrap();
        assert_eq!(policy.never_matched(), None, "no endpoint seen yet");
        assert!(policy.endpoint_rule("POST /order").is_none(), "a misspelling");
        assert_eq!(
            policy.never_matched(),
            Some((vec!["POST /orders"], "POST /order"))
        );
        assert_eq!(policy.endpoint_rule("POST /orders").and_then(|r| r.cost), Some(5));
        assert_eq!(policy.never_matched(), None, "every rule matched");
        assert!(
            Config::builtin()
                .policy("per_user")
                .unwrap()
                .unmatched
                .get()
                .is_none(),
            "per config"
        );
    }
}
