//! The config, the same on every node: the newest version wins.
//!
//! Each node gossips the config it runs (TOML, version, origin node, and an
//! HMAC under the cluster secret, since gossip itself is not authenticated).
//! A `crdts::LWWReg` keyed by (version, origin) keeps the newest one seen;
//! when that is not what the engine runs, the node adopts it. A change made
//! on a node (`PUT /v1/config`, SIGHUP) gets the next version and so wins
//! everywhere; two changes of the same version made at once are ordered by
//! node id.

use crdts::LWWReg;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use weir_cluster::frame::Sealer;

use crate::config::Config;
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
    /// HMAC of the above, hex.
    pub mac: String,
}

/// Orders configs: version, then origin node id.
pub type Marker = (u64, String);

/// One node's view of the cluster's config.
#[derive(Debug)]
pub struct ConfigSync {
    me: String,
    newest: LWWReg<Published, Marker>,
    /// What this node gossips now.
    published: Option<Marker>,
    /// A config that failed to parse here, not to be retried.
    refused: Option<Marker>,
}

impl Published {
    fn sign(version: u64, origin: &str, toml: &str, sealer: &Sealer) -> Self {
        Self {
            version,
            origin: origin.into(),
            toml: toml.into(),
            mac: sealer.sign_hex(&[&version.to_le_bytes(), origin.as_bytes(), toml.as_bytes()]),
        }
    }

    fn authentic(&self, sealer: &Sealer) -> bool {
        let parts: [&[u8]; 3] = [
            &self.version.to_le_bytes(),
            self.origin.as_bytes(),
            self.toml.as_bytes(),
        ];
        sealer.verify_hex(&parts, &self.mac)
    }

    fn marker(&self) -> Marker {
        (self.version, self.origin.clone())
    }
}

impl ConfigSync {
    /// A view for node `me`.
    pub fn new(me: &str) -> Self {
        Self {
            me: me.into(),
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
        let running = engine.config();
        let version = engine.config_version();
        let is_newest = self.newest.marker.0 == version && self.newest.val.toml == running.source;
        if !is_newest {
            // A change made here (or the config this node started with).
            let local = Published::sign(version, &self.me, &running.source, sealer);
            self.newest.update(local.clone(), local.marker());
        }
        for text in gossiped {
            match serde_json::from_str::<Published>(text) {
                Ok(config) if config.authentic(sealer) => self.newest.update(config.clone(), config.marker()),
                _ => warn!("ignoring a gossiped config that fails authentication or decoding"),
            }
        }
        let newest = &self.newest.val;
        let differs = newest.version != version || newest.toml != running.source;
        if differs && self.refused.as_ref() != Some(&self.newest.marker) {
            match Config::parse(&newest.toml) {
                Ok(config) => {
                    engine.replace_config_at(config, newest.version);
                    info!(version = newest.version, origin = %newest.origin, "config adopted from the cluster");
                }
                Err(error) => {
                    warn!(version = newest.version, origin = %newest.origin, %error, "refusing the cluster's config");
                    self.refused = Some(self.newest.marker.clone());
                }
            }
        }
        if self.published.as_ref() == Some(&self.newest.marker) {
            return None;
        }
        let text = serde_json::to_string(newest).ok()?;
        if text.len() > MAX_GOSSIPED_CONFIG {
            warn!(
                bytes = text.len(),
                "config too large to gossip; change it on every node"
            );
            self.published = Some(self.newest.marker.clone());
            return None;
        }
        self.published = Some(self.newest.marker.clone());
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    const A: &str = "[policies.p]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.p.tiers.t]\nlimits = [{ algorithm = \"sliding_window\", rate = \"1/m\" }]\n";

    fn engine() -> Engine {
        Engine::new(Config::parse(A).unwrap(), Arc::new(ManualClock::new(0)))
    }

    fn sealer() -> Sealer {
        Sealer::new(&[b"0123456789abcdef"], "test")
    }

    #[test]
    fn a_newer_config_from_a_peer_is_adopted_with_its_version() {
        let (engine, sealer) = (engine(), sealer());
        let mut sync = ConfigSync::new("a");
        assert!(sync.step(&engine, &sealer, std::iter::empty()).is_some());
        let newer = Published::sign(5, "b", &A.replace("1/m", "9/m"), &sealer);
        let text = serde_json::to_string(&newer).unwrap();
        let republished = sync.step(&engine, &sealer, [text.as_str()].into_iter());
        assert_eq!(engine.config_version(), 5);
        assert!(engine.config().source.contains("9/m"));
        assert!(republished.is_some_and(|t| t.contains("9/m")));
        // A local change afterwards gets version 6 and wins.
        engine.replace_config(Config::parse(&A.replace("1/m", "3/m")).unwrap());
        let published = sync.step(&engine, &sealer, [text.as_str()].into_iter()).unwrap();
        assert!(published.contains("3/m") && published.contains("\"version\":6"));
    }

    #[test]
    fn a_forged_config_is_ignored() {
        let (engine, sealer) = (engine(), sealer());
        let mut sync = ConfigSync::new("a");
        let forged = Published::sign(
            9,
            "evil",
            &A.replace("1/m", "999/m"),
            &Sealer::new(&[b"wrong-secret-0000"], "test"),
        );
        let text = serde_json::to_string(&forged).unwrap();
        sync.step(&engine, &sealer, [text.as_str(), "not json"].into_iter());
        assert_eq!(engine.config_version(), 1);
    }

    #[test]
    fn an_authentic_config_that_does_not_parse_is_refused_once_and_the_running_one_kept() {
        let (engine, sealer) = (engine(), sealer());
        let mut sync = ConfigSync::new("a");
        let broken = Published::sign(3, "b", "this is not toml [", &sealer);
        let text = serde_json::to_string(&broken).unwrap();
        sync.step(&engine, &sealer, [text.as_str()].into_iter());
        sync.step(&engine, &sealer, [text.as_str()].into_iter());
        assert_eq!(engine.config_version(), 1);
        assert!(engine.config().source.contains("1/m"));
    }
}
