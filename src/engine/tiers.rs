//! Tier assignments made at runtime (`PUT /v1/tiers/{token|user}/{id}`).
//!
//! They sit on top of the assignments declared in the config and survive a
//! config reload: the file says what is always true, the API records what
//! changed since. Bounded, so that the table cannot grow without end.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::request::MAX_VALUE;

/// Most runtime assignments of each kind.
pub const MAX_ASSIGNMENTS: usize = 1_000_000;

/// What an assignment is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// An API token.
    Token,
    /// A user.
    User,
}

/// Why an assignment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// The id is empty or too long.
    #[error("the id must be 1-256 bytes")]
    BadId,
    /// No policy has the tier.
    #[error("no policy has a tier {0:?}")]
    UnknownTier(String),
    /// The table is full.
    #[error("the table of runtime tier assignments is full ({MAX_ASSIGNMENTS} entries)")]
    Full,
}

type Table = HashMap<String, CompactString>;

/// Runtime assignments, token and user.
#[derive(Debug, Default)]
pub struct TierOverlay {
    tokens: RwLock<Table>,
    users: RwLock<Table>,
    /// Entries in both tables: lets a check skip the locks while the
    /// overlay is empty, as it usually is.
    entries: AtomicUsize,
}

impl TierOverlay {
    fn table(&self, subject: Subject) -> &RwLock<Table> {
        match subject {
            Subject::Token => &self.tokens,
            Subject::User => &self.users,
        }
    }

    /// The tier assigned to `id`, if any.
    pub fn get(&self, subject: Subject, id: &str) -> Option<CompactString> {
        if self.entries.load(Ordering::Acquire) == 0 {
            return None;
        }
        let table = self.table(subject).read().unwrap_or_else(PoisonError::into_inner);
        table.get(id).cloned()
    }

    /// Assigns `tier` to `id`; `tier_exists` says whether any policy has it.
    ///
    /// # Errors
    /// [`AssignError`] for a bad id, an unknown tier or a full table.
    pub fn set(&self, subject: Subject, id: &str, tier: &str, tier_exists: bool) -> Result<(), AssignError> {
        if id.is_empty() || id.len() > MAX_VALUE {
            return Err(AssignError::BadId);
        }
        if !tier_exists {
            return Err(AssignError::UnknownTier(tier.into()));
        }
        let mut table = self
            .table(subject)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if table.len() >= MAX_ASSIGNMENTS && !table.contains_key(id) {
            return Err(AssignError::Full);
        }
        if table.insert(id.into(), tier.into()).is_none() {
            self.entries.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Removes the assignment of `id`; true if there was one.
    pub fn remove(&self, subject: Subject, id: &str) -> bool {
        let mut table = self
            .table(subject)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        table.remove(id).is_some()
    }

    /// Every runtime assignment of `subject`, sorted.
    pub fn list(&self, subject: Subject) -> BTreeMap<String, CompactString> {
        let table = self.table(subject).read().unwrap_or_else(PoisonError::into_inner);
        table.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
