//! Cluster cost by size: clusters of real `weir serve` processes on
//! loopback under the same load per node, and what each node spends on the
//! cluster (issue 26's "measure first").
//!
//! `cargo bench --bench scale` (SCALE_NODES sets the sizes, "3,10" by
//! default; SCALE_SECS the run length, 10 s). Each node gets 100 keys of
//! its own, each checked once a second (in batches of 25), and an even
//! share of one hot key offered at three times its 20/s bucket. Reported
//! per node: counter-sync bytes and datagrams a second, gossip bytes a
//! second, CPU (user and system time of the process over the run), and
//! for the hot key what the cluster admitted against what one exact node
//! would have admitted for the very same requests.

#[path = "../tests/support/load.rs"]
mod load;
#[path = "../tests/support/nodes.rs"]
mod nodes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use load::{one_node_admits, run, Spread};
use nodes::Node;
use serde_json::{json, Value};

/// The hot and the cold policies, shared with the other scale bench.
const CONFIG: &str = include_str!("scale.toml");

/// What a node has spent so far: sync bytes and datagrams, gossip bytes,
/// CPU seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    sync_bytes: f64,
    sync_datagrams: f64,
    gossip_bytes: f64,
    cpu_secs: f64,
}

fn spent(node: &Node) -> Spent {
    let status = node.get("/v1/cluster").unwrap_or(Value::Null);
    let count = |section: &str, name: &str| status[section][name].as_f64().unwrap_or(0.0);
    Spent {
        sync_bytes: count("sync", "bytes_sent"),
        sync_datagrams: count("sync", "frames_sent"),
        gossip_bytes: count("gossip", "bytes_sent"),
        cpu_secs: cpu_secs(node.pid()),
    }
}

/// User and system time of process `pid`, in seconds (Linux).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name's closing parenthesis: utime and
    // stime are the 12th and 13th of them, in clock ticks (100 a second).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Checks each node's own 100 keys once a second until `stop`.
fn cold_load(nodes: &[Node], stop: &AtomicBool) {
    std::thread::scope(|scope| {
        for (n, node) in nodes.iter().enumerate() {
            scope.spawn(move || {
                let start = Instant::now();
                for second in 0u64.. {
                    for part in 0..4 {
                        let checks: Vec<Value> = (part * 25..part * 25 + 25)
                            .map(|k| json!({ "policy": "cold", "key": { "user": format!("n{n}-k{k}") } }))
                            .collect();
                        node.post("/v1/check/batch", &json!({ "checks": checks }));
                    }
                    let due = start + Duration::from_secs(second + 1);
                    while Instant::now() < due {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
    });
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SCALE_NODES")
        .unwrap_or_else(|_| "3,10".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let seconds: f64 = std::env::var("SCALE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let dir = std::env::temp_dir().join(format!("weir-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(&config, CONFIG).unwrap();

    println!("| nodes | sync KB/s per node | sync datagrams/s per node | gossip KB/s per node | CPU per node | hot key admitted / exact |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, &count) in sizes.iter().enumerate() {
        let cluster = nodes::start_cluster(count, &config, &[]);
        // Settle: every node has seen the others and the first syncs went.
        std::thread::sleep(Duration::from_secs(2));
        let before: Vec<Spent> = cluster.iter().map(spent).collect();
        let started = Instant::now();
        let stop = AtomicBool::new(false);
        let (admitted, times) = std::thread::scope(|scope| {
            scope.spawn(|| cold_load(&cluster, &stop));
            let hot = run(&cluster, "hot", &format!("hot-{i}"), Spread::Even, 60.0, seconds);
            stop.store(true, Ordering::Relaxed);
            hot
        });
        let elapsed = started.elapsed().as_secs_f64();
        let after: Vec<Spent> = cluster.iter().map(spent).collect();
        let per_node = |f: fn(&Spent) -> f64| {
            let total: f64 = before.iter().zip(&after).map(|(b, a)| f(a) - f(b)).sum();
            total / count as f64 / elapsed
        };
        let exact = one_node_admits(CONFIG, "hot", times);
        println!(
            "| {count} | {:.1} | {:.0} | {:.1} | {:.1}% | {admitted} / {exact} = {:.3} |",
            per_node(|s| s.sync_bytes) / 1000.0,
            per_node(|s| s.sync_datagrams),
            per_node(|s| s.gossip_bytes) / 1000.0,
            per_node(|s| s.cpu_secs) * 100.0,
            admitted as f64 / exact.max(1) as f64,
        );
        drop(cluster);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
