//! The narrow hook through which the engine reports what it decided.
//!
//! Rooms above the engine (usage analytics today) want to see every
//! decision without the engine knowing them. They install a [`Recorder`] per
//! store shard; the engine calls it while it already holds that shard's lock,
//! so recording takes no lock, no atomic and no shared cache line of its own,
//! and a reader drains the recorders shard by shard
//! ([`Engine::visit_recorders`](super::Engine::visit_recorders)).

use std::any::Any;

use super::decision::Scope;

/// One decision, as a recorder sees it. Borrowed: recording copies only
/// what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct CheckEvent<'a> {
    /// Policy and tier, or the inline namespace.
    pub scope: Scope<'a>,
    /// The store key (layout in `engine::resolve`).
    pub key: &'a str,
    /// The store's hash of `key`.
    pub key_hash: u64,
    /// Every limit had room.
    pub allowed: bool,
    /// Units the request asked for (counted only if allowed).
    pub cost: u32,
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
