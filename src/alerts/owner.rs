//! Which node fires an alert for a key: rendezvous hashing over the live
//! nodes. Every node that sees the same members picks the same owner, with
//! no coordination; when the owner leaves, its keys spread over the rest.

use std::hash::BuildHasher;
use std::net::SocketAddr;

/// `nodes` ordered by preference for `key`: the owner first, then who takes
/// over if it cannot be reached.
pub fn by_preference<'a>(key: &str, nodes: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    // A fixed seed: every process must compute the same scores.
    let hasher = foldhash::quality::FixedState::with_seed(0x7e1a_be11);
    let mut scored: Vec<(u64, &str)> = nodes
        .into_iter()
        .map(|node| (hasher.hash_one((node, key)), node))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().map(|(_, node)| node).collect()
}

/// The live members ranked for `key`, this node (`me`) included: `peers`
/// as [`ClusterNode::peers`](crate::cluster::ClusterNode::peers) lists them.
pub fn ranked(key: &str, me: &str, peers: &[(String, Option<SocketAddr>, bool)]) -> Vec<String> {
    let live = peers
        .iter()
        .filter(|(_, _, live)| *live)
        .map(|(id, _, _)| id.as_str());
    by_preference(key, live.chain([me]))
        .into_iter()
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_agrees_whatever_order_it_lists_members_in() {
        let a = by_preference("k", ["a", "b", "c"]);
        let b = by_preference("k", ["c", "a", "b"]);
        assert_eq!(a, b);
    }

    #[test]
    fn keys_spread_over_nodes_and_move_only_from_a_node_that_left() {
        let keys: Vec<String> = (0..3000).map(|i| format!("key-{i}")).collect();
        let owner = |k: &str, nodes: &[&'static str]| by_preference(k, nodes.iter().copied())[0];
        let mut per_node = std::collections::HashMap::new();
        for k in &keys {
            *per_node.entry(owner(k, &["a", "b", "c"])).or_insert(0) += 1;
        }
        assert!(per_node.values().all(|n| (800..1200).contains(n)), "{per_node:?}");
        for k in &keys {
            let before = owner(k, &["a", "b", "c"]);
            let after = owner(k, &["a", "b"]);
            assert!(
                before == "c" || before == after,
                "{k} moved from {before} to {after}"
            );
        }
    }
}
