//! The counter sync: every sync interval, this node's own counts for the
//! keys it changed go to every live peer, in sealed datagrams; every resend
//! interval, the keys used lately go again, so that a lost datagram is
//! repaired. What arrives is merged (max per key, slot and node), so loss,
//! duplication and reordering do no harm.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};
use weir_cluster::frame::{self, FrameError, SyncBatch, SyncEntry, SyncLimit, MAX_DATAGRAM};
use weir_cluster::nodes::ME;
use weir_cluster::transport::Datagram;
use weir_cluster::{Column, NodeIdx};

use super::Shared;
use crate::clock::{Nanos, SECOND};
use crate::store::Entry;

/// One column per limit of a key, as sent: `column(i)` gives limit `i`'s.
fn sync_entry(key: &str, entry: &Entry, time_left: Nanos, column: impl Fn(usize) -> Column) -> SyncEntry {
    SyncEntry {
        key: key.to_string(),
        keep_secs: (time_left / SECOND).min(u32::MAX as u64) as u32,
        limits: entry
            .limits
            .iter()
            .enumerate()
            .map(|(i, state)| {
                let Column { spent, refunded } = column(i);
                SyncLimit {
                    spec: state.spec(),
                    head: state.counter().head(),
                    spent,
                    refunded,
                }
            })
            .collect(),
    }
}

/// This node's own counts for one key.
fn own_entry(key: &str, entry: &Entry, time_left: Nanos) -> SyncEntry {
    sync_entry(key, entry, time_left, |i| entry.limits[i].counter().own_column())
}

/// Who the counts of a batch belong to.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Node id.
    pub node_id: &'a str,
    /// Its generation.
    pub generation: u64,
    /// Whether this node relays them (they are not its own).
    pub relayed: bool,
}

/// Splits `entries` into batches that each fit in a datagram.
pub fn pack(origin: Origin<'_>, sent_at: u64, entries: Vec<SyncEntry>) -> Vec<SyncBatch> {
    let from = origin.node_id;
    let room = MAX_DATAGRAM - frame::overhead(from);
    let mut batches = Vec::new();
    let mut current: Vec<SyncEntry> = Vec::new();
    let mut used = 0;
    for entry in entries {
        let size = frame::encoded_len(&entry);
        if size > room {
            // Keys are at most 1 KiB and limits few; cannot happen with a
            // valid config, and must not stall the rest.
            warn!(key_bytes = entry.key.len(), "a key too large to sync was skipped");
            continue;
        }
        if used + size > room {
            batches.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size;
        current.push(entry);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
        .into_iter()
        .map(|entries| SyncBatch {
            from: from.to_string(),
            generation: origin.generation,
            sent_at,
            relayed: origin.relayed,
            entries,
        })
        .collect()
}

/// The peers' columns this node holds for one key, one entry per peer:
/// relayed to a restarted or returning node, so that it learns counts it
/// missed, its own previous incarnation's included.
fn relayed_entries(key: &str, entry: &Entry, time_left: Nanos, into: &mut HashMap<NodeIdx, Vec<SyncEntry>>) {
    let columns: Vec<Vec<(NodeIdx, Column)>> = entry.limits.iter().map(|s| s.counter().columns(ME)).collect();
    let mut nodes: Vec<NodeIdx> = columns
        .iter()
        .flatten()
        .map(|(node, _)| *node)
        .filter(|n| *n != ME)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    for node in nodes {
        let column_of = |i: usize| {
            let found = columns[i].iter().find(|(n, _)| *n == node);
            found.map(|(_, column)| *column).unwrap_or_default()
        };
        into.entry(node)
            .or_default()
            .push(sync_entry(key, entry, time_left, column_of));
    }
}

/// Sends changed keys every sync interval, and recent keys every resend
/// interval, to the peers the membership loop last found alive.
pub async fn send_loop<D: Datagram>(shared: Arc<Shared>, socket: Arc<D>) {
    let settings = &shared.settings;
    let mut ticks = tokio::time::interval(settings.sync_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let resend_every =
        (settings.resend_interval.as_nanos() / settings.sync_interval.as_nanos()).max(1) as u64;
    let mut datagram = Vec::with_capacity(MAX_DATAGRAM);
    for round in 0u64.. {
        ticks.tick().await;
        let engine = &shared.engine;
        let now = engine.now();
        let mut entries = Vec::new();
        engine
            .store()
            .drain_changed(now, |key, entry, left| entries.push(own_entry(key, entry, left)));
        let resend_now = shared
            .resend_now
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        // Three resend intervals back: a key is sent about three more times
        // after its last change.
        let within = 3 * settings.resend_interval.as_nanos() as Nanos;
        let mut relayed = HashMap::new();
        if round % resend_every == 0 || resend_now {
            engine.store().visit_recent(now, within, |key, entry, left| {
                if entry.has_own_counts() {
                    entries.push(own_entry(key, entry, left));
                }
                if resend_now {
                    relayed_entries(key, entry, left, &mut relayed);
                }
            });
        }
        shared.refresh();
        let targets = shared.targets();
        if targets.is_empty() {
            continue;
        }
        let me = Origin {
            node_id: &settings.node_id,
            generation: shared.generation,
            relayed: false,
        };
        let mut batches = pack(me, now, entries);
        if batches.is_empty() {
            // A heartbeat: peers tell a quiet node from a cut-off one by it.
            batches.push(SyncBatch {
                from: settings.node_id.clone(),
                generation: shared.generation,
                sent_at: now,
                relayed: false,
                entries: Vec::new(),
            });
        }
        for (node, entries) in relayed {
            if let Some((node_id, generation)) = shared.engine.nodes().incarnation(node) {
                let origin = Origin {
                    node_id: &node_id,
                    generation,
                    relayed: true,
                };
                batches.extend(pack(origin, now, entries));
            }
        }
        for batch in batches {
            if let Err(error) = shared.sealer.seal(&batch, &mut datagram) {
                warn!(%error, "could not seal a sync batch");
                continue;
            }
            for target in &targets {
                send(&shared, &*socket, &datagram, *target, batch.entries.len()).await;
            }
        }
    }
}

async fn send<D: Datagram>(shared: &Shared, socket: &D, datagram: &[u8], to: SocketAddr, entries: usize) {
    match socket.send_to(datagram, to).await {
        Ok(_) => shared.stats.sent(entries, datagram.len()),
        Err(error) => {
            shared.stats.send_failed();
            debug!(%error, %to, "sync datagram not sent");
        }
    }
}

/// Receives, authenticates and merges datagrams until the socket fails.
pub async fn receive_loop<D: Datagram>(shared: Arc<Shared>, socket: Arc<D>) {
    // One byte more than the largest datagram, to tell "too large" apart.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // Transient on most platforms (an ICMP unreachable); pause
                // so that a persistent error cannot spin.
                debug!(%error, "sync receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match shared.sealer.open(&buf[..len]) {
            Ok(batch) => merge(&shared, batch),
            Err(error) => {
                shared.stats.rejected(error);
                if error == FrameError::OldVersion
                    && !WARNED_OLD.swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    warn!(%from, "a peer sends counter-sync datagrams in the old HMAC-only format: it runs an older weir and its counts are ignored; upgrade it (docs/operations.md, upgrading)");
                }
                debug!(%error, %from, "sync datagram dropped");
            }
        }
    }
}

/// Set once the old-format warning is logged: it is worth one line, not
/// one per datagram.
static WARNED_OLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How far a frame's send time may be from this node's clock: a frame
/// from further back is a replay or a clock far off, and is dropped.
pub const REPLAY_WINDOW: Nanos = 30 * SECOND;

/// Merges a peer's batch into the store.
///
/// Replays are harmless to the counts: every merge is a max per slot and
/// column, so an old frame merged again changes nothing. What a replay
/// could do is make a cut-off peer look reachable; [`Shared::note_frame`]
/// takes only frames newer than the last as a sign of life, and frames
/// older than [`REPLAY_WINDOW`] are dropped outright.
pub fn merge(shared: &Shared, batch: SyncBatch) {
    if batch.from == shared.settings.node_id && batch.generation == shared.generation {
        return;
    }
    if batch.sent_at.abs_diff(shared.engine.now()) > REPLAY_WINDOW {
        shared.stats.rejected(FrameError::Stale);
        return;
    }
    let Some(node) = shared.engine.nodes().index(&batch.from, batch.generation) else {
        shared.stats.unknown_node();
        return;
    };
    let engine = &shared.engine;
    let store = engine.store();
    let now = engine.now();
    let mut merged = 0;
    let mut observed = Vec::new();
    for entry in &batch.entries {
        let hash = store.hash(&entry.key);
        let mut locked = store.lock(&[hash]);
        let keep = entry.keep_secs as Nanos * SECOND;
        let specs = entry.limits.iter().map(|l| l.spec);
        let Some(stored) = locked.entry_laid_out(hash, &entry.key, now, keep, specs) else {
            // The nodes run different configs for a moment; the config
            // sync will settle it, and the next sync carries the counts.
            shared.stats.mismatched();
            continue;
        };
        for (state, limit) in stored.limits.iter_mut().zip(&entry.limits) {
            state.merge_peer(node, limit.head, &limit.column());
        }
        merged += 1;
        if crate::key::observed::is(&entry.key) {
            observed.push(&entry.key);
        }
    }
    // Alert rules' counts, looked at outside the store's locks.
    for key in observed {
        engine.recheck_observed(key);
    }
    shared.stats.received(merged);
    if !batch.relayed {
        shared.note_frame(&batch.from, batch.generation, now, batch.sent_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> SyncEntry {
        SyncEntry {
            key: format!("key-{i:05}"),
            keep_secs: 10,
            limits: vec![SyncLimit {
                spec: 1,
                head: 5,
                spent: [1; 4],
                refunded: [0; 4],
            }],
        }
    }

    #[test]
    fn packing_fills_datagrams_without_overflowing_or_losing_entries() {
        let entries: Vec<SyncEntry> = (0..2000).map(entry).collect();
        let origin = Origin {
            node_id: "node-a",
            generation: 1,
            relayed: false,
        };
        let batches = pack(origin, 2, entries);
        assert!(batches.len() > 1);
        assert_eq!(batches.iter().map(|b| b.entries.len()).sum::<usize>(), 2000);
        let sealer = weir_cluster::frame::Sealer::new(&[b"0123456789abcdef"], "c");
        let mut out = Vec::new();
        for batch in &batches {
            sealer.seal(batch, &mut out).unwrap();
            assert!(out.len() <= MAX_DATAGRAM);
            assert!(out.len() > MAX_DATAGRAM - 200 || batch == batches.last().unwrap());
        }
    }
}
