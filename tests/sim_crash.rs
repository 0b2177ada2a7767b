//! Simulated: a node crashes while traffic flows, the others keep serving
//! and stop counting it as reachable; it restarts (a new generation),
//! rejoins, and learns the counts it had lost, its own included.

mod support;

use std::time::Duration;

use serde_json::json;
use support::sim::{add_cluster, agree_on, all_see_each_other, check, live, offer, simulation, wait_for};

const CONFIG: &str = r#"
[policies.api]
key = ["user"]
default_tier = "t"
[policies.api.tiers.t]
limits = [{ algorithm = "sliding_window", rate = "600/m" }]
"#;

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const CRASH_AT: Duration = Duration::from_secs(8);
const RESTART_AT: Duration = Duration::from_secs(14);

#[test]
fn a_node_crashes_restarts_and_catches_up() -> turmoil::Result {
    let mut sim = simulation(3);
    add_cluster(&mut sim, &NODES, CONFIG, 0);
    sim.client("driver", async {
        assert!(all_see_each_other(&NODES, Duration::from_secs(6)).await);
        // 60 requests on every node before the crash.
        let dana = json!({ "policy": "api", "key": { "user": "dana" } });
        let (admitted, _, _) = offer(&NODES, &dana, 60.0, Duration::from_secs(3)).await;
        assert_eq!(admitted, 180);
        tokio::time::sleep_until(tokio::time::Instant::now() + (CRASH_AT - turmoil::elapsed())).await;

        // n3 is down: the others answer, and soon count two live nodes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(check("n3", &dana).await, None, "n3 is down");
        let noticed = wait_for(Duration::from_secs(3), || async { live("n1").await.len() == 2 }).await;
        assert!(noticed.is_some(), "n1 still counts n3 as live");
        let (admitted, answered, sent) = offer(&NODES[..2], &dana, 20.0, Duration::from_secs(2)).await;
        assert_eq!((admitted, answered), (sent, sent));

        // After the restart, n3 rejoins and agrees on every count: its
        // peers relay what it missed and what it had counted before.
        tokio::time::sleep_until(tokio::time::Instant::now() + (RESTART_AT - turmoil::elapsed())).await;
        let rejoined = wait_for(Duration::from_secs(10), || async {
            live("n1").await.len() == 3 && live("n3").await.len() == 3
        })
        .await;
        assert!(rejoined.is_some(), "n3 did not rejoin");
        let agreed = agree_on(&NODES, &dana, 600 - 180 - 40, Duration::from_secs(2)).await;
        assert!(agreed.is_some(), "the restarted node did not catch up");
        Ok(())
    });
    let (mut crashed, mut restarted) = (false, false);
    while !sim.step()? {
        if !crashed && sim.elapsed() >= CRASH_AT {
            sim.crash("n3");
            crashed = true;
        }
        if crashed && !restarted && sim.elapsed() >= RESTART_AT {
            sim.bounce("n3");
            restarted = true;
        }
    }
    Ok(())
}
