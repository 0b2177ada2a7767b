//! One shard's keys: their slots packed densely in a vector, found through
//! a hash index of slot numbers, their text packed in one string.
//!
//! A hash table keeps a third to a half of its buckets empty, so what a
//! bucket holds is paid about twice per key. Here a bucket holds a 4-byte
//! slot number; the key and its states sit in the dense vector, where a
//! one-limit policy's state is stored inline. The key's text sits in the
//! shard's text, so a key costs its length, not an allocation rounded up
//! with the allocator's header. A lookup touches the index, one slot and
//! its text.

use std::ops::Range;

use hashbrown::HashTable;

use super::Entry;
#[cfg(test)]
use super::States;
use crate::key::is_inline;

/// Hashes keys: the store's per-process seeded hasher.
pub type KeyHasher = foldhash::fast::RandomState;

/// Where a key's text sits in its shard's text.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// A key and its entry.
#[derive(Debug)]
struct Slot {
    key: Span,
    entry: Entry,
}

/// The keys of one shard.
#[derive(Debug)]
pub struct Keys {
    index: HashTable<u32>,
    slots: Vec<Slot>,
    /// Every key's text, back to back; a removed key's text stays until
    /// [`compact`](Self::compact) copies the live ones into a new string.
    text: String,
    /// Bytes of `text` no slot refers to any more.
    dead: usize,
    /// The most text this shard holds ([`TEXT_LIMIT`] but in tests).
    text_limit: usize,
    /// Bytes the keys' states hold outside their slots (keys with several
    /// limits keep their states in a vector).
    heap: usize,
    /// Keys of inline checks (their text starts with SOH).
    inline: usize,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            index: HashTable::new(),
            slots: Vec::new(),
            text: String::new(),
            dead: 0,
            text_limit: TEXT_LIMIT,
            heap: 0,
            inline: 0,
        }
    }
}

/// Bytes an index entry costs: a slot number and hashbrown's control byte.
const INDEX_BYTES: usize = std::mem::size_of::<u32>() + 1;

/// The most text a shard can hold: spans are 32-bit.
const TEXT_LIMIT: usize = u32::MAX as usize;

fn hash_of(hasher: &KeyHasher, key: &str) -> u64 {
    std::hash::BuildHasher::hash_one(hasher, key)
}

/// The hash of the key in a slot, given its number: what the index asks
/// for when it moves its entries.
fn rehash<'a>(hasher: &'a KeyHasher, slots: &'a [Slot], text: &'a str) -> impl Fn(&u32) -> u64 + 'a {
    move |&i| hash_of(hasher, &text[slots[i as usize].key.range()])
}

impl Keys {
    /// Keys held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn key(&self, at: usize) -> &str {
        &self.text[self.slots[at].key.range()]
    }

    /// Whether a key of `len` bytes fits, once removed keys' text is
    /// given back.
    pub fn has_room_for(&self, len: usize) -> bool {
        self.text.len() - self.dead + len <= self.text_limit
    }

    /// Keys of inline checks held.
    pub fn inline_len(&self) -> usize {
        self.inline
    }

    /// The memory this shard's keys take: what its vectors, index and text
    /// have allocated, and their states' vectors.
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.capacity() * INDEX_BYTES
            + self.text.capacity()
            + self.heap
    }

    /// [`bytes`](Self::bytes) once a key of `len` bytes whose states hold
    /// `heap` bytes outside its slot is added, counting the growth of any
    /// vector that is full now (each doubles).
    pub fn bytes_with(&self, len: usize, heap: usize) -> usize {
        let doubled = |used: usize, capacity: usize, unit: usize| match used < capacity {
            true => 0,
            false => capacity.max(4) * unit,
        };
        let text = match self.text.len() + len <= self.text.capacity() {
            true => 0,
            false => self.text.capacity().max(len),
        };
        self.bytes()
            + doubled(
                self.slots.len(),
                self.slots.capacity(),
                std::mem::size_of::<Slot>(),
            )
            + doubled(self.index.len(), self.index.capacity(), INDEX_BYTES)
            + text
            + heap
    }

    /// Lowers the most text this shard holds, to test what happens at it.
    #[cfg(test)]
    pub fn limit_text(&mut self, limit: usize) {
        self.text_limit = limit;
    }

    /// The slot number of `key` (whose hash is `hash`), if it is held.
    pub fn find(&self, hash: u64, key: &str) -> Option<usize> {
        self.index
            .find(hash, |&i| self.key(i as usize) == key)
            .map(|&i| i as usize)
    }

    /// Adds `key`, which must not be held yet; returns its slot number.
    /// Callers keep a shard under `u32::MAX` keys (see `shard_cap`) and
    /// make room for its text first (see [`has_room_for`](Self::has_room_for)).
    pub fn insert(&mut self, hasher: &KeyHasher, hash: u64, key: &str, entry: Entry) -> usize {
        if self.text.len() + key.len() > self.text_limit {
            self.compact();
        }
        let span = Span {
            start: self.text.len() as u32,
            len: key.len() as u32,
        };
        self.text.push_str(key);
        self.heap += entry.limits.heap_bytes();
        self.inline += is_inline(key) as usize;
        let at = self.slots.len();
        self.slots.push(Slot { key: span, entry });
        let Self {
            index, slots, text, ..
        } = self;
        index.insert_unique(hash, at as u32, rehash(hasher, slots, text));
        at
    }

    /// The key and entry in slot `at`.
    pub fn get(&self, at: usize) -> (&str, &Entry) {
        (self.key(at), &self.slots[at].entry)
    }

    /// The entry in slot `at`, to change.
    pub fn entry_mut(&mut self, at: usize) -> &mut Entry {
        &mut self.slots[at].entry
    }

    /// Every key with its entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.slots
            .iter()
            .map(|slot| (&self.text[slot.key.range()], &slot.entry))
    }

    /// Removes the key in slot `at`; the last slot moves into its place.
    fn remove(&mut self, hasher: &KeyHasher, at: usize) {
        let last = self.slots.len() - 1;
        let hash = hash_of(hasher, self.key(at));
        if let Ok(found) = self.index.find_entry(hash, |&i| i as usize == at) {
            found.remove();
        }
        if at != last {
            let moved = hash_of(hasher, self.key(last));
            if let Some(number) = self.index.find_mut(moved, |&i| i as usize == last) {
                *number = at as u32;
            }
        }
        self.inline -= is_inline(self.key(at)) as usize;
        self.dead += self.slots[at].key.len as usize;
        let slot = self.slots.swap_remove(at);
        self.heap = self.heap.saturating_sub(slot.entry.limits.heap_bytes());
    }

    /// Keeps only the keys that `keep` accepts, given each key and entry;
    /// returns how many went.
    pub fn retain(&mut self, hasher: &KeyHasher, mut keep: impl FnMut(&str, &Entry) -> bool) -> usize {
        let before = self.slots.len();
        // From the end: a slot moved into a freed place was already kept.
        for at in (0..before).rev() {
            if !keep(self.key(at), &self.slots[at].entry) {
                self.remove(hasher, at);
            }
        }
        // A config change may have changed some keys' states since they
        // were counted: counted again here, where every slot is at hand.
        self.heap = self.slots.iter().map(|slot| slot.entry.limits.heap_bytes()).sum();
        if self.dead > self.text.len() / 4 {
            self.compact();
        }
        self.shrink_if_sparse(hasher);
        before - self.slots.len()
    }

    /// Copies the live keys' text into a new string, dropping the text of
    /// removed keys: run once they hold a quarter of it, so that dead text
    /// costs little memory and each byte is copied a bounded number of
    /// times.
    fn compact(&mut self) {
        let mut text = String::with_capacity(self.text.len() - self.dead);
        for slot in &mut self.slots {
            let start = text.len() as u32;
            text.push_str(&self.text[slot.key.range()]);
            slot.key.start = start;
        }
        self.text = text;
        self.dead = 0;
    }

    /// Gives memory back once three quarters of the slots are unused, as
    /// after a burst of one-off keys has expired; keeps room to double.
    fn shrink_if_sparse(&mut self, hasher: &KeyHasher) {
        let len = self.slots.len();
        if self.slots.capacity() > MIN_SHRINK && len < self.slots.capacity() / 4 {
            self.slots.shrink_to(len * 2);
            let Self {
                index, slots, text, ..
            } = self;
            index.shrink_to(len * 2, rehash(hasher, slots, text));
        }
    }
}

/// Below this many slots a shard's memory is not worth giving back.
const MIN_SHRINK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            limits: States::new(),
            seen: 0,
            expires: 0,
        }
    }

    #[test]
    fn a_slot_is_56_bytes_with_one_state_inline() {
        assert_eq!(std::mem::size_of::<Slot>(), 56);
    }

    #[test]
    fn finds_every_key_after_removals_move_slots() {
        let hasher = KeyHasher::default();
        let mut keys = Keys::default();
        let names: Vec<String> = (0..1000)
            .map(|i| format!("key-{i}-{}", "x".repeat(i % 40)))
            .collect();
        for name in &names {
            let hash = hash_of(&hasher, name);
            assert_eq!(keys.find(hash, name), None);
            let at = keys.insert(&hasher, hash, name, entry());
            assert_eq!(keys.find(hash, name), Some(at));
        }
        // Drop every third key by marking it through its entry's expiry.
        for (i, name) in names.iter().enumerate() {
            let at = keys.find(hash_of(&hasher, name), name).unwrap();
            keys.entry_mut(at).expires = (i % 3 != 0) as u32;
        }
        assert_eq!(keys.retain(&hasher, |_, e| e.expires > 0), 334);
        assert_eq!(keys.len(), 666);
        for (i, name) in names.iter().enumerate() {
            let found = keys.find(hash_of(&hasher, name), name);
            assert_eq!(found.is_some(), i % 3 != 0, "{name}");
            if let Some(at) = found {
                assert_eq!(keys.get(at).0, name);
            }
        }
        assert_eq!(keys.iter().count(), 666);
    }

    #[test]
    fn agrees_with_a_map_through_random_inserts_and_removals() {
        let hasher = KeyHasher::default();
        let mut keys = Keys::default();
        let mut model = std::collections::HashMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300u64 {
            for _ in 0..100 {
                let name = format!("key-{}", next() % 3_000);
                let hash = hash_of(&hasher, &name);
                match keys.find(hash, &name) {
                    Some(at) => {
                        let (key, held) = keys.get(at);
                        assert_eq!((key, Some(&held.expires)), (name.as_str(), model.get(&name)));
                    }
                    None => {
                        let mut held = entry();
                        held.expires = (next() % 4) as u32;
                        model.insert(name.clone(), held.expires);
                        keys.insert(&hasher, hash, &name, held);
                    }
                }
            }
            // Every round drops one of the four expiry values: a quarter of
            // the keys, or (every 50th round) all but one value.
            let kept = |expires: u32| {
                if round % 50 == 49 {
                    expires == 0
                } else {
                    expires != (round % 4) as u32
                }
            };
            keys.retain(&hasher, |_, held| kept(held.expires));
            model.retain(|_, expires| kept(*expires));
            assert_eq!(keys.len(), model.len());
            // The text holds the live keys, and at most as much again dead.
            let live: usize = model.keys().map(String::len).sum();
            assert_eq!(keys.text.len() - keys.dead, live);
            assert!(keys.dead <= keys.text.len() / 2);
            for name in model.keys() {
                assert!(keys.find(hash_of(&hasher, name), name).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn gives_memory_back_when_most_keys_are_gone() {
        let hasher = KeyHasher::default();
        let mut keys = Keys::default();
        for i in 0..10_000u32 {
            let name = format!("burst-{i}");
            let mut held = entry();
            held.expires = (i < 100) as u32;
            keys.insert(&hasher, hash_of(&hasher, &name), &name, held);
        }
        let grown = keys.slots.capacity();
        assert_eq!(keys.retain(&hasher, |_, e| e.expires > 0), 9_900);
        assert!(
            keys.slots.capacity() <= 200,
            "{grown} -> {}",
            keys.slots.capacity()
        );
        assert!(keys.index.capacity() < 1_000);
        assert!(keys.text.capacity() < 1_000, "{}", keys.text.capacity());
        for i in 0..100 {
            let name = format!("burst-{i}");
            assert!(keys.find(hash_of(&hasher, &name), &name).is_some());
        }
    }
}
