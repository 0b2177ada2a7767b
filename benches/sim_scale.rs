//! Cluster cost by size in simulation: whole weir nodes in a turmoil
//! network (simulated time and UDP), beyond what one machine's processes
//! hold, under the same load per node as `benches/scale.rs`.
//!
//! `cargo bench --bench sim_scale` (SIM_NODES sets the sizes, "3,10,30" by
//! default; SIM_SECS the simulated run length, 10 s). The full mesh's
//! traffic grows with the square of the cluster: 30 nodes simulate in
//! seconds, 100 took more than 15 minutes on 2 cores and was stopped. Each node gets 100
//! keys of its own, each checked once a second (in batches of 25), and an
//! even share of one hot key offered at three times its 20/s bucket.
//! Reported per node: counter-sync bytes and datagrams a second, gossip
//! bytes a second; for the hot key, what the cluster admitted against what
//! one exact bucket admits for evenly spaced requests (`burst + rate *
//! seconds`). Simulated time: CPU is not measured here (see `scale`).

#[path = "../tests/support/sim.rs"]
mod sim;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sim::{add_cluster, all_see_each_other, cluster, http, offer, simulation};

/// The hot and the cold policies, shared with the other scale bench.
const CONFIG: &str = include_str!("scale.toml");

/// Sync bytes, sync datagrams and gossip bytes each node has sent.
async fn sent(hosts: &[&'static str]) -> Vec<[f64; 3]> {
    let mut all = Vec::new();
    for host in hosts {
        let status = cluster(host).await;
        let count = |section: &str, name: &str| status[section][name].as_f64().unwrap_or(0.0);
        all.push([
            count("sync", "bytes_sent"),
            count("sync", "frames_sent"),
            count("gossip", "bytes_sent"),
        ]);
    }
    all
}

/// Checks each node's own 100 keys once a second for `length`.
async fn cold_load(hosts: &[&'static str], length: Duration) {
    let senders: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(n, host)| {
            let host = *host;
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                for second in 0..length.as_secs() {
                    for part in 0..4 {
                        let checks: Vec<Value> = (part * 25..part * 25 + 25)
                            .map(|k| json!({ "policy": "cold", "key": { "user": format!("n{n}-k{k}") } }))
                            .collect();
                        let _ = http(
                            host,
                            "POST",
                            "/v1/check/batch",
                            Some(&json!({ "checks": checks })),
                        )
                        .await;
                    }
                    tokio::time::sleep_until(start + Duration::from_secs(second + 1)).await;
                }
            })
        })
        .collect();
    for sender in senders {
        let _ = sender.await;
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SIM_NODES")
        .unwrap_or_else(|_| "3,10,30".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let seconds: u64 = std::env::var("SIM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // Peer requests (none in this load) would go over the simulated network.
    sim::use_simulated_network();
    println!("| nodes | sync KB/s per node | sync datagrams/s per node | gossip KB/s per node | hot key admitted / exact |");
    println!("| --- | --- | --- | --- | --- |");
    for count in sizes {
        let names: &'static [&'static str] =
            Vec::leak((0..count).map(|i| &*String::leak(format!("n{i}"))).collect());
        let started = std::time::Instant::now();
        let row = Arc::new(Mutex::new(String::new()));
        let mut simulated = simulation(11);
        add_cluster(&mut simulated, names, CONFIG, 0);
        let out = row.clone();
        simulated.client("driver", async move {
            assert!(
                all_see_each_other(names, Duration::from_secs(60)).await,
                "{count} nodes did not all see each other"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            let before = sent(names).await;
            let length = Duration::from_secs(seconds);
            let began = tokio::time::Instant::now();
            let hot = json!({ "policy": "hot", "key": { "user": "hot" } });
            let (cold, (admitted, _, _)) =
                tokio::join!(cold_load(names, length), offer(names, &hot, 60.0, length));
            let () = cold;
            let elapsed = began.elapsed().as_secs_f64();
            let after = sent(names).await;
            let per_node = |i: usize| {
                let total: f64 = before.iter().zip(&after).map(|(b, a)| a[i] - b[i]).sum();
                total / count as f64 / elapsed
            };
            let exact = 20 + 20 * seconds;
            *out.lock().unwrap() = format!(
                "| {count} | {:.1} | {:.0} | {:.1} | {admitted} / {exact} = {:.3} |",
                per_node(0) / 1000.0,
                per_node(1),
                per_node(2) / 1000.0,
                admitted as f64 / exact as f64,
            );
            Ok(())
        });
        simulated.run().expect("the simulation ran");
        println!("{}", row.lock().unwrap());
        eprintln!(
            "{count} nodes took {:.0} s of real time",
            started.elapsed().as_secs_f64()
        );
    }
}
