//! Helpers shared by integration tests.

pub mod nodes;
pub mod redis;
pub mod sim;
pub mod webhooks;
