//! Tier assignments made at runtime (`PUT /v1/tiers/{subject}/{id}`), for a
//! token, user, IP or endpoint, for good or until a time (a penalty).
//!
//! They sit on top of the assignments declared in the config and survive a
//! config reload: the file says what is always true, the API records what
//! changed since. Bounded, so that the table cannot grow without end; lapsed
//! assignments are ignored at once and swept with expired keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::request::MAX_VALUE;
use crate::clock::Nanos;
use crate::policy::KeyAttr;

/// Most runtime assignments of each kind.
pub const MAX_ASSIGNMENTS: usize = 1_000_000;

/// What an assignment is keyed by: any attribute a policy can key on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// An API token.
    Token,
    /// A user.
    User,
    /// A client IP (the usual scraper).
    Ip,
    /// An endpoint, such as `POST /orders`.
    Endpoint,
}

impl Subject {
    /// Every subject, in the order a check consults them.
    pub const ALL: [Subject; 4] = [Subject::Token, Subject::User, Subject::Ip, Subject::Endpoint];

    /// As in URLs and gossip: `token`, `user`, `ip`, `endpoint`.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Token => "token",
            Subject::User => "user",
            Subject::Ip => "ip",
            Subject::Endpoint => "endpoint",
        }
    }

    /// The subject called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The request attribute it matches.
    pub fn attr(self) -> KeyAttr {
        match self {
            Subject::Token => KeyAttr::Token,
            Subject::User => KeyAttr::User,
            Subject::Ip => KeyAttr::Ip,
            Subject::Endpoint => KeyAttr::Endpoint,
        }
    }
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

/// A runtime assignment: a tier, until a time or for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The tier.
    pub tier: CompactString,
    /// Unix time (ns) when it lapses; `None` for good.
    pub until: Option<Nanos>,
}

impl Assigned {
    fn in_force(&self, now: Nanos) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

type Table = HashMap<String, Assigned>;

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
    /// When the assignment lapses (Unix ns), if it does.
    pub until: Option<Nanos>,
}

/// Runtime assignments, one table per subject.
#[derive(Debug, Default)]
pub struct TierOverlay {
    tables: [RwLock<Table>; 4],
    /// Entries in both tables: lets a check skip the locks while the
    /// overlay is empty, as it usually is.
    entries: AtomicUsize,
    /// Changes made here, kept only once a cluster asked for them.
    changes: Mutex<Option<Vec<TierChange>>>,
}

impl TierOverlay {
    fn table(&self, subject: Subject) -> &RwLock<Table> {
        &self.tables[subject as usize]
    }

    /// No assignment at all, as usual: a check need not look.
    pub fn is_empty(&self) -> bool {
        self.entries.load(Ordering::Acquire) == 0
    }

    /// The assignment of `id` in force at `now`, if any.
    pub fn assigned(&self, subject: Subject, id: &str, now: Nanos) -> Option<Assigned> {
        if self.entries.load(Ordering::Acquire) == 0 {
            return None;
        }
        let table = self.table(subject).read().unwrap_or_else(PoisonError::into_inner);
        table.get(id).filter(|a| a.in_force(now)).cloned()
    }

    /// The tier assigned to `id` at `now`, if any.
    pub fn get(&self, subject: Subject, id: &str, now: Nanos) -> Option<CompactString> {
        self.assigned(subject, id, now).map(|a| a.tier)
    }

    /// Assigns `tier` to `id`, for good or `until` a time; `tier_exists`
    /// says whether any policy has the tier.
    ///
    /// # Errors
    /// [`AssignError`] for a bad id, an unknown tier or a full table.
    pub fn set(
        &self,
        subject: Subject,
        id: &str,
        tier: &str,
        tier_exists: bool,
        until: Option<Nanos>,
    ) -> Result<(), AssignError> {
        if !tier_exists {
            return Err(AssignError::UnknownTier(tier.into()));
        }
        self.apply(subject, id, Some(tier), until)?;
        self.note(subject, id, Some(tier), until);
        Ok(())
    }

    /// Removes the assignment of `id`; true if there was one.
    pub fn remove(&self, subject: Subject, id: &str) -> bool {
        let removed = self.apply(subject, id, None, None).unwrap_or(false);
        if removed {
            self.note(subject, id, None, None);
        }
        removed
    }

    /// Drops assignments that lapsed by `now`; returns how many. Every node
    /// drops them at the same time: `until` is absolute, so nothing needs
    /// replicating.
    pub fn sweep(&self, now: Nanos) -> usize {
        if self.entries.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut removed = 0;
        for table in &self.tables {
            let mut table = table.write().unwrap_or_else(PoisonError::into_inner);
            let before = table.len();
            table.retain(|_, a| a.in_force(now));
            removed += before - table.len();
        }
        self.entries.fetch_sub(removed, Ordering::Release);
        removed
    }

    /// Assigns (`Some`) or removes (`None`) without recording a change: how
    /// a change made on a peer is applied. Returns whether an entry was
    /// replaced or removed.
    ///
    /// # Errors
    /// [`AssignError`] for a bad id or a full table.
    pub fn apply(
        &self,
        subject: Subject,
        id: &str,
        tier: Option<&str>,
        until: Option<Nanos>,
    ) -> Result<bool, AssignError> {
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
        let assigned = Assigned {
            tier: tier.into(),
            until,
        };
        let replaced = table.insert(id.into(), assigned).is_some();
        if !replaced {
            self.entries.fetch_add(1, Ordering::Release);
        }
        Ok(replaced)
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Option<Vec<TierChange>>> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, subject: Subject, id: &str, tier: Option<&str>, until: Option<Nanos>) {
        if let Some(changes) = self.changes().as_mut() {
            if changes.len() < MAX_PENDING_CHANGES {
                changes.push(TierChange {
                    subject,
                    id: id.into(),
                    tier: tier.map(CompactString::from),
                    until,
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

    /// Every runtime assignment of `subject` in force at `now`, sorted.
    pub fn list(&self, subject: Subject, now: Nanos) -> BTreeMap<String, Assigned> {
        let table = self.table(subject).read().unwrap_or_else(PoisonError::into_inner);
        let in_force = table.iter().filter(|(_, a)| a.in_force(now));
        in_force.map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
