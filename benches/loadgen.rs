//! Load generator: weir's binary protocol against a Redis token-bucket Lua
//! script (EVALSHA), the common alternative, with the same connections,
//! pipeline depth, keys and duration, in one run.
//!
//! Run: `benches/compare-redis.sh` (installs redis-server if needed), or
//! `cargo bench --bench loadgen -- [--connections N] [--depth D]
//! [--seconds S] [--keys K] [--weir-workers W] [--alerts 1] [--ping 1]`.
//! weir runs with `--worker-threads 1` unless `--weir-workers` says
//! otherwise: on a small machine the load generator needs the other cores,
//! and Redis too executes commands on one thread. `--alerts 1` runs weir
//! again with an abuse rule every key trips, its webhooks going to a
//! receiver that is down. `--ping 1` also sends pings the same way: the
//! round trip with no work behind it, the ceiling for checks on this
//! machine. Without redis-server on PATH only weir is measured. Both
//! servers are started here, on free loopback ports, and stopped at the
//! end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use weir::protocol::{decode, encode, Frame, Opcode, WireCheck, WireDecision, WireKey, WireTarget};

const WEIR_CONFIG: &str = r#"
[store]
max_keys = 1_000_000
[policies.bench]
key = ["user"]
default_tier = "free"
[policies.bench.tiers.free]
limits = [{ algorithm = "token_bucket", rate = "1000/s", burst = 1000 }]
"#;

/// The same, plus an abuse rule that every key trips on its first check,
/// sending a webhook per key to a receiver that is down: `--alerts 1`
/// measures what an alert storm does to check latency.
const WEIR_ALERT_STORM: &str = r#"
[alerts]
webhook_secret_env = "WEIR_LOADGEN_WEBHOOK_SECRET"
[[alerts.rules]]
name = "storm"
policy = "bench"
when = "requests"
threshold = 1
within = "1m"
cooldown = "10m"
notify = ["http://127.0.0.1:9/down"]
"#;

/// The token bucket most Redis rate limiters run: refill, take, store.
const LUA_BUCKET: &str = r#"
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local allowed = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, math.floor(tokens)}
"#;

#[derive(Clone, Copy)]
struct Load {
    connections: usize,
    depth: usize,
    seconds: u64,
    keys: usize,
    /// Send pings instead of checks.
    ping: bool,
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while StdStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_weir(text: &str, workers: u64) -> (Server, u16) {
    let dir = std::env::temp_dir().join(format!("weir-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("weir.toml");
    std::fs::write(&config, text).unwrap();
    let (http, bin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args([
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--bin-addr",
            &format!("127.0.0.1:{bin}"),
        ])
        .args(["--log", "error", "--worker-threads", &workers.to_string()])
        .env("WEIR_LOADGEN_WEBHOOK_SECRET", "loadgen")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the weir binary");
    wait_for_port(bin);
    (Server(child), bin)
}

fn start_redis() -> Option<(Server, u16)> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_for_port(port);
    Some((Server(child), port))
}

fn resp_command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend(format!("${}\r\n", part.len()).into_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Loads the script; returns its SHA.
fn load_script(port: u16) -> String {
    let mut stream = StdStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(&resp_command(&[b"SCRIPT", b"LOAD", LUA_BUCKET.as_bytes()]))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with('$'), "SCRIPT LOAD answered {line}");
    let mut sha = vec![0u8; 40 + 2];
    reader.read_exact(&mut sha).unwrap();
    String::from_utf8(sha[..40].to_vec()).unwrap()
}

/// Reads one RESP reply (integers, arrays, errors); returns the first
/// integer, the `allowed` flag.
async fn read_resp<R: AsyncBufReadExt + Unpin>(reader: &mut R, line: &mut String) -> i64 {
    line.clear();
    reader.read_line(line).await.unwrap();
    match line.as_bytes()[0] {
        b'*' => {
            let count: usize = line[1..].trim().parse().unwrap();
            let mut first = 0;
            for i in 0..count {
                let value = Box::pin(read_resp(reader, line)).await;
                if i == 0 {
                    first = value;
                }
            }
            first
        }
        b':' => line[1..].trim().parse().unwrap(),
        _ => panic!("redis answered {line}"),
    }
}

struct Results {
    checks: usize,
    allowed: usize,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

/// Reads one reply from a connection; true if the check was allowed.
trait Replies {
    async fn next_allowed(&mut self) -> bool;
    /// More reply bytes are already buffered.
    fn buffered(&self) -> bool;
}

struct WeirReplies(AsyncBufReader<OwnedReadHalf>);

impl Replies for WeirReplies {
    async fn next_allowed(&mut self) -> bool {
        let mut prefix = [0u8; 4];
        self.0.read_exact(&mut prefix).await.unwrap();
        let mut bytes = vec![0u8; u32::from_le_bytes(prefix) as usize];
        self.0.read_exact(&mut bytes).await.unwrap();
        let frame = Frame::parse(&bytes).unwrap();
        frame.opcode == Opcode::Pong || decode::<WireDecision>(&frame.body).unwrap().allowed
    }

    fn buffered(&self) -> bool {
        !self.0.buffer().is_empty()
    }
}

struct RedisReplies(AsyncBufReader<OwnedReadHalf>, String);

impl Replies for RedisReplies {
    async fn next_allowed(&mut self) -> bool {
        read_resp(&mut self.0, &mut self.1).await == 1
    }

    fn buffered(&self) -> bool {
        !self.0.buffer().is_empty()
    }
}

/// Runs one connection: keeps `depth` requests in flight until `until`.
async fn drive(
    mut writer: OwnedWriteHalf,
    mut replies: impl Replies,
    request: impl Fn(u64) -> Vec<u8>,
    depth: usize,
    until: Instant,
) -> (usize, usize, Vec<u32>) {
    let mut sent = std::collections::VecDeque::with_capacity(depth);
    let mut latencies = Vec::new();
    let (mut checks, mut allowed, mut next) = (0, 0, 0u64);
    let mut batch = Vec::new();
    for _ in 0..depth {
        batch.extend(request(next));
        sent.push_back(Instant::now());
        next += 1;
    }
    writer.write_all(&batch).await.unwrap();
    batch.clear();
    while let Some(started) = sent.pop_front() {
        allowed += replies.next_allowed().await as usize;
        latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        checks += 1;
        if Instant::now() < until {
            batch.extend(request(next));
            sent.push_back(Instant::now());
            next += 1;
        }
        // Like any pipelining client: send what is ready before waiting.
        if !replies.buffered() && !batch.is_empty() {
            writer.write_all(&batch).await.unwrap();
            batch.clear();
        }
    }
    (checks, allowed, latencies)
}

fn key_of(i: u64, connection: usize, keys: usize) -> String {
    format!("u{}", (i as usize * 7919 + connection * 104_729) % keys)
}

async fn run_weir(port: u16, load: Load) -> Results {
    let until = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..load.connections {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (reader, writer) = stream.into_split();
        let request = move |i: u64| {
            if load.ping {
                return Frame {
                    version: 1,
                    opcode: Opcode::Ping,
                    request_id: i,
                    body: Vec::new(),
                }
                .to_bytes();
            }
            let check = WireCheck {
                target: WireTarget::Policy("bench".into()),
                key: WireKey {
                    user: Some(key_of(i, connection, load.keys)),
                    ..WireKey::default()
                },
                tier: None,
                cost: None,
            };
            Frame {
                version: 1,
                opcode: Opcode::Check,
                request_id: i,
                body: encode(&check),
            }
            .to_bytes()
        };
        let replies = WeirReplies(AsyncBufReader::new(reader));
        tasks.push(tokio::spawn(drive(writer, replies, request, load.depth, until)));
    }
    collect(tasks, started).await
}

async fn run_redis(port: u16, sha: String, load: Load) -> Results {
    let until = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let clock = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..load.connections {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (reader, writer) = stream.into_split();
        let sha = sha.clone();
        let request = move |i: u64| {
            let key = key_of(i, connection, load.keys);
            let now = (1_800_000_000_000u128 + clock.elapsed().as_millis()).to_string();
            resp_command(&[
                b"EVALSHA",
                sha.as_bytes(),
                b"1",
                key.as_bytes(),
                b"1000",
                b"1000",
                now.as_bytes(),
                b"1",
            ])
        };
        let replies = RedisReplies(AsyncBufReader::new(reader), String::new());
        tasks.push(tokio::spawn(drive(writer, replies, request, load.depth, until)));
    }
    collect(tasks, started).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<(usize, usize, Vec<u32>)>>, started: Instant) -> Results {
    let mut results = Results {
        checks: 0,
        allowed: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (checks, allowed, latencies) = task.await.unwrap();
        results.checks += checks;
        results.allowed += allowed;
        results.latencies_us.extend(latencies);
    }
    results.elapsed = started.elapsed();
    results.latencies_us.sort_unstable();
    results
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, results: &Results) -> f64 {
    let rate = results.checks as f64 / results.elapsed.as_secs_f64();
    let l = &results.latencies_us;
    println!(
        "{name:>10}: {:>9.0} checks/s  p50 {:>5} us  p90 {:>5} us  p99 {:>5} us  p99.9 {:>6} us  ({} checks, {} allowed)",
        rate,
        percentile(l, 0.50),
        percentile(l, 0.90),
        percentile(l, 0.99),
        percentile(l, 0.999),
        results.checks,
        results.allowed
    );
    rate
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let load = Load {
        connections: arg(&args, "--connections", 8) as usize,
        depth: arg(&args, "--depth", 16) as usize,
        seconds: arg(&args, "--seconds", 5),
        keys: arg(&args, "--keys", 10_000) as usize,
        ping: false,
    };
    let workers = arg(&args, "--weir-workers", 1);
    println!(
        "{} connections x {} in flight, {} s, {} keys (token bucket 1000/s, burst 1000), weir on {workers} worker thread(s)",
        load.connections, load.depth, load.seconds, load.keys
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (weir, weir_port) = start_weir(WEIR_CONFIG, workers);
    let weir_results = runtime.block_on(run_weir(weir_port, load));
    drop(weir);
    let weir_rate = report("weir", &weir_results);
    if arg(&args, "--ping", 0) > 0 {
        let (weir, weir_port) = start_weir(WEIR_CONFIG, workers);
        let ping = Load { ping: true, ..load };
        let results = runtime.block_on(run_weir(weir_port, ping));
        drop(weir);
        let ping_rate = report("weir ping", &results);
        println!("weir checks / pings: {:.2}", weir_rate / ping_rate);
    }
    if arg(&args, "--alerts", 0) > 0 {
        let counting = WEIR_ALERT_STORM.replace("threshold = 1\n", "threshold = 4000000000\n");
        for (name, rule) in [
            ("weir, a rule counting every check", counting.as_str()),
            (
                "weir, every key alerting, webhook receiver down",
                WEIR_ALERT_STORM,
            ),
        ] {
            let (weir, weir_port) = start_weir(&format!("{WEIR_CONFIG}{rule}"), workers);
            let results = runtime.block_on(run_weir(weir_port, load));
            drop(weir);
            report(name, &results);
        }
    }
    match start_redis() {
        Some((redis, port)) => {
            let sha = load_script(port);
            let redis_results = runtime.block_on(run_redis(port, sha, load));
            drop(redis);
            let redis_rate = report("redis+lua", &redis_results);
            println!("weir / redis+lua throughput: {:.2}x", weir_rate / redis_rate);
        }
        None => println!("redis-server not found: run benches/compare-redis.sh to compare"),
    }
}
