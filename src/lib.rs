//! weir: a clustered, in-memory API rate limiter.
//!
//! Every node decides locally, in well under a microsecond, from counters it
//! keeps as CRDTs; nodes replicate those counters to each other, so a cluster
//! enforces approximately global limits with no Redis and no leader.
//!
//! # Layout
//! Read it bottom up:
//! - [`clock`]: time as a trait; quanta in production, manual in tests.
//! - [`limiter`]: the pure algorithms (token bucket, sliding window) over the
//!   replicated slot counters of the `weir-cluster` crate, and rate strings.
//! - [`key`]: what a key is (scope and attributes) and its one text
//!   encoding.
//! - [`policy`]: policies, tiers, endpoint rules and limits, compiled.
//! - [`config`]: the TOML config file, validated with line-level errors,
//!   the built-in default, and the file a node reads and reloads.
//! - [`store`]: the sharded map from key to limit states, with expiry and
//!   caps on tracked keys and on the memory they take.
//! - [`engine`]: the decision path: resolve a request, ask every limit,
//!   count all or nothing; atomic config swaps and tier assignments.
//! - [`cluster`]: a node in a cluster: gossip membership, the counter and
//!   config sync, and the member list (the accuracy rules are in
//!   [`engine::share`]).
//! - [`usage`]: usage analytics beside the engine: a recorder per store
//!   shard (fed through [`engine::hook`]), heavy hitters, the per-node
//!   history, and reports merged across the cluster.
//! - [`alerts`]: abuse rules fired once per key per cooldown cluster-wide,
//!   penalties and signed webhooks; [`net`] is their outbound TCP seam.
//! - [`snapshot`]: state saved to Redis or a file on an interval and at
//!   shutdown, merged back in at start.
//! - [`redact`]: how API tokens show wherever keys are shown.
//! - [`server`]: HTTP (axum) with rate-limit headers, admin endpoints, the
//!   usage API and dashboard, metrics, and graceful shutdown.
//! - `main.rs`: the `weir` command line.

pub mod alerts;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod key;
pub mod limiter;
pub mod net;
pub mod policy;
pub mod protocol;
pub mod redact;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod usage;
