//! Simulated: links between nodes drop about one message in ten, delay
//! messages by up to 50 ms, and every third sync datagram arrives twice.
//! The limit still holds within the bound, and the periodic resend repairs
//! what was lost, so every node ends up with the same counts.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sim::{add_node, live, offer, peek, wait_for, NodeSpec, SYNC_INTERVAL};

const CONFIG: &str = r#"
[policies.bucket]
key = ["user"]
default_tier = "t"
[policies.bucket.tiers.t]
limits = [{ algorithm = "token_bucket", rate = "20/s", burst = 20 }]

[policies.window]
key = ["user"]
default_tier = "t"
[policies.window.tiers.t]
limits = [{ algorithm = "sliding_window", rate = "1000/m" }]
"#;

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const RATE: f64 = 20.0;
const MAX_DELAY: Duration = Duration::from_millis(50);

#[test]
fn lossy_duplicating_slow_links_keep_the_limit_and_converge() -> turmoil::Result {
    let mut sim = turmoil::Builder::new()
        .rng_seed(23)
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(MAX_DELAY)
        .repair_rate(0.5)
        .build();
    for (i, name) in NODES.into_iter().enumerate() {
        let seed = (i > 0).then_some("n1");
        add_node(
            &mut sim,
            NodeSpec {
                name,
                seed,
                config: CONFIG,
                duplicate_every: 3,
            },
        );
    }
    for (i, a) in NODES.into_iter().enumerate() {
        for b in &NODES[i + 1..] {
            sim.set_link_fail_rate(a, *b, 0.05);
        }
    }
    sim.client("driver", async {
        for node in NODES {
            assert!(wait_for(
                Duration::from_secs(20),
                || async move { live(node).await.len() == 3 }
            )
            .await
            .is_some());
        }
        let erin = json!({ "policy": "bucket", "key": { "user": "erin" } });
        let (admitted, _, _) = offer(&NODES, &erin, 2.0 * RATE, Duration::from_secs(15)).await;
        let allowed = 20.0 + RATE * 15.0;
        let bound = RATE * (SYNC_INTERVAL + MAX_DELAY).as_secs_f64() + NODES.len() as f64;
        eprintln!("lossy 15 s: admitted {admitted} of {allowed}, bound {bound}");
        assert!(
            admitted as f64 <= allowed + bound,
            "admitted {admitted} of {allowed}"
        );
        assert!(
            admitted as f64 >= 0.8 * allowed,
            "starved: {admitted} of {allowed}"
        );

        // Counts made everywhere over lossy links agree once the periodic
        // resend (every second) has repaired the losses.
        let frank = json!({ "policy": "window", "key": { "user": "frank" } });
        offer(&NODES, &frank, 30.0, Duration::from_secs(2)).await;
        let agreed = wait_for(Duration::from_secs(3), || {
            let frank = frank.clone();
            async move {
                let mut left = Vec::new();
                for node in NODES {
                    left.push(peek(node, &frank).await);
                }
                left.iter().all(|l| *l == Some(1000 - 60))
            }
        })
        .await;
        eprintln!("counts agreed {agreed:?} after the traffic stopped");
        let mut sent = 0;
        let mut received = 0;
        for node in NODES {
            let status = support::sim::cluster(node).await;
            sent += status["sync"]["frames_sent"].as_u64().unwrap();
            received += status["sync"]["frames_received"].as_u64().unwrap();
        }
        eprintln!("sync frames: {sent} sent (duplicates included), {received} merged");
        assert!(agreed.is_some(), "counts never agreed");
        Ok(())
    });
    sim.run()
}
