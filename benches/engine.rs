//! Decision cost: weir's engine against governor's keyed limiter, measured in
//! the same run. One thread on an existing key; two threads on distinct keys
//! and on one hot key. Limits are set high so every check takes the allowed
//! path, as most production checks do.
//!
//! Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use governor::{Quota, RateLimiter};
use weir::clock::{Clock, QuantaClock, SECOND};
use weir::config::Config;
use weir::engine::{CheckRequest, Engine, RequestKey};
use weir::limiter::{Limit, TokenBucket};
use weir::store::Store;

const ONE_LIMIT: &str = r#"
[policies.bucket]
key = ["user"]
default_tier = "free"
[policies.bucket.tiers.free]
limits = [{ algorithm = "token_bucket", rate = "1000000000/s", burst = 1000000000 }]

[policies.two]
key = ["user"]
default_tier = "free"
[policies.two.tiers.free]
limits = [
  { name = "burst", algorithm = "token_bucket", rate = "1000000000/s", burst = 1000000000 },
  { name = "daily", algorithm = "sliding_window", rate = "4000000000/day" },
]
"#;

fn engine() -> Arc<Engine> {
    Arc::new(Engine::new(
        Config::parse(ONE_LIMIT).unwrap(),
        Arc::new(QuantaClock::new()),
    ))
}

fn request(policy: &str, user: &str) -> CheckRequest {
    CheckRequest::policy(
        policy,
        RequestKey {
            user: Some(user.into()),
            ..RequestKey::default()
        },
    )
}

type Keyed = governor::DefaultKeyedRateLimiter<String>;

fn governor() -> Arc<Keyed> {
    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).unwrap());
    Arc::new(RateLimiter::keyed(quota))
}

fn one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("check/one_thread");
    group.throughput(Throughput::Elements(1));

    let weir = engine();
    for policy in ["bucket", "two"] {
        let check = request(policy, "alice");
        weir.check(&check).unwrap();
        // The hot path: the borrowed verdict, as a protocol server reads it.
        group.bench_function(BenchmarkId::new("weir_engine", policy), |b| {
            b.iter(|| black_box(weir.check_with(black_box(&check), |v| v.allowed()).unwrap()))
        });
        // Plus an owned, serializable decision, as the HTTP API builds.
        group.bench_function(BenchmarkId::new("weir_engine_owned_decision", policy), |b| {
            b.iter(|| black_box(weir.check(black_box(&check)).unwrap().allowed))
        });
    }

    let limiter = governor();
    let key = String::from("alice");
    limiter.check_key(&key).unwrap();
    group.bench_function("governor_keyed", |b| {
        b.iter(|| black_box(limiter.check_key(black_box(&key)).is_ok()))
    });

    // weir's keyed-state layer given a built key, as governor's check_key is:
    // hash, shard lock, entry, bucket decision and commit.
    let bucket_limit = Limit::TokenBucket(TokenBucket::new(
        "1000000000/s".parse().unwrap(),
        NonZeroU32::new(1_000_000_000).unwrap(),
    ));
    let clock = QuantaClock::new();
    let store = Store::new(1_000_000, clock.now());
    let key = "bucket\0free\0ualice";
    group.bench_function("weir_keyed_state", |b| {
        b.iter(|| {
            let now = clock.now();
            let hash = store.hash(black_box(key));
            let mut locked = store.lock(&[hash]);
            let entry = locked.entry(hash, key, now, SECOND, || Box::new([bucket_limit.new_state()]));
            let state = &mut entry.limits[0];
            let outcome = bucket_limit.evaluate(state, now, 1);
            if outcome.allowed {
                bucket_limit.commit(state, now, 1);
            }
            black_box(outcome.allowed)
        })
    });

    let bucket = Limit::TokenBucket(TokenBucket::new(
        "1000000000/s".parse().unwrap(),
        NonZeroU32::new(1_000_000_000).unwrap(),
    ));
    let mut state = bucket.new_state();
    let clock = quanta::Clock::new();
    let start = clock.now();
    group.bench_function("weir_bucket_alone", |b| {
        b.iter(|| {
            let now = 1_700_000_000_000_000_000 + clock.now().duration_since(start).as_nanos() as u64;
            let outcome = bucket.evaluate(&mut state, now, 1);
            bucket.commit(&mut state, now, 1);
            black_box(outcome.allowed)
        })
    });
    group.finish();
}

/// Runs `work(thread, iterations)` on two threads at once; the time is the
/// slower thread's.
fn on_two_threads(iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|thread| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(thread, iters);
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("check/two_threads");
    group.throughput(Throughput::Elements(2));
    for (case, keys) in [
        ("distinct_keys", ["alice", "bob"]),
        ("hot_key", ["alice", "alice"]),
    ] {
        let weir = engine();
        let checks = keys.map(|user| request("bucket", user));
        group.bench_function(BenchmarkId::new("weir_engine", case), |b| {
            b.iter_custom(|iters| {
                on_two_threads(iters, |thread, n| {
                    for _ in 0..n {
                        black_box(weir.check_with(&checks[thread], |v| v.allowed()).unwrap());
                    }
                })
            })
        });
        let limiter = governor();
        let names = keys.map(String::from);
        group.bench_function(BenchmarkId::new("governor_keyed", case), |b| {
            b.iter_custom(|iters| {
                on_two_threads(iters, |thread, n| {
                    for _ in 0..n {
                        black_box(limiter.check_key(&names[thread]).is_ok());
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = one_thread, two_threads
}
criterion_main!(benches);
