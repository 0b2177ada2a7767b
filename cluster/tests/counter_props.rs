//! Property tests: the compact slot counter is a CRDT, and it agrees with
//! `crdts::GCounter` used as the reference model, one G-counter per epoch for
//! spent units and one for refunded units.

use std::collections::BTreeMap;

use crdts::{CmRDT, CvRDT, GCounter};
use proptest::prelude::*;
use weir_cluster::counter::{Column, Epoch, NodeIdx, SlotCounter, RING};

const NODES: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Tick { node: usize, by: u64 },
    Add { node: usize, units: u32 },
    Refund { node: usize, units: u32 },
    Merge { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..NODES, 0..3u64).prop_map(|(node, by)| Op::Tick { node, by }),
        (0..NODES, 1..50u32).prop_map(|(node, units)| Op::Add { node, units }),
        (0..NODES, 1..30u32).prop_map(|(node, units)| Op::Refund { node, units }),
        (0..NODES, 0..NODES).prop_map(|(from, to)| Op::Merge { from, to }),
    ]
}

/// What one replica knows, in the reference model.
#[derive(Clone, Default)]
struct Reference {
    spent: BTreeMap<Epoch, GCounter<u16>>,
    refunded: BTreeMap<Epoch, GCounter<u16>>,
}

impl Reference {
    fn read(map: &BTreeMap<Epoch, GCounter<u16>>, epoch: Epoch) -> u64 {
        map.get(&epoch)
            .map_or(0, |g| g.read().to_string().parse().expect("fits in u64"))
    }

    fn net(&self, epoch: Epoch) -> u64 {
        Self::read(&self.spent, epoch) - Self::read(&self.refunded, epoch)
    }

    fn inc(map: &mut BTreeMap<Epoch, GCounter<u16>>, epoch: Epoch, node: u16, units: u32) {
        let counter = map.entry(epoch).or_default();
        counter.apply(counter.inc_many(node, units as u64));
    }

    fn merge(&mut self, other: &Reference) {
        for (mine, theirs) in [
            (&mut self.spent, &other.spent),
            (&mut self.refunded, &other.refunded),
        ] {
            for (epoch, counter) in theirs {
                mine.entry(*epoch).or_default().merge(counter.clone());
            }
        }
    }
}

/// Every nonzero (node, epoch) entry a counter holds.
fn view(counter: &SlotCounter, me: NodeIdx) -> BTreeMap<(u16, Epoch), (u32, u32)> {
    let mut entries = BTreeMap::new();
    for (node, column) in counter.columns(me) {
        for epoch in counter.tail()..=counter.head() {
            let slot = (epoch % RING as u64) as usize;
            let value = (column.spent[slot], column.refunded[slot]);
            if value != (0, 0) {
                entries.insert((node.0, epoch), value);
            }
        }
    }
    entries
}

fn id(node: usize) -> NodeIdx {
    NodeIdx(node as u16)
}

/// Runs `ops` over fresh replicas, keeping the reference model in step.
fn run(ops: &[Op]) -> (Vec<SlotCounter>, Vec<Reference>) {
    let mut counters = vec![SlotCounter::new(); NODES];
    let mut references = vec![Reference::default(); NODES];
    for counter in &mut counters {
        counter.advance(100, |_, _| {});
    }
    for op in ops {
        match *op {
            Op::Tick { node, by } => {
                let head = counters[node].head() + by;
                counters[node].advance(head, |_, _| {});
            }
            Op::Add { node, units } => {
                counters[node].add(units);
                let head = counters[node].head();
                Reference::inc(&mut references[node].spent, head, node as u16, units);
            }
            Op::Refund { node, units } => {
                let before = counters[node].own_column();
                counters[node].refund(units);
                let after = counters[node].own_column();
                for epoch in counters[node].tail()..=counters[node].head() {
                    let slot = (epoch % RING as u64) as usize;
                    let taken = after.refunded[slot] - before.refunded[slot];
                    if taken > 0 {
                        Reference::inc(&mut references[node].refunded, epoch, node as u16, taken);
                    }
                }
            }
            Op::Merge { from, to } => {
                let source = counters[from].clone();
                counters[to].merge(id(to), &source, id(from), |_, _| {});
                let reference = references[from].clone();
                references[to].merge(&reference);
            }
        }
    }
    (counters, references)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn agrees_with_the_gcounter_reference_on_every_held_epoch(ops in prop::collection::vec(op(), 0..60)) {
        let (counters, references) = run(&ops);
        for (counter, reference) in counters.iter().zip(&references) {
            for epoch in counter.tail()..=counter.head() {
                prop_assert_eq!(counter.net(epoch) as u64, reference.net(epoch), "epoch {}", epoch);
            }
        }
    }

    #[test]
    fn merge_is_commutative(ops in prop::collection::vec(op(), 0..60)) {
        let (counters, _) = run(&ops);
        let (a, b) = (&counters[0], &counters[1]);
        let mut ab = a.clone();
        ab.merge(id(0), b, id(1), |_, _| {});
        let mut ba = b.clone();
        ba.merge(id(1), a, id(0), |_, _| {});
        prop_assert_eq!(ab.head(), ba.head());
        prop_assert_eq!(view(&ab, id(0)), view(&ba, id(1)));
    }

    #[test]
    fn merge_is_associative(ops in prop::collection::vec(op(), 0..60)) {
        let (counters, _) = run(&ops);
        let (a, b, c) = (&counters[0], &counters[1], &counters[2]);
        let mut ab_c = a.clone();
        ab_c.merge(id(0), b, id(1), |_, _| {});
        ab_c.merge(id(0), c, id(2), |_, _| {});
        let mut bc = b.clone();
        bc.merge(id(1), c, id(2), |_, _| {});
        let mut a_bc = a.clone();
        a_bc.merge(id(0), &bc, id(1), |_, _| {});
        prop_assert_eq!(view(&ab_c, id(0)), view(&a_bc, id(0)));
    }

    #[test]
    fn merge_is_idempotent(ops in prop::collection::vec(op(), 0..60)) {
        let (counters, _) = run(&ops);
        let a = &counters[0];
        let mut aa = a.clone();
        aa.merge(id(0), a, id(0), |_, _| {});
        prop_assert_eq!(view(&aa, id(0)), view(a, id(0)));
        let mut twice = counters[1].clone();
        twice.merge(id(1), a, id(0), |_, _| {});
        let once = view(&twice, id(1));
        twice.merge(id(1), a, id(0), |_, _| {});
        prop_assert_eq!(view(&twice, id(1)), once);
    }

    #[test]
    fn an_old_column_never_lowers_a_count(units in 1..100u32, later in 1..8u64) {
        let mut counter = SlotCounter::new();
        counter.advance(50, |_, _| {});
        counter.add(units);
        let stale = Column::default();
        counter.merge_column(id(0), id(1), 50 - later.min(50), &stale, |_, _| {});
        prop_assert_eq!(counter.net(50), units);
    }
}
