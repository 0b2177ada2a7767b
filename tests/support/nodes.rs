//! Real `weir serve` processes on loopback, clustered: shared by the
//! cluster process test and the accuracy benchmark.

#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The secret every test cluster shares.
pub const SECRET: &str = "test-cluster-secret-0123456789";

/// A TCP port free on loopback now.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One running node, killed when dropped.
pub struct Node {
    child: Child,
    /// Its node id.
    pub id: String,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// Its gossip address, for other nodes' `--seed`.
    pub gossip: String,
    agent: ureq::Agent,
}

/// Where a node listens.
#[derive(Debug, Clone)]
pub struct Addrs {
    /// HTTP, `ip:port`.
    pub http: String,
    /// Gossip, `ip:port`.
    pub gossip: String,
    /// Counter sync, `ip:port`.
    pub sync: String,
    /// Binary protocol, `ip:port`.
    pub bin: String,
}

impl Addrs {
    /// Free ports on loopback.
    pub fn loopback() -> Self {
        Self {
            http: format!("127.0.0.1:{}", free_tcp_port()),
            gossip: format!("127.0.0.1:{}", free_udp_port()),
            sync: format!("127.0.0.1:{}", free_udp_port()),
            bin: format!("127.0.0.1:{}", free_tcp_port()),
        }
    }
}

/// How a node is started.
#[derive(Debug, Clone, Default)]
pub struct Launch<'a> {
    /// Gossip addresses to join through.
    pub seeds: &'a [String],
    /// More `serve` flags.
    pub extra: &'a [&'a str],
    /// Without a cluster secret: a standalone node.
    pub standalone: bool,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<&'a str>,
    /// Append the node's log (stderr) to this file.
    pub log: Option<&'a Path>,
}

impl Node {
    /// Starts node `id` with `config` (a TOML file) on loopback, joining
    /// `seeds`.
    pub fn start(id: &str, config: &Path, seeds: &[String], extra: &[&str]) -> Self {
        let launch = Launch {
            seeds,
            extra,
            ..Launch::default()
        };
        Self::launch(id, config, Addrs::loopback(), &launch)
    }

    /// Starts node `id` on its own: no cluster secret, no cluster.
    pub fn start_standalone(id: &str, config: &Path) -> Self {
        let launch = Launch {
            standalone: true,
            ..Launch::default()
        };
        Self::launch(id, config, Addrs::loopback(), &launch)
    }

    /// Starts node `id` listening on `addrs`, as `launch` says.
    pub fn launch(id: &str, config: &Path, addrs: Addrs, launch: &Launch<'_>) -> Self {
        let Addrs {
            http,
            gossip,
            sync,
            bin,
        } = addrs;
        let weir = env!("CARGO_BIN_EXE_weir");
        let mut command = match launch.netns {
            Some(netns) => {
                // `ip netns exec` execs weir, so the child is weir itself.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, weir]);
                command
            }
            None => Command::new(weir),
        };
        command
            .args(["serve", "--node-id", id, "--http-addr", &http, "--bin-addr", &bin])
            .args(["--gossip-addr", &gossip, "--sync-addr", &sync])
            .arg("--config")
            .arg(config)
            .args(["--log", "warn"])
            .args(launch.extra)
            .env_remove("WEIR_CLUSTER_SECRET")
            .env_remove("WEIR_SEEDS")
            .env_remove("WEIR_CONFIG")
            .stdout(Stdio::null());
        match launch.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                command.stderr(file);
            }
            None => {
                command.stderr(Stdio::null());
            }
        }
        if !launch.standalone {
            command.env("WEIR_CLUSTER_SECRET", SECRET);
        }
        for seed in launch.seeds {
            command.args(["--seed", seed]);
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let node = Self {
            child: command.spawn().expect("weir starts"),
            id: id.to_string(),
            base: format!("http://{http}"),
            gossip,
            agent,
        };
        node.wait_until(Duration::from_secs(20), "ready", |n| {
            n.get("/readyz").is_some_and(|r| r["status"] == "ready")
        });
        node
    }

    /// `GET path` as JSON, `None` if unreachable.
    pub fn get(&self, path: &str) -> Option<Value> {
        let mut reply = self.agent.get(format!("{}{path}", self.base)).call().ok()?;
        reply.body_mut().read_json().ok()
    }

    /// `GET path` as JSON with the bearer token `token`.
    pub fn get_as(&self, path: &str, token: &str) -> Option<Value> {
        let request = self.agent.get(format!("{}{path}", self.base));
        let mut reply = request
            .header("authorization", &format!("Bearer {token}"))
            .call()
            .ok()?;
        reply.body_mut().read_json().ok()
    }

    /// `GET path` as text, `None` if unreachable.
    pub fn get_text(&self, path: &str) -> Option<String> {
        let mut reply = self.agent.get(format!("{}{path}", self.base)).call().ok()?;
        reply.body_mut().read_to_string().ok()
    }

    /// `POST path` with a JSON body: the JSON reply (null if unreachable).
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let reply = self.agent.post(format!("{}{path}", self.base)).send_json(body);
        reply
            .ok()
            .and_then(|mut reply| reply.body_mut().read_json().ok())
            .unwrap_or_default()
    }

    /// `POST path` with a JSON body and the bearer token `token`: the
    /// JSON reply (null if unreachable or not JSON).
    pub fn post_as(&self, path: &str, token: &str, body: &Value) -> Value {
        let request = self.agent.post(format!("{}{path}", self.base));
        let reply = request
            .header("authorization", &format!("Bearer {token}"))
            .send_json(body);
        reply
            .ok()
            .and_then(|mut reply| reply.body_mut().read_json().ok())
            .unwrap_or_default()
    }

    /// `POST /v1/check`: whether it was allowed.
    pub fn check(&self, body: &Value) -> bool {
        let reply = self
            .agent
            .post(format!("{}/v1/check", self.base))
            .send_json(body)
            .expect("weir answers");
        match reply.status().as_u16() {
            200 => true,
            429 => false,
            other => panic!("unexpected status {other}"),
        }
    }

    /// The `remaining` of a peek (cost 0) of `body`, `None` without one.
    pub fn peek_remaining(&self, body: &Value) -> Option<u64> {
        let mut peek = body.clone();
        peek["cost"] = serde_json::json!(0);
        self.post("/v1/check", &peek)["remaining"].as_u64()
    }

    /// The value of the `/metrics` sample that starts with `sample` (name
    /// and labels), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let metrics = self.get_text("/metrics").unwrap_or_default();
        metric_in(&metrics, sample).unwrap_or(0.0)
    }

    /// Live members this node sees, itself included.
    pub fn live_members(&self) -> Vec<String> {
        let Some(status) = self.get("/v1/cluster") else {
            return Vec::new();
        };
        let members = status["members"].as_array().cloned().unwrap_or_default();
        members
            .iter()
            .filter(|m| m["live"] == true)
            .filter_map(|m| m["node_id"].as_str().map(String::from))
            .collect()
    }

    /// Waits until `condition` holds, or panics naming `what`.
    pub fn wait_until(&self, timeout: Duration, what: &str, condition: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {}: not {what} after {timeout:?}", self.id);
    }

    /// `PUT path` with `body` (JSON if it starts with `{`, else TOML) and
    /// the admin token `token`: the status.
    pub fn put(&self, path: &str, token: &str, body: &str) -> u16 {
        let kind = match body.starts_with('{') {
            true => "application/json",
            false => "application/toml",
        };
        let reply = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", kind)
            .send(body)
            .expect("weir answers");
        reply.status().as_u16()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal called `name` (`HUP`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-s", name, &pid]).status();
    }

    /// Stops the process with SIGTERM, as an orchestrator does, and waits
    /// for it to exit.
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let _ = self.child.wait();
    }

    /// Kills the process at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `text` as `weir.toml` in a directory of its own (per test
/// process and `name`); returns its path.
pub fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `count` nodes (the first is every other's seed) and waits until
/// each sees all of them live.
pub fn start_cluster(count: usize, config: &Path, extra: &[&str]) -> Vec<Node> {
    let first = Node::start("node-0", config, &[], extra);
    let seeds = vec![first.gossip.clone()];
    let mut nodes = vec![first];
    for i in 1..count {
        nodes.push(Node::start(&format!("node-{i}"), config, &seeds, extra));
    }
    for node in &nodes {
        node.wait_until(Duration::from_secs(30), "seeing every member", |n| {
            n.live_members().len() == count
        });
    }
    nodes
}

/// The value of the sample in Prometheus text `metrics` that starts with
/// `sample` (name and labels).
pub fn metric_in(metrics: &str, sample: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
}
