//! Usage analytics: who is using and who is being refused, per node, in
//! bounded memory.
//!
//! The engine shows every decision to a [`tally::ShardTally`] on the store
//! shard that made it (see `engine::hook`); once a second [`Usage::drain`]
//! swaps each shard's tally for an empty one and empties the taken ones into
//! the node's [`History`], outside the shards' locks. Reports merge across
//! nodes ([`UsageReport::merge`]); `server::usage` serves them.
//!
//! - [`top`]: Space-Saving heavy hitters, per shard and mergeable.
//! - [`tally`]: what a shard records between drains.
//! - [`history`]: rings of counts and summaries per minute and hour.
//! - [`report`]: the JSON answer and its merge.

pub mod history;
pub mod report;
pub mod tally;
pub mod top;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use history::{Filter, History, Range, UsageSettings};
pub use report::{KeyLabel, UsageReport};
pub use tally::{Counts, ScopeId};
pub use top::Counted;

use crate::clock::SECOND;
use crate::cluster::{peer_http, ClusterNode};
use crate::engine::{Engine, Recorder};
use tally::ShardTally;

/// How long a node waits for its peers' reports.
pub const PEER_DEADLINE: Duration = Duration::from_millis(800);

/// The query a node sends its peers for their local reports.
#[derive(serde::Serialize)]
struct LocalQuery<'a> {
    range: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    scope: &'a str,
    limit: usize,
}

/// One node's analytics.
pub struct Usage {
    engine: Arc<Engine>,
    history: Mutex<History>,
    /// One idle tally per shard: a drain swaps it in under the shard's lock
    /// and reads the one it took out after the lock is released, so the
    /// check path never waits for the summaries to be built, and the
    /// tallies keep their allocations from second to second.
    spares: Mutex<Vec<ShardTally>>,
}

/// A key's recent checks, where its policy's summaries list it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Recent {
    /// Allowed checks, if listed.
    pub allowed: Option<Counted>,
    /// Denied checks, if listed.
    pub denied: Option<Counted>,
}

impl Usage {
    /// Starts recording every decision `engine` makes.
    pub fn install(engine: Arc<Engine>, settings: UsageSettings) -> Arc<Self> {
        engine.install_recorders(&|| Box::new(ShardTally::default()) as Box<dyn Recorder>);
        Arc::new(Self {
            engine,
            history: Mutex::new(History::new(settings)),
            spares: Mutex::default(),
        })
    }

    fn history(&self) -> MutexGuard<'_, History> {
        // History updates are whole-value writes; a panic mid-update leaves
        // at worst one second half counted.
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves what the shards counted into the history, stamped now.
    pub fn drain(&self) {
        let second = self.engine.now() / SECOND;
        let k = self.history().settings().top_k;
        // Only the drain takes this lock; a panic mid-drain loses a second.
        let mut spares = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = 0;
        self.engine.visit_recorders(|recorder| {
            let any: &mut dyn std::any::Any = recorder;
            if let Some(tally) = any.downcast_mut::<ShardTally>() {
                if taken == spares.len() {
                    spares.push(ShardTally::default());
                }
                std::mem::swap(tally, &mut spares[taken]);
                taken += 1;
            }
        });
        let mut drained = Vec::new();
        for tally in spares.iter_mut() {
            tally.drain(k, |d| drained.push(d));
        }
        drop(spares);
        let mut history = self.history();
        for d in drained {
            history.add(second, d);
        }
    }

    /// Drains every second, forever; spawn it and abort it.
    pub async fn drain_every_second(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            ticks.tick().await;
            self.drain();
        }
    }

    /// This node's report over `range`, as of now.
    pub fn report(&self, node: &str, range: Range, filter: &Filter) -> UsageReport {
        let now = self.engine.now() / SECOND;
        UsageReport::local(&self.history(), node, range, now, filter)
    }

    /// The report for `range` of the whole cluster when `cluster` is given
    /// (this node's, called `node`, merged with every live peer's, asked
    /// within [`PEER_DEADLINE`]), else of this node. Top lists are cut to
    /// `top`.
    pub async fn cluster_report(
        &self,
        node: &str,
        cluster: Option<&Arc<ClusterNode>>,
        range: Range,
        filter: &Filter,
        top: usize,
    ) -> UsageReport {
        let mut report = self.report(node, range, filter);
        if let Some(cluster) = cluster {
            let k = self.top_k();
            let query = LocalQuery {
                range: range.name(),
                policy: filter.policy.as_deref(),
                tier: filter.tier.as_deref(),
                scope: "local",
                limit: k,
            };
            let path = format!(
                "/v1/usage?{}",
                serde_urlencoded::to_string(&query).unwrap_or_default()
            );
            let (answers, missing) = peer_http::ask_peers::<UsageReport>(cluster, path, PEER_DEADLINE).await;
            for answer in answers {
                report.merge(answer, k);
            }
            report.missing.extend(missing);
            report.scope = "cluster".into();
        }
        report.truncate_tops(top.min(self.top_k()));
        report
    }

    /// How often the key of `store_key` was allowed and denied over `range`,
    /// where its policy's summaries list it, summed over its tiers: a key
    /// moved to another tier (a penalty) keeps its history.
    pub fn recent(&self, store_key: &str, range: Range) -> Recent {
        let wanted = KeyLabel::of_store_key(store_key);
        let same_key = |key: &str| {
            let label = KeyLabel::of_store_key(key);
            (&label.policy, &label.namespace, &label.key) == (&wanted.policy, &wanted.namespace, &wanted.key)
        };
        let filter = Filter {
            policy: wanted.policy.clone().or(wanted.namespace.clone()),
            tier: None,
        };
        let now = self.engine.now() / SECOND;
        let tops = self.history().tops(range, now, &filter);
        let sum = |into: &mut Option<Counted>, top: &top::TopK| {
            for (_, counted) in top.ranked().into_iter().filter(|(key, _)| same_key(key)) {
                let total = into.get_or_insert_with(Counted::default);
                total.count += counted.count;
                total.error += counted.error;
            }
        };
        let mut recent = Recent::default();
        for (_, pair) in &tops {
            sum(&mut recent.allowed, &pair.allowed);
            sum(&mut recent.denied, &pair.denied);
        }
        recent
    }

    /// Checks per scope since start, for metrics.
    pub fn totals(&self) -> Vec<(ScopeId, Counts)> {
        self.history().totals()
    }

    /// Per scope and shadow limit, the allowed checks it would have denied
    /// since start, for metrics.
    pub fn shadow_totals(&self) -> Vec<(ScopeId, compact_str::CompactString, u64)> {
        self.history().shadow_totals()
    }

    /// Keys per heavy-hitter summary.
    pub fn top_k(&self) -> usize {
        self.history().settings().top_k
    }

    /// Bytes held, and scopes tracked.
    pub fn footprint(&self) -> (usize, usize) {
        let history = self.history();
        (history.bytes(), history.scopes())
    }
}
