//! Heavy hitters in bounded memory: Space-Saving (Metwally et al.).
//!
//! Two forms:
//! - [`ShardTop`]: a fixed handful of slots on one store shard, updated on the
//!   check path under the shard's lock; a miss on a full table takes over the
//!   smallest slot. No allocation once its strings have grown.
//! - [`TopK`]: a summary of up to `k` keys that merges with others (shards
//!   into a second, seconds into a minute, minutes into a range, nodes into a
//!   cluster).
//!
//! Both keep the Space-Saving guarantee per key: `count - error <= true <=
//! count`, and any key not listed occurred at most `floor` times. A single
//! stream of `n` has `floor <= n / k`; merging adds floors (two summaries each
//! missing a key can each have seen it `floor` times), so a merge of `m`
//! summaries has `floor <= n / k` summed over them, still `n / k` overall.

use std::collections::HashMap;
use std::sync::Arc;

/// Slots per shard and scope. A key heavy overall is heavy on its own shard,
/// which sees about 1/64 of the traffic: 16 slots there keep any key above
/// 1/16 of its shard's second, about 0.1% of all checks.
pub const SHARD_SLOTS: usize = 16;

/// The longest key a summary keeps whole. A longer one (only made-up
/// inline keys get there: the largest a check can make is about 1.1 KB)
/// keeps its start, [`crate::redact::MARK`] and 16 hex digits of its hash,
/// so that however long the keys, a summary's memory stays bounded and two
/// keys stay two.
pub const MAX_KEY_BYTES: usize = 160;

/// `key`, or its start and hash when it is longer than [`MAX_KEY_BYTES`].
fn kept(key: &str, hash: u64, out: &mut String) {
    out.clear();
    if key.len() <= MAX_KEY_BYTES {
        out.push_str(key);
        return;
    }
    let mut end = MAX_KEY_BYTES - 24;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{}{}{hash:016x}", &key[..end], crate::redact::MARK);
}

/// Space-Saving over [`SHARD_SLOTS`] slots, keyed by the store's key hash.
#[derive(Debug, Default)]
pub struct ShardTop {
    len: usize,
    /// The slot hit last: a hot key skips the scan.
    last: usize,
    hashes: [u64; SHARD_SLOTS],
    counts: [u32; SHARD_SLOTS],
    errors: [u32; SHARD_SLOTS],
    keys: [String; SHARD_SLOTS],
}

impl ShardTop {
    /// Counts one occurrence of `key`.
    pub fn add(&mut self, hash: u64, key: &str) {
        // 64-bit hashes from a per-process seed: a collision is as unlikely
        // as it is harmless (one key's count goes to another).
        let last = self.last;
        if last < self.len && self.hashes[last] == hash {
            self.counts[last] = self.counts[last].saturating_add(1);
            return;
        }
        let hashes = &self.hashes[..self.len];
        if let Some(i) = hashes.iter().position(|h| *h == hash) {
            self.counts[i] = self.counts[i].saturating_add(1);
            self.last = i;
            return;
        }
        let (slot, floor) = if self.len < SHARD_SLOTS {
            self.len += 1;
            (self.len - 1, 0)
        } else {
            let (slot, floor) = self
                .counts
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| **c)
                .map_or((0, 0), |(i, c)| (i, *c));
            (slot, floor)
        };
        self.last = slot;
        self.hashes[slot] = hash;
        self.counts[slot] = floor.saturating_add(1);
        self.errors[slot] = floor;
        kept(key, hash, &mut self.keys[slot]);
    }

    /// Nothing counted since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The summary so far as a [`TopK`] of up to `k` keys; starts again.
    pub fn take(&mut self, k: usize) -> TopK {
        let floor = if self.len == SHARD_SLOTS {
            self.counts.iter().copied().min().unwrap_or(0) as u64
        } else {
            0
        };
        let mut top = TopK::new(k);
        top.floor = floor;
        for i in 0..self.len {
            let counted = Counted {
                count: self.counts[i] as u64,
                error: self.errors[i] as u64,
            };
            top.entries.insert(Arc::from(self.keys[i].as_str()), counted);
        }
        top.truncate();
        self.len = 0;
        top
    }
}

/// A key's estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counted {
    /// At least the true count.
    pub count: u64,
    /// At most this much of `count` may belong to other keys.
    pub error: u64,
}

/// A mergeable summary of the heaviest keys.
#[derive(Debug, Clone, Default)]
pub struct TopK {
    k: usize,
    entries: HashMap<Arc<str>, Counted>,
    /// A key not listed occurred at most this often.
    floor: u64,
}

impl TopK {
    /// An empty summary keeping up to `k` keys.
    pub fn new(k: usize) -> Self {
        Self {
            k: k.max(1),
            entries: HashMap::new(),
            floor: 0,
        }
    }

    /// A summary as another node reported it.
    pub fn from_parts(k: usize, entries: impl IntoIterator<Item = (Arc<str>, Counted)>, floor: u64) -> Self {
        let mut top = Self::new(k);
        top.entries.extend(entries);
        top.floor = floor;
        top.truncate();
        top
    }

    /// Counts `weight` occurrences of `key` exactly as Space-Saving does.
    pub fn add(&mut self, key: &Arc<str>, weight: u64) {
        if let Some(counted) = self.entries.get_mut(key) {
            counted.count += weight;
            return;
        }
        if self.entries.len() < self.k {
            let counted = Counted {
                count: weight,
                error: 0,
            };
            self.entries.insert(key.clone(), counted);
            return;
        }
        let smallest = self
            .entries
            .iter()
            .min_by_key(|(_, c)| c.count)
            .map(|(k, c)| (k.clone(), *c));
        if let Some((evicted, counted)) = smallest {
            self.entries.remove(&evicted);
            self.floor = self.floor.max(counted.count);
            let replaced = Counted {
                count: counted.count + weight,
                error: counted.count,
            };
            self.entries.insert(key.clone(), replaced);
        }
    }

    /// Adds `other` in. A key missing from one side may have occurred there
    /// up to that side's floor, which its count and error both take on.
    pub fn merge(&mut self, other: &TopK) {
        if other.entries.is_empty() && other.floor == 0 {
            return;
        }
        let (mine, theirs) = (self.floor, other.floor);
        for (key, counted) in self.entries.iter_mut() {
            let other = other.entries.get(key).copied().unwrap_or(Counted {
                count: theirs,
                error: theirs,
            });
            counted.count += other.count;
            counted.error += other.error;
        }
        for (key, counted) in &other.entries {
            if !self.entries.contains_key(key) {
                let merged = Counted {
                    count: counted.count + mine,
                    error: counted.error + mine,
                };
                self.entries.insert(key.clone(), merged);
            }
        }
        self.floor = mine + theirs;
        self.truncate();
    }

    /// Keeps the `k` largest (ties broken by key, so the result does not
    /// depend on merge order); the largest count dropped raises the floor.
    fn truncate(&mut self) {
        if self.entries.len() <= self.k {
            return;
        }
        let mut ranked: Vec<(Arc<str>, u64)> =
            self.entries.iter().map(|(k, c)| (k.clone(), c.count)).collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let cut = ranked[self.k].1;
        for (key, _) in &ranked[self.k..] {
            self.entries.remove(key);
        }
        self.floor = self.floor.max(cut);
    }

    /// The listed keys, heaviest first (ties by key, for stable output).
    pub fn ranked(&self) -> Vec<(&Arc<str>, Counted)> {
        let mut ranked: Vec<_> = self.entries.iter().map(|(k, c)| (k, *c)).collect();
        ranked.sort_unstable_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        ranked
    }

    /// The estimate for `key`, if listed.
    pub fn get(&self, key: &str) -> Option<Counted> {
        self.entries.get(key).copied()
    }

    /// A key not listed occurred at most this often.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Keys listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No key listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held, roughly: entries and their key strings (shared keys are
    /// counted in every summary that lists them).
    pub fn bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(Arc<str>, Counted)>() + 16;
        self.entries.keys().map(|k| per_entry + k.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(i: u16) -> Arc<str> {
        Arc::from(format!("k{i}").as_str())
    }

    /// Every listed key's true count lies in [count - error, count]; every
    /// key left out occurred at most `floor` times.
    fn holds_bounds(top: &TopK, truth: &HashMap<Arc<str>, u64>) {
        for (k, counted) in top.ranked() {
            let t = truth.get(k).copied().unwrap_or(0);
            assert!(
                counted.count - counted.error <= t && t <= counted.count,
                "{k}: {counted:?} vs {t}"
            );
        }
        for (k, t) in truth {
            if top.get(k).is_none() {
                assert!(*t <= top.floor(), "{k} left out with {t} > floor {}", top.floor());
            }
        }
    }

    fn stream() -> impl Strategy<Value = Vec<u16>> {
        // Skewed: small ids come often, so there are heavy hitters.
        prop::collection::vec((0u16..200).prop_map(|x| x * x / 200), 0..600)
    }

    proptest! {
        #[test]
        fn a_single_stream_keeps_the_space_saving_bounds(items in stream(), k in 1usize..20) {
            let mut top = TopK::new(k);
            let mut truth = HashMap::new();
            for i in &items {
                top.add(&key(*i), 1);
                *truth.entry(key(*i)).or_insert(0) += 1;
            }
            holds_bounds(&top, &truth);
            prop_assert!(top.floor() <= items.len() as u64 / k as u64);
        }

        #[test]
        fn merged_summaries_keep_the_bounds(parts in prop::collection::vec(stream(), 1..5), k in 1usize..20) {
            let mut merged = TopK::new(k);
            let mut truth = HashMap::new();
            let mut n = 0;
            for part in &parts {
                let mut top = TopK::new(k);
                for i in part {
                    top.add(&key(*i), 1);
                    *truth.entry(key(*i)).or_insert(0) += 1;
                }
                n += part.len() as u64;
                merged.merge(&top);
            }
            holds_bounds(&merged, &truth);
            prop_assert!(merged.floor() <= n / k as u64);
            prop_assert!(merged.len() <= k);
        }

        #[test]
        fn merge_order_does_not_matter_for_the_bounds(a in stream(), b in stream()) {
            let build = |items: &[u16]| {
                let mut top = TopK::new(8);
                items.iter().for_each(|i| top.add(&key(*i), 1));
                top
            };
            let (first, second) = (build(&a), build(&b));
            let (mut ab, mut ba) = (first.clone(), second.clone());
            ab.merge(&second);
            ba.merge(&first);
            prop_assert_eq!(ab.ranked(), ba.ranked());
        }

        #[test]
        fn a_shard_table_keeps_the_bounds(items in stream()) {
            let mut shard = ShardTop::default();
            let mut truth = HashMap::new();
            for i in &items {
                let k = key(*i);
                shard.add((*i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), &k);
                *truth.entry(k).or_insert(0) += 1;
            }
            let top = shard.take(SHARD_SLOTS);
            holds_bounds(&top, &truth);
            prop_assert!(top.floor() <= items.len() as u64 / SHARD_SLOTS as u64);
            prop_assert!(shard.is_empty());
        }
    }

    #[test]
    fn a_heavy_key_is_kept_through_a_flood_of_one_off_keys() {
        let mut shard = ShardTop::default();
        for i in 0..10_000u64 {
            if i % 4 == 0 {
                shard.add(u64::MAX, "abuser");
            }
            let one_off = format!("k{i}");
            shard.add(i, &one_off);
        }
        let top = shard.take(4);
        let (first, counted) = top.ranked()[0];
        assert_eq!(&**first, "abuser");
        assert!(counted.count - counted.error <= 2_500 && 2_500 <= counted.count);
    }
}
