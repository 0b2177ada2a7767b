//! A partition between real processes: three `weir serve` nodes, the third
//! in its own network namespace, cut off from the other two by blackhole
//! routes while a client keeps sending to all three.
//!
//! `cargo bench --bench partition` (needs root and iproute2: it creates the
//! namespace `weir-part` and two veth pairs, and removes them at the end;
//! PARTITION_SECS sets the partition's length, 10 s by default). Reports,
//! for a token bucket (100/s, burst 100) at twice its rate:
//! - admitted against allowed while healthy, while partitioned, and in all;
//!   "allowed" is what one node admits for the same requests (replayed);
//! - what each side reports as its cluster shape during the partition;
//! - how long after the repair every node agrees on the counts of a key
//!   used on both sides.

#[path = "../tests/support/load.rs"]
mod load;
#[path = "../tests/support/nodes.rs"]
mod nodes;

use std::process::Command;
use std::time::{Duration, Instant};

use load::{one_node_admits, run, Spread};
use nodes::{Addrs, Launch, Node};
use serde_json::json;

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
limits = [{ algorithm = "sliding_window", rate = "100000/m" }]
"#;

const RATE: f64 = 100.0;
const NETNS: &str = "weir-part";
/// Gossip and sync between the namespaces (the "peer" link).
const ROOT_PEER: &str = "10.77.1.1";
const NS_PEER: &str = "10.77.1.2";
/// HTTP from the client to the namespaced node (the "client" link), never
/// cut.
const NS_CLIENT: &str = "10.77.2.2";

fn ip(args: &str) -> bool {
    Command::new("ip")
        .args(args.split_whitespace())
        .status()
        .is_ok_and(|status| status.success())
}

/// The namespace and its links; removed when dropped.
struct Network;

impl Network {
    fn create() -> Option<Self> {
        Self::remove();
        let steps = [
            format!("netns add {NETNS}"),
            "link add wpart-peer0 type veth peer name wpart-peer1".into(),
            format!("link set wpart-peer1 netns {NETNS}"),
            format!("addr add {ROOT_PEER}/24 dev wpart-peer0"),
            "link set wpart-peer0 up".into(),
            format!("-n {NETNS} addr add {NS_PEER}/24 dev wpart-peer1"),
            format!("-n {NETNS} link set wpart-peer1 up"),
            "link add wpart-cli0 type veth peer name wpart-cli1".into(),
            format!("link set wpart-cli1 netns {NETNS}"),
            "addr add 10.77.2.1/24 dev wpart-cli0".into(),
            "link set wpart-cli0 up".into(),
            format!("-n {NETNS} addr add {NS_CLIENT}/24 dev wpart-cli1"),
            format!("-n {NETNS} link set wpart-cli1 up"),
            format!("-n {NETNS} link set lo up"),
        ];
        steps.iter().all(|step| ip(step)).then_some(Network)
    }

    /// Cuts (or restores) the peer link both ways; HTTP stays up.
    fn partition(&self, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        assert!(ip(&format!("route {verb} blackhole {NS_PEER}/32")));
        assert!(ip(&format!("-n {NETNS} route {verb} blackhole {ROOT_PEER}/32")));
    }

    /// Removes whatever exists of it, quietly: most of it is usually gone.
    fn remove() {
        let blackhole = format!("route del blackhole {NS_PEER}/32");
        let steps = [
            format!("netns del {NETNS}"),
            "link del wpart-peer0".into(),
            "link del wpart-cli0".into(),
            blackhole,
        ];
        for step in &steps {
            let _ = Command::new("ip")
                .args(step.split_whitespace())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        Self::remove();
    }
}

fn shape(node: &Node) -> String {
    let status = node.get("/v1/cluster").unwrap_or_default();
    format!("live {} of {}", status["live"], status["expected"])
}

fn main() {
    let seconds: f64 = std::env::var("PARTITION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let Some(network) = Network::create() else {
        println!("partition benchmark skipped: it needs root and iproute2 to create a network namespace");
        return;
    };
    let dir = std::env::temp_dir().join(format!("weir-partition-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(&config, CONFIG).unwrap();

    let on_peer_link = |host: &str, port: u16, http: String| Addrs {
        http,
        gossip: format!("{host}:{port}"),
        sync: format!("{host}:{}", port + 1),
        bin: format!("{host}:{}", port + 2),
    };
    let seeds = [format!("{ROOT_PEER}:17102")];
    let first = Launch::default();
    let joining = Launch {
        seeds: &seeds,
        ..Launch::default()
    };
    let cut_off = Launch {
        seeds: &seeds,
        netns: Some(NETNS),
        ..Launch::default()
    };
    let nodes = [
        Node::launch(
            "n1",
            &config,
            on_peer_link(ROOT_PEER, 17102, Addrs::loopback().http),
            &first,
        ),
        Node::launch(
            "n2",
            &config,
            on_peer_link(ROOT_PEER, 17202, Addrs::loopback().http),
            &joining,
        ),
        Node::launch(
            "n3",
            &config,
            on_peer_link(NS_PEER, 17302, format!("{NS_CLIENT}:17300")),
            &cut_off,
        ),
    ];
    for node in &nodes {
        node.wait_until(Duration::from_secs(30), "seeing every member", |n| {
            n.live_members().len() == 3
        });
    }

    let (healthy, mut times) = run(&nodes, "bucket", "alice", Spread::Even, 2.0 * RATE, 5.0);
    let healthy_allowed = one_node_admits(CONFIG, "bucket", times.clone());
    println!("healthy 5 s at 2x: admitted {healthy} of {healthy_allowed}");

    network.partition(true);
    let cut_at = Instant::now();
    let (cut, cut_times) = run(&nodes, "bucket", "alice", Spread::Even, 2.0 * RATE, seconds);
    times.extend(cut_times);
    let sides = format!("n1 {}, n3 {}", shape(&nodes[0]), shape(&nodes[2]));
    // Both sides of the partition count on one window key.
    run(&nodes, "window", "bob", Spread::Even, 30.0, 2.0);
    let total_allowed = one_node_admits(CONFIG, "bucket", times);
    let partition_allowed = RATE * seconds;
    println!(
        "partitioned {seconds} s at 2x: admitted {cut} of {partition_allowed} ({:.3}); sides saw: {sides}",
        cut as f64 / partition_allowed
    );
    println!(
        "healthy + partitioned: admitted {} of {total_allowed} ({:.3})",
        healthy + cut,
        (healthy + cut) as f64 / total_allowed as f64
    );

    network.partition(false);
    let healed = Instant::now();
    let peek = json!({ "policy": "window", "key": { "user": "bob" }, "cost": 0 });
    let remaining = |node: &Node| node.post("/v1/check", &peek)["remaining"].as_u64();
    let agreed = loop {
        let seen: Vec<Option<u64>> = nodes.iter().map(remaining).collect();
        if seen.windows(2).all(|w| w[0] == w[1] && w[0].is_some()) {
            break Some(healed.elapsed());
        }
        if healed.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "after the repair ({:.1} s of partition), counts agreed after {agreed:?}",
        (healed - cut_at).as_secs_f64()
    );
    drop(nodes);
    let _ = std::fs::remove_dir_all(dir);
}
