//! `GET /v1/usage` latency on a three-node cluster holding 100,000 tracked
//! keys, and the memory the analytics hold. Real `weir serve` processes on
//! loopback; traffic through `POST /v1/check/batch`.
//!
//! `cargo bench --bench usage` (USAGE_KEYS sets the key count).

#[path = "../tests/support/nodes.rs"]
mod nodes;

use std::time::{Duration, Instant};

use nodes::start_cluster;
use serde_json::{json, Value};

const CONFIG: &str = r#"
[store]
max_keys = 1_000_000
[policies.per_ip]
key = ["ip"]
default_tier = "free"
[policies.per_ip.tiers.free]
limits = [{ algorithm = "token_bucket", rate = "5/s", burst = 10 }]
[policies.per_user]
key = ["user"]
default_tier = "free"
[policies.per_user.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "100/m" }]
[policies.per_user.tiers.paid]
limits = [{ algorithm = "sliding_window", rate = "1000/m" }]
"#;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let keys: usize = std::env::var("USAGE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let nodes = start_cluster(3, &nodes::config_file("usage-bench", CONFIG), &[]);

    let start = Instant::now();
    for (batch, chunk) in (0..keys).collect::<Vec<_>>().chunks(32).enumerate() {
        let checks: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
                json!({ "policy": "per_ip", "key": { "ip": ip } })
            })
            .collect();
        nodes[batch % 3].post("/v1/check/batch", &json!({ "checks": checks }));
    }
    // Heavy hitters: a few users well past their limits on every node.
    for round in 0..600 {
        let user = format!("user-{}", round % 6);
        nodes[round % 3].check(&json!({ "policy": "per_user", "key": { "user": user } }));
    }
    println!("traffic: {keys} keys in {:.1} s", start.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(2));
    let tracked = |n: &nodes::Node| {
        let metrics = n.get_text("/metrics").unwrap_or_default();
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (
            value("weir_tracked_keys "),
            value("weir_usage_memory_bytes "),
            value("process_resident_memory_bytes "),
        )
    };
    for node in &nodes {
        let (keys, usage, rss) = tracked(node);
        println!(
            "{}: {keys} tracked keys, analytics {:.2} MiB, RSS {:.1} MiB",
            node.id,
            usage / 1048576.0,
            rss / 1048576.0
        );
    }
    println!("| query | p50 | p99 | max |\n| --- | --- | --- | --- |");
    for query in [
        "range=5m",
        "range=1h",
        "range=24h",
        "range=5m&scope=local",
        "range=24h&scope=local",
    ] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let start = Instant::now();
            let report = nodes[0].get(&format!("/v1/usage?{query}")).expect("answers");
            times.push(start.elapsed());
            assert!(
                report["missing"].as_array().is_some_and(|m| m.is_empty()),
                "{report}"
            );
        }
        times.sort();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
        println!(
            "| {query} | {} | {} | {} |",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap())
        );
    }
}
