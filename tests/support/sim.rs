//! Whole weir nodes inside a turmoil simulation: the engine on tokio's
//! simulated clock, chitchat's sealed gossip and the counter sync on
//! turmoil's UDP, and the HTTP server on turmoil's TCP. A client
//! host drives them over HTTP, as users do.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use weir::alerts::Alerts;
use weir::clock::TokioClock;
use weir::cluster::{ClusterNode, KeyringSource, Settings};
use weir::config::Config;
use weir::engine::Engine;
use weir::server::{self, App, ServeLimits};
use weir_cluster::transport::Datagram;

/// Simulated Unix time at the start: 2027-01-15.
pub const EPOCH: u64 = 1_800_000_000_000_000_000;
pub const HTTP_PORT: u16 = 7700;
pub const GOSSIP_PORT: u16 = 7702;
pub const SYNC_PORT: u16 = 7703;
/// The sync interval every simulated node uses.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// A token bucket (20/s, burst 20) and a sliding window (1000 a minute),
/// both keyed by user.
pub const BUCKET_AND_WINDOW: &str = r#"
[policies.bucket]
key = ["user"]
default_tier = "t"
[policies.bucket.tiers.t]
limits = [{ algorithm = "token_bucket", rate = "20/s", burst = 20 }]

[policies.window]
key = ["user"]
default_tier = "t"
[policies.window.tiers.t]
limits = [{ algorithm = "sliding_window", rate = "1000/m" }]
"#;

/// A datagram socket on turmoil's UDP, for the counter sync and the sealed
/// gossip; every `duplicate_every`-th datagram is sent twice (0: never).
pub struct SimSync {
    socket: turmoil::net::UdpSocket,
    duplicate_every: u64,
    sent: AtomicU64,
}

impl Datagram for SimSync {
    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        if self.duplicate_every > 0 && n.is_multiple_of(self.duplicate_every) {
            self.socket.send_to(buf, to).await?;
        }
        self.socket.send_to(buf, to).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// axum's listener over turmoil's TCP.
pub struct SimListener(turmoil::net::TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// How a simulated node runs.
#[derive(Clone, Copy)]
pub struct NodeSpec {
    /// Its host name.
    pub name: &'static str,
    /// The host it joins through, if any.
    pub seed: Option<&'static str>,
    /// Its config.
    pub config: &'static str,
    /// Sync datagrams sent twice: every n-th (0: never).
    pub duplicate_every: u64,
}

/// Registers a node host; it runs (and, after a bounce, runs again) until
/// the simulation ends.
pub fn add_node(sim: &mut turmoil::Sim<'_>, spec: NodeSpec) {
    sim.host(spec.name, move || run_node(spec));
}

/// Registers `names` as nodes running `config`, all joining through the
/// first.
pub fn add_cluster(
    sim: &mut turmoil::Sim<'_>,
    names: &[&'static str],
    config: &'static str,
    duplicate_every: u64,
) {
    for (i, name) in names.iter().enumerate() {
        let seed = (i > 0).then_some(names[0]);
        add_node(
            sim,
            NodeSpec {
                name,
                seed,
                config,
                duplicate_every,
            },
        );
    }
}

/// Whether every node of `names` sees all of them live within `limit`.
pub async fn all_see_each_other(names: &[&'static str], limit: Duration) -> bool {
    for name in names {
        let sees_all = || async move { live(name).await.len() == names.len() };
        if wait_for(limit, sees_all).await.is_none() {
            return false;
        }
    }
    true
}

/// How long until every node of `names` reports `remaining` for `body` (a
/// peek), or `None` after `limit`.
pub async fn agree_on(
    names: &[&'static str],
    body: &Value,
    remaining: u64,
    limit: Duration,
) -> Option<Duration> {
    wait_for(limit, || async move {
        for name in names {
            if peek(name, body).await != Some(remaining) {
                return false;
            }
        }
        true
    })
    .await
}

fn wildcard(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

async fn run_node(spec: NodeSpec) -> turmoil::Result {
    let ip = turmoil::lookup(spec.name);
    // Each start reads the simulated time, so a restarted node has a later
    // generation, as a real one does.
    let clock = Arc::new(TokioClock::new(EPOCH + turmoil::elapsed().as_nanos() as u64));
    let engine = Arc::new(Engine::new(Config::parse(spec.config)?, clock));
    let settings = Settings {
        node_id: spec.name.to_string(),
        cluster_id: "sim".into(),
        keyring: KeyringSource::given(vec![b"simulated-cluster-secret".to_vec()]),
        secret_grace: Duration::ZERO,
        gossip_addr: wildcard(GOSSIP_PORT),
        advertise_addr: SocketAddr::new(ip, GOSSIP_PORT),
        sync_addr: wildcard(SYNC_PORT),
        seeds: spec
            .seed
            .map(|seed| format!("{}:{GOSSIP_PORT}", turmoil::lookup(seed)))
            .into_iter()
            .collect(),
        sync_interval: SYNC_INTERVAL,
        resend_interval: Duration::from_secs(1),
        gossip_interval: Duration::from_millis(200),
        dead_node_grace: Duration::from_secs(30),
        http_addr: Some(SocketAddr::new(ip, HTTP_PORT)),
        http_tls: false,
        peer_ca: None,
    };
    let sync = SimSync {
        socket: turmoil::net::UdpSocket::bind(wildcard(SYNC_PORT)).await?,
        duplicate_every: spec.duplicate_every,
        sent: AtomicU64::new(0),
    };
    let gossip = SimSync {
        socket: turmoil::net::UdpSocket::bind(wildcard(GOSSIP_PORT)).await?,
        duplicate_every: 0,
        sent: AtomicU64::new(0),
    };
    let node = Arc::new(ClusterNode::start(engine.clone(), settings, gossip, sync).await?);
    let alerts = Alerts::install(engine.clone());
    alerts.set_cluster(&node);
    tokio::spawn(alerts.clone().run());
    let source = Arc::new(weir::config::source::ConfigSource::none(&engine.config()));
    let app = App::new(engine, source, None, None);
    let _ = app.cluster.set(node);
    let _ = app.alerts.set(alerts);
    let listener = SimListener(turmoil::net::TcpListener::bind(wildcard(HTTP_PORT)).await?);
    server::run(listener, app, ServeLimits::default(), std::future::pending()).await?;
    Ok(())
}

/// An HTTP/1.1 client over turmoil's TCP, one connection per request.
pub async fn http(
    host: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> turmoil::Result<(u16, Value)> {
    let stream = turmoil::net::TcpStream::connect((host, HTTP_PORT)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(Value::to_string).unwrap_or_default(),
        )))?;
    let reply = sender.send_request(request).await?;
    let status = reply.status().as_u16();
    let bytes = reply.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// A check against `host`: `Some(allowed)`, or `None` if the node did not
/// answer (crashed).
pub async fn check(host: &str, body: &Value) -> Option<bool> {
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        http(host, "POST", "/v1/check", Some(body)),
    )
    .await;
    match answer {
        Ok(Ok((200, _))) => Some(true),
        Ok(Ok((429, _))) => Some(false),
        Ok(Ok((status, body))) => panic!("{host} answered {status}: {body}"),
        _ => None,
    }
}

/// What `host` reports about a key without counting anything: its
/// `remaining`.
pub async fn peek(host: &str, body: &Value) -> Option<u64> {
    let mut body = body.clone();
    body["cost"] = 0.into();
    let (_, reply) = http(host, "POST", "/v1/check", Some(&body)).await.ok()?;
    reply["remaining"].as_u64()
}

/// `GET /v1/cluster` on `host`.
pub async fn cluster(host: &str) -> Value {
    http(host, "GET", "/v1/cluster", None)
        .await
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

/// Live node ids `host` sees.
pub async fn live(host: &str) -> Vec<String> {
    let status = cluster(host).await;
    let members = status["members"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<String> = members
        .iter()
        .filter(|m| m["live"] == true)
        .filter_map(|m| m["node_id"].as_str().map(String::from))
        .collect();
    ids.sort();
    ids
}

/// Waits (in simulated time) until `done` holds, polling every 100 ms;
/// returns how long it took, or `None` after `limit`.
pub async fn wait_for<F, Fut>(limit: Duration, mut done: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Sends `rate` checks per second of `body`, spread evenly over `hosts`
/// (one sender each), for `length`; returns (admitted, answered, sent).
pub async fn offer(hosts: &[&'static str], body: &Value, rate: f64, length: Duration) -> (u64, u64, u64) {
    let per_host = rate / hosts.len() as f64;
    let senders: Vec<_> = hosts
        .iter()
        .map(|host| {
            let (host, body) = (*host, body.clone());
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                let (mut admitted, mut answered, mut sent) = (0u64, 0u64, 0u64);
                for k in 0u64.. {
                    let due = start + Duration::from_secs_f64(k as f64 / per_host);
                    if due - start >= length {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    sent += 1;
                    if let Some(allowed) = check(host, &body).await {
                        admitted += allowed as u64;
                        answered += 1;
                    }
                }
                (admitted, answered, sent)
            })
        })
        .collect();
    let mut total = (0, 0, 0);
    for sender in senders {
        let (admitted, answered, sent) = sender.await.expect("sender finished");
        total = (total.0 + admitted, total.1 + answered, total.2 + sent);
    }
    total
}

/// A simulation with pinned randomness and room for long scenarios.
pub fn simulation(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build()
}

/// Puts weir's outbound connections (peers, webhooks) on turmoil's network.
pub fn use_simulated_network() {
    weir::net::set_connector(|host, port| {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as Box<dyn weir::net::Stream>)
        })
    });
}

/// Webhook bodies a receiver host got.
pub type Webhooks = Arc<Mutex<Vec<Value>>>;

/// Registers a host that takes webhooks on `port` and keeps their bodies.
pub fn add_receiver(sim: &mut turmoil::Sim<'_>, name: &'static str, port: u16) -> Webhooks {
    let received = Webhooks::default();
    let kept = received.clone();
    sim.host(name, move || {
        let kept = kept.clone();
        async move {
            let take = move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    hyper::StatusCode::NO_CONTENT
                }
            };
            let app = axum::Router::new().route("/hook", axum::routing::post(take));
            let listener = SimListener(turmoil::net::TcpListener::bind(wildcard(port)).await?);
            axum::serve(listener, app).await?;
            Ok(())
        }
    });
    received
}
