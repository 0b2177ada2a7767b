//! What a node knows of its cluster: the member list with liveness, last
//! sync and lag (`GET /v1/cluster`), and sync counters (`/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};
use weir_cluster::frame::{FrameError, Rejections};
use weir_cluster::membership::keys;

use super::config_sync::Published;
use super::Shared;
use crate::clock::{Nanos, MILLI};

/// Frames received from one peer.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerFrames {
    /// Generation of the last frame's sender.
    pub generation: u64,
    /// When the last frame arrived (engine time).
    pub last_at: Nanos,
    /// The last frame's send time (the sender's clock).
    pub last_sent: Nanos,
    /// Its arrival time minus its send time (clock skew included).
    pub lag: i64,
    /// Frames received.
    pub count: u64,
}

/// Named counts.
pub type Counts = Vec<(&'static str, u64)>;

/// Counters of the counter sync.
#[derive(Debug, Default)]
pub struct SyncStats {
    frames_sent: AtomicU64,
    entries_sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_failures: AtomicU64,
    frames_received: AtomicU64,
    entries_merged: AtomicU64,
    mismatched: AtomicU64,
    unknown_nodes: AtomicU64,
    rejected: Rejections,
}

impl SyncStats {
    pub(super) fn sent(&self, entries: usize, bytes: usize) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.entries_sent.fetch_add(entries as u64, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn send_failed(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn received(&self, entries: usize) {
        self.frames_received.fetch_add(1, Ordering::Relaxed);
        self.entries_merged.fetch_add(entries as u64, Ordering::Relaxed);
    }

    pub(super) fn mismatched(&self) {
        self.mismatched.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn unknown_node(&self) {
        self.unknown_nodes.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn rejected(&self, error: FrameError) {
        self.rejected.count(error);
    }

    /// Every counter by name, and the rejections by reason.
    pub fn snapshot(&self) -> (Counts, Counts) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = vec![
            ("frames_sent", load(&self.frames_sent)),
            ("entries_sent", load(&self.entries_sent)),
            ("bytes_sent", load(&self.bytes_sent)),
            ("send_failures", load(&self.send_failures)),
            ("frames_received", load(&self.frames_received)),
            ("entries_merged", load(&self.entries_merged)),
            ("entries_mismatched", load(&self.mismatched)),
            ("frames_from_unknown_nodes", load(&self.unknown_nodes)),
        ];
        (counters, self.rejected.snapshot())
    }
}

/// The member list and sync statistics as JSON.
pub fn describe(shared: &Shared) -> Value {
    let now = shared.engine.now();
    let view = shared.view();
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|member| {
            let frames = view
                .frames
                .get(&member.node_id)
                .filter(|f| f.generation == member.generation && !member.is_self);
            // What the member runs; from a node before `running` was
            // gossiped, the version of the newest config it knows.
            let running = member.values.get(keys::RUNNING).and_then(|r| r.split_once(':'));
            let config_version = match running {
                Some((version, _)) => version.parse::<u64>().ok(),
                None => member
                    .values
                    .get(keys::CONFIG)
                    .and_then(|text| serde_json::from_str::<Published>(text).ok())
                    .map(|published| published.version),
            };
            json!({
                "node_id": member.node_id,
                "generation": member.generation,
                "self": member.is_self,
                "live": member.live,
                "leaving": member.leaving(),
                "gossip_addr": member.gossip_addr.to_string(),
                "sync_addr": member.values.get(keys::SYNC_ADDR),
                "http_addr": member.values.get(keys::HTTP_ADDR),
                "config_version": config_version,
                "config_fingerprint": running.map(|(_, fingerprint)| fingerprint),
                "decisions": member.values.get(keys::LOAD).and_then(|v| v.parse::<u64>().ok()),
                "last_sync_ms_ago": frames.map(|f| now.saturating_sub(f.last_at) / MILLI),
                "lag_ms": frames.map(|f| f.lag as f64 / MILLI as f64),
                "frames_received": frames.map_or(0, |f| f.count),
            })
        })
        .collect();
    let (counters, rejected) = shared.stats.snapshot();
    let ring = shared.sealer.status();
    let shape = view.shape;
    json!({
        "mode": "cluster",
        "node_id": shared.settings.node_id,
        "cluster_id": shared.settings.cluster_id,
        "generation": shared.generation,
        "sync_interval_ms": shared.settings.sync_interval.as_millis() as u64,
        "live": shape.map(|s| s.live),
        "expected": shape.map(|s| s.expected),
        "scale": shape.map(|s| s.live as f64 / s.expected.max(1) as f64),
        "members": members,
        "sync": to_object(counters),
        "rejected": to_object(rejected),
        "gossip": to_object(shared.gossip_stats.counts()),
        "gossip_rejected": to_object(shared.gossip_stats.rejected.snapshot()),
        "keys": ring.keys,
        "keys_retiring": ring.retiring,
        "keys_retiring_ms": ring.retiring_for.as_millis() as u64,
    })
}

fn to_object(pairs: Vec<(&str, u64)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}
