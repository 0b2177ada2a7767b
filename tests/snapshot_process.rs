//! Snapshots with real processes: `weir serve` against a real redis-server
//! (started here on a free port) or a file, killed with SIGKILL and started
//! again: counts, a drained bucket, a tier assignment and a runtime config
//! come back; a store that is down never stops checks; a snapshot that
//! cannot be read is refused and never written over; a crash mid-write
//! leaves the last good file readable.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::nodes::{config_file, free_tcp_port, Addrs, Launch, Node};
use support::redis::Redis;

const CONFIG: &str = r#"
[policies.hourly]
key = ["user"]
default_tier = "free"
[policies.hourly.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "1000/hour" }]
[policies.hourly.tiers.paid]
limits = [{ algorithm = "sliding_window", rate = "5000/hour" }]

[policies.bucket]
key = ["user"]
default_tier = "free"
[policies.bucket.tiers.free]
limits = [{ algorithm = "token_bucket", rate = "1/minute", burst = 50 }]
"#;

const TOKEN: &str = "snapshot-admin-token";

fn log_file(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("weir-snapshot-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Starts node `id` (standalone unless `cluster` is given) saving to `url`
/// every 200 ms.
fn start(id: &str, config: &Path, url: &str, log: Option<&Path>, more: &[&str]) -> Node {
    let mut extra = vec!["--snapshot", url, "--admin-token", TOKEN];
    if !more.contains(&"--snapshot-interval") {
        extra.extend(["--snapshot-interval", "200ms"]);
    }
    extra.extend_from_slice(more);
    let launch = Launch {
        extra: &extra,
        standalone: true,
        log,
        ..Launch::default()
    };
    Node::launch(id, config, Addrs::loopback(), &launch)
}

fn snapshot(node: &Node) -> Value {
    node.get("/readyz").unwrap_or_default()["snapshot"].clone()
}

fn saves(node: &Node) -> u64 {
    snapshot(node)["saves"].as_u64().unwrap_or(0)
}

/// Waits until `node` has saved `more` snapshots since now: one taken
/// after everything before this call.
fn wait_for_saves(node: &Node, more: u64) {
    let target = saves(node) + more;
    node.wait_until(Duration::from_secs(20), "saving", |n| saves(n) >= target);
}

fn request(policy: &str, user: &str) -> Value {
    json!({ "policy": policy, "key": { "user": user } })
}

/// Counts `count` units for `user` on `policy`, 25 to a batch.
fn spend(node: &Node, policy: &str, user: &str, count: usize) {
    for start in (0..count).step_by(25) {
        let checks: Vec<Value> = (start..count.min(start + 25))
            .map(|_| request(policy, user))
            .collect();
        let reply = node.post("/v1/check/batch", &json!({ "checks": checks }));
        assert_eq!(reply["allowed"], true, "{reply}");
    }
}

fn remaining(node: &Node, policy: &str, user: &str) -> u64 {
    let peek = request(policy, user);
    node.peek_remaining(&peek)
        .unwrap_or_else(|| panic!("no remaining for {peek}"))
}

fn metric(node: &Node, series: &str) -> f64 {
    node.metric(series)
}

/// Checks from another thread until dropped, as real traffic would.
struct Load {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Load {
    fn on(base: &str) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let (flag, url) = (running.clone(), format!("{base}/v1/check"));
        let thread = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(2)))
                .build()
                .into();
            let mut sent = 0;
            while flag.load(Ordering::Relaxed) {
                let body = json!({ "policy": "hourly", "key": { "user": format!("load-{}", sent % 500) } });
                if agent.post(&url).send_json(&body).is_ok() {
                    sent += 1;
                }
            }
            sent
        });
        Self {
            running,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts, a drained bucket, a tier assignment and a runtime config saved
/// to `url` survive SIGKILL under load.
fn survives_a_kill(url: &str, name: &str) {
    let config = config_file(name, CONFIG);
    let mut node = start("solo", &config, url, None, &[]);
    assert_eq!(snapshot(&node)["state"], "empty");

    let load = Load::on(&node.base);
    spend(&node, "hourly", "alice", 900);
    spend(&node, "bucket", "alice", 50);
    assert_eq!(node.put("/v1/tiers/user/vip", TOKEN, r#"{"tier":"paid"}"#), 200);
    let changed = CONFIG.replace("5000/hour", "6000/hour");
    assert_eq!(node.put("/v1/config", TOKEN, &changed), 200);
    wait_for_saves(&node, 2);
    // Under load, at once: whatever came after the last save is lost, the
    // bound docs/operations.md gives.
    node.kill();
    drop(load);

    let node = start("solo", &config, url, None, &[]);
    let state = snapshot(&node);
    assert_eq!(state["state"], "restored", "{state}");
    assert!(state["restored"]["keys"].as_u64().unwrap() >= 2, "{state}");
    assert_eq!(remaining(&node, "hourly", "alice"), 100);
    assert_eq!(remaining(&node, "bucket", "alice"), 0);
    let tiers = node.get_as("/v1/tiers", TOKEN).unwrap();
    assert_eq!(tiers["users"]["vip"], "paid", "{tiers}");
    let running = node.get_as("/v1/config", TOKEN).unwrap_or_default();
    assert_eq!(running["version"], 2, "{running}");
    let paid = &running["config"]["policies"]["hourly"]["tiers"]["paid"]["limits"][0]["rate"];
    assert_eq!(paid, "6000/hour", "{running}");
    assert_eq!(metric(&node, "weir_snapshot_state{state=\"restored\"}"), 1.0);
}

#[test]
fn counts_a_drained_bucket_a_tier_and_a_runtime_config_survive_a_kill_with_redis() {
    let redis = Redis::start();
    survives_a_kill(&redis.url(), "snapshot-kill-redis");
}

#[test]
fn counts_a_drained_bucket_a_tier_and_a_runtime_config_survive_a_kill_with_a_file() {
    let path = std::env::temp_dir().join(format!("weir-snapshot-kill-{}.snapshot", std::process::id()));
    let _ = std::fs::remove_file(&path);
    survives_a_kill(&format!("file://{}", path.display()), "snapshot-kill-file");
}

#[test]
fn a_whole_cluster_killed_comes_back_with_the_cluster_wide_count() {
    let redis = Redis::start();
    let config = config_file("snapshot-cluster", CONFIG);
    let extra = ["--snapshot", &redis.url(), "--snapshot-interval", "200ms"];
    let ids = ["node-0", "node-1", "node-2"];
    let start_all = || {
        let first = Node::start(ids[0], &config, &[], &extra);
        let seeds = vec![first.gossip.clone()];
        let mut nodes = vec![first];
        for id in &ids[1..] {
            nodes.push(Node::start(id, &config, &seeds, &extra));
        }
        for node in &nodes {
            node.wait_until(Duration::from_secs(30), "seeing every member", |n| {
                n.live_members().len() == 3
            });
        }
        nodes
    };
    let mut nodes = start_all();
    // One by one, pausing when refused: within a sync interval a node may
    // spend only its share of what is left (docs/consistency.md).
    for node in &nodes {
        let mut admitted = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while admitted < 300 {
            assert!(Instant::now() < deadline, "300 admitted on {}", node.id);
            match node.check(&request("hourly", "shared")) {
                true => admitted += 1,
                false => std::thread::sleep(Duration::from_millis(60)),
            }
        }
    }
    for node in &nodes {
        node.wait_until(Duration::from_secs(10), "hearing every node's counts", |n| {
            remaining(n, "hourly", "shared") == 100
        });
    }
    for node in &nodes {
        wait_for_saves(node, 2);
    }
    for node in &mut nodes {
        node.kill();
    }

    let nodes = start_all();
    for node in &nodes {
        assert_eq!(snapshot(node)["state"], "restored", "{}", node.id);
        assert_eq!(remaining(node, "hourly", "shared"), 100, "{}", node.id);
    }
    // The same counts, relayed between the restarted nodes, are not added
    // twice.
    std::thread::sleep(Duration::from_secs(2));
    for node in &nodes {
        assert_eq!(remaining(node, "hourly", "shared"), 100, "{}", node.id);
    }
    // One Redis key space per node.
    let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("weir:weir:*:snapshot"));
    assert_eq!(keys.len(), 3, "{keys:?}");
}

#[test]
fn a_store_that_is_down_never_stops_checks_and_saving_resumes_when_it_is_back() {
    let port = free_tcp_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let config = config_file("snapshot-down", CONFIG);
    let started = Instant::now();
    let node = start("down", &config, &url, None, &["--snapshot-wait", "1s"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(snapshot(&node)["state"], "unreachable");
    spend(&node, "hourly", "bob", 10);
    node.wait_until(Duration::from_secs(10), "counting failed saves", |n| {
        metric(n, "weir_snapshot_failures_total{stage=\"save\"}") >= 2.0
    });
    assert_eq!(saves(&node), 0);

    let mut redis = Redis::start_on(port);
    wait_for_saves(&node, 1);
    assert_eq!(snapshot(&node)["state"], "empty");

    redis.kill();
    let failures = metric(&node, "weir_snapshot_failures_total{stage=\"save\"}");
    spend(&node, "hourly", "bob", 10);
    node.wait_until(Duration::from_secs(10), "counting failed saves", |n| {
        metric(n, "weir_snapshot_failures_total{stage=\"save\"}") >= failures + 2.0
    });
    assert_eq!(remaining(&node, "hourly", "bob"), 980);

    let redis = Redis::start_on(port);
    wait_for_saves(&node, 2);
    assert!(redis.get("weir:weir:down:snapshot").is_some());
}

/// Saves a snapshot with one key to `redis` under node id `id`, then kills
/// the node.
fn saved_snapshot(redis: &Redis, config: &Path, id: &str) {
    let mut node = start(id, config, &redis.url(), None, &[]);
    spend(&node, "hourly", "carol", 5);
    wait_for_saves(&node, 2);
    node.kill();
}

fn manifest_key(redis: &Redis, id: &str) -> String {
    let pointer = redis.get(&format!("weir:weir:{id}:snapshot")).expect("a pointer");
    let pointer = String::from_utf8(pointer).unwrap();
    let generation = pointer.split(':').next().unwrap();
    format!("weir:weir:{id}:snapshot:{generation}:manifest")
}

fn assert_refused_and_kept(redis: &Redis, config: &Path, id: &str, expected: &str) {
    let pointer = redis.get(&format!("weir:weir:{id}:snapshot"));
    let manifest = redis.get(&manifest_key(redis, id));
    let log = log_file(id);
    let node = start(id, config, &redis.url(), Some(&log), &[]);
    let state = snapshot(&node);
    assert_eq!(state["state"], "refused", "{state}");
    assert!(state["refused"].as_str().unwrap().contains(expected), "{state}");
    // Many save intervals: nothing is written over the refused snapshot.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(saves(&node), 0);
    assert_eq!(redis.get(&format!("weir:weir:{id}:snapshot")), pointer);
    assert_eq!(redis.get(&manifest_key(redis, id)), manifest);
    assert_eq!(remaining(&node, "hourly", "carol"), 1000);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("refusing the stored snapshot"), "{logged}");
    assert_eq!(metric(&node, "weir_snapshot_state{state=\"refused\"}"), 1.0);

    // Removed by an operator: saving resumes.
    redis.query::<()>(redis::cmd("DEL").arg(format!("weir:weir:{id}:snapshot")));
    wait_for_saves(&node, 1);
    assert_eq!(snapshot(&node)["state"], "empty");
}

#[test]
fn a_corrupt_snapshot_is_refused_logged_and_never_written_over() {
    let redis = Redis::start();
    let config = config_file("snapshot-corrupt", CONFIG);
    saved_snapshot(&redis, &config, "corrupt");
    let key = manifest_key(&redis, "corrupt");
    let mut manifest = redis.get(&key).unwrap();
    let middle = manifest.len() / 2;
    manifest[middle] ^= 0xff;
    redis.set(&key, &manifest);
    assert_refused_and_kept(&redis, &config, "corrupt", "corrupt");
}

#[test]
fn a_snapshot_from_a_newer_format_is_refused_and_never_written_over() {
    let redis = Redis::start();
    let config = config_file("snapshot-newer", CONFIG);
    saved_snapshot(&redis, &config, "newer");
    let key = manifest_key(&redis, "newer");
    let mut manifest = redis.get(&key).unwrap();
    manifest[4] = manifest[4].wrapping_add(1);
    redis.set(&key, &manifest);
    assert_refused_and_kept(&redis, &config, "newer", "newer than this build");
}

#[test]
fn a_clean_stop_saves_a_final_snapshot() {
    let redis = Redis::start();
    let config = config_file("snapshot-final", CONFIG);
    let mut node = start(
        "final",
        &config,
        &redis.url(),
        None,
        &["--snapshot-interval", "1m"],
    );
    spend(&node, "hourly", "erin", 42);
    node.terminate();
    let node = start("final", &config, &redis.url(), None, &[]);
    assert_eq!(remaining(&node, "hourly", "erin"), 958);
}

#[test]
fn the_file_store_restores_and_a_crash_mid_write_leaves_the_last_snapshot_readable() {
    let dir = std::env::temp_dir().join(format!("weir-snapshot-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.snapshot");
    let temporary = dir.join("weir.snapshot.tmp");
    let _ = std::fs::remove_file(&path);
    let url = format!("file://{}", path.display());
    let config = config_file("snapshot-file", CONFIG);

    let mut node = start("file", &config, &url, None, &[]);
    // Enough keys that a write takes a while: 40,000 users.
    for batch in 0..1600 {
        let checks: Vec<Value> = (0..25)
            .map(|i| request("hourly", &format!("user-{batch}-{i}")))
            .collect();
        node.post("/v1/check/batch", &json!({ "checks": checks }));
    }
    spend(&node, "hourly", "frank", 700);
    wait_for_saves(&node, 2);

    // SIGKILL while the next write is under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !temporary.exists() {
        assert!(Instant::now() < deadline, "a write under way");
    }
    node.kill();
    let partial = std::fs::metadata(&temporary).map(|m| m.len()).unwrap_or(0);
    eprintln!("killed with {partial} bytes of the next snapshot written");

    let node = start("file", &config, &url, None, &[]);
    let state = snapshot(&node);
    assert_eq!(state["state"], "restored", "{state}");
    assert!(state["restored"]["keys"].as_u64().unwrap() > 40_000, "{state}");
    assert_eq!(remaining(&node, "hourly", "frank"), 300);
}
