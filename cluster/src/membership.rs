//! Membership and failure detection, by chitchat gossip.
//!
//! chitchat carries who is in the cluster, who is alive, and a few small
//! values per node ([`keys`]): where to send counter frames, the config the
//! node runs, whether it is leaving. Counters never go through it: its
//! key-value gossip falls behind at tens of thousands of updates a second
//! (see the design brief), so they take their own channel ([`crate::frame`]).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};

/// The per-node values weir gossips.
pub mod keys {
    /// `host:port` of the node's counter-sync socket.
    pub const SYNC_ADDR: &str = "sync_addr";
    /// The node's HTTP address, for operators.
    pub const HTTP_ADDR: &str = "http_addr";
    /// Set when the node is shutting down on purpose: peers stop counting
    /// it as part of the cluster at once instead of treating it as
    /// partitioned away.
    pub const LEAVING: &str = "leaving";
    /// The newest config the node knows, sealed (see weir's config sync).
    pub const CONFIG: &str = "config";
    /// The config the node runs: `version:fingerprint`, for operators.
    pub const RUNNING: &str = "running";
    /// Checks this node has decided so far, for operators.
    pub const LOAD: &str = "load";
}

/// How a node joins and watches the cluster.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Unique across the cluster.
    pub node_id: String,
    /// Grows with every restart (weir uses the start time).
    pub generation: u64,
    /// Where the gossip socket binds.
    pub listen_addr: SocketAddr,
    /// Where peers reach the gossip socket.
    pub advertise_addr: SocketAddr,
    /// `host:port` of other nodes; host names are resolved again and again,
    /// as a Kubernetes headless Service needs.
    pub seeds: Vec<String>,
    /// Nodes of other clusters are ignored.
    pub cluster_id: String,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// How long a dead node stays listed (and counted as part of the cluster,
    /// see [`ClusterShape`]) before it is forgotten.
    pub dead_node_grace: Duration,
}

/// One node as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub node_id: String,
    /// Its generation.
    pub generation: u64,
    /// Its gossip address.
    pub gossip_addr: SocketAddr,
    /// Whether the failure detector thinks it is alive.
    pub live: bool,
    /// Whether it is this node.
    pub is_self: bool,
    /// Its gossiped values.
    pub values: BTreeMap<String, String>,
}

impl Member {
    /// Its counter-sync address, when it published a valid one.
    pub fn sync_addr(&self) -> Option<SocketAddr> {
        self.values.get(keys::SYNC_ADDR)?.parse().ok()
    }

    /// Whether it said it is leaving.
    pub fn leaving(&self) -> bool {
        self.values.contains_key(keys::LEAVING)
    }
}

/// How many nodes make the cluster, and how many of them this node can
/// reach: what the accuracy rules scale by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    /// Live nodes, this one included.
    pub live: u32,
    /// Live nodes plus nodes that are dead but not yet forgotten and did
    /// not leave on purpose, counted once per node id.
    pub expected: u32,
    /// This node's position among the live node ids, sorted.
    pub rank: u32,
}

impl ClusterShape {
    /// Works the shape out from a member list.
    pub fn of(members: &[Member]) -> Self {
        let live: Vec<&Member> = members.iter().filter(|m| m.live && !m.leaving()).collect();
        let live_ids: HashSet<&str> = live.iter().map(|m| m.node_id.as_str()).collect();
        let absent: HashSet<&str> = members
            .iter()
            .filter(|m| !m.live && !m.leaving() && !live_ids.contains(m.node_id.as_str()))
            .map(|m| m.node_id.as_str())
            .collect();
        let mut ids: Vec<&str> = live_ids.iter().copied().collect();
        ids.sort_unstable();
        let me = members.iter().find(|m| m.is_self).map(|m| m.node_id.as_str());
        let rank = ids.iter().position(|id| Some(*id) == me).unwrap_or(0);
        let live = ids.len().max(1) as u32;
        Self {
            live,
            expected: live + absent.len() as u32,
            rank: rank as u32,
        }
    }
}

/// Why gossip could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// chitchat could not open its socket (the address is taken, say).
    #[error("gossip could not start on {addr}: {reason}")]
    Start {
        /// The gossip listen address.
        addr: SocketAddr,
        /// chitchat's explanation.
        reason: String,
    },
}

/// A running gossip node.
pub struct Membership {
    handle: ChitchatHandle,
}

impl Membership {
    /// Binds the gossip socket through `transport` and starts gossiping,
    /// publishing `values`.
    ///
    /// # Errors
    /// [`MembershipError::Start`] when the socket cannot be bound.
    pub async fn start(
        config: MembershipConfig,
        values: Vec<(String, String)>,
        transport: &dyn Transport,
    ) -> Result<Self, MembershipError> {
        let addr = config.listen_addr;
        let failure_detector_config = FailureDetectorConfig {
            dead_node_grace_period: config.dead_node_grace,
            // Expect heartbeats at the gossip pace from the start, so that a
            // node that never answers is found dead in seconds, not minutes.
            initial_interval: config.gossip_interval,
            max_interval: config.gossip_interval * 20,
            ..FailureDetectorConfig::default()
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(config.node_id, config.generation, config.advertise_addr),
            cluster_id: config.cluster_id,
            gossip_interval: config.gossip_interval,
            listen_addr: config.listen_addr,
            seed_nodes: config.seeds,
            failure_detector_config,
            marked_for_deletion_grace_period: config.dead_node_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let handle = spawn_chitchat(chitchat_config, values, transport)
            .await
            .map_err(|error| MembershipError::Start {
                addr,
                reason: format!("{error:#}"),
            })?;
        Ok(Self { handle })
    }

    /// Every node known: live ones and dead ones not yet forgotten.
    pub async fn members(&self) -> Vec<Member> {
        let me = self.handle.chitchat_id().clone();
        self.handle
            .with_chitchat(|chitchat| {
                let live: HashSet<ChitchatId> = chitchat.live_nodes().cloned().collect();
                chitchat
                    .node_states()
                    .iter()
                    .map(|(id, state)| Member {
                        node_id: id.node_id.to_string(),
                        generation: id.generation_id,
                        gossip_addr: id.gossip_advertise_addr,
                        live: live.contains(id),
                        is_self: *id == me,
                        values: state
                            .key_values()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    })
                    .collect()
            })
            .await
    }

    /// Publishes (or replaces) one of this node's values.
    pub async fn set(&self, key: &str, value: String) {
        self.handle
            .with_chitchat(|chitchat| chitchat.self_node_state().set(key, &value))
            .await;
    }

    /// Publishes (or replaces) several values at once.
    pub async fn set_many(&self, values: Vec<(String, String)>) {
        self.handle
            .with_chitchat(|chitchat| {
                let state = chitchat.self_node_state();
                for (key, value) in &values {
                    state.set(key, value);
                }
            })
            .await;
    }

    /// Stops gossiping.
    pub async fn shutdown(self) {
        if let Err(error) = self.handle.shutdown().await {
            tracing::warn!(%error, "gossip did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, generation: u64, live: bool) -> Member {
        Member {
            node_id: id.into(),
            generation,
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            live,
            is_self: id == "b",
            values: BTreeMap::new(),
        }
    }

    #[test]
    fn a_dead_node_still_counts_until_forgotten_but_a_restarted_one_counts_once() {
        let members = [member("a", 1, true), member("b", 1, true), member("c", 1, false)];
        assert_eq!(
            ClusterShape::of(&members),
            ClusterShape {
                live: 2,
                expected: 3,
                rank: 1
            }
        );
        let restarted = [member("a", 1, false), member("a", 2, true), member("b", 1, true)];
        assert_eq!(ClusterShape::of(&restarted).expected, 2);
    }

    #[test]
    fn a_node_that_leaves_on_purpose_stops_counting() {
        let mut leaving = member("c", 1, false);
        leaving.values.insert(keys::LEAVING.into(), "1".into());
        let members = [member("a", 1, true), member("b", 1, true), leaving];
        assert_eq!(ClusterShape::of(&members).expected, 2);
    }
}
