//! What a store shard shows the room that watches its decisions (usage
//! analytics): every decision, under the shard's lock, so recording takes
//! no lock, no atomic and no shared cache line of its own. Defined here,
//! where it is called; the engine re-exports it in `engine::hook`.

use std::any::Any;

use crate::key::Scope;

/// One decision, as a recorder sees it. Borrowed: recording copies only
/// what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct CheckEvent<'a> {
    /// Policy and tier, or the inline namespace.
    pub scope: Scope<'a>,
    /// The store key ([`crate::key`]).
    pub key: &'a str,
    /// The store's hash of `key`.
    pub key_hash: u64,
    /// Every limit had room.
    pub allowed: bool,
    /// Units the request asked for (counted only if allowed).
    pub cost: u32,
    /// The scope is named in the config (a policy, or a namespace a rule
    /// names): recorders keep it apart however many others there are.
    pub named: bool,
    /// Shadow limits that would have denied a check the enforced limits
    /// allowed (empty but for those).
    pub shadow_denied: &'a [&'a str],
}

/// Receives the decisions made on one store shard, under its lock.
///
/// `Any` lets the room that installed it reach its own type again when it
/// drains.
pub trait Recorder: Any + Send {
    /// Called once per decision; must be quick: it runs on the check path.
    fn record(&mut self, event: &CheckEvent<'_>);
}

/// Makes one recorder per shard.
pub type RecorderFactory = dyn Fn() -> Box<dyn Recorder> + Send + Sync;
