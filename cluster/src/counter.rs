//! The replicated slot counter: a short ring of time slots, one column of
//! counts per node.
//!
//! Every node only ever increments its own column; merging takes the maximum
//! per (slot, node). Each slot is therefore a grow-only counter (a G-counter),
//! and merge is commutative, associative and idempotent: peer messages may be
//! lost, duplicated or reordered without harm.
//!
//! Refunds are a second grow-only column per node (`refunded`), so the net
//! count of a slot is `spent - refunded`, like a PN-counter.
//!
//! Memory is the point of this layout. A single-node counter is 32 bytes: one
//! word for the head epoch (48 bits) and a caller's tag (16 bits), this node's
//! four slots inline, and one pointer that stays null until a refund or a
//! peer's counts arrive. Slots older than the ring are
//! dropped as time moves on, so a counter never grows with time, only with the
//! number of peers that have counted the key.

/// How many slots a counter keeps, the newest included.
pub const RING: usize = 4;

/// A node as this process knows it: a small index handed out locally, so a
/// column costs two bytes of identity rather than a node name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIdx(pub u16);

/// Slot index: time divided by the slot width, counted from the Unix epoch so
/// that every node numbers its slots the same way. At most [`MAX_EPOCH`].
pub type Epoch = u64;

/// The largest epoch a counter can hold: 48 bits, which at the narrowest
/// slot (half a millisecond) lasts four thousand years.
pub const MAX_EPOCH: Epoch = (1 << 48) - 1;

/// One node's counts for the slots of a ring that ends at `head`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Column {
    /// Units spent per slot, indexed by `epoch % RING`.
    pub spent: [u32; RING],
    /// Units given back per slot, indexed by `epoch % RING`.
    pub refunded: [u32; RING],
}

impl Column {
    fn net(&self, slot: usize) -> u32 {
        self.spent[slot].saturating_sub(self.refunded[slot])
    }

    fn clear(&mut self, slot: usize) {
        self.spent[slot] = 0;
        self.refunded[slot] = 0;
    }
}

/// The rarely used part of a counter, allocated on first use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Extra {
    own_refunded: [u32; RING],
    peers: Vec<(NodeIdx, Column)>,
    /// Sum of the peers' net counts per slot, kept current on every merge so
    /// that a check never has to walk the peers.
    peer_net: [u32; RING],
    /// Net growth merged in and not yet taken by [`SlotCounter::take_merged`]:
    /// what a token bucket still has to charge.
    merged: i64,
    /// This node's own spend in one sync interval: (interval, units). Only
    /// a node in a cluster keeps it, to spend no more than its share of the
    /// remaining quota before its peers hear of it.
    interval_spend: (u32, u32),
}

impl Extra {
    fn recompute_peer_net(&mut self, slot: usize) {
        self.peer_net[slot] = self
            .peers
            .iter()
            .fold(0u32, |sum, (_, column)| sum.saturating_add(column.net(slot)));
    }
}

/// Counts of one key's limit: [`RING`] time slots by node columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotCounter {
    /// The newest epoch in the low 48 bits, the tag in the high 16.
    word: u64,
    own_spent: [u32; RING],
    extra: Option<Box<Extra>>,
}

fn slot_of(epoch: Epoch) -> usize {
    (epoch % RING as u64) as usize
}

impl SlotCounter {
    /// A counter with nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter with nothing counted, carrying `tag`: 16 bits the caller
    /// may use to say what the counts mean.
    pub fn with_tag(tag: u16) -> Self {
        Self {
            word: (tag as u64) << 48,
            ..Self::default()
        }
    }

    /// The tag given to [`with_tag`](Self::with_tag).
    pub fn tag(&self) -> u16 {
        (self.word >> 48) as u16
    }

    /// The newest epoch the ring holds.
    pub fn head(&self) -> Epoch {
        self.word & MAX_EPOCH
    }

    fn set_head(&mut self, epoch: Epoch) {
        self.word = (self.word & !MAX_EPOCH) | epoch.min(MAX_EPOCH);
    }

    /// The oldest epoch the ring holds.
    pub fn tail(&self) -> Epoch {
        self.head().saturating_sub(RING as u64 - 1)
    }

    fn holds(&self, epoch: Epoch) -> bool {
        epoch <= self.head() && epoch >= self.tail()
    }

    /// Moves the ring forward so that `epoch` is its newest slot.
    ///
    /// Each slot that falls off the back is reported to `on_expire` with its
    /// epoch and net count, oldest first, before it is cleared; this is where
    /// a token bucket folds expiring slots into its level. Epochs between the
    /// old head and the new tail that were never stored are not reported: the
    /// caller knows how far the head moved. Moving backwards does nothing.
    pub fn advance(&mut self, epoch: Epoch, mut on_expire: impl FnMut(Epoch, u32)) {
        let epoch = epoch.min(MAX_EPOCH);
        if epoch <= self.head() {
            return;
        }
        let first_kept = epoch.saturating_sub(RING as u64 - 1);
        for expired in self.tail()..first_kept.min(self.head() + 1) {
            let slot = slot_of(expired);
            on_expire(expired, self.net_in_slot(slot));
            self.clear_slot(slot);
        }
        self.set_head(epoch);
    }

    fn clear_slot(&mut self, slot: usize) {
        self.own_spent[slot] = 0;
        if let Some(extra) = self.extra.as_deref_mut() {
            extra.own_refunded[slot] = 0;
            extra.peer_net[slot] = 0;
            for (_, column) in &mut extra.peers {
                column.clear(slot);
            }
        }
    }

    fn net_in_slot(&self, slot: usize) -> u32 {
        let own = match self.extra.as_deref() {
            Some(extra) => self.own_spent[slot].saturating_sub(extra.own_refunded[slot]),
            None => self.own_spent[slot],
        };
        let peers = self.extra.as_deref().map_or(0, |extra| extra.peer_net[slot]);
        own.saturating_add(peers)
    }

    /// Net count of `epoch` over all nodes: spent minus refunded. Zero for an
    /// epoch outside the ring.
    pub fn net(&self, epoch: Epoch) -> u32 {
        if self.holds(epoch) {
            self.net_in_slot(slot_of(epoch))
        } else {
            0
        }
    }

    /// Counts `units` against this node in the newest slot.
    pub fn add(&mut self, units: u32) {
        let slot = slot_of(self.head());
        self.own_spent[slot] = self.own_spent[slot].saturating_add(units);
    }

    /// Takes back an [`add`](Self::add) that nobody else has seen yet, as when
    /// an atomic batch is rolled back under the same lock.
    pub fn undo_add(&mut self, units: u32) {
        let slot = slot_of(self.head());
        self.own_spent[slot] = self.own_spent[slot].saturating_sub(units);
    }

    /// Gives back up to `units` of this node's net count, newest slot first,
    /// and returns how many were given back.
    pub fn refund(&mut self, units: u32) -> u32 {
        let mut left = units;
        for epoch in (self.tail()..=self.head()).rev() {
            if left == 0 {
                break;
            }
            let slot = slot_of(epoch);
            let extra = self.extra.get_or_insert_with(Box::default);
            let net = self.own_spent[slot].saturating_sub(extra.own_refunded[slot]);
            let take = net.min(left);
            extra.own_refunded[slot] += take;
            left -= take;
        }
        units - left
    }

    /// This node's own column, for sending to peers.
    pub fn own_column(&self) -> Column {
        Column {
            spent: self.own_spent,
            refunded: self.extra.as_deref().map_or([0; RING], |e| e.own_refunded),
        }
    }

    /// Every column this counter holds, `me` first.
    pub fn columns(&self, me: NodeIdx) -> Vec<(NodeIdx, Column)> {
        let mut all = vec![(me, self.own_column())];
        if let Some(extra) = self.extra.as_deref() {
            all.extend(extra.peers.iter().copied());
        }
        all
    }

    /// Merges `node`'s column, whose ring ends at `head`, taking the maximum
    /// per slot, and returns how much the net count over the ring grew
    /// (negative when refunds outgrew spending): what a token bucket must
    /// charge. A column newer than this ring moves the ring forward first
    /// (reporting expired slots to `on_expire`, as [`advance`](Self::advance)
    /// does); slots of the column older than this ring are ignored. When
    /// `node` is `me`, the column merges into this node's own counts, which is
    /// how a restarted node recovers what it had spent.
    pub fn merge_column(
        &mut self,
        me: NodeIdx,
        node: NodeIdx,
        head: Epoch,
        column: &Column,
        on_expire: impl FnMut(Epoch, u32),
    ) -> i64 {
        let head = head.min(MAX_EPOCH);
        self.advance(head, on_expire);
        let their_tail = head.saturating_sub(RING as u64 - 1);
        let epochs = their_tail.max(self.tail())..=head.min(self.head());
        let mut mine = if node == me {
            self.own_column()
        } else {
            self.peer_column(node)
        };
        let mut growth = 0i64;
        for epoch in epochs {
            let slot = slot_of(epoch);
            let before = mine.net(slot) as i64;
            mine.spent[slot] = mine.spent[slot].max(column.spent[slot]);
            mine.refunded[slot] = mine.refunded[slot].max(column.refunded[slot]);
            growth += mine.net(slot) as i64 - before;
        }
        self.store_column(me, node, mine);
        if growth != 0 {
            self.extra.get_or_insert_with(Box::default).merged += growth;
        }
        growth
    }

    /// Merges `node`'s column as [`merge_column`](Self::merge_column) does,
    /// but leaves nothing new to charge: for a column restored beside state
    /// that already counts it (a snapshot's bucket time).
    pub fn restore_column(&mut self, me: NodeIdx, node: NodeIdx, head: Epoch, column: &Column) {
        let pending = self.take_merged();
        self.merge_column(me, node, head, column, |_, _| {});
        self.take_merged();
        if pending != 0 {
            self.extra.get_or_insert_with(Box::default).merged = pending;
        }
    }

    /// Takes the net growth merged in since the last call, so that a token
    /// bucket can charge it when the key is next checked (merges happen where
    /// the limit is not known).
    pub fn take_merged(&mut self) -> i64 {
        self.extra
            .as_deref_mut()
            .map_or(0, |extra| std::mem::take(&mut extra.merged))
    }

    /// Units this node spent in sync interval `interval` (0 for any interval
    /// but the last one noted).
    pub fn spent_in(&self, interval: u32) -> u32 {
        match self.extra.as_deref() {
            Some(extra) if extra.interval_spend.0 == interval => extra.interval_spend.1,
            _ => 0,
        }
    }

    /// Notes `units` spent by this node in sync interval `interval`.
    pub fn note_spent(&mut self, interval: u32, units: u32) {
        let spent = self.spent_in(interval).saturating_add(units);
        self.extra.get_or_insert_with(Box::default).interval_spend = (interval, spent);
    }

    /// Net count over the whole ring: this node's own, and every node's.
    /// Their ratio is this node's share of the key's recent traffic.
    pub fn ring_totals(&self) -> (u64, u64) {
        let mut own = 0u64;
        let mut all = 0u64;
        for slot in 0..RING {
            let refunded = self.extra.as_deref().map_or(0, |extra| extra.own_refunded[slot]);
            let mine = self.own_spent[slot].saturating_sub(refunded) as u64;
            own += mine;
            all += mine + self.extra.as_deref().map_or(0, |extra| extra.peer_net[slot]) as u64;
        }
        (own, all)
    }

    fn peer_column(&self, node: NodeIdx) -> Column {
        let peers = self
            .extra
            .as_deref()
            .map(|extra| extra.peers.as_slice())
            .unwrap_or_default();
        peers
            .iter()
            .find(|(id, _)| *id == node)
            .map_or_else(Column::default, |(_, column)| *column)
    }

    fn store_column(&mut self, me: NodeIdx, node: NodeIdx, column: Column) {
        if node == me {
            self.own_spent = column.spent;
            if column.refunded != [0; RING] || self.extra.is_some() {
                self.extra.get_or_insert_with(Box::default).own_refunded = column.refunded;
            }
            return;
        }
        let extra = self.extra.get_or_insert_with(Box::default);
        match extra.peers.iter_mut().find(|(id, _)| *id == node) {
            Some((_, stored)) => *stored = column,
            None => extra.peers.push((node, column)),
        }
        for slot in 0..RING {
            extra.recompute_peer_net(slot);
        }
    }

    /// Merges every column of `other` (whose own column belongs to
    /// `other_id`) into this counter (whose own column belongs to `me`);
    /// returns how much the net count grew.
    pub fn merge(
        &mut self,
        me: NodeIdx,
        other: &SlotCounter,
        other_id: NodeIdx,
        mut on_expire: impl FnMut(Epoch, u32),
    ) -> i64 {
        other
            .columns(other_id)
            .into_iter()
            .map(|(node, column)| self.merge_column(me, node, other.head(), &column, &mut on_expire))
            .sum()
    }

    /// True when nothing is counted in any slot.
    pub fn is_empty(&self) -> bool {
        (0..RING).all(|slot| self.net_in_slot(slot) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeIdx = NodeIdx(0);
    const PEER: NodeIdx = NodeIdx(1);

    #[test]
    fn a_single_node_counter_is_32_bytes() {
        assert_eq!(std::mem::size_of::<SlotCounter>(), 32);
    }

    #[test]
    fn merged_growth_is_kept_until_taken_once() {
        let mut counter = SlotCounter::new();
        counter.advance(10, |_, _| {});
        let column = Column {
            spent: [5, 0, 0, 0],
            refunded: [1, 0, 0, 0],
        };
        assert_eq!(counter.merge_column(ME, PEER, 12, &column, |_, _| {}), 4);
        // The same column again: nothing new to charge.
        assert_eq!(counter.merge_column(ME, PEER, 12, &column, |_, _| {}), 0);
        assert_eq!(counter.take_merged(), 4);
        assert_eq!(counter.take_merged(), 0);
    }

    #[test]
    fn a_restored_column_counts_but_leaves_only_earlier_growth_to_charge() {
        let mut counter = SlotCounter::new();
        counter.advance(10, |_, _| {});
        let column = Column {
            spent: [0, 0, 7, 0],
            refunded: [0; RING],
        };
        counter.merge_column(
            ME,
            PEER,
            10,
            &Column {
                spent: [0, 0, 2, 0],
                ..column
            },
            |_, _| {},
        );
        counter.restore_column(ME, NodeIdx(2), 10, &column);
        assert_eq!(counter.net(10), 9);
        assert_eq!(counter.take_merged(), 2);
    }

    #[test]
    fn interval_spend_restarts_with_each_interval() {
        let mut counter = SlotCounter::new();
        counter.note_spent(7, 2);
        counter.note_spent(7, 3);
        assert_eq!((counter.spent_in(7), counter.spent_in(8)), (5, 0));
        counter.note_spent(8, 1);
        assert_eq!((counter.spent_in(7), counter.spent_in(8)), (0, 1));
    }

    #[test]
    fn ring_totals_split_own_from_everyone() {
        let mut counter = SlotCounter::new();
        counter.advance(12, |_, _| {});
        counter.add(3);
        let column = Column {
            spent: [5, 0, 0, 0],
            refunded: [0; RING],
        };
        counter.merge_column(ME, PEER, 12, &column, |_, _| {});
        assert_eq!(counter.ring_totals(), (3, 8));
    }

    #[test]
    fn the_tag_survives_every_move_of_the_ring() {
        let mut counter = SlotCounter::with_tag(0xbeef);
        counter.advance(MAX_EPOCH - 2, |_, _| {});
        counter.add(1);
        counter.advance(u64::MAX, |_, _| {});
        assert_eq!((counter.tag(), counter.head()), (0xbeef, MAX_EPOCH));
    }

    #[test]
    fn counts_land_in_the_newest_slot() {
        let mut counter = SlotCounter::new();
        counter.advance(10, |_, _| {});
        counter.add(3);
        counter.advance(11, |_, _| {});
        counter.add(2);
        assert_eq!((counter.net(10), counter.net(11)), (3, 2));
    }

    #[test]
    fn advancing_reports_expired_slots_oldest_first() {
        let mut counter = SlotCounter::new();
        for epoch in 10..14 {
            counter.advance(epoch, |_, _| {});
            counter.add(epoch as u32);
        }
        let mut expired = Vec::new();
        counter.advance(15, |epoch, net| expired.push((epoch, net)));
        assert_eq!(expired, vec![(10, 10), (11, 11)]);
        assert_eq!(counter.net(10), 0);
        assert_eq!(counter.net(13), 13);
    }

    #[test]
    fn a_long_gap_expires_every_slot_once() {
        let mut counter = SlotCounter::new();
        counter.advance(100, |_, _| {});
        counter.add(7);
        let mut expired = Vec::new();
        counter.advance(1_000, |epoch, net| expired.push((epoch, net)));
        assert_eq!(expired.len(), RING);
        assert!(expired.contains(&(100, 7)));
        assert!(counter.is_empty());
    }

    #[test]
    fn refunds_come_off_the_newest_slots_and_never_below_zero() {
        let mut counter = SlotCounter::new();
        counter.advance(1, |_, _| {});
        counter.add(4);
        counter.advance(2, |_, _| {});
        counter.add(1);
        assert_eq!(counter.refund(3), 3);
        assert_eq!((counter.net(1), counter.net(2)), (2, 0));
        assert_eq!(counter.refund(10), 2);
        assert!(counter.is_empty());
    }

    #[test]
    fn merging_a_peer_takes_the_max_and_is_idempotent() {
        let mut counter = SlotCounter::new();
        counter.advance(5, |_, _| {});
        counter.add(2);
        let column = Column {
            spent: [0, 3, 0, 0],
            ..Column::default()
        };
        assert_eq!(counter.merge_column(ME, PEER, 5, &column, |_, _| {}), 3);
        assert_eq!(counter.merge_column(ME, PEER, 5, &column, |_, _| {}), 0);
        assert_eq!(counter.net(5), 5);
    }

    #[test]
    fn a_newer_peer_column_moves_the_ring_forward() {
        let mut counter = SlotCounter::new();
        counter.advance(5, |_, _| {});
        counter.add(2);
        let mut column = Column::default();
        column.spent[slot_of(9)] = 4;
        let mut expired = Vec::new();
        counter.merge_column(ME, PEER, 9, &column, |e, n| expired.push((e, n)));
        assert_eq!(counter.head(), 9);
        assert_eq!(counter.net(9), 4);
        assert!(expired.contains(&(5, 2)));
    }

    #[test]
    fn a_node_recovers_its_own_counts_from_a_peer_copy() {
        let mut before_restart = SlotCounter::new();
        before_restart.advance(3, |_, _| {});
        before_restart.add(9);
        let mut after_restart = SlotCounter::new();
        after_restart.merge(ME, &before_restart, ME, |_, _| {});
        assert_eq!(after_restart.own_column().spent[slot_of(3)], 9);
    }
}
