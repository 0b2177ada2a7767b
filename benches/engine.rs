//! Decision cost: weir's engine against governor's keyed limiter, measured in
//! the same run, and weir's engine with usage analytics on
//! (`weir_engine_usage`) against the same engine without them. One thread on an existing key; two threads on distinct keys
//! and on one hot key. Limits are set high so every check takes the allowed
//! path, as most production checks do.
//!
//! `scaling` prints throughput over 1..N threads (N = available cores) on
//! distinct keys, weir and governor alike. `observe/two_threads` writes the
//! servers' check-latency histogram from two threads, against
//! `prometheus-client`'s.
//!
//! Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use governor::{Quota, RateLimiter};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use weir::clock::{Clock, QuantaClock, SECOND};
use weir::config::Config;
use weir::engine::{CheckRequest, Engine, RequestKey};
use weir::limiter::{Limit, TokenBucket};
use weir::server::latency::LatencyHistogram;
use weir::store::{States, Store};
use weir::usage::{Usage, UsageSettings};

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

/// An engine with usage analytics recording every check, drained every
/// second as `weir serve` does, on a thread that stops with the bench.
fn engine_with_usage() -> (Arc<Engine>, Arc<std::sync::atomic::AtomicBool>) {
    let engine = engine();
    let usage = Usage::install(engine.clone(), UsageSettings::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_secs(1));
            usage.drain();
        }
    });
    (engine, stop)
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

    let (with_usage, stop) = engine_with_usage();
    for policy in ["bucket", "two"] {
        let check = request(policy, "alice");
        with_usage.check(&check).unwrap();
        group.bench_function(BenchmarkId::new("weir_engine_usage", policy), |b| {
            b.iter(|| black_box(with_usage.check_with(black_box(&check), |v| v.allowed()).unwrap()))
        });
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

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
    let capacity = weir::store::Capacity {
        max_keys: 1_000_000,
        max_memory: 1 << 30,
    };
    let store = Store::new(capacity, clock.now());
    let key = "bucket\0free\0ualice";
    group.bench_function("weir_keyed_state", |b| {
        b.iter(|| {
            let now = clock.now();
            let hash = store.hash(black_box(key));
            let mut locked = store.lock(&[hash]);
            let entry = locked.entry(hash, key, now, SECOND, || States::One(bucket_limit.new_state()));
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

/// Runs `work(thread, iterations)` on `threads` threads at once; the time is
/// the slowest thread's.
fn on_threads(threads: usize, iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
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
                on_threads(2, iters, |thread, n| {
                    for _ in 0..n {
                        black_box(weir.check_with(&checks[thread], |v| v.allowed()).unwrap());
                    }
                })
            })
        });
        let (with_usage, stop) = engine_with_usage();
        group.bench_function(BenchmarkId::new("weir_engine_usage", case), |b| {
            b.iter_custom(|iters| {
                on_threads(2, iters, |thread, n| {
                    for _ in 0..n {
                        black_box(with_usage.check_with(&checks[thread], |v| v.allowed()).unwrap());
                    }
                })
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let limiter = governor();
        let names = keys.map(String::from);
        group.bench_function(BenchmarkId::new("governor_keyed", case), |b| {
            b.iter_custom(|iters| {
                on_threads(2, iters, |thread, n| {
                    for _ in 0..n {
                        black_box(limiter.check_key(&names[thread]).is_ok());
                    }
                })
            })
        });
    }
    group.finish();
}

/// Throughput over 1..N threads (N = available cores), each on keys of its
/// own, for weir's engine and governor in the same run: prints checks per
/// second and the speed-up over one thread, so a bigger machine shows how
/// far each scales. Best of five rounds of 1,000,000 checks per thread.
fn scaling(_: &mut Criterion) {
    const CHECKS: u64 = 1_000_000;
    const ROUNDS: usize = 5;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let run = |threads: usize, work: &(dyn Fn(usize, u64) + Sync)| -> f64 {
        let best = (0..ROUNDS)
            .map(|_| on_threads(threads, CHECKS, work))
            .min()
            .unwrap();
        (threads as u64 * CHECKS) as f64 / best.as_secs_f64()
    };
    let weir = engine();
    let checks: Vec<CheckRequest> = (0..cores)
        .map(|t| request("bucket", &format!("user-{t}")))
        .collect();
    let limiter = governor();
    let names: Vec<String> = (0..cores).map(|t| format!("user-{t}")).collect();
    let weir_work = |thread: usize, n: u64| {
        for _ in 0..n {
            black_box(weir.check_with(&checks[thread], |v| v.allowed()).unwrap());
        }
    };
    let governor_work = |thread: usize, n: u64| {
        for _ in 0..n {
            black_box(limiter.check_key(&names[thread]).is_ok());
        }
    };
    for (name, work) in [
        ("weir_engine", &weir_work as &(dyn Fn(usize, u64) + Sync)),
        ("governor_keyed", &governor_work),
    ] {
        let one = run(1, work);
        for threads in 1..=cores {
            let rate = if threads == 1 { one } else { run(threads, work) };
            println!(
                "scaling/{name}/{threads}_threads: {:.2} M checks/s, {:.2}x one thread",
                rate / 1e6,
                rate / one
            );
        }
    }
}

/// The cost of usage analytics per check, robust to this VM's drift: the
/// same check on an engine without and one with analytics, in alternating
/// rounds; prints the medians and the median of the per-round differences.
fn usage_overhead(_: &mut Criterion) {
    const ROUNDS: usize = 41;
    const CHECKS: u32 = 200_000;
    let plain = engine();
    let (with_usage, stop) = engine_with_usage();
    for policy in ["bucket", "two"] {
        let check = request(policy, "alice");
        let time = |engine: &Engine| {
            let start = Instant::now();
            for _ in 0..CHECKS {
                black_box(engine.check_with(black_box(&check), |v| v.allowed()).unwrap());
            }
            start.elapsed().as_nanos() as f64 / CHECKS as f64
        };
        time(&plain);
        time(&with_usage);
        let mut rounds: Vec<(f64, f64)> = (0..ROUNDS).map(|_| (time(&plain), time(&with_usage))).collect();
        let median = |mut xs: Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let without = median(rounds.iter().map(|r| r.0).collect());
        let with = median(rounds.iter().map(|r| r.1).collect());
        rounds.sort_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)));
        let difference = median(rounds.iter().map(|r| r.1 - r.0).collect());
        println!(
            "usage_overhead/{policy}: without {without:.1} ns, with {with:.1} ns, \
             per-round difference median {difference:+.1} ns ({ROUNDS} alternating rounds of {CHECKS})"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The cost of abuse-alert rules per check, measured like
/// [`usage_overhead`]: the same allowed check on an engine without rules,
/// with a `requests` rule (each check is also counted in the rule's window),
/// and with that rule past its threshold, alarms going to a running alerts
/// room whose webhook receiver is down (nothing listens on its port).
fn alerts_overhead(_: &mut Criterion) {
    const ROUNDS: usize = 41;
    const CHECKS: u32 = 200_000;
    let rule = |threshold: u64| {
        format!(
            "{ONE_LIMIT}[alerts]\nwebhook_secret_env = \"WEIR_BENCH_SECRET\"\n[[alerts.rules]]\nname = \"r\"\npolicy = \"bucket\"\n\
             when = \"requests\"\nthreshold = {threshold}\nwithin = \"1m\"\ncooldown = \"1s\"\nnotify = [\"http://127.0.0.1:9/down\"]\n"
        )
    };
    std::env::set_var("WEIR_BENCH_SECRET", "bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let with_rules = |threshold| {
        let engine = Arc::new(Engine::new(
            Config::parse(&rule(threshold)).unwrap(),
            Arc::new(QuantaClock::new()),
        ));
        let alerts = weir::alerts::Alerts::install(engine.clone());
        runtime.spawn(alerts.run());
        engine
    };
    let plain = engine();
    let counting = with_rules(4_000_000_000);
    let alarming = with_rules(1);
    let check = request("bucket", "alice");
    let time = |engine: &Engine| {
        let start = Instant::now();
        for _ in 0..CHECKS {
            black_box(engine.check_with(black_box(&check), |v| v.allowed()).unwrap());
        }
        start.elapsed().as_nanos() as f64 / CHECKS as f64
    };
    for (case, engine) in [
        ("requests_rule", &counting),
        ("past_threshold_receiver_down", &alarming),
    ] {
        time(&plain);
        time(engine);
        let rounds: Vec<(f64, f64)> = (0..ROUNDS).map(|_| (time(&plain), time(engine))).collect();
        let median = |mut xs: Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let without = median(rounds.iter().map(|r| r.0).collect());
        let with = median(rounds.iter().map(|r| r.1).collect());
        let difference = median(rounds.iter().map(|r| r.1 - r.0).collect());
        println!(
            "alerts_overhead/{case}: without rules {without:.1} ns, with {with:.1} ns, \
             per-round difference median {difference:+.1} ns ({ROUNDS} alternating rounds of {CHECKS})"
        );
    }
}

/// The servers' check-latency histogram written from two threads at once,
/// as two workers do on every check: `prometheus-client`'s histogram (one
/// mutex) against weir's, whose threads write lines of their own.
fn latency_histogram(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe/two_threads");
    group.throughput(Throughput::Elements(2));
    let elapsed = Duration::from_micros(3);
    let library = Histogram::new(exponential_buckets(1e-6, 4.0, 12));
    group.bench_function("prometheus_client_histogram", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |_, n| {
                for _ in 0..n {
                    library.observe(black_box(elapsed).as_secs_f64());
                }
            })
        })
    });
    let ours = LatencyHistogram::default();
    group.bench_function("weir_latency_histogram", |b| {
        b.iter_custom(|iters| {
            on_threads(2, iters, |_, n| {
                for _ in 0..n {
                    ours.observe(black_box(elapsed));
                }
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = one_thread, two_threads, scaling, usage_overhead, alerts_overhead, latency_histogram
}
criterion_main!(benches);
