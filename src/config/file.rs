//! The config file as written: TOML in, serde structs out. Nothing here is
//! validated beyond its shape; [`super::compile`] turns it into policies.
//!
//! Parts whose errors need a line number are wrapped in [`Spanned`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::policy::{KeyAttr, LimitSpec};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Key-store settings.
    #[serde(default)]
    pub store: StoreSection,
    /// Named policies.
    #[serde(default)]
    pub policies: BTreeMap<String, Spanned<PolicySection>>,
    /// Server-side tier assignments.
    #[serde(default)]
    pub assignments: AssignmentsSection,
    /// Per-customer quotas: a token, user, IP or endpoint's own quota for
    /// a quota limit, by the limit's name.
    #[serde(default, skip_serializing_if = "QuotaOverridesSection::is_empty")]
    pub quota_overrides: QuotaOverridesSection,
    /// Abuse alert rules.
    #[serde(default)]
    pub alerts: AlertsSection,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Most keys tracked at once; the idlest are evicted past this.
    #[serde(default = "default_max_keys")]
    pub max_keys: Spanned<u64>,
    /// Most memory the tracked keys take, as bytes or a size such as
    /// `"384MiB"`; the idlest are evicted past this.
    #[serde(default = "default_max_memory")]
    pub max_memory: Spanned<ByteSize>,
}

fn default_max_keys() -> Spanned<u64> {
    Spanned::new(0..0, 1_000_000)
}

fn default_max_memory() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize::Text("384MiB".into()))
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            max_keys: default_max_keys(),
            max_memory: default_max_memory(),
        }
    }
}

/// A size in bytes, as a number or text with a unit (`"384MiB"`, `"2GiB"`,
/// `"64 MB"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// Bytes.
    Bytes(u64),
    /// A number and a unit.
    Text(String),
}

impl ByteSize {
    /// The bytes, or what is wrong.
    ///
    /// # Errors
    /// A sentence naming the units when the text is not a size.
    pub fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            ByteSize::Bytes(bytes) => return Ok(*bytes),
            ByteSize::Text(text) => text.trim(),
        };
        let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?}; use B, KiB, MiB or GiB (or KB, MB, GB)"
                ))
            }
        };
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as \"512MiB\""))?;
        number
            .checked_mul(unit_bytes)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// `[policies.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Attributes that together form the key.
    pub key: Spanned<Vec<KeyAttr>>,
    /// The tier used when neither the request nor an assignment names one.
    pub default_tier: Spanned<String>,
    /// Limits per tier.
    pub tiers: BTreeMap<String, Spanned<TierSection>>,
    /// Per-endpoint costs and limits.
    #[serde(default)]
    pub endpoints: Vec<Spanned<EndpointSection>>,
    /// `shadow` makes every limit of the policy a shadow limit, but for
    /// those that say `mode = "enforce"` themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::policy::Mode>,
}

/// `[policies.NAME.tiers.TIER]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierSection {
    /// No limits at all for this tier.
    #[serde(default)]
    pub unlimited: bool,
    /// Nothing passes: a penalty tier. A denial's `Retry-After` is the time
    /// until the key's assignment to the tier lapses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny: bool,
    /// A check may name this tier itself (`"tier": "paid"`). Off by default:
    /// otherwise any caller of `/v1/check` could pick the best tier.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requestable: bool,
    /// A penalty tier: an assignment to it (config, runtime API, alert)
    /// decides whatever tier a check names. A deny tier is one always.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub penalty: bool,
    /// All must have room for a request to pass.
    #[serde(default)]
    pub limits: Vec<Spanned<LimitSpec>>,
}

/// `[[policies.NAME.endpoints]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// The endpoint as sent in the request key, such as `POST /orders`.
    pub endpoint: String,
    /// Units a request to this endpoint costs, unless the request says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u32>,
    /// Limits for this endpoint, per tier, counted apart from the policy's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tiers: BTreeMap<String, Spanned<TierSection>>,
}

/// `[assignments]`: API tokens and users mapped to tiers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentsSection {
    /// Token to tier.
    #[serde(default)]
    pub tokens: BTreeMap<String, Spanned<String>>,
    /// User to tier.
    #[serde(default)]
    pub users: BTreeMap<String, Spanned<String>>,
    /// Client IP to tier (a known partner's gateway, a blocked scraper).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ips: BTreeMap<String, Spanned<String>>,
    /// Endpoint (`METHOD /route/{param}`) to tier.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, Spanned<String>>,
}

/// One subject's own terms, by quota limit name.
pub type OwnQuotas = Spanned<BTreeMap<String, OwnQuota>>;

/// A subject's terms for one quota limit: a bare number is its own quota
/// for good; a table gives a quota that lapses, a credit for one period,
/// or both.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "a quota (a number), or a table of quota, until, credit and granted"
)]
pub enum OwnQuota {
    /// Units per period, for good.
    Quota(u32),
    /// Anything more.
    Terms(OwnTerms),
}

/// `{ quota = 250000, until = "…", credit = 500, granted = "…" }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OwnTerms {
    /// Units per period, in place of the tier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u32>,
    /// When `quota` lapses, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Extra units for the one period that holds `granted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<u32>,
    /// When the credit was given, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<String>,
}

impl OwnQuota {
    /// The same terms as a table.
    pub fn terms(&self) -> OwnTerms {
        match self {
            OwnQuota::Quota(quota) => OwnTerms {
                quota: Some(*quota),
                ..OwnTerms::default()
            },
            OwnQuota::Terms(terms) => terms.clone(),
        }
    }

    /// `terms` written as simply as they can be.
    pub fn from_terms(terms: OwnTerms) -> Self {
        match terms {
            OwnTerms {
                quota: Some(quota),
                until: None,
                credit: None,
                granted: None,
            } => OwnQuota::Quota(quota),
            terms => OwnQuota::Terms(terms),
        }
    }
}

/// `[quota_overrides]`: one customer's own quota for a limit of their
/// tier, by token, user, IP or endpoint.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverridesSection {
    /// Token to its quotas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, OwnQuotas>,
    /// User to its quotas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, OwnQuotas>,
    /// Client IP to its quotas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ips: BTreeMap<String, OwnQuotas>,
    /// Endpoint to its quotas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, OwnQuotas>,
}

impl QuotaOverridesSection {
    /// No override in any table.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.users.is_empty() && self.ips.is_empty() && self.endpoints.is_empty()
    }
}

/// `[alerts]`: abuse rules and where their alerts go.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// Environment variable holding the HMAC key that signs webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_env: Option<Spanned<String>>,
    /// `[[alerts.rules]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Spanned<RuleSection>>,
}

/// `[[alerts.rules]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Names the rule in alerts and metrics.
    pub name: Spanned<String>,
    /// A policy, or `"*"` for every policy and inline namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Spanned<String>>,
    /// An inline namespace instead of a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Spanned<String>>,
    /// What is counted.
    pub when: Spanned<RuleWhen>,
    /// Checks per key (`denied`, `requests`), or a fraction (`denied_ratio`,
    /// and `quota`: the share of a quota used).
    pub threshold: Spanned<f64>,
    /// The window counted over, such as `"1m"`; none for `quota`, whose
    /// window is the quota's period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<Spanned<String>>,
    /// The same key does not fire the rule again sooner; default 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Spanned<String>>,
    /// Tiers the rule ignores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_tiers: Vec<Spanned<String>>,
    /// Webhook URLs (http or https).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Spanned<String>>,
    /// Moves the key to a tier for a while when the rule fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalty: Option<Spanned<PenaltySection>>,
    /// `info`, `warning` (default) or `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Spanned<Severity>>,
    /// Webhook body: `json` (default) or `slack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Spanned<WebhookFormat>>,
    /// `denied_ratio` only: fewest checks in the window before the ratio
    /// counts; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_checks: Option<Spanned<u64>>,
}

/// What a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleWhen {
    /// Denied checks per key.
    Denied,
    /// Checks per key, allowed or not.
    Requests,
    /// Denied over all checks of the whole policy.
    DeniedRatio,
    /// A key's use of a calendar quota reached a share of it: once per key
    /// and period.
    Quota,
}

/// How loud an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look.
    #[default]
    Warning,
    /// Someone should look now.
    Critical,
}

/// The shape of a webhook body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// weir's JSON payload.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`{"text": ...}`).
    Slack,
}

/// `penalty = { tier = "...", for = "15m" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltySection {
    /// The tier the key moves to.
    pub tier: Spanned<String>,
    /// For how long.
    #[serde(rename = "for")]
    pub lasting: Spanned<String>,
}

/// One shape problem: where, and what.
pub type ShapeProblem = (std::ops::Range<usize>, String);

/// Every shape problem of `source`, found section by section (each policy
/// and each alert rule apart), so that one does not hide the others. What
/// serde reports for the whole file is only its first.
pub fn shape_problems(source: &str) -> Vec<ShapeProblem> {
    use toml::de::{DeTable, DeValue};
    let (root, syntax) = DeTable::parse_recoverable(source);
    if !syntax.is_empty() {
        return syntax
            .iter()
            .map(|e| (e.span().unwrap_or(0..0), e.message().trim().to_owned()))
            .collect();
    }
    let mut problems = Vec::new();
    for (key, value) in root.get_ref() {
        match key.get_ref().as_ref() {
            "store" => problems.extend(shape_of::<StoreSection>(value)),
            "assignments" => problems.extend(shape_of::<AssignmentsSection>(value)),
            "quota_overrides" => problems.extend(shape_of::<QuotaOverridesSection>(value)),
            "policies" => match value.get_ref() {
                DeValue::Table(policies) => {
                    problems.extend(policies.values().filter_map(shape_of::<PolicySection>));
                }
                _ => problems.extend(shape_of::<BTreeMap<String, PolicySection>>(value)),
            },
            "alerts" => match value.get_ref() {
                DeValue::Table(alerts) => {
                    let mut rest = alerts.clone();
                    let rules = rest.remove("rules");
                    problems.extend(shape_of::<AlertsSection>(&Spanned::new(
                        value.span(),
                        DeValue::Table(rest),
                    )));
                    match rules.as_ref().map(|r| r.get_ref()) {
                        Some(DeValue::Array(rules)) => {
                            problems.extend(rules.iter().filter_map(shape_of::<RuleSection>));
                        }
                        Some(_) => problems.extend(rules.as_ref().and_then(shape_of::<Vec<RuleSection>>)),
                        None => {}
                    }
                }
                _ => problems.extend(shape_of::<AlertsSection>(value)),
            },
            other => problems.push((
                key.span(),
                format!(
                    "unknown field `{other}`, expected one of `store`, `policies`, `assignments`, `quota_overrides`, `alerts`"
                ),
            )),
        }
    }
    problems
}

/// The shape problem of one value read as a `T`, if any.
fn shape_of<T: serde::de::DeserializeOwned>(value: &Spanned<toml::de::DeValue<'_>>) -> Option<ShapeProblem> {
    let mut owned = value.clone();
    owned.get_mut().make_owned();
    let error = T::deserialize(toml::de::ValueDeserializer::from(owned)).err()?;
    Some((
        error.span().unwrap_or(value.span()),
        error.message().trim().to_owned(),
    ))
}
