//! Helpers shared by integration tests.

pub mod nodes;
pub mod sim;
