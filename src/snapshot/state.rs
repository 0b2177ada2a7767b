//! What a snapshot holds, taken from a running node and given back to one.
//!
//! Taking walks the store one shard at a time, copying under that shard's
//! lock only, and encodes outside it. Giving back merges like a peer's
//! counts do: every saved column keeps the identity of the incarnation that
//! counted it (a restarted node is a new incarnation), and merges by max, so
//! an old snapshot, a snapshot taken after peers already resent the counts,
//! or another node's view can only raise a count, never double it.

use std::collections::HashMap;

use tracing::{info, warn};
use weir_cluster::nodes::ME;
use weir_cluster::{Column, NodeIdx};

use super::format::{
    decode_chunk, digest, encode_manifest, verify_chunks, ChunkWriter, Digest, FormatError, Manifest, Record,
    SavedColumn, SavedKey, SavedLimit,
};
use crate::alerts::{Alerts, Cooldown};
use crate::clock::{Nanos, MILLI};
use crate::config::Config;
use crate::engine::{Engine, Subject};
use crate::store::SHARDS;

/// Whose snapshot it is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The cluster id.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: String,
}

/// A snapshot taken, encoded, ready to write.
#[derive(Debug)]
pub struct Taken {
    /// The manifest frame.
    pub manifest: Vec<u8>,
    /// The chunk frames.
    pub chunks: Vec<Vec<u8>>,
    /// Keys saved.
    pub keys: u64,
    /// When it was taken, Unix ns.
    pub taken_at: Nanos,
    /// How long the longest-lived key it holds stays meaningful.
    pub longest: Nanos,
}

impl Taken {
    /// Bytes written.
    pub fn bytes(&self) -> u64 {
        (self.manifest.len() + self.chunks.iter().map(Vec::len).sum::<usize>()) as u64
    }
}

/// What a restore gave back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Keys merged in.
    pub keys: u64,
    /// Keys skipped: expired, or laid out for another config.
    pub skipped: u64,
    /// Tier assignments back in force.
    pub tiers: u64,
    /// Alert cooldowns back in force.
    pub cooldowns: u64,
    /// The config version adopted, if the snapshot's config came back.
    pub config_version: Option<u64>,
    /// When the snapshot was taken, Unix ns.
    pub taken_at: Nanos,
}

/// The digest of a config's text: what [`Record::Config`]'s `base` holds.
pub fn config_digest(config: &Config) -> Digest {
    digest(config.source.as_bytes())
}

/// One key as copied under its shard's lock.
struct Copied {
    key: String,
    left: Nanos,
    limits: Vec<CopiedLimit>,
}

struct CopiedLimit {
    spec: u16,
    head: u64,
    refill_at: Nanos,
    columns: Vec<(NodeIdx, Column)>,
}

fn copy(key: &str, entry: &crate::store::Entry, left: Nanos, now: Nanos) -> Option<Copied> {
    let limits: Vec<_> = entry
        .limits
        .iter()
        .map(|state| {
            let counter = state.counter();
            let mut columns = counter.columns(ME);
            columns.retain(|(_, column)| *column != Column::default());
            CopiedLimit {
                spec: state.spec(),
                head: counter.head(),
                refill_at: state.refill_at(),
                columns,
            }
        })
        .collect();
    let holds_anything = limits
        .iter()
        .any(|limit| !limit.columns.is_empty() || limit.refill_at > now);
    holds_anything.then(|| Copied {
        key: key.to_string(),
        left,
        limits,
    })
}

/// Takes a snapshot of `engine` (and `alerts`' cooldowns). `base` is the
/// digest of the config file weir loaded.
pub fn take(engine: &Engine, alerts: Option<&Alerts>, identity: &Identity, base: Digest) -> Taken {
    let now = engine.now();
    let mut writer = ChunkWriter::default();
    let config = engine.config();
    writer.push(&Record::Config {
        version: engine.config_version(),
        toml: config.source.clone(),
        base,
    });
    let overlay = engine.tier_overlay();
    for subject in Subject::ALL {
        for (id, assigned) in overlay.list(subject, now) {
            writer.push(&Record::Tier {
                subject: subject.name().to_string(),
                id,
                tier: assigned.tier.to_string(),
                until: assigned.until.unwrap_or(0),
            });
        }
    }
    for cooldown in alerts.map(|a| a.cooldowns(now)).unwrap_or_default() {
        writer.push(&Record::Cooldown {
            rule: cooldown.rule,
            key: cooldown.key,
            until: cooldown.until_ms.saturating_mul(MILLI),
        });
    }
    let mut incarnations = vec![(identity.node_id.clone(), engine.generation())];
    let mut index_of: HashMap<NodeIdx, u32> = HashMap::from([(ME, 0)]);
    let (mut keys, mut longest) = (0u64, 0);
    let mut copied = Vec::new();
    for shard in 0..SHARDS {
        engine.store().visit_shard(shard, now, |key, entry, left| {
            copied.extend(copy(key, entry, left, now));
        });
        for key in copied.drain(..) {
            let limits = key.limits.into_iter().map(|limit| {
                let columns = limit.columns.into_iter().filter_map(|(node, column)| {
                    let index = match index_of.get(&node) {
                        Some(index) => *index,
                        None => {
                            let incarnation = engine.nodes().incarnation(node)?;
                            incarnations.push(incarnation);
                            let index = incarnations.len() as u32 - 1;
                            index_of.insert(node, index);
                            index
                        }
                    };
                    Some(SavedColumn {
                        node: index,
                        spent: column.spent,
                        refunded: column.refunded,
                    })
                });
                SavedLimit {
                    spec: limit.spec,
                    head: limit.head,
                    refill_at: limit.refill_at,
                    columns: columns.collect(),
                }
            });
            writer.push(&Record::Key(SavedKey {
                key: key.key,
                expires_at: now.saturating_add(key.left),
                limits: limits.collect(),
            }));
            keys += 1;
            longest = longest.max(key.left);
        }
    }
    let chunks = writer.finish();
    let manifest = Manifest {
        cluster_id: identity.cluster_id.clone(),
        node_id: identity.node_id.clone(),
        taken_at: now,
        incarnations,
        chunks: chunks.iter().map(|chunk| digest(chunk)).collect(),
        keys,
    };
    Taken {
        manifest: encode_manifest(&manifest),
        chunks,
        keys,
        taken_at: now,
        longest,
    }
}

/// Applies restored records to a node.
struct Applier<'a> {
    engine: &'a Engine,
    alerts: Option<&'a Alerts>,
    /// Column index per manifest incarnation; `None` when the registry is
    /// full.
    columns: Vec<Option<NodeIdx>>,
    base: Digest,
    now: Nanos,
    restored: Restored,
}

impl Applier<'_> {
    fn key(&mut self, saved: SavedKey) {
        let Some(keep) = saved.expires_at.checked_sub(self.now).filter(|left| *left > 0) else {
            self.restored.skipped += 1;
            return;
        };
        let store = self.engine.store();
        let hash = store.hash(&saved.key);
        let mut locked = store.lock(&[hash]);
        let specs = saved.limits.iter().map(|l| l.spec);
        let Some(entry) = locked.entry_laid_out(hash, &saved.key, self.now, keep, specs) else {
            self.restored.skipped += 1;
            return;
        };
        for (state, limit) in entry.limits.iter_mut().zip(&saved.limits) {
            let columns: Vec<(NodeIdx, Column)> = limit
                .columns
                .iter()
                .filter_map(|c| {
                    let node = (*self.columns.get(c.node as usize)?)?;
                    let column = Column {
                        spent: c.spent,
                        refunded: c.refunded,
                    };
                    Some((node, column))
                })
                .collect();
            state.restore(limit.refill_at, limit.head, &columns);
        }
        self.restored.keys += 1;
    }

    fn record(&mut self, record: Record) {
        match record {
            Record::Key(saved) => self.key(saved),
            Record::Tier {
                subject,
                id,
                tier,
                until,
            } => {
                let until = (until > 0).then_some(until);
                let Some(subject) = Subject::parse(&subject) else {
                    return;
                };
                if until.is_some_and(|until| until <= self.now) {
                    return;
                }
                let overlay = self.engine.tier_overlay();
                if overlay.apply(subject, &id, Some(&tier), until).is_ok() {
                    self.restored.tiers += 1;
                }
            }
            Record::Cooldown { rule, key, until } => {
                if let Some(alerts) = self.alerts.filter(|_| until > self.now) {
                    alerts.note_cooldown(&Cooldown {
                        rule,
                        key,
                        until_ms: until.div_ceil(MILLI),
                    });
                    self.restored.cooldowns += 1;
                }
            }
            Record::Config { version, toml, base } => self.config(version, &toml, base),
        }
    }

    fn config(&mut self, version: u64, toml: &str, base: Digest) {
        let engine = self.engine;
        if version <= engine.config_version() {
            return;
        }
        if base != self.base {
            info!(
                version,
                "the config file changed since the snapshot: it wins over the saved runtime config"
            );
            return;
        }
        match Config::parse(toml) {
            Ok(config) => {
                // Restored only over the same file: that file is its base.
                engine.replace_config_at(config.made_over(engine.config().base), version);
                self.restored.config_version = Some(version);
            }
            Err(error) => warn!(version, %error, "the snapshot's config does not parse; keeping the file's"),
        }
    }
}

/// Merges a verified snapshot into `engine` (and its cooldowns into
/// `alerts`). `base` is the digest of the config file weir loaded.
///
/// # Errors
/// [`FormatError`] when a chunk is missing, damaged or of a newer format;
/// then nothing has been applied.
pub fn give_back(
    engine: &Engine,
    alerts: Option<&Alerts>,
    manifest: &Manifest,
    chunks: &[Vec<u8>],
    base: Digest,
) -> Result<Restored, FormatError> {
    verify_chunks(manifest, chunks)?;
    let columns = manifest
        .incarnations
        .iter()
        .map(|(node_id, generation)| engine.nodes().index(node_id, *generation))
        .collect();
    let mut applier = Applier {
        engine,
        alerts,
        columns,
        base,
        now: engine.now(),
        restored: Restored {
            taken_at: manifest.taken_at,
            ..Restored::default()
        },
    };
    for chunk in chunks {
        decode_chunk(chunk, |record| applier.record(record))?;
    }
    Ok(applier.restored)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::{ManualClock, SECOND};
    use crate::engine::{CheckRequest, RequestKey};
    use crate::snapshot::format::decode_manifest;

    const START: u64 = 1_800_000_000 * SECOND;

    const CONFIG: &str = r#"
[policies.api]
key = ["user"]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "1000/hour" }]
[policies.burst]
key = ["user"]
default_tier = "free"
[policies.burst.tiers.free]
limits = [{ algorithm = "token_bucket", rate = "1/minute", burst = 10 }]
"#;

    fn engine(clock: &Arc<ManualClock>) -> Engine {
        Engine::new(Config::parse(CONFIG).unwrap(), clock.clone())
    }

    fn request(policy: &str, user: &str) -> CheckRequest {
        let key = RequestKey {
            user: Some(user.into()),
            ..RequestKey::default()
        };
        CheckRequest::policy(policy, key)
    }

    fn remaining(engine: &Engine, policy: &str, user: &str) -> u64 {
        let mut peek = request(policy, user);
        peek.cost = Some(0);
        engine.check(&peek).unwrap().remaining.unwrap()
    }

    fn identity() -> Identity {
        Identity {
            cluster_id: "c".into(),
            node_id: "n1".into(),
        }
    }

    fn round_trip(from: &Engine, to: &Engine) -> Restored {
        let base = config_digest(&from.config());
        let taken = take(from, None, &identity(), base);
        let manifest = decode_manifest(&taken.manifest).unwrap();
        give_back(to, None, &manifest, &taken.chunks, base).unwrap()
    }

    #[test]
    fn counts_and_a_drained_bucket_come_back_and_a_second_restore_does_not_double_them() {
        let clock = Arc::new(ManualClock::new(START));
        let before = engine(&clock);
        for _ in 0..900 {
            let d = before.check(&request("api", "alice")).unwrap();
            assert!(d.allowed, "{d:?}");
        }
        for _ in 0..10 {
            assert!(before.check(&request("burst", "alice")).unwrap().allowed);
        }
        clock.advance(Duration::from_secs(2));
        let after = engine(&clock);
        assert_ne!(after.generation(), 0);
        let restored = round_trip(&before, &after);
        assert_eq!(restored.keys, 2);
        assert_eq!(remaining(&after, "api", "alice"), 100);
        assert_eq!(remaining(&after, "burst", "alice"), 0);
        round_trip(&before, &after);
        assert_eq!(remaining(&after, "api", "alice"), 100);
        assert_eq!(remaining(&after, "burst", "alice"), 0);
    }

    #[test]
    fn a_chain_of_restarts_keeps_every_incarnations_counts() {
        let clock = Arc::new(ManualClock::new(START));
        let first = engine(&clock);
        for _ in 0..300 {
            first.check(&request("api", "bob")).unwrap();
        }
        clock.advance(Duration::from_secs(1));
        let second = engine(&clock);
        round_trip(&first, &second);
        for _ in 0..200 {
            second.check(&request("api", "bob")).unwrap();
        }
        clock.advance(Duration::from_secs(1));
        let third = engine(&clock);
        round_trip(&second, &third);
        assert_eq!(remaining(&third, "api", "bob"), 500);
    }

    #[test]
    fn tiers_and_a_runtime_config_come_back_unless_the_file_changed() {
        let clock = Arc::new(ManualClock::new(START));
        let before = engine(&clock);
        let base = config_digest(&before.config());
        before
            .tier_overlay()
            .apply(Subject::User, "carol", Some("free"), None)
            .unwrap();
        before
            .tier_overlay()
            .apply(Subject::User, "lapsed", Some("free"), Some(START + SECOND))
            .unwrap();
        let changed = CONFIG.replace("1000/hour", "500/hour");
        before.replace_config(Config::parse(&changed).unwrap());
        let taken = take(&before, None, &identity(), base);
        let manifest = decode_manifest(&taken.manifest).unwrap();
        clock.advance(Duration::from_secs(5));

        let after = engine(&clock);
        let restored = give_back(&after, None, &manifest, &taken.chunks, base).unwrap();
        assert_eq!((restored.tiers, restored.config_version), (1, Some(2)));
        assert_eq!(after.config().source, changed);
        let assigned = after.tier_overlay().get(Subject::User, "carol", after.now());
        assert_eq!(assigned.as_deref(), Some("free"));

        let edited = engine(&clock);
        let other_base = digest(b"another file");
        let restored = give_back(&edited, None, &manifest, &taken.chunks, other_base).unwrap();
        assert_eq!(restored.config_version, None);
        assert_eq!(edited.config().source, CONFIG);
    }

    #[test]
    fn alert_cooldowns_come_back_and_lapsed_ones_do_not() {
        let clock = Arc::new(ManualClock::new(START));
        let before = Arc::new(engine(&clock));
        let alerts = Alerts::install(before.clone());
        let until_ms = |secs: u64| (START + secs * SECOND) / MILLI;
        for (key, secs) in [("running", 600), ("lapsing", 2)] {
            alerts.note_cooldown(&Cooldown {
                rule: "hammering".into(),
                key: key.into(),
                until_ms: until_ms(secs),
            });
        }
        let base = config_digest(&before.config());
        let taken = take(&before, Some(&alerts), &identity(), base);
        let manifest = decode_manifest(&taken.manifest).unwrap();
        clock.advance(Duration::from_secs(5));

        let after = Arc::new(engine(&clock));
        let restored_alerts = Alerts::install(after.clone());
        let restored = give_back(&after, Some(&restored_alerts), &manifest, &taken.chunks, base).unwrap();
        assert_eq!(restored.cooldowns, 1);
        let running = restored_alerts.cooldowns(after.now());
        assert_eq!(running.len(), 1);
        assert_eq!(
            (running[0].key.as_str(), running[0].until_ms),
            ("running", until_ms(600))
        );
    }

    #[test]
    fn expired_keys_are_skipped() {
        let clock = Arc::new(ManualClock::new(START));
        let before = engine(&clock);
        before.check(&request("burst", "dave")).unwrap();
        clock.advance(Duration::from_secs(3 * 3600));
        let after = engine(&clock);
        let restored = round_trip(&before, &after);
        assert_eq!(restored.keys, 0);
    }
}
