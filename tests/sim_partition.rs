//! Simulated: one node is cut off from the other two for ten seconds while
//! traffic keeps coming to all three. Both sides keep answering; the
//! cluster admits no more than the bound of docs/consistency.md; and once
//! the partition heals, every node agrees on the counts within a few sync
//! intervals.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sim::{
    add_cluster, agree_on, all_see_each_other, cluster, offer, simulation, BUCKET_AND_WINDOW, SYNC_INTERVAL,
};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const RATE: f64 = 20.0;

/// docs/consistency.md: a partition runs at full limits until it is
/// detected (12 sync intervals or 3 gossip rounds without a frame, whichever
/// is longer, noticed within one more interval), then each side enforces
/// its fraction; on top of the steady bound `rate * (interval + delay) +
/// nodes`.
fn partition_bound() -> f64 {
    let interval = SYNC_INTERVAL.as_secs_f64();
    let detect = (12.0 * interval).max(0.6) + interval;
    RATE * (SYNC_INTERVAL.as_secs_f64() + 0.005 + detect) + NODES.len() as f64
}

#[test]
fn a_partitioned_node_keeps_serving_within_the_bound_and_heals() -> turmoil::Result {
    let mut sim = simulation(13);
    add_cluster(&mut sim, &NODES, BUCKET_AND_WINDOW, 0);
    sim.client("driver", async {
        assert!(all_see_each_other(&NODES, Duration::from_secs(10)).await);
        let alice = json!({ "policy": "bucket", "key": { "user": "alice" } });
        let bob = json!({ "policy": "window", "key": { "user": "bob" } });

        // Healthy, at twice the limit: the limit holds.
        let (healthy, _, _) = offer(&NODES, &alice, 2.0 * RATE, Duration::from_secs(5)).await;
        let allowed = 20.0 + RATE * 5.0;
        eprintln!("healthy 5 s: admitted {healthy} of {allowed}");
        assert!(
            healthy as f64 <= allowed + RATE * 0.1 + 3.0,
            "healthy: {healthy} of {allowed}"
        );

        // n3 is cut off from n1 and n2; the driver still reaches all three.
        turmoil::partition("n3", "n1");
        turmoil::partition("n3", "n2");
        let (admitted, answered, sent) = offer(&NODES, &alice, 2.0 * RATE, Duration::from_secs(10)).await;
        assert_eq!(answered, sent, "every node keeps answering");
        let allowed = RATE * 10.0;
        let excess = admitted as f64 - allowed;
        let bound = partition_bound();
        eprintln!("partitioned 10 s: admitted {admitted} of {allowed}, excess {excess}, bound {bound:.1}");
        assert!(excess <= bound, "admitted {admitted} of {allowed}");
        assert!(
            admitted as f64 >= 0.8 * allowed,
            "starved: {admitted} of {allowed}"
        );
        let shape = |status: serde_json::Value| (status["live"].as_u64(), status["expected"].as_u64());
        assert_eq!(shape(cluster("n1").await), (Some(2), Some(3)));
        assert_eq!(shape(cluster("n3").await), (Some(1), Some(3)));

        // Counts made on both sides during the partition...
        offer(&NODES, &bob, 30.0, Duration::from_secs(2)).await;
        // ...agree everywhere within a few sync intervals of the repair.
        turmoil::repair("n3", "n1");
        turmoil::repair("n3", "n2");
        let agreed = agree_on(&NODES, &bob, 1000 - 60, Duration::from_secs(2)).await;
        eprintln!("counts agreed {agreed:?} after the repair");
        assert!(
            agreed.is_some_and(|took| took <= SYNC_INTERVAL * 10),
            "counts did not agree: {agreed:?}"
        );
        assert!(all_see_each_other(&NODES, Duration::from_secs(10)).await);
        Ok(())
    });
    sim.run()
}
