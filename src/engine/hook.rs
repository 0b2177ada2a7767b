//! The narrow hooks through which the engine reports what it decided.
//!
//! - [`Recorder`]: every decision, per store shard (usage analytics).
//! - [`AlarmSink`]: a key reached an alert rule's threshold (abuse alerts).
//!
//! Rooms above the engine want to see what it decides without the engine
//! knowing them. Usage analytics install a [`Recorder`] per store shard; the engine calls it while it already holds that shard's lock,
//! so recording takes no lock, no atomic and no shared cache line of its own,
//! and a reader drains the recorders shard by shard
//! ([`Engine::visit_recorders`](super::Engine::visit_recorders)). Abuse
//! alerts set an [`AlarmSink`], called outside every lock and only for keys
//! past a rule's threshold.

pub use crate::store::{CheckEvent, Recorder, RecorderFactory};

/// A key whose count for an alert rule reached the rule's threshold, as this
/// node sees the cluster's count.
#[derive(Debug, Clone, Copy)]
pub struct Alarm<'a> {
    /// The rule's name.
    pub rule: &'a str,
    /// The checked key's alert identity: its store key without the tier
    /// ([`crate::key`]), the same whatever tier decided.
    pub key: &'a str,
    /// The count reached (at least the threshold).
    pub count: u64,
    /// When (Unix ns).
    pub at: crate::clock::Nanos,
}

/// Receives alarms. Called on the check path, outside every lock, once per
/// counted check at or past a threshold: it must only hand the alarm on.
pub trait AlarmSink: Send + Sync {
    /// One alarm.
    fn alarm(&self, alarm: &Alarm<'_>);
}
