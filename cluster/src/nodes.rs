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
    known: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    by_name: HashMap<(String, u64), NodeIdx>,
    /// Index `i` names column `i + 1`.
    names: Vec<(String, u64)>,
}

impl NodeRegistry {
    /// The index of `node_id` at `generation`, allocated on first sight;
    /// `None` once every index is taken (65,535 incarnations: frames from
    /// new incarnations are then dropped and counted).
    pub fn index(&self, node_id: &str, generation: u64) -> Option<NodeIdx> {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = (node_id.to_string(), generation);
        if let Some(index) = known.by_name.get(&name) {
            return Some(*index);
        }
        let next = u16::try_from(known.names.len() + 1).ok()?;
        known.by_name.insert(name.clone(), NodeIdx(next));
        known.names.push(name);
        Some(NodeIdx(next))
    }

    /// The node id and generation behind a peer's column.
    pub fn incarnation(&self, index: NodeIdx) -> Option<(String, u64)> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.names.get((index.0 as usize).checked_sub(1)?).cloned()
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
        assert_eq!(registry.incarnation(a2), Some(("a".to_string(), 2)));
        assert_eq!(registry.incarnation(ME), None);
    }
}
