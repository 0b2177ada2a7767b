//! Snapshots: counts, tier assignments, the runtime config and alert
//! cooldowns saved to Redis or a file on an interval and at shutdown, and
//! merged back in at start. Never on the request path: a store that is
//! slow or down costs a failed save, never a check.
//!
//! - [`format`]: versioned, chunked frames with digests.
//! - [`state`]: taking a snapshot from a node and giving one back.
//! - [`file`] and [`redis`]: the two stores, each written so that a crash
//!   mid-save leaves the last good snapshot readable.
//!
//! The rule that matters most: nothing is written before the restore has
//! succeeded, found nothing, or been given up on because the store could
//! not be reached (and then a later save first merges what the store
//! holds). A snapshot that cannot be read is never written over: saving
//! stops until an operator removes it.

pub mod file;
pub mod format;
pub mod redis;
pub mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use tracing::{debug, error, info, warn};

use crate::alerts::Alerts;
use crate::config::Config;
use crate::engine::Engine;
use file::FileStore;
use format::{decode_manifest, Digest, FormatError};
use redis::RedisStore;
pub use state::{Identity, Restored, Taken};

/// Added to the longest window a saved key needs, for a Redis key's TTL.
pub const TTL_MARGIN: Duration = Duration::from_secs(3600);
/// How long the final snapshot at shutdown may take.
pub const FINAL_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between attempts to reach the store at start.
const RETRY: Duration = Duration::from_millis(250);

/// A snapshot as stored: the manifest frame and the chunk frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The manifest frame.
    pub manifest: Vec<u8>,
    /// The chunk frames, in order.
    pub chunks: Vec<Vec<u8>>,
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer, or failed: try again later.
    #[error("{0}")]
    Unreachable(String),
    /// The store answered with a snapshot that cannot be used.
    #[error("snapshot refused: {0}")]
    Format(#[from] FormatError),
}

/// Where snapshots go, from `--snapshot`.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://…` or `rediss://…`.
    Redis(String),
    /// `file:///path`.
    File(PathBuf),
}

impl Target {
    /// Parses `redis://[user:pass@]host:port/db`, `rediss://…` or
    /// `file:///path`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Target::Redis(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() || path.ends_with('/') {
                return Err(
                    "a file:// snapshot URL needs a file path, as in file:///var/lib/weir/snapshot".into(),
                );
            }
            return Ok(Target::File(PathBuf::from(path)));
        }
        Err("the snapshot URL must start with redis://, rediss:// or file://".into())
    }

    /// Checks what can be checked before the first save: a file's directory
    /// exists (a Redis server may come up later).
    ///
    /// # Errors
    /// A message naming the missing directory.
    pub fn check_local(&self) -> Result<(), String> {
        let Target::File(path) = self else {
            return Ok(());
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        match dir.is_dir() {
            true => Ok(()),
            false => Err(format!(
                "the snapshot directory {} does not exist (create it, or mount a volume there)",
                dir.display()
            )),
        }
    }

    /// For logs: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Target::File(path) => format!("file://{}", path.display()),
            Target::Redis(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host}")
            }
        }
    }
}

impl std::fmt::Debug for Target {
    /// As [`describe`](Self::describe): a Redis URL's password never
    /// reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// How snapshots are taken.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where they go.
    pub target: Target,
    /// Time between saves.
    pub interval: Duration,
    /// How long to wait at start for an unreachable store.
    pub wait: Duration,
    /// Whose snapshot it is.
    pub identity: Identity,
}

enum Backend {
    File(FileStore),
    Redis(Box<RedisStore>),
}

impl Backend {
    async fn load(&mut self) -> Result<Option<Stored>, StoreError> {
        match self {
            Backend::File(store) => {
                let store = store.clone();
                blocking(move || store.load()).await
            }
            Backend::Redis(store) => store.load().await,
        }
    }

    async fn present(&mut self) -> Result<bool, StoreError> {
        match self {
            Backend::File(store) => store.present(),
            Backend::Redis(store) => store.present().await,
        }
    }

    async fn save(&mut self, taken: Arc<Taken>, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Backend::File(store) => {
                let store = store.clone();
                blocking(move || store.save(&taken.manifest, &taken.chunks)).await
            }
            Backend::Redis(store) => {
                let taken_at_ms = taken.taken_at / crate::clock::MILLI;
                store.save(taken_at_ms, &taken.manifest, &taken.chunks, ttl).await
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(StoreError::Unreachable(format!("snapshot task failed: {error}"))))
}

/// Where the restore stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Reading the store at start; `/readyz` says not ready.
    Restoring,
    /// A snapshot was merged in.
    Restored,
    /// The store held no snapshot.
    Empty,
    /// The store could not be reached within the wait: started empty; the
    /// next save merges what the store holds first.
    Unreachable,
    /// The stored snapshot cannot be read; it is never written over.
    Refused(String),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Restoring => "restoring",
            Phase::Restored => "restored",
            Phase::Empty => "empty",
            Phase::Unreachable => "unreachable",
            Phase::Refused(_) => "refused",
        }
    }

    /// Every phase a metric reports.
    const NAMES: [&'static str; 5] = ["restoring", "restored", "empty", "unreachable", "refused"];
}

#[derive(Debug)]
struct Status {
    phase: Phase,
    restored: Option<Restored>,
    restore_took: Option<Duration>,
    last_error: Option<String>,
}

/// Counters for metrics.
#[derive(Debug, Default)]
struct Stats {
    saves: AtomicU64,
    save_failures: AtomicU64,
    restore_failures: AtomicU64,
    last_success_ns: AtomicU64,
    last_duration_ns: AtomicU64,
    last_bytes: AtomicU64,
    last_keys: AtomicU64,
}

/// Numbers for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotMetrics {
    /// Saves that succeeded.
    pub saves: u64,
    /// Saves that failed.
    pub save_failures: u64,
    /// Attempts to read the store that failed (unreachable or refused).
    pub restore_failures: u64,
    /// Unix seconds of the last successful save; 0 before the first.
    pub last_success: f64,
    /// Seconds the last successful save took, taking and writing.
    pub last_duration: f64,
    /// Bytes of the last successful save.
    pub last_bytes: u64,
    /// Keys in the last successful save.
    pub last_keys: u64,
    /// Keys merged in at restore.
    pub restored_keys: u64,
    /// Seconds the restore took.
    pub restore_duration: f64,
    /// Where the restore stands: one of `restoring`, `restored`, `empty`,
    /// `unreachable`, `refused`.
    pub phase: &'static str,
    /// Every phase name, for a one-hot gauge.
    pub phases: [&'static str; 5],
}

/// The snapshot keeper of one node.
pub struct Snapshots {
    engine: Arc<Engine>,
    alerts: OnceLock<Arc<Alerts>>,
    settings: Settings,
    backend: tokio::sync::Mutex<Backend>,
    status: Mutex<Status>,
    /// Digest of the config file weir loaded (see [`state::config_digest`]).
    base: Mutex<Digest>,
    stats: Stats,
}

impl Snapshots {
    /// A keeper for `engine`; call [`run`](Self::run) to restore and save.
    ///
    /// # Errors
    /// An invalid Redis URL.
    pub fn new(engine: Arc<Engine>, settings: Settings) -> Result<Arc<Self>, String> {
        let backend = match &settings.target {
            Target::File(path) => Backend::File(FileStore::new(path.clone())),
            Target::Redis(url) => {
                let identity = &settings.identity;
                Backend::Redis(Box::new(RedisStore::new(
                    url,
                    &identity.cluster_id,
                    &identity.node_id,
                )?))
            }
        };
        let base = state::config_digest(&engine.config());
        Ok(Arc::new(Self {
            engine,
            alerts: OnceLock::new(),
            settings,
            backend: tokio::sync::Mutex::new(backend),
            status: Mutex::new(Status {
                phase: Phase::Restoring,
                restored: None,
                restore_took: None,
                last_error: None,
            }),
            base: Mutex::new(base),
            stats: Stats::default(),
        }))
    }

    /// Saves and restores alert cooldowns too.
    pub fn set_alerts(&self, alerts: Arc<Alerts>) {
        let _ = self.alerts.set(alerts);
    }

    /// Notes the config weir just read from its file (at start, on SIGHUP):
    /// a saved runtime config comes back only over this same file.
    pub fn note_config_file(&self, config: &Config) {
        *self.base.lock().unwrap_or_else(PoisonError::into_inner) = state::config_digest(config);
    }

    fn base(&self) -> Digest {
        *self.base.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, phase: Phase) {
        self.status().phase = phase;
    }

    /// False while the restore at start runs.
    pub fn ready(&self) -> bool {
        self.status().phase != Phase::Restoring
    }

    /// What `/readyz` shows.
    pub fn describe(&self) -> serde_json::Value {
        let status = self.status();
        let last_success = self.stats.last_success_ns.load(Ordering::Relaxed);
        let mut out = json!({
            "target": self.settings.target.describe(),
            "state": status.phase.name(),
            "saves": self.stats.saves.load(Ordering::Relaxed),
            "save_failures": self.stats.save_failures.load(Ordering::Relaxed),
            "last_success_unix_ms": (last_success > 0).then_some(last_success / 1_000_000),
        });
        if let Phase::Refused(reason) = &status.phase {
            out["refused"] = json!(reason);
        }
        if let Some(restored) = &status.restored {
            out["restored"] = json!({
                "keys": restored.keys,
                "skipped": restored.skipped,
                "tiers": restored.tiers,
                "cooldowns": restored.cooldowns,
                "config_version": restored.config_version,
                "taken_at_unix_ms": restored.taken_at / 1_000_000,
                "took_ms": status.restore_took.map(|d| d.as_millis() as u64),
            });
        }
        if let Some(error) = &status.last_error {
            out["last_error"] = json!(error);
        }
        out
    }

    /// Numbers for `/metrics`.
    pub fn metrics(&self) -> SnapshotMetrics {
        let status = self.status();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SnapshotMetrics {
            saves: load(&self.stats.saves),
            save_failures: load(&self.stats.save_failures),
            restore_failures: load(&self.stats.restore_failures),
            last_success: load(&self.stats.last_success_ns) as f64 / 1e9,
            last_duration: load(&self.stats.last_duration_ns) as f64 / 1e9,
            last_bytes: load(&self.stats.last_bytes),
            last_keys: load(&self.stats.last_keys),
            restored_keys: status.restored.as_ref().map_or(0, |r| r.keys),
            restore_duration: status.restore_took.map_or(0.0, |d| d.as_secs_f64()),
            phase: status.phase.name(),
            phases: Phase::NAMES,
        }
    }

    /// Restores (waiting up to the configured time for the store), then
    /// saves every interval until aborted.
    pub async fn run(self: Arc<Self>) {
        self.restore_at_start().await;
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.save().await;
        }
    }

    /// The last save, at shutdown, bounded by [`FINAL_DEADLINE`].
    pub async fn save_final(&self) {
        match tokio::time::timeout(FINAL_DEADLINE, self.save()).await {
            Ok(true) => info!("final snapshot saved"),
            Ok(false) => warn!("no final snapshot: the restore had not finished, a refused snapshot is in the way, or the store failed"),
            Err(_) => warn!(deadline = ?FINAL_DEADLINE, "final snapshot took too long; the last one stands"),
        }
    }

    async fn restore_at_start(&self) {
        let target = self.settings.target.describe();
        let deadline = Instant::now() + self.settings.wait;
        let mut backend = self.backend.lock().await;
        loop {
            match self.restore(&mut backend).await {
                Ok(()) => return,
                Err(StoreError::Unreachable(error)) if Instant::now() < deadline => {
                    debug!(%error, "snapshot store not reachable yet");
                    tokio::time::sleep(RETRY).await;
                }
                Err(StoreError::Unreachable(error)) => {
                    error!(
                        %target, %error, wait = ?self.settings.wait,
                        "snapshot store unreachable: starting empty; will merge what it holds and save once it answers"
                    );
                    self.set_phase(Phase::Unreachable);
                    return;
                }
                Err(StoreError::Format(refused)) => {
                    error!(
                        %target, error = %refused,
                        "refusing the stored snapshot; starting empty and NOT saving over it: remove it to resume saving"
                    );
                    self.set_phase(Phase::Refused(refused.to_string()));
                    return;
                }
            }
        }
    }

    /// Reads the store and merges what it holds; sets the phase on success.
    async fn restore(&self, backend: &mut Backend) -> Result<(), StoreError> {
        let started = Instant::now();
        let loaded = backend
            .load()
            .await
            .inspect_err(|error| self.failed_restore(error))?;
        let Some(stored) = loaded else {
            info!(target = %self.settings.target.describe(), "no snapshot stored yet");
            self.set_phase(Phase::Empty);
            return Ok(());
        };
        let engine = self.engine.clone();
        let alerts = self.alerts.get().cloned();
        let base = self.base();
        let applied = tokio::task::spawn_blocking(move || {
            let manifest = decode_manifest(&stored.manifest)?;
            state::give_back(&engine, alerts.as_deref(), &manifest, &stored.chunks, base)
        })
        .await
        .unwrap_or_else(|error| Err(FormatError::Corrupt(format!("restore task failed: {error}"))));
        let restored = applied
            .map_err(StoreError::Format)
            .inspect_err(|e| self.failed_restore(e))?;
        let took = started.elapsed();
        info!(
            keys = restored.keys,
            skipped = restored.skipped,
            tiers = restored.tiers,
            cooldowns = restored.cooldowns,
            config_version = restored.config_version,
            age_s = self.engine.now().saturating_sub(restored.taken_at) / crate::clock::SECOND,
            took_ms = took.as_millis() as u64,
            "snapshot restored"
        );
        let mut status = self.status();
        status.phase = Phase::Restored;
        status.restored = Some(restored);
        status.restore_took = Some(took);
        Ok(())
    }

    fn failed_restore(&self, error: &StoreError) {
        self.stats.restore_failures.fetch_add(1, Ordering::Relaxed);
        self.status().last_error = Some(error.to_string());
    }

    /// One save, if the restore allows it; true when a snapshot was written.
    async fn save(&self) -> bool {
        let mut backend = self.backend.lock().await;
        let phase = self.status().phase.clone();
        match phase {
            Phase::Restoring => return false,
            Phase::Unreachable => match self.restore(&mut backend).await {
                Ok(()) => {}
                Err(StoreError::Format(refused)) => {
                    error!(error = %refused, "refusing the stored snapshot; NOT saving over it: remove it to resume saving");
                    self.set_phase(Phase::Refused(refused.to_string()));
                    return false;
                }
                Err(StoreError::Unreachable(error)) => {
                    self.failed_save(&error);
                    return false;
                }
            },
            Phase::Refused(_) => match backend.present().await {
                Ok(false) => {
                    info!("the refused snapshot is gone: saving again");
                    self.set_phase(Phase::Empty);
                }
                Ok(true) => return false,
                Err(error) => {
                    self.failed_save(&error.to_string());
                    return false;
                }
            },
            Phase::Restored | Phase::Empty => {}
        }
        let started = Instant::now();
        let engine = self.engine.clone();
        let alerts = self.alerts.get().cloned();
        let identity = self.settings.identity.clone();
        let base = self.base();
        let taken =
            tokio::task::spawn_blocking(move || state::take(&engine, alerts.as_deref(), &identity, base))
                .await;
        let Ok(taken) = taken else {
            self.failed_save("taking the snapshot failed");
            return false;
        };
        let taken = Arc::new(taken);
        let ttl = Duration::from_nanos(taken.longest).max(self.settings.interval) + TTL_MARGIN;
        match backend.save(taken.clone(), ttl).await {
            Ok(()) => {
                let stats = &self.stats;
                if stats.saves.fetch_add(1, Ordering::Relaxed) == 0
                    || self.status().last_error.take().is_some()
                {
                    info!(keys = taken.keys, bytes = taken.bytes(), "snapshot saved");
                }
                stats.last_success_ns.store(self.engine.now(), Ordering::Relaxed);
                stats
                    .last_duration_ns
                    .store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                stats.last_bytes.store(taken.bytes(), Ordering::Relaxed);
                stats.last_keys.store(taken.keys, Ordering::Relaxed);
                true
            }
            Err(error) => {
                self.failed_save(&error.to_string());
                false
            }
        }
    }

    /// Counts a failed save; logs the first of a run of failures.
    fn failed_save(&self, error: &str) {
        self.stats.save_failures.fetch_add(1, Ordering::Relaxed);
        let first = self.status().last_error.replace(error.to_string()).is_none();
        if first {
            warn!(%error, target = %self.settings.target.describe(), "snapshot not saved; checks go on, retrying every interval");
        } else {
            debug!(%error, "snapshot not saved");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::QuantaClock;
    use crate::engine::{CheckRequest, RequestKey};

    const CONFIG: &str = r#"
[policies.api]
key = ["user"]
default_tier = "free"
[policies.api.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "100/hour" }]
"#;

    fn engine() -> Arc<Engine> {
        Arc::new(Engine::new(
            Config::parse(CONFIG).unwrap(),
            Arc::new(QuantaClock::new()),
        ))
    }

    fn check(engine: &Engine) -> u64 {
        let key = RequestKey {
            user: Some("ann".into()),
            ..RequestKey::default()
        };
        engine
            .check(&CheckRequest::policy("api", key))
            .unwrap()
            .remaining
            .unwrap()
    }

    fn settings(path: &std::path::Path) -> Settings {
        Settings {
            target: Target::File(path.to_path_buf()),
            interval: Duration::from_millis(50),
            wait: Duration::from_millis(200),
            identity: Identity {
                cluster_id: "c".into(),
                node_id: "n".into(),
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_unreachable_at_start_is_merged_before_the_first_save() {
        let dir = std::env::temp_dir().join(format!("weir-snapshot-late-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The store's directory is a link to a plain file: reading fails as
        // an unreachable store does. Moving the link to a real directory
        // brings the store back in one step.
        std::fs::create_dir_all(dir.join("real")).unwrap();
        std::fs::write(dir.join("blocker"), b"").unwrap();
        std::os::unix::fs::symlink(dir.join("blocker"), dir.join("store")).unwrap();
        let path = dir.join("store").join("snapshot");

        let earlier = engine();
        for _ in 0..30 {
            check(&earlier);
        }
        let base = state::config_digest(&earlier.config());
        let taken = state::take(&earlier, None, &settings(&path).identity, base);

        let engine = engine();
        let snapshots = Snapshots::new(engine.clone(), settings(&path)).unwrap();
        let running = tokio::spawn(snapshots.clone().run());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(snapshots.metrics().phase, "unreachable");
        assert!(snapshots.ready());
        assert_eq!(check(&engine), 99);
        assert!(snapshots.metrics().save_failures > 0);

        // The store comes back holding the earlier snapshot.
        let real = FileStore::new(dir.join("real").join("snapshot"));
        real.save(&taken.manifest, &taken.chunks).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("next")).unwrap();
        std::fs::rename(dir.join("next"), dir.join("store")).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let metrics = snapshots.metrics();
        assert_eq!((metrics.phase, metrics.restored_keys), ("restored", 1));
        assert!(metrics.saves > 0);
        assert_eq!(check(&engine), 68);
        running.abort();
    }

    #[test]
    fn urls_parse_and_never_show_a_password() {
        let redis = Target::parse("redis://weir:s3cret@cache:6379/2").unwrap();
        assert_eq!(redis.describe(), "redis://cache:6379/2");
        assert_eq!(
            Target::parse("file:///var/lib/weir/snap").unwrap(),
            Target::File("/var/lib/weir/snap".into())
        );
        assert!(Target::parse("file:///var/lib/").is_err());
        assert!(Target::parse("postgres://x").is_err());
        assert!(!format!("{redis:?}").contains("s3cret"));
    }
}
