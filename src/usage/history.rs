//! One node's usage over time: counts per scope at 1 s for the last hour
//! and 1 min for the last day, and heavy hitters per policy (or namespace)
//! per minute for the last hour and per hour for the last day.
//!
//! Memory is fixed by the settings: rings are allocated once per scope, the
//! scopes are bounded by the config plus a cap on inline namespaces, and
//! every summary holds at most `top_k` keys.

use std::collections::{BTreeMap, VecDeque};

use compact_str::CompactString;

use super::tally::{add_shadow, Counts, Drained, ScopeId, ShadowCounts};
use super::top::TopK;

/// Seconds kept at 1 s resolution.
pub const SECONDS_KEPT: u64 = 3600;
/// Minutes kept at 1 min resolution.
pub const MINUTES_KEPT: u64 = 24 * 60;

/// How much the analytics keep.
#[derive(Debug, Clone, Copy)]
pub struct UsageSettings {
    /// Keys per heavy-hitter summary (allowed and denied apart).
    pub top_k: usize,
    /// Inline namespaces tracked apart; the rest fold into one scope.
    pub max_namespaces: usize,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            top_k: 64,
            max_namespaces: 32,
        }
    }
}

/// A ring of counts indexed by absolute time unit (second or minute).
struct Ring {
    stamps: Box<[u64]>,
    counts: Box<[Counts]>,
}

impl Ring {
    fn new(len: u64) -> Self {
        Self {
            stamps: vec![u64::MAX; len as usize].into(),
            counts: vec![Counts::default(); len as usize].into(),
        }
    }

    fn add(&mut self, at: u64, counts: &Counts) {
        let i = (at % self.stamps.len() as u64) as usize;
        if self.stamps[i] != at {
            self.stamps[i] = at;
            self.counts[i] = Counts::default();
        }
        self.counts[i].add(counts);
    }

    fn get(&self, at: u64) -> Counts {
        let i = (at % self.stamps.len() as u64) as usize;
        if self.stamps[i] == at {
            self.counts[i]
        } else {
            Counts::default()
        }
    }

    fn bytes(&self) -> usize {
        self.stamps.len() * (8 + std::mem::size_of::<Counts>())
    }
}

struct Series {
    seconds: Ring,
    minutes: Ring,
    /// Since the node started, for metrics.
    total: Counts,
    /// Per shadow limit, since the node started, for metrics.
    shadow_total: ShadowCounts,
}

/// Heavy hitters, allowed and denied.
#[derive(Debug, Clone, Default)]
pub struct TopPair {
    /// Allowed checks per key.
    pub allowed: TopK,
    /// Denied checks per key.
    pub denied: TopK,
    /// Allowed checks a shadow limit would have denied, per key.
    pub shadow_denied: TopK,
}

impl TopPair {
    fn new(k: usize) -> Self {
        Self {
            allowed: TopK::new(k),
            denied: TopK::new(k),
            shadow_denied: TopK::new(k),
        }
    }

    /// Adds `other` in.
    pub fn merge(&mut self, other: &TopPair) {
        self.allowed.merge(&other.allowed);
        self.denied.merge(&other.denied);
        self.shadow_denied.merge(&other.shadow_denied);
    }

    fn bytes(&self) -> usize {
        self.allowed.bytes() + self.denied.bytes() + self.shadow_denied.bytes()
    }
}

/// Summaries of one policy or namespace.
struct Tops {
    minute: (u64, TopPair),
    /// Full minutes of the current hour, merged.
    hour: (u64, TopPair),
    minutes: VecDeque<(u64, TopPair)>,
    hours: VecDeque<(u64, TopPair)>,
}

impl Tops {
    fn new(k: usize, minute: u64) -> Self {
        Self {
            minute: (minute, TopPair::new(k)),
            hour: (minute / 60, TopPair::new(k)),
            minutes: VecDeque::new(),
            hours: VecDeque::new(),
        }
    }

    /// Moves the current minute (and hour) into the past once `minute` is
    /// later.
    fn roll(&mut self, k: usize, minute: u64) {
        if self.minute.0 >= minute {
            return;
        }
        let done = std::mem::replace(&mut self.minute, (minute, TopPair::new(k)));
        if self.hour.0 != done.0 / 60 {
            let hour = std::mem::replace(&mut self.hour, (done.0 / 60, TopPair::new(k)));
            self.hours.push_back(hour);
        }
        self.hour.1.merge(&done.1);
        self.minutes.push_back(done);
        while self.minutes.front().is_some_and(|(m, _)| m + 60 <= minute) {
            self.minutes.pop_front();
        }
        let hour = minute / 60;
        if self.hour.0 != hour {
            let done = std::mem::replace(&mut self.hour, (hour, TopPair::new(k)));
            self.hours.push_back(done);
        }
        while self.hours.front().is_some_and(|(h, _)| h + 24 <= hour) {
            self.hours.pop_front();
        }
    }

    /// Everything from `since_minute` (inclusive) to `now_minute`, at the
    /// granularity kept: minutes within the last hour, hours beyond. The
    /// current minute and hour count only if they are recent: a policy
    /// without traffic is not rolled forward.
    fn since(&self, k: usize, since_minute: u64, now_minute: u64) -> TopPair {
        let mut merged = TopPair::new(k);
        if since_minute + 60 > now_minute {
            for (_, pair) in self.minutes.iter().filter(|(m, _)| *m >= since_minute) {
                merged.merge(pair);
            }
        } else {
            let since_hour = since_minute / 60;
            for (_, pair) in self.hours.iter().filter(|(h, _)| *h >= since_hour) {
                merged.merge(pair);
            }
            if self.hour.0 >= since_hour {
                merged.merge(&self.hour.1);
            }
        }
        if self.minute.0 >= since_minute {
            merged.merge(&self.minute.1);
        }
        merged
    }

    fn bytes(&self) -> usize {
        let past = self.minutes.iter().chain(&self.hours).map(|(_, p)| p.bytes());
        self.minute.1.bytes() + self.hour.1.bytes() + past.sum::<usize>()
    }
}

/// A query window, ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// 5 minutes at 1 s.
    FiveMinutes,
    /// 1 hour at 10 s.
    Hour,
    /// 24 hours at 1 min.
    Day,
}

impl Range {
    /// `5m`, `1h` or `24h`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "5m" => Some(Range::FiveMinutes),
            "1h" => Some(Range::Hour),
            "24h" => Some(Range::Day),
            _ => None,
        }
    }

    /// As parsed.
    pub fn name(self) -> &'static str {
        match self {
            Range::FiveMinutes => "5m",
            Range::Hour => "1h",
            Range::Day => "24h",
        }
    }

    /// Its length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Range::FiveMinutes => 300,
            Range::Hour => 3600,
            Range::Day => 86_400,
        }
    }

    /// Seconds per point of its series.
    pub fn step(self) -> u64 {
        match self {
            Range::FiveMinutes => 1,
            Range::Hour => 10,
            Range::Day => 60,
        }
    }
}

/// Which scopes a query covers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// A policy or inline namespace name.
    pub policy: Option<String>,
    /// A tier (policy scopes only).
    pub tier: Option<String>,
}

impl Filter {
    /// Whether `id` is covered.
    pub fn covers(&self, id: &ScopeId) -> bool {
        let (name, tier) = match id {
            ScopeId::Policy { policy, tier } => (policy.as_str(), Some(tier.as_str())),
            ScopeId::Namespace(name) => (name.as_str(), None),
            ScopeId::OtherNamespaces => ("", None),
        };
        self.policy.as_deref().is_none_or(|p| p == name)
            && self.tier.as_deref().is_none_or(|t| Some(t) == tier)
    }
}

/// One scope's counts over a range.
#[derive(Debug, Clone)]
pub struct ScopeSeries {
    /// Whose.
    pub id: ScopeId,
    /// Over the whole range.
    pub counts: Counts,
    /// Per step, oldest first.
    pub points: Vec<Counts>,
}

/// One node's usage.
pub struct History {
    settings: UsageSettings,
    series: BTreeMap<ScopeId, Series>,
    tops: BTreeMap<ScopeId, Tops>,
    namespaces: usize,
}

impl History {
    /// Empty, keeping what `settings` allow.
    pub fn new(settings: UsageSettings) -> Self {
        Self {
            settings,
            series: BTreeMap::new(),
            tops: BTreeMap::new(),
            namespaces: 0,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> UsageSettings {
        self.settings
    }

    /// Folds a namespace past the cap into [`ScopeId::OtherNamespaces`],
    /// unless the config names it (`named`): those always keep their scope,
    /// and do not count towards the cap.
    fn admit(&mut self, id: ScopeId, named: bool) -> ScopeId {
        if !matches!(id, ScopeId::Namespace(_)) || named || self.series.contains_key(&id) {
            return id;
        }
        if self.namespaces >= self.settings.max_namespaces {
            return ScopeId::OtherNamespaces;
        }
        self.namespaces += 1;
        id
    }

    /// Adds what the shards counted, at `second` (Unix time).
    pub fn add(&mut self, second: u64, drained: Drained) {
        let id = self.admit(drained.id, drained.named);
        let series = self.series.entry(id.clone()).or_insert_with(|| Series {
            seconds: Ring::new(SECONDS_KEPT),
            minutes: Ring::new(MINUTES_KEPT),
            total: Counts::default(),
            shadow_total: ShadowCounts::new(),
        });
        for (limit, count) in &drained.shadow_limits {
            add_shadow(&mut series.shadow_total, limit, *count);
        }
        series.seconds.add(second, &drained.counts);
        series.minutes.add(second / 60, &drained.counts);
        series.total.add(&drained.counts);
        let k = self.settings.top_k;
        let minute = second / 60;
        let tops = self
            .tops
            .entry(id.group())
            .or_insert_with(|| Tops::new(k, minute));
        tops.roll(k, minute);
        tops.minute.1.merge(&TopPair {
            allowed: drained.top_allowed,
            denied: drained.top_denied,
            shadow_denied: drained.top_shadow_denied,
        });
    }

    /// Counts per scope since start, for metrics.
    pub fn totals(&self) -> Vec<(ScopeId, Counts)> {
        self.series.iter().map(|(id, s)| (id.clone(), s.total)).collect()
    }

    /// Per scope and shadow limit, the allowed checks it would have denied
    /// since start, for metrics.
    pub fn shadow_totals(&self) -> Vec<(ScopeId, CompactString, u64)> {
        let mut totals = Vec::new();
        for (id, series) in &self.series {
            for (limit, count) in &series.shadow_total {
                totals.push((id.clone(), limit.clone(), *count));
            }
        }
        totals
    }

    /// Counts per covered scope over `range` ending at `now` (Unix
    /// seconds), one point per step, oldest first.
    pub fn series(&self, range: Range, now: u64, filter: &Filter) -> Vec<ScopeSeries> {
        let step = range.step();
        let points = (range.seconds() / step) as usize;
        let first = (now / step + 1).saturating_sub(points as u64) * step;
        let covered = self.series.iter().filter(|(id, _)| filter.covers(id));
        covered
            .map(|(id, series)| {
                let point = |i: usize| {
                    let from = first + i as u64 * step;
                    let mut sum = Counts::default();
                    if step == 60 {
                        sum = series.minutes.get(from / 60);
                    } else {
                        (from..from + step).for_each(|s| sum.add(&series.seconds.get(s)));
                    }
                    sum
                };
                let points: Vec<Counts> = (0..points).map(point).collect();
                let mut counts = Counts::default();
                points.iter().for_each(|p| counts.add(p));
                ScopeSeries {
                    id: id.clone(),
                    counts,
                    points,
                }
            })
            .filter(|s| !s.counts.is_zero())
            .collect()
    }

    /// The first second of the series [`series`](Self::series) returns.
    pub fn series_start(range: Range, now: u64) -> u64 {
        let step = range.step();
        (now / step + 1).saturating_sub(range.seconds() / step) * step
    }

    /// Heavy hitters per covered policy or namespace over `range` ending at
    /// `now` (Unix seconds). A tier filter applies to the keys, whose store
    /// key names their tier.
    pub fn tops(&self, range: Range, now: u64, filter: &Filter) -> Vec<(ScopeId, TopPair)> {
        let group_filter = Filter {
            policy: filter.policy.clone(),
            tier: None,
        };
        let since = (now + 1).saturating_sub(range.seconds()) / 60;
        self.tops
            .iter()
            .filter(|(id, _)| group_filter.covers(id))
            .map(|(id, tops)| (id.clone(), tops.since(self.settings.top_k, since, now / 60)))
            .collect()
    }

    /// Bytes held by rings and summaries.
    pub fn bytes(&self) -> usize {
        let rings: usize = self
            .series
            .values()
            .map(|s| s.seconds.bytes() + s.minutes.bytes())
            .sum();
        let tops: usize = self.tops.values().map(Tops::bytes).sum();
        rings + tops
    }

    /// Scopes tracked.
    pub fn scopes(&self) -> usize {
        self.series.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::top::TopK;
    use std::sync::Arc;

    fn drained(key: &str, allowed: u64) -> Drained {
        let mut top = TopK::new(8);
        top.add(&Arc::from(key), allowed);
        Drained {
            id: ScopeId::Policy {
                policy: "p".into(),
                tier: "t".into(),
            },
            counts: Counts {
                allowed,
                ..Counts::default()
            },
            top_allowed: top,
            top_denied: TopK::new(8),
            top_shadow_denied: TopK::new(8),
            shadow_limits: Vec::new(),
            named: true,
        }
    }

    #[test]
    fn a_namespace_the_config_names_keeps_its_scope_past_the_cap() {
        let mut history = History::new(UsageSettings::default());
        let namespace = |name: &str, named: bool| Drained {
            id: ScopeId::Namespace(name.into()),
            named,
            ..drained("k", 1)
        };
        for i in 0..40 {
            history.add(1_800_000_000, namespace(&format!("junk-{i}"), false));
        }
        history.add(1_800_000_000, namespace("drf:anon", true));
        let scopes: Vec<ScopeId> = history.totals().into_iter().map(|(id, _)| id).collect();
        assert!(
            scopes.contains(&ScopeId::Namespace("drf:anon".into())),
            "{scopes:?}"
        );
        assert!(
            scopes.contains(&ScopeId::OtherNamespaces),
            "the junk past the cap folds"
        );
        assert!(!scopes.contains(&ScopeId::Namespace("junk-39".into())));
    }

    fn top_keys(history: &History, range: Range, now: u64) -> Vec<String> {
        let tops = history.tops(range, now, &Filter::default());
        tops.iter()
            .flat_map(|(_, pair)| pair.allowed.ranked().into_iter().map(|(k, _)| k.to_string()))
            .collect()
    }

    #[test]
    fn a_quiet_policy_shows_no_old_keys_in_a_short_range() {
        let mut history = History::new(UsageSettings::default());
        let t0 = 1_800_000_000;
        history.add(t0, drained("old", 5));
        let later = t0 + 2 * 3600;
        assert!(top_keys(&history, Range::FiveMinutes, later).is_empty());
        assert!(top_keys(&history, Range::Hour, later).is_empty());
        assert_eq!(top_keys(&history, Range::Day, later), ["old"]);
        assert!(history.series(Range::Hour, later, &Filter::default()).is_empty());
    }

    #[test]
    fn keys_move_from_minutes_to_hours_as_time_passes() {
        let settings = UsageSettings {
            top_k: 8,
            ..UsageSettings::default()
        };
        let mut history = History::new(settings);
        let t0 = 1_800_000_000; // a whole hour
        for minute in 0..150 {
            history.add(t0 + minute * 60, drained(&format!("k{minute}"), 1));
        }
        let now = t0 + 149 * 60;
        // The five minutes before `now` touch six whole minutes.
        assert_eq!(top_keys(&history, Range::FiveMinutes, now).len(), 6);
        assert_eq!(top_keys(&history, Range::Hour, now).len(), 8, "capped at k");
        let day = history.series(Range::Day, now, &Filter::default());
        assert_eq!(day[0].counts.allowed, 150);
    }
}
