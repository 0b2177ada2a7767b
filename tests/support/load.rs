//! Paced load against real nodes, and what one node would have admitted
//! for the same requests: shared by the accuracy and partition benchmarks.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use weir::clock::ManualClock;
use weir::config::Config;
use weir::engine::{CheckRequest, Engine, RequestKey};

use super::nodes::Node;

/// How requests are spread over the nodes.
#[derive(Clone, Copy)]
pub enum Spread {
    /// Evenly.
    Even,
    /// 90% to the first node, the rest shared by the others.
    Skewed,
    /// All to the first node.
    OneNode,
}

impl Spread {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Spread::Even => "even",
            Spread::Skewed => "90/10",
            Spread::OneNode => "one node",
        }
    }

    /// Each node's part of the offered load.
    fn weights(self, nodes: usize) -> Vec<f64> {
        match self {
            Spread::Even => vec![1.0 / nodes as f64; nodes],
            Spread::Skewed if nodes == 1 => vec![1.0],
            Spread::Skewed => std::iter::once(0.9)
                .chain(std::iter::repeat_n(0.1 / (nodes - 1) as f64, nodes - 1))
                .collect(),
            Spread::OneNode => std::iter::once(1.0)
                .chain(std::iter::repeat_n(0.0, nodes - 1))
                .collect(),
        }
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// What one node admits for requests sent at `times` (Unix nanoseconds).
pub fn one_node_admits(config: &str, policy: &str, mut times: Vec<u64>) -> u64 {
    times.sort_unstable();
    let clock = std::sync::Arc::new(ManualClock::new(times.first().copied().unwrap_or(0)));
    let engine = Engine::new(Config::parse(config).unwrap(), clock.clone());
    let request = CheckRequest::policy(
        policy,
        RequestKey {
            user: Some("replayed".into()),
            ..RequestKey::default()
        },
    );
    times
        .into_iter()
        .filter(|at| {
            clock.set(*at);
            engine.check(&request).unwrap().allowed
        })
        .count() as u64
}

/// Offers `rate` checks a second to `policy` for `user`, split by `spread`,
/// for `seconds`; returns (admitted, send times in Unix nanoseconds).
pub fn run(
    nodes: &[Node],
    policy: &str,
    user: &str,
    spread: Spread,
    rate: f64,
    seconds: f64,
) -> (u64, Vec<u64>) {
    let admitted = AtomicU64::new(0);
    let times = std::sync::Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let body = json!({ "policy": policy, "key": { "user": user } });
    std::thread::scope(|scope| {
        for (node, weight) in nodes.iter().zip(spread.weights(nodes.len())) {
            let rate = rate * weight;
            if rate == 0.0 {
                continue;
            }
            let (admitted, times, stop, body) = (&admitted, &times, &stop, &body);
            scope.spawn(move || {
                let mut sent = Vec::new();
                for k in 0u64.. {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    if due.saturating_duration_since(start).as_secs_f64() >= seconds
                        || stop.load(Ordering::Relaxed)
                    {
                        break;
                    }
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    sent.push(unix_nanos());
                    if node.check(body) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                times.lock().unwrap().extend(sent);
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    (admitted.into_inner(), times.into_inner().unwrap())
}
