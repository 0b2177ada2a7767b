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

#[path = "../tests/support/load.rs"]
mod load;
#[path = "../tests/support/nodes.rs"]
mod nodes;

use load::{one_node_admits, run, Spread};
use nodes::Node;

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
                    let (admitted, times) = run(&cluster, policy, &user, spread, LIMIT_RATE * load, seconds);
                    let sent = times.len();
                    let allowed = one_node_admits(CONFIG, policy, times);
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
        let allowed = one_node_admits(CONFIG, "bucket", times);
        println!(
            "without a cluster, 3 nodes, bucket, even, {load}x: admitted {admitted} of {allowed} ({:.3})",
            admitted as f64 / allowed as f64
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
