//! Cluster accuracy: real `weir serve` nodes on loopback, one key's requests
//! spread over them, admitted counted against what the limit allows.
//!
//! `cargo bench --bench accuracy` (ACCURACY_SECS sets the run length, 8 s by
//! default). For 3 and 5 nodes; traffic even, skewed 90/10, or all on one
//! node; offered 2x and 10x the limit; a token bucket (100/s, burst 100)
//! and a sliding window (500 per 5 s).
//!
//! "Allowed" is what one node admits for the very same requests: every
//! request's send time is recorded, and the merged timeline is replayed
//! through an in-process engine on a manual clock. For the bucket that is
//! `burst + rate * seconds`; for the window it depends on where the run
//! falls against the slots, which the replay captures exactly.

#[path = "../tests/support/nodes.rs"]
mod nodes;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nodes::Node;
use serde_json::json;
use weir::clock::ManualClock;
use weir::config::Config;
use weir::engine::{CheckRequest, Engine, RequestKey};

const CONFIG: &str = r#"
[policies.bucket]
key = ["user"]
default_tier = "t"
[policies.bucket.tiers.t]
limits = [{ algorithm = "token_bucket", rate = "100/s", burst = 100 }]

[policies.window]
key = ["user"]
default_tier = "t"
[policies.window.tiers.t]
limits = [{ algorithm = "sliding_window", rate = "500/5s" }]
"#;

/// Requests per second the limit allows in the long run.
const LIMIT_RATE: f64 = 100.0;

#[derive(Clone, Copy)]
enum Spread {
    Even,
    Skewed,
    OneNode,
}

impl Spread {
    fn name(self) -> &'static str {
        match self {
            Spread::Even => "even",
            Spread::Skewed => "90/10",
            Spread::OneNode => "one node",
        }
    }

    /// Each node's part of the offered load.
    fn weights(self, nodes: usize) -> Vec<f64> {
        match self {
            Spread::Even => vec![1.0 / nodes as f64; nodes],
            Spread::Skewed if nodes == 1 => vec![1.0],
            Spread::Skewed => std::iter::once(0.9)
                .chain(std::iter::repeat_n(0.1 / (nodes - 1) as f64, nodes - 1))
                .collect(),
            Spread::OneNode => std::iter::once(1.0)
                .chain(std::iter::repeat_n(0.0, nodes - 1))
                .collect(),
        }
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// What one node admits for requests sent at `times` (Unix nanoseconds).
fn one_node_admits(policy: &str, mut times: Vec<u64>) -> u64 {
    times.sort_unstable();
    let clock = std::sync::Arc::new(ManualClock::new(times.first().copied().unwrap_or(0)));
    let engine = Engine::new(Config::parse(CONFIG).unwrap(), clock.clone());
    let request = CheckRequest::policy(
        policy,
        RequestKey {
            user: Some("replayed".into()),
            ..RequestKey::default()
        },
    );
    times
        .into_iter()
        .filter(|at| {
            clock.set(*at);
            engine.check(&request).unwrap().allowed
        })
        .count() as u64
}

/// Offers `load` times the limit to `policy` for `user`, split by `spread`,
/// for `seconds`; returns (admitted, send times).
fn run(nodes: &[Node], policy: &str, user: &str, spread: Spread, load: f64, seconds: f64) -> (u64, Vec<u64>) {
    let admitted = AtomicU64::new(0);
    let times = std::sync::Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let body = json!({ "policy": policy, "key": { "user": user } });
    std::thread::scope(|scope| {
        for (node, weight) in nodes.iter().zip(spread.weights(nodes.len())) {
            let rate = LIMIT_RATE * load * weight;
            if rate == 0.0 {
                continue;
            }
            let (admitted, times, stop, body) = (&admitted, &times, &stop, &body);
            scope.spawn(move || {
                let mut sent = Vec::new();
                for k in 0u64.. {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    if due.saturating_duration_since(start).as_secs_f64() >= seconds
                        || stop.load(Ordering::Relaxed)
                    {
                        break;
                    }
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    sent.push(unix_nanos());
                    if node.check(body) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                times.lock().unwrap().extend(sent);
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    (admitted.into_inner(), times.into_inner().unwrap())
}

fn main() {
    let seconds: f64 = std::env::var("ACCURACY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8.0);
    let dir = std::env::temp_dir().join(format!("weir-accuracy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(&config, CONFIG).unwrap();

    println!("| nodes | policy | traffic | load | sent | admitted | allowed | admitted / allowed |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut scenario = 0;
    let mut worst: f64 = 0.0;
    for count in [3usize, 5] {
        let cluster = nodes::start_cluster(count, &config, &[]);
        for policy in ["bucket", "window"] {
            for spread in [Spread::Even, Spread::Skewed, Spread::OneNode] {
                for load in [2.0, 10.0] {
                    scenario += 1;
                    let user = format!("user-{scenario}");
                    let (admitted, times) = run(&cluster, policy, &user, spread, load, seconds);
                    let sent = times.len();
                    let allowed = one_node_admits(policy, times);
                    let ratio = admitted as f64 / allowed as f64;
                    worst = worst.max(ratio);
                    println!(
                        "| {count} | {policy} | {} | {load}x | {sent} | {admitted} | {allowed} | {ratio:.3} |",
                        spread.name(),
                    );
                }
            }
        }
    }
    println!("\nworst admitted / allowed: {worst:.3} ({seconds} s per run)");

    // For contrast: three nodes that do not form a cluster each enforce the
    // whole limit.
    let alone: Vec<Node> = (0..3)
        .map(|i| Node::start_standalone(&format!("alone-{i}"), &config))
        .collect();
    for load in [2.0, 10.0] {
        let (admitted, times) = run(
            &alone,
            "bucket",
            &format!("alone-{load}"),
            Spread::Even,
            load,
            seconds,
        );
        let allowed = one_node_admits("bucket", times);
        println!(
            "without a cluster, 3 nodes, bucket, even, {load}x: admitted {admitted} of {allowed} ({:.3})",
            admitted as f64 / allowed as f64
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
