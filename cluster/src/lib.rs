//! weir's cluster layer: the replicated counters every node keeps, the
//! membership gossip, and the authenticated datagrams that carry counts
//! between nodes.
//!
//! This crate knows nothing of HTTP, policies or rate-limit algorithms. It
//! offers a counter whose merge is a CRDT merge, a member list, and a sealed
//! frame format; the `weir` crate decides what the counts mean and when to
//! send them.
//!
//! # Layout
//! - [`counter`]: [`SlotCounter`], a ring of time slots by node columns with
//!   max-merge, and the [`NodeIdx`] that names a column.
//! - [`nodes`]: which column index stands for which node incarnation.
//! - [`frame`]: the counter-sync datagram and the keyring that seals every
//!   datagram (ChaCha20-Poly1305, keys from HKDF-SHA256).
//! - [`gossip`]: chitchat's messages sealed the same way, with a replay
//!   window.
//! - [`membership`]: chitchat gossip: members, liveness, small per-node
//!   values, and the cluster's shape as the accuracy rules need it.
//! - [`transport`]: datagram sockets as a trait, for simulation.

pub mod counter;
pub mod frame;
pub mod gossip;
pub mod membership;
pub mod nodes;
pub mod transport;

/// chitchat, re-exported so that a simulation can give the gossip its own
/// transport.
pub use chitchat;
pub use counter::{Column, Epoch, NodeIdx, SlotCounter, MAX_EPOCH, RING};
