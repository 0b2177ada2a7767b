//! Tier assignments made at runtime (`PUT /v1/tiers/{token|user}/{id}`).
//!
//! They sit on top of the assignments declared in the config and survive a
//! config reload: the file says what is always true, the API records what
//! changed since. Bounded, so that the table cannot grow without end.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

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

/// Most changes held for the cluster between two gossip rounds.
const MAX_PENDING_CHANGES: usize = 100_000;

/// A change made on this node, for the cluster to replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierChange {
    /// Token or user.
    pub subject: Subject,
    /// Its id.
    pub id: String,
    /// The tier assigned, or `None` for a removal.
    pub tier: Option<CompactString>,
}

/// Runtime assignments, token and user.
#[derive(Debug, Default)]
pub struct TierOverlay {
    tokens: RwLock<Table>,
    users: RwLock<Table>,
    /// Entries in both tables: lets a check skip the locks while the
    /// overlay is empty, as it usually is.
    entries: AtomicUsize,
    /// Changes made here, kept only once a cluster asked for them.
    changes: Mutex<Option<Vec<TierChange>>>,
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
        if !tier_exists {
            return Err(AssignError::UnknownTier(tier.into()));
        }
        self.apply(subject, id, Some(tier))?;
        self.note(subject, id, Some(tier));
        Ok(())
    }

    /// Removes the assignment of `id`; true if there was one.
    pub fn remove(&self, subject: Subject, id: &str) -> bool {
        let removed = self.apply(subject, id, None).unwrap_or(false);
        if removed {
            self.note(subject, id, None);
        }
        removed
    }

    /// Assigns (`Some`) or removes (`None`) without recording a change: how
    /// a change made on a peer is applied. Returns whether an entry was
    /// replaced or removed.
    ///
    /// # Errors
    /// [`AssignError`] for a bad id or a full table.
    pub fn apply(&self, subject: Subject, id: &str, tier: Option<&str>) -> Result<bool, AssignError> {
        if id.is_empty() || id.len() > MAX_VALUE {
            return Err(AssignError::BadId);
        }
        let mut table = self
            .table(subject)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(tier) = tier else {
            let removed = table.remove(id).is_some();
            if removed {
                self.entries.fetch_sub(1, Ordering::Release);
            }
            return Ok(removed);
        };
        if table.len() >= MAX_ASSIGNMENTS && !table.contains_key(id) {
            return Err(AssignError::Full);
        }
        let replaced = table.insert(id.into(), tier.into()).is_some();
        if !replaced {
            self.entries.fetch_add(1, Ordering::Release);
        }
        Ok(replaced)
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Option<Vec<TierChange>>> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, subject: Subject, id: &str, tier: Option<&str>) {
        if let Some(changes) = self.changes().as_mut() {
            if changes.len() < MAX_PENDING_CHANGES {
                changes.push(TierChange {
                    subject,
                    id: id.into(),
                    tier: tier.map(CompactString::from),
                });
            } else {
                tracing::warn!("too many tier changes between gossip rounds; this one stays on this node");
            }
        }
    }

    /// Starts recording changes for [`take_changes`](Self::take_changes).
    pub fn record_changes(&self) {
        self.changes().get_or_insert_with(Vec::new);
    }

    /// The changes made here since the last call.
    pub fn take_changes(&self) -> Vec<TierChange> {
        self.changes().as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Every runtime assignment of `subject`, sorted.
    pub fn list(&self, subject: Subject) -> BTreeMap<String, CompactString> {
        let table = self.table(subject).read().unwrap_or_else(PoisonError::into_inner);
        table.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
