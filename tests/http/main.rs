//! The HTTP API in process: the real router and engine, a manual clock, and
//! requests through `tower::ServiceExt::oneshot`. Deterministic, so that
//! exact counts, headers and retry times can be asserted.

mod admin;
mod checks;
mod concurrency;
mod credits;
mod errors;
mod harness;
mod openapi;
mod problems;
mod settle;
mod shadow;
mod usage;
