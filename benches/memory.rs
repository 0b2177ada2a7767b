//! Memory per tracked key: tracks 1,000,000 distinct IPs through the engine
//! and reports the growth of the process's resident set per key.
//!
//! Run: `cargo bench --bench memory` (add `-- 200000` for another count).

use std::sync::Arc;

use weir::clock::QuantaClock;
use weir::config::Config;
use weir::engine::{CheckRequest, Engine, RequestKey};

const POLICIES: &str = r#"
[store]
max_keys = 5_000_000

[policies.per_ip]
key = ["ip"]
default_tier = "free"
[policies.per_ip.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "1000/hour" }]

[policies.per_ip_two]
key = ["ip"]
default_tier = "free"
[policies.per_ip_two.tiers.free]
limits = [
  { name = "burst", algorithm = "token_bucket", rate = "10/s", burst = 20 },
  { name = "hourly", algorithm = "sliding_window", rate = "1000/hour" },
]
"#;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm field");
    pages * 4096
}

fn measure(policy: &str, keys: u32) {
    let engine = Engine::new(Config::parse(POLICIES).unwrap(), Arc::new(QuantaClock::new()));
    let mut request = CheckRequest::policy(policy, RequestKey::default());
    // Warm up the thread's key buffer and the allocator.
    request.key.ip = Some("0.0.0.0".into());
    engine.check(&request).unwrap();
    let before = resident_bytes();
    for i in 0..keys {
        let [a, b, c, d] = i.to_be_bytes();
        request.key.ip = Some(format!("{}.{b}.{c}.{d}", a.wrapping_add(10)));
        engine.check(&request).unwrap();
    }
    let after = resident_bytes();
    assert_eq!(engine.stats().keys, keys as u64 + 1);
    println!(
        "{policy:>12}: {keys} keys, resident set grew {:.1} MiB, {:.0} bytes per key",
        (after - before) as f64 / (1024.0 * 1024.0),
        (after - before) as f64 / keys as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments sets the count.
    let keys = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(1_000_000);
    if let Ok(policy) = std::env::var("WEIR_MEMORY_POLICY") {
        measure(&policy, keys);
        return;
    }
    // Each measurement in a fresh process, so that one's freed memory does
    // not hide the next one's growth.
    for policy in ["per_ip", "per_ip_two"] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .arg(keys.to_string())
            .env("WEIR_MEMORY_POLICY", policy)
            .status()
            .unwrap();
        assert!(status.success());
    }
}
