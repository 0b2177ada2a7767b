//! A real `weir serve` with `store.max_memory` under a flood of the largest
//! keys a check can make (a 64-character namespace, four 256-byte
//! attributes, eight limits): its resident memory stays near the cap, and a
//! policy's keys are not evicted by made-up namespaces.

mod support;

use std::time::Instant;

use serde_json::{json, Value};
use support::nodes::{config_file, Addrs, Launch, Node};

const MAX_MEMORY_MIB: u64 = 16;

fn config() -> std::path::PathBuf {
    let text = format!(
        r#"
[store]
max_keys = 1_000_000
max_memory = "{MAX_MEMORY_MIB}MiB"

[policies.daily]
key = ["user"]
default_tier = "free"
[policies.daily.tiers.free]
limits = [{{ algorithm = "sliding_window", rate = "5/day" }}]
"#
    );
    config_file("memory", &text)
}

/// The largest inline check there is, for key number `i`.
fn largest_check(i: u64) -> Value {
    let limits: Vec<Value> = (0..8)
        .map(|n| json!({ "name": format!("l{n}"), "algorithm": "sliding_window", "rate": format!("{}/h", 1000 + n) }))
        .collect();
    let value = |attr: &str| format!("{attr}{i:0>255}");
    json!({
        "namespace": format!("{}{:0>8}", "n".repeat(56), i % 100_000_000),
        "key": { "user": value("u"), "ip": value("i"), "token": value("t"), "endpoint": value("e") },
        "limits": limits,
    })
}

fn resident_bytes(node: &Node) -> f64 {
    node.metric("process_resident_memory_bytes")
}

#[test]
fn a_flood_of_the_largest_keys_stays_within_max_memory_and_evicts_no_policy_key() {
    let launch = Launch {
        standalone: true,
        ..Launch::default()
    };
    let node = Node::launch("memory", &config(), Addrs::loopback(), &launch);
    // The caller's own quota, spent before the flood.
    let mine = json!({ "policy": "daily", "key": { "user": "mallory" } });
    let spent = (0..6).filter(|_| node.check(&mine)).count();
    assert_eq!(spent, 5);
    let before = resident_bytes(&node);

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // Keys of about 1.5 KB, 16 to a batch (within the 64 KiB a body takes).
    let flood = |from: u64, count: u64| {
        for batch in (from..from + count).step_by(16) {
            let checks: Vec<Value> = (batch..batch + 16).map(largest_check).collect();
            let reply = agent
                .post(format!("{}/v1/check/batch", node.base))
                .send_json(json!({ "checks": checks }))
                .unwrap();
            assert_eq!(reply.status().as_u16(), 200);
        }
    };
    let mib = |bytes: f64| bytes / (1 << 20) as f64;
    // The first flood fills the store to its cap (and the usage
    // analytics' per-shard tables to theirs).
    let started = Instant::now();
    flood(0, 20_000);
    let filled = resident_bytes(&node);
    // Twice as many keys again: about 60 MiB more, were the store not capped.
    flood(20_000, 40_000);
    let after = resident_bytes(&node);
    let stored = node.metric("weir_store_bytes");
    eprintln!(
        "60,000 keys in {:?}: store {:.1} of {MAX_MEMORY_MIB} MiB; resident {:.1} MiB at start, {:.1} after 20,000 keys, {:.1} after 60,000",
        started.elapsed(),
        mib(stored),
        mib(before),
        mib(filled),
        mib(after)
    );
    assert!(stored <= (MAX_MEMORY_MIB << 20) as f64, "{stored}");
    assert!(node.metric("weir_keys_evicted_total") > 40_000.0);
    let second = after - filled;
    assert!(
        second < (8 << 20) as f64,
        "the second flood added {:.1} MiB",
        mib(second)
    );
    // Made-up namespaces did not evict the caller's spent quota.
    assert!(!node.check(&mine), "the daily quota is still spent");
}
