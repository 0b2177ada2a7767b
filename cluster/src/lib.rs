//! weir's cluster layer: the replicated counters every node keeps, and (as the
//! cluster work lands) membership and the peer channel that carries them.
//!
//! This crate knows nothing of HTTP, policies or rate-limit algorithms. It
//! offers a counter whose merge is a CRDT merge; the `weir` crate decides what
//! the counts mean.
//!
//! # Layout
//! - [`counter`]: [`SlotCounter`], a ring of time slots by node columns with
//!   max-merge, and the [`NodeIdx`] that names a column.

pub mod counter;

pub use counter::{Column, Epoch, NodeIdx, SlotCounter, RING};
