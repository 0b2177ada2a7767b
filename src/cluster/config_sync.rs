//! The config, the same on every node.
//!
//! Which config the cluster runs, in one rule (docs/operations.md, "Which
//! config wins"): **the newest change wins**, where a change is a
//! `PUT /v1/config` on any node, a SIGHUP that finds the node's file
//! changed, or a node started with a file other than the one behind the
//! cluster's config. Each change gets the next version; changes of the same
//! version are ordered by their content's fingerprint, then origin, so every
//! node ends on the same config whatever order it heard them in.
//!
//! Each node gossips the newest config it knows (TOML, version, origin, the
//! fingerprint of the file it was made over, and an HMAC under the cluster
//! secret, since gossip itself is not authenticated). A `crdts::LWWReg`
//! keeps the newest one seen; when that is not what the engine runs, the
//! node adopts it, and says so at WARN when it is not made over the node's
//! own file. A node started (or restarted) with the file behind the
//! cluster's config adopts the cluster's config, runtime edits included; one
//! started with another file makes that file the next version.

use crdts::LWWReg;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use weir_cluster::frame::Sealer;

use crate::config::{fingerprint, hex, Config};
use crate::engine::Engine;

/// Largest config gossiped: chitchat must fit it in one datagram.
pub const MAX_GOSSIPED_CONFIG: usize = 48 * 1024;

/// A config as gossiped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Published {
    /// Its cluster-wide version.
    pub version: u64,
    /// The node where it was made.
    pub origin: String,
    /// Its TOML text.
    pub toml: String,
    /// The fingerprint of the config file it was made over
    /// ([`Config::base`]).
    #[serde(default)]
    pub file: u64,
    /// HMAC of the above, hex.
    pub mac: String,
}

/// Orders configs: version, then the fingerprint of the text, then origin
/// node id. Two different configs never share a marker, so the register's
/// newest value is the same on every node that has heard the same changes.
pub type Marker = (u64, u64, String);

/// One node's view of the cluster's config.
#[derive(Debug)]
pub struct ConfigSync {
    me: String,
    /// The fingerprint of the config file this node last read.
    file: u64,
    /// Whether this node has compared its start file with the cluster's.
    settled: bool,
    newest: LWWReg<Published, Marker>,
    /// What this node gossips now.
    published: Option<Marker>,
    /// A config that failed to parse here, not to be retried.
    refused: Option<Marker>,
}

impl Published {
    fn sign(version: u64, origin: &str, config: &Config, sealer: &Sealer) -> Self {
        let mut published = Self {
            version,
            origin: origin.into(),
            toml: config.source.clone(),
            file: config.base,
            mac: String::new(),
        };
        published.mac = published.signed(|parts| sealer.sign_hex(parts));
        published
    }

    /// Hands the signed fields to `f`: version, origin, text and file.
    fn signed<R>(&self, f: impl FnOnce(&[&[u8]; 4]) -> R) -> R {
        let (version, file) = (self.version.to_le_bytes(), self.file.to_le_bytes());
        f(&[&version, self.origin.as_bytes(), self.toml.as_bytes(), &file])
    }

    fn authentic(&self, sealer: &Sealer) -> bool {
        self.signed(|parts| sealer.verify_hex(parts, &self.mac))
    }

    fn marker(&self) -> Marker {
        (self.version, fingerprint(&self.toml), self.origin.clone())
    }
}

/// The size `toml` would take gossiped by node `origin`: what must stay
/// within [`MAX_GOSSIPED_CONFIG`] for the cluster to replicate it.
pub fn gossiped_size(toml: &str, origin: &str) -> usize {
    let published = Published {
        version: u64::MAX,
        origin: origin.into(),
        toml: toml.into(),
        file: u64::MAX,
        // An HMAC-SHA256 in hex.
        mac: "0".repeat(64),
    };
    serde_json::to_string(&published).map_or(usize::MAX, |text| text.len())
}

/// What a node gossips as the config it runs: `version:fingerprint`.
pub fn running(engine: &Engine) -> String {
    format!("{}:{}", engine.config_version(), hex(engine.config().fingerprint))
}

impl ConfigSync {
    /// A view for node `me`, whose engine runs the config it started with.
    pub fn new(me: &str, engine: &Engine) -> Self {
        Self {
            me: me.into(),
            file: engine.config().base,
            settled: false,
            newest: LWWReg::default(),
            published: None,
            refused: None,
        }
    }

    /// One round: notes a local change, takes in the configs `gossiped` by
    /// every node, adopts the newest if the engine runs another, and returns
    /// what this node should gossip now when that changed.
    pub fn step<'a>(
        &mut self,
        engine: &Engine,
        sealer: &Sealer,
        gossiped: impl Iterator<Item = &'a str>,
    ) -> Option<String> {
        self.note_local_change(engine, sealer);
        let mut heard = false;
        for text in gossiped {
            match serde_json::from_str::<Published>(text) {
                Ok(config) if config.authentic(sealer) => {
                    heard = true;
                    self.newest.update(config.clone(), config.marker());
                }
                _ => warn!("ignoring a gossiped config that fails authentication or decoding"),
            }
        }
        if heard && !self.settled {
            self.settle(engine, sealer);
        }
        self.adopt_newest(engine);
        if self.published.as_ref() == Some(&self.newest.marker) {
            return None;
        }
        self.published = Some(self.newest.marker.clone());
        let text = serde_json::to_string(&self.newest.val).ok()?;
        if text.len() > MAX_GOSSIPED_CONFIG {
            warn!(
                bytes = text.len(),
                "config too large to gossip; change it on every node"
            );
            return None;
        }
        Some(text)
    }

    /// A config the engine runs that is not the newest known is a change
    /// made here (a PUT, a SIGHUP, a snapshot restore, or the start).
    fn note_local_change(&mut self, engine: &Engine, sealer: &Sealer) {
        let running = engine.config();
        let version = engine.config_version();
        let newest = &self.newest.val;
        if newest.version == version && newest.toml == running.source {
            return;
        }
        if running.base == running.fingerprint {
            // Read from a file (not edited over one): this node's file now.
            self.file = running.base;
        }
        let local = Published::sign(version, &self.me, &running, sealer);
        self.newest.update(local.clone(), local.marker());
    }

    /// The first time peers are heard from: a node started with the file
    /// behind the cluster's config adopts the cluster's (runtime edits
    /// included); one started with another file makes it the next version.
    fn settle(&mut self, engine: &Engine, sealer: &Sealer) {
        self.settled = true;
        // The newest may be this node's own: just published, or from its
        // earlier incarnation (a restart); only its file tells.
        let cluster = &self.newest.val;
        if cluster.file == self.file {
            return;
        }
        let running = engine.config();
        if running.base != self.file {
            return;
        }
        let version = cluster.version + 1;
        info!(
            version,
            file = %hex(self.file),
            cluster_file = %hex(cluster.file),
            "this node's config file is not the one behind the cluster's config: it becomes the cluster's config"
        );
        engine.replace_config_at(Config::clone(&running), version);
        let local = Published::sign(version, &self.me, &running, sealer);
        self.newest.update(local.clone(), local.marker());
    }

    /// Runs the newest config if the engine runs another (and it was not
    /// refused here before).
    fn adopt_newest(&mut self, engine: &Engine) {
        let newest = &self.newest.val;
        let running = engine.config();
        let differs = newest.version != engine.config_version() || newest.toml != running.source;
        if !differs || self.refused.as_ref() == Some(&self.newest.marker) {
            return;
        }
        match Config::parse(&newest.toml) {
            Ok(config) => {
                engine.replace_config_at(config.made_over(newest.file), newest.version);
                let fingerprint = hex(fingerprint(&newest.toml));
                if newest.file == self.file {
                    info!(version = newest.version, origin = %newest.origin, %fingerprint, "config adopted from the cluster");
                } else {
                    warn!(
                        version = newest.version,
                        origin = %newest.origin,
                        %fingerprint,
                        file = %hex(self.file),
                        cluster_file = %hex(newest.file),
                        "running the cluster's config, not this node's config file: the cluster's was changed later"
                    );
                }
            }
            Err(error) => {
                warn!(version = newest.version, origin = %newest.origin, %error, "refusing the cluster's config");
                self.refused = Some(self.newest.marker.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    const A: &str = "[policies.p]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.p.tiers.t]\nlimits = [{ algorithm = \"sliding_window\", rate = \"1/m\" }]\n";

    fn engine_with(source: &str) -> Engine {
        Engine::new(Config::parse(source).unwrap(), Arc::new(ManualClock::new(0)))
    }

    fn engine() -> Engine {
        engine_with(A)
    }

    fn sealer() -> Sealer {
        Sealer::new(&[b"0123456789abcdef"], "test")
    }

    /// A config gossiped by `origin`: `source` at `version`, made over the
    /// file `file` (its own text when `None`).
    fn gossiped(version: u64, origin: &str, source: &str, file: Option<&str>) -> String {
        let config = Config::parse(source).unwrap();
        let config = match file {
            Some(file) => config.made_over(fingerprint(file)),
            None => config,
        };
        serde_json::to_string(&Published::sign(version, origin, &config, &sealer())).unwrap()
    }

    fn rate_of(engine: &Engine) -> String {
        let source = engine.config().source.clone();
        source
            .split("rate = \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_newer_config_from_a_peer_is_adopted_with_its_version() {
        let (engine, sealer) = (engine(), sealer());
        let mut sync = ConfigSync::new("a", &engine);
        assert!(sync.step(&engine, &sealer, std::iter::empty()).is_some());
        let newer = gossiped(5, "b", &A.replace("1/m", "9/m"), Some(A));
        let republished = sync.step(&engine, &sealer, [newer.as_str()].into_iter());
        assert_eq!((engine.config_version(), rate_of(&engine)), (5, "9/m".into()));
        assert_eq!(engine.config().base, fingerprint(A), "an edit of the same file");
        assert!(republished.is_some_and(|t| t.contains("9/m")));
        // A local change afterwards gets version 6 and wins.
        engine.replace_config(Config::parse(&A.replace("1/m", "3/m")).unwrap());
        let published = sync.step(&engine, &sealer, [newer.as_str()].into_iter()).unwrap();
        assert!(published.contains("3/m") && published.contains("\"version\":6"));
    }

    #[test]
    fn a_node_started_with_the_clusters_file_adopts_its_runtime_edit() {
        let (engine, sealer) = (engine(), sealer());
        let mut sync = ConfigSync::new("c", &engine);
        sync.step(&engine, &sealer, std::iter::empty());
        let edited = gossiped(4, "a", &A.replace("1/m", "9/m"), Some(A));
        sync.step(&engine, &sealer, [edited.as_str()].into_iter());
        assert_eq!((engine.config_version(), rate_of(&engine)), (4, "9/m".into()));
    }

    #[test]
    fn a_node_started_with_another_file_makes_it_the_next_version() {
        let changed = A.replace("1/m", "5/m");
        let (node, sealer) = (engine_with(&changed), sealer());
        let mut sync = ConfigSync::new("c", &node);
        sync.step(&node, &sealer, std::iter::empty());
        // The cluster runs a runtime edit (version 4) of the old file A.
        let edited = gossiped(4, "a", &A.replace("1/m", "9/m"), Some(A));
        let published = sync.step(&node, &sealer, [edited.as_str()].into_iter()).unwrap();
        assert_eq!((node.config_version(), rate_of(&node)), (5, "5/m".into()));
        assert!(published.contains("5/m") && published.contains("\"version\":5"));
        // The peer that adopts it: a node of the cluster, with file A.
        let peer = engine();
        let mut peer_sync = ConfigSync::new("a", &peer);
        peer_sync.step(&peer, &sealer, [edited.as_str()].into_iter());
        peer_sync.step(&peer, &sealer, [published.as_str()].into_iter());
        assert_eq!((peer.config_version(), rate_of(&peer)), (5, "5/m".into()));
    }

    #[test]
    fn a_node_restarted_with_another_file_wins_over_its_own_earlier_edit() {
        let changed = A.replace("1/m", "5/m");
        let (node, sealer) = (engine_with(&changed), sealer());
        let mut sync = ConfigSync::new("c", &node);
        sync.step(&node, &sealer, std::iter::empty());
        // The cluster's newest: an edit this node id made before its restart.
        let own_edit = gossiped(3, "c", &A.replace("1/m", "9/m"), Some(A));
        sync.step(&node, &sealer, [own_edit.as_str()].into_iter());
        assert_eq!((node.config_version(), rate_of(&node)), (4, "5/m".into()));
    }

    #[test]
    fn two_configs_of_the_same_version_end_the_same_on_every_node() {
        let sealer = sealer();
        let sources = [
            A.replace("1/m", "2/m"),
            A.replace("1/m", "3/m"),
            A.replace("1/m", "4/m"),
        ];
        let engines: Vec<Engine> = sources.iter().map(|s| engine_with(s)).collect();
        let mut syncs: Vec<ConfigSync> = ["a", "b", "c"]
            .iter()
            .zip(&engines)
            .map(|(id, engine)| ConfigSync::new(id, engine))
            .collect();
        // Each node's file differs; rounds of gossip, each node hearing the
        // others' last published text, in a different order per node.
        let mut board: Vec<String> = vec![String::new(); 3];
        for _ in 0..6 {
            for i in 0..3 {
                let heard: Vec<&str> = (1..3)
                    .map(|d| board[(i + d) % 3].as_str())
                    .filter(|t| !t.is_empty())
                    .collect();
                if let Some(text) = syncs[i].step(&engines[i], &sealer, heard.into_iter()) {
                    board[i] = text;
                }
            }
        }
        let ran: Vec<(u64, u64)> = engines
            .iter()
            .map(|e| (e.config_version(), e.config().fingerprint))
            .collect();
        assert!(ran.iter().all(|r| *r == ran[0]), "{ran:?}");
    }

    #[test]
    fn a_forged_config_is_ignored() {
        let (engine, sealer) = (engine(), sealer());
        let mut sync = ConfigSync::new("a", &engine);
        let config = Config::parse(&A.replace("1/m", "999/m")).unwrap();
        let forged = Published::sign(9, "evil", &config, &Sealer::new(&[b"wrong-secret-0000"], "test"));
        let text = serde_json::to_string(&forged).unwrap();
        sync.step(&engine, &sealer, [text.as_str(), "not json"].into_iter());
        assert_eq!(engine.config_version(), 1);
    }

    #[test]
    fn an_authentic_config_that_does_not_parse_is_refused_once_and_the_running_one_kept() {
        let (engine, sealer) = (engine(), sealer());
        let mut sync = ConfigSync::new("a", &engine);
        let mut broken = Published {
            version: 3,
            origin: "b".into(),
            toml: "this is not toml [".into(),
            file: fingerprint(A),
            mac: String::new(),
        };
        broken.mac = broken.signed(|parts| sealer.sign_hex(parts));
        let text = serde_json::to_string(&broken).unwrap();
        sync.step(&engine, &sealer, [text.as_str()].into_iter());
        sync.step(&engine, &sealer, [text.as_str()].into_iter());
        assert_eq!(engine.config_version(), 1);
        assert!(engine.config().source.contains("1/m"));
    }
}
