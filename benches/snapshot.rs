//! Snapshots of a node holding 1M keys: how long taking, writing (file and
//! a real redis-server) and restoring take, how large the snapshot is, and
//! check latency on another thread while a snapshot is taken, against the
//! same checks with no snapshot running.
//!
//! `cargo bench --bench snapshot` (SNAPSHOT_KEYS sets the key count).

#[path = "../tests/support/nodes.rs"]
mod nodes;
#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::clock::QuantaClock;
use weir::config::Config;
use weir::engine::{CheckRequest, Engine, RequestKey};
use weir::snapshot::file::FileStore;
use weir::snapshot::format::{decode_manifest, Digest};
use weir::snapshot::redis::RedisStore;
use weir::snapshot::state::{config_digest, give_back, take, Identity};
use weir::snapshot::Stored;

const CONFIG: &str = r#"
[store]
max_keys = 2_000_000
[policies.per_user]
key = ["user"]
default_tier = "free"
[policies.per_user.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "1000/hour" }]
"#;

fn request(i: usize) -> CheckRequest {
    let key = RequestKey {
        user: Some(format!("user-{i:07}")),
        ..RequestKey::default()
    };
    CheckRequest::policy("per_user", key)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Checks random existing keys on another thread until `stop`; returns
/// each check's latency.
fn checker(
    engine: Arc<Engine>,
    keys: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let requests: Vec<CheckRequest> = (0..4096).map(|i| request(i * 7919 % keys)).collect();
        let mut latencies = Vec::with_capacity(1 << 22);
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let _ = engine.check(&requests[i % requests.len()]);
            latencies.push(started.elapsed());
            i += 1;
        }
        latencies
    })
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    println!(
        "{what:<28} {:>9} checks  p50 {:>8.2?}  p99 {:>8.2?}  p99.9 {:>8.2?}  max {:>8.2?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or_default(),
    );
}

/// Merges `stored` into a fresh engine and prints how long reading it
/// (`read`) and merging it took.
fn restore(store: &str, read: Duration, stored: &Stored, clock: &Arc<QuantaClock>, base: Digest) {
    let fresh = Engine::new(Config::parse(CONFIG).unwrap(), clock.clone());
    let started = Instant::now();
    let manifest = decode_manifest(&stored.manifest).unwrap();
    let restored = give_back(&fresh, None, &manifest, &stored.chunks, base).unwrap();
    println!(
        "{store} restore: read {read:?}, verify and merge {:?} ({} keys)",
        started.elapsed(),
        restored.keys
    );
}

fn main() {
    let keys: usize = std::env::var("SNAPSHOT_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let clock = Arc::new(QuantaClock::new());
    let engine = Arc::new(Engine::new(Config::parse(CONFIG).unwrap(), clock.clone()));
    for i in 0..keys {
        engine.check(&request(i)).unwrap();
    }
    let identity = Identity {
        cluster_id: "bench".into(),
        node_id: "bench-node".into(),
    };
    let base = config_digest(&engine.config());
    println!("{keys} keys tracked");

    // Check latency with nothing else running, then during snapshots.
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = checker(engine.clone(), keys, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let quiet = quiet.join().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let busy = checker(engine.clone(), keys, stop.clone());
    let mut takes = Vec::new();
    let mut taken = None;
    for _ in 0..3 {
        let started = Instant::now();
        taken = Some(take(&engine, None, &identity, base));
        takes.push(started.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let busy = busy.join().unwrap();
    let taken = taken.unwrap();
    report("checks, no snapshot", quiet);
    report("checks, during snapshots", busy);
    println!(
        "take: {:?} each (3 runs); {} keys, {} chunks, {:.1} MB ({:.0} B/key)",
        takes,
        taken.keys,
        taken.chunks.len(),
        taken.bytes() as f64 / 1e6,
        taken.bytes() as f64 / taken.keys.max(1) as f64
    );

    let dir = std::env::temp_dir().join(format!("weir-snapshot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = FileStore::new(dir.join("weir.snapshot"));
    let started = Instant::now();
    file.save(&taken.manifest, &taken.chunks).unwrap();
    println!("file write (fsync'd): {:?}", started.elapsed());

    let started = Instant::now();
    let stored = file.load().unwrap().unwrap();
    restore("file", started.elapsed(), &stored, &clock, base);
    let _ = std::fs::remove_dir_all(&dir);

    let redis = redis_server::Redis::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut store = RedisStore::new(&redis.url(), "bench", "bench-node").unwrap();
        let started = Instant::now();
        let ttl = Duration::from_secs(7200);
        store.save(1, &taken.manifest, &taken.chunks, ttl).await.unwrap();
        println!("redis write: {:?}", started.elapsed());
        let started = Instant::now();
        let stored = store.load().await.unwrap().unwrap();
        restore("redis", started.elapsed(), &stored, &clock, base);
    });
}
