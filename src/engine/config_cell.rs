//! The config in force, swapped atomically, read on the check path through
//! a copy per thread: a check then costs one plain atomic load instead of a
//! shared reference count or a hazard slot.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;

thread_local! {
    /// This thread's copy of the config in force, with the cell and swap it
    /// belongs to.
    static SNAPSHOT: RefCell<Option<Snapshot>> = const { RefCell::new(None) };
}

struct Snapshot {
    cell: u64,
    swap: u64,
    config: Arc<Config>,
}

/// Tells cells apart in the thread-local snapshot.
static NEXT_CELL_ID: AtomicU64 = AtomicU64::new(1);

/// A config that checks read and a swap replaces.
pub(super) struct ConfigCell {
    id: u64,
    config: ArcSwap<Config>,
    /// Grows with every swap: what thread snapshots compare.
    swaps: AtomicU64,
}

impl ConfigCell {
    pub fn new(config: Config) -> Self {
        Self {
            id: NEXT_CELL_ID.fetch_add(1, Ordering::Relaxed),
            config: ArcSwap::from_pointee(config),
            swaps: AtomicU64::new(1),
        }
    }

    /// The config in force, shared.
    pub fn load_full(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Puts `config` in force: the next read on any thread sees it.
    pub fn replace(&self, config: Config) {
        self.config.store(Arc::new(config));
        self.swaps.fetch_add(1, Ordering::SeqCst);
    }

    /// Runs `f` with the config in force, borrowed from this thread's
    /// snapshot when it is current. A re-entrant call (from inside `f`) that
    /// finds the snapshot stale uses the shared copy instead.
    pub fn with<R>(&self, f: impl FnOnce(&Config) -> R) -> R {
        let swap = self.swaps.load(Ordering::Acquire);
        let current = |s: &Option<Snapshot>| matches!(s, Some(s) if s.cell == self.id && s.swap == swap);
        SNAPSHOT.with(|cell| {
            // Refreshed only when stale, so a check borrows it once.
            if !cell.try_borrow().is_ok_and(|slot| current(&slot)) {
                if let Ok(mut slot) = cell.try_borrow_mut() {
                    *slot = Some(Snapshot {
                        cell: self.id,
                        swap,
                        config: self.config.load_full(),
                    });
                }
            }
            match cell.try_borrow() {
                Ok(slot) if current(&slot) => match &*slot {
                    Some(snapshot) => f(&snapshot.config),
                    None => f(&self.config.load()),
                },
                _ => f(&self.config.load()),
            }
        })
    }
}
