//! Simulated: three nodes find each other, and counts made on every node
//! converge, so that each node reports the same remaining quota.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sim::{add_cluster, agree_on, all_see_each_other, offer, simulation};

const CONFIG: &str = r#"
[policies.api]
key = ["user"]
default_tier = "t"
[policies.api.tiers.t]
limits = [{ algorithm = "sliding_window", rate = "300/m" }]
"#;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

#[test]
fn a_three_node_cluster_converges() -> turmoil::Result {
    let mut sim = simulation(7);
    add_cluster(&mut sim, &NODES, CONFIG, 0);
    sim.client("driver", async {
        // Membership: every node sees all three within seconds.
        assert!(all_see_each_other(&NODES, Duration::from_secs(10)).await);

        // 90 requests for one key, spread over the nodes: all fit.
        let alice = json!({ "policy": "api", "key": { "user": "alice" } });
        let (admitted, answered, sent) = offer(&NODES, &alice, 30.0, Duration::from_secs(3)).await;
        assert_eq!((admitted, answered, sent), (90, 90, 90));

        // Within a few sync intervals every node reports 300 - 90 left.
        let agreed = agree_on(&NODES, &alice, 210, Duration::from_millis(500)).await;
        assert!(agreed.is_some(), "nodes did not agree on the count");
        Ok(())
    });
    sim.run()
}
