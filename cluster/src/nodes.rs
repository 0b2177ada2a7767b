//! Node columns: which [`NodeIdx`] stands for which node incarnation.
//!
//! A column is named by a two-byte index rather than a node name, so that a
//! counter with peers stays small. Every incarnation (node id and
//! generation) gets its own index: a restarted node starts from zero, and
//! under max-merge a column must never go backwards, so the new incarnation
//! counts in a new column while the old one ages out of the rings.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::counter::NodeIdx;

/// This node's own column.
pub const ME: NodeIdx = NodeIdx(0);

/// Hands out column indices to node incarnations.
#[derive(Debug, Default)]
pub struct NodeRegistry {
    known: Mutex<HashMap<(String, u64), NodeIdx>>,
}

impl NodeRegistry {
    /// The index of `node_id` at `generation`, allocated on first sight;
    /// `None` once every index is taken (65,535 incarnations: frames from
    /// new incarnations are then dropped and counted).
    pub fn index(&self, node_id: &str, generation: u64) -> Option<NodeIdx> {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(index) = known.get(&(node_id.to_string(), generation)) {
            return Some(*index);
        }
        let next = u16::try_from(known.len() + 1).ok()?;
        known.insert((node_id.to_string(), generation), NodeIdx(next));
        Some(NodeIdx(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_incarnation_gets_its_own_stable_column_and_never_mine() {
        let registry = NodeRegistry::default();
        let a1 = registry.index("a", 1).unwrap();
        let b1 = registry.index("b", 1).unwrap();
        let a2 = registry.index("a", 2).unwrap();
        assert_ne!(a1, ME);
        assert_ne!(a1, b1);
        assert_ne!(a1, a2);
        assert_eq!(registry.index("a", 1), Some(a1));
    }
}
