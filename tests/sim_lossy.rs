//! Simulated: links between nodes drop about one message in ten, delay
//! messages by up to 50 ms, and every third sync datagram arrives twice.
//! The limit still holds within the bound, and the periodic resend repairs
//! what was lost, so every node ends up with the same counts.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sim::{
    add_cluster, agree_on, all_see_each_other, cluster, offer, BUCKET_AND_WINDOW, SYNC_INTERVAL,
};

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
    add_cluster(&mut sim, &NODES, BUCKET_AND_WINDOW, 3);
    for (i, a) in NODES.into_iter().enumerate() {
        for b in &NODES[i + 1..] {
            sim.set_link_fail_rate(a, *b, 0.05);
        }
    }
    sim.client("driver", async {
        assert!(all_see_each_other(&NODES, Duration::from_secs(20)).await);
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
        let agreed = agree_on(&NODES, &frank, 1000 - 60, Duration::from_secs(3)).await;
        eprintln!("counts agreed {agreed:?} after the traffic stopped");
        assert!(agreed.is_some(), "counts never agreed");
        let (mut sent, mut merged) = (0, 0);
        for node in NODES {
            let status = cluster(node).await;
            sent += status["sync"]["frames_sent"].as_u64().unwrap();
            merged += status["sync"]["frames_received"].as_u64().unwrap();
        }
        eprintln!("sync frames: {sent} sent (every third twice), {merged} merged");
        Ok(())
    });
    sim.run()
}
