//! Cluster security with real processes on loopback: what crosses the wire
//! is unreadable (a tcpdump capture holds no key, cluster id or node id),
//! outsiders (a weir with another secret, plain chitchat) neither join nor
//! learn nor inject anything, and a secret rotates over three nodes, one
//! restart at a time, without a partition.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::nodes::{config_file, Addrs, Launch, Node};

const CONFIG: &str = r#"
[policies.hourly]
key = ["user"]
default_tier = "free"
[policies.hourly.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "1000/hour" }]
"#;

const OLD: &str = "old-secret-0123456789abcdef";
const NEW: &str = "new-secret-0123456789abcdef";

fn random() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

fn request(user: &str) -> Value {
    json!({ "policy": "hourly", "key": { "user": user } })
}

fn remaining(node: &Node, user: &str) -> u64 {
    node.peek_remaining(&request(user)).unwrap_or(0)
}

/// Starts node `id` joining through `seeds`, with `secrets` as its keyring
/// (flags, the first seals) and `extra` flags.
fn start(id: &str, seeds: &[String], secrets: &[&str], extra: &[&str]) -> Node {
    let config = config_file("security", CONFIG);
    let mut flags: Vec<&str> = Vec::new();
    for secret in secrets {
        flags.extend(["--cluster-secret", secret]);
    }
    flags.extend_from_slice(extra);
    // The keyring comes from the flags (or a file in `extra`) alone, not
    // from the test cluster's environment.
    let launch = Launch {
        seeds,
        extra: &flags,
        standalone: true,
        ..Launch::default()
    };
    Node::launch(id, &config, Addrs::loopback(), &launch)
}

fn wait_for_members(nodes: &[&Node], count: usize) {
    for node in nodes {
        node.wait_until(Duration::from_secs(30), "seeing every member live", |n| {
            n.live_members().len() == count
        });
    }
}

fn members(node: &Node) -> Vec<String> {
    let status = node.get("/v1/cluster").unwrap_or_default();
    let listed = status["members"].as_array().cloned().unwrap_or_default();
    listed
        .iter()
        .filter_map(|m| m["node_id"].as_str().map(String::from))
        .collect()
}

/// tcpdump on loopback, writing UDP packets to a file until stopped.
struct Capture {
    child: std::process::Child,
    file: PathBuf,
}

impl Capture {
    fn start() -> Self {
        let file = std::env::temp_dir().join(format!("weir-capture-{}.pcap", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let log = std::env::temp_dir().join(format!("weir-capture-{}.log", std::process::id()));
        let child = Command::new("tcpdump")
            // Immediate mode: libpcap's ring otherwise holds packets for up
            // to a second, and a stop in that second loses them.
            .args([
                "-i",
                "lo",
                "--immediate-mode",
                "-U",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
            ])
            .arg(&file)
            .arg("udp")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("tcpdump runs (make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(Instant::now() < deadline, "tcpdump listens");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, file }
    }

    /// Waits until `needle` has reached the capture file (bounded).
    fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if contains(&std::fs::read(&self.file).unwrap_or_default(), needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops the capture; the bytes captured.
    fn stop(mut self) -> Vec<u8> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
        std::fs::read(&self.file).unwrap()
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn no_key_cluster_id_or_node_id_crosses_the_wire_in_the_clear() {
    let capture = Capture::start();
    let tag = random();
    let (cluster_id, user) = (format!("cluster-{tag}"), format!("user-{tag}"));
    let ids: Vec<String> = (0..3).map(|i| format!("node-{tag}-{i}")).collect();
    let extra = ["--cluster-id", &cluster_id];
    let first = start(&ids[0], &[], &[OLD], &extra);
    let seeds = vec![first.gossip.clone()];
    let second = start(&ids[1], &seeds, &[OLD], &extra);
    let third = start(&ids[2], &seeds, &[OLD], &extra);
    let nodes = [&first, &second, &third];
    wait_for_members(&nodes, 3);
    for (i, node) in nodes.iter().enumerate() {
        for _ in 0..(10 * (i + 1)) {
            assert!(node.check(&request(&user)));
        }
    }
    for node in nodes {
        node.wait_until(Duration::from_secs(10), "agreeing on the count", |n| {
            remaining(n, &user) == 940
        });
    }
    // Control: a datagram in the clear is caught by this capture.
    let canary = format!("canary-{tag}");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(canary.as_bytes(), &first.gossip).unwrap();
    let seen = capture.wait_for(&canary);
    let captured = capture.stop();

    assert!(
        seen,
        "the capture sees loopback UDP ({} bytes captured)",
        captured.len()
    );
    // Three nodes gossiping for a second or more, and their counter sync.
    assert!(captured.len() > 10_000, "{} bytes captured", captured.len());
    for needle in [&user, &cluster_id, &ids[0], &ids[1], &ids[2]] {
        assert!(
            !contains(&captured, needle),
            "{needle} crossed the wire in the clear"
        );
    }
}

/// A chitchat node with no sealing, gossiping to `seed` as cluster `weir`.
fn plain_chitchat(seed: &str, runtime: &tokio::runtime::Runtime) -> weir_cluster::chitchat::ChitchatHandle {
    use weir_cluster::chitchat::transport::UdpTransport;
    use weir_cluster::chitchat::{spawn_chitchat, ChitchatConfig, ChitchatId, FailureDetectorConfig};
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new("plain".to_string(), 1, addr),
        cluster_id: "weir".into(),
        gossip_interval: Duration::from_millis(100),
        listen_addr: addr,
        seed_nodes: vec![seed.to_string()],
        failure_detector_config: FailureDetectorConfig {
            initial_interval: Duration::from_millis(100),
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(60),
        catchup_callback: None,
        extra_liveness_predicate: None,
    };
    runtime
        .block_on(spawn_chitchat(config, Vec::new(), &UdpTransport))
        .unwrap()
}

#[test]
fn outsiders_neither_join_nor_learn_nor_inject() {
    let first = start("member-0", &[], &[OLD], &[]);
    let seeds = vec![first.gossip.clone()];
    let second = start("member-1", &seeds, &[OLD], &[]);
    wait_for_members(&[&first, &second], 2);
    for _ in 0..100 {
        assert!(first.check(&request("alice")));
    }
    second.wait_until(Duration::from_secs(10), "hearing the counts", |n| {
        remaining(n, "alice") == 900
    });

    let intruder = start("intruder", &seeds, &["a-guessed-secret-0123456789"], &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plain = Arc::new(plain_chitchat(&first.gossip, &runtime));
    for _ in 0..200 {
        intruder.check(&request("alice"));
        intruder.check(&request("bob"));
    }
    std::thread::sleep(Duration::from_secs(3));

    for node in [&first, &second] {
        let listed = members(node);
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(
            !listed.iter().any(|m| m == "intruder" || m == "plain"),
            "{listed:?}"
        );
        assert_eq!(
            remaining(node, "alice"),
            900,
            "nothing of the intruder's is merged"
        );
        assert_eq!(remaining(node, "bob"), 1000);
    }
    assert_eq!(members(&intruder), ["intruder"]);
    // The intruder knows only its own 200 checks of alice, none of the
    // members' 100.
    assert_eq!(remaining(&intruder, "alice"), 800);
    let plain_view = runtime.block_on(plain.with_chitchat(|c| c.node_states().len()));
    assert_eq!(plain_view, 1, "plain chitchat learns of no member");

    let status = first.get("/v1/cluster").unwrap();
    let rejected = &status["gossip_rejected"];
    assert!(rejected["auth"].as_u64() >= Some(1), "{status}");
    assert!(rejected["header"].as_u64() >= Some(1), "{status}");
    let metrics = first.get_text("/metrics").unwrap();
    assert!(metrics.contains("weir_gossip_rejected_total{reason=\"auth\"}"));
}

#[test]
fn a_node_with_another_secret_says_so_and_so_does_the_cluster() {
    let logs: Vec<std::path::PathBuf> = ["member", "stranger"]
        .iter()
        .map(|name| std::env::temp_dir().join(format!("weir-secret-{name}-{}.log", random())))
        .collect();
    let config = config_file("security", CONFIG);
    let launch = |id: &str, seeds: &[String], secret: &str, log: &std::path::Path| {
        let flags = ["--cluster-secret", secret];
        let launch = Launch {
            seeds,
            extra: &flags,
            standalone: true,
            log: Some(log),
            ..Launch::default()
        };
        Node::launch(id, &config, Addrs::loopback(), &launch)
    };
    // A three-node cluster, and a fourth node with another secret seeded
    // at it.
    let member = launch("member", &[], OLD, &logs[0]);
    let seeds = vec![member.gossip.clone()];
    let others: Vec<Node> = ["member-1", "member-2"]
        .iter()
        .map(|id| start(id, &seeds, &[OLD], &[]))
        .collect();
    wait_for_members(&[&member, &others[0], &others[1]], 3);
    let stranger = launch("stranger", &seeds, NEW, &logs[1]);
    // The stranger hears no peer: it says so, in its log, /readyz and
    // metrics, and stays ready (it serves, alone).
    stranger.wait_until(Duration::from_secs(15), "alone in /readyz", |n| {
        n.get("/readyz").is_some_and(|r| r["cluster"]["alone"] == true)
    });
    assert_eq!(stranger.get("/readyz").unwrap()["status"], "ready");
    assert_eq!(stranger.metric("weir_cluster_alone"), 1.0);
    // The member hears gossip it cannot open, and names its sender.
    member.wait_until(Duration::from_secs(15), "naming the stranger", |n| {
        let ready = n.get("/readyz").unwrap_or_default();
        ready["cluster"]["foreign_gossip"]["from"] == stranger.gossip.as_str()
    });
    assert_eq!(member.get("/readyz").unwrap()["cluster"]["alone"], false);
    assert_eq!(members(&member).len(), 3, "the stranger never joins");
    let logged = |i: usize| std::fs::read_to_string(&logs[i]).unwrap_or_default();
    member.wait_until(Duration::from_secs(5), "logging both at ERROR", |_| {
        logged(0).contains("ERROR")
            && logged(0).contains("fails authentication")
            && logged(1).contains("ERROR")
            && logged(1).contains("no peer heard from")
    });
    for log in logs {
        let _ = std::fs::remove_file(log);
    }
}

#[test]
fn a_secret_rotates_over_three_nodes_one_restart_at_a_time() {
    let ids = ["rot-0", "rot-1", "rot-2"];
    let mut nodes: Vec<Node> = Vec::new();
    for id in ids {
        let seeds: Vec<String> = nodes.iter().map(|n| n.gossip.clone()).collect();
        nodes.push(start(id, &seeds, &[OLD], &["--dead-node-grace-secs", "2"]));
    }
    wait_for_members(&nodes.iter().collect::<Vec<_>>(), 3);
    let mut counted = 0;
    // The procedure of docs/operations.md: add the new secret everywhere,
    // make it the first everywhere, drop the old one everywhere.
    let stages: [&[&str]; 3] = [&[OLD, NEW], &[NEW, OLD], &[NEW]];
    for (stage, keyring) in stages.iter().enumerate() {
        for i in 0..ids.len() {
            nodes[i].terminate();
            // The others keep deciding while it is down.
            for (j, node) in nodes.iter().enumerate() {
                if j != i {
                    assert!(
                        node.check(&request("carol")),
                        "stage {stage}: {} decides",
                        node.id
                    );
                    counted += 1;
                }
            }
            let seeds = vec![nodes[(i + 1) % ids.len()].gossip.clone()];
            nodes[i] = match stage {
                // The last stage reads its keyring from a file, as a
                // mounted Secret would be.
                2 => {
                    let file = std::env::temp_dir().join(format!("weir-keyring-{}", std::process::id()));
                    std::fs::write(
                        &file,
                        format!("# the cluster's keyring\n{}\n", keyring.join("\n")),
                    )
                    .unwrap();
                    let path = file.to_str().unwrap().to_string();
                    start(
                        ids[i],
                        &seeds,
                        &[],
                        &["--dead-node-grace-secs", "2", "--cluster-secret-file", &path],
                    )
                }
                _ => start(ids[i], &seeds, keyring, &["--dead-node-grace-secs", "2"]),
            };
            wait_for_members(&nodes.iter().collect::<Vec<_>>(), 3);
            // Both sides of the change count, and every node sees it all.
            assert!(nodes[i].check(&request("carol")));
            counted += 1;
            for node in &nodes {
                node.wait_until(Duration::from_secs(10), "agreeing on the count", |n| {
                    remaining(n, "carol") == 1000 - counted
                });
            }
        }
    }
    let status = nodes[0].get("/v1/cluster").unwrap();
    assert_eq!(status["keys"], 1);
    assert_eq!(status["rejected"]["auth"], 0, "{status}");
    assert_eq!(status["gossip_rejected"]["auth"], 0, "{status}");
}

#[test]
fn a_captured_peer_request_is_taken_once_and_by_its_node_only() {
    // A read token: without one, loopback clients read usage freely.
    let token = ["--read-token", "peer-test-read-token"];
    let first = start("peer-a", &[], &[OLD], &token);
    let second = start("peer-b", std::slice::from_ref(&first.gossip), &[OLD], &token);
    wait_for_members(&[&first, &second], 2);
    let sealer = weir_cluster::frame::Sealer::new(&[OLD], "weir");
    let path = "/v1/usage?range=5m&scope=local";
    fn request<'a>(
        to: &'a str,
        method: &'a str,
        path_and_query: &'a str,
    ) -> weir::cluster::peer_http::Signed<'a> {
        weir::cluster::peer_http::Signed {
            method,
            to,
            path_and_query,
            body: &[],
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let status = |node: &Node, header: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let reply = agent
            .get(format!("{}{path}", node.base))
            .header(weir::cluster::peer_http::PEER_HEADER, header)
            .call()
            .unwrap();
        reply.status().as_u16()
    };
    // Captured on its way to peer-a: taken once, then refused.
    let captured = weir::cluster::peer_http::sign(&sealer, &request("peer-a", "GET", path), now, "n1");
    assert_eq!(status(&first, &captured), 200);
    assert_eq!(status(&first, &captured), 401, "replayed to the same node");
    // Meant for peer-a: refused by peer-b, even fresh.
    let for_a = weir::cluster::peer_http::sign(&sealer, &request("peer-a", "GET", path), now, "n2");
    assert_eq!(status(&second, &for_a), 401, "replayed to another node");
    // Signed for a POST: refused for a GET.
    let as_post = weir::cluster::peer_http::sign(&sealer, &request("peer-b", "POST", path), now, "n3");
    assert_eq!(status(&second, &as_post), 401);
    let honest = weir::cluster::peer_http::sign(&sealer, &request("peer-b", "GET", path), now, "n4");
    assert_eq!(status(&second, &honest), 200);
}

#[test]
fn a_secret_rotates_on_running_nodes_with_sighup_and_the_old_one_is_then_refused() {
    let file = |id: &str| std::env::temp_dir().join(format!("weir-live-keyring-{id}-{}", random()));
    let files = [file("a"), file("b")];
    let write = |f: &std::path::Path, keyring: &[&str]| {
        std::fs::write(f, format!("# the cluster's keyring\n{}\n", keyring.join("\n"))).unwrap();
    };
    for f in &files {
        write(f, &[OLD]);
    }
    let flags = |f: &std::path::Path| -> Vec<String> {
        let f = f.to_str().unwrap().to_string();
        [
            "--cluster-secret-file",
            &f,
            "--dead-node-grace-secs",
            "2",
            "--cluster-secret-grace",
            "3s",
            "--admin-token",
            "t0ken",
        ]
        .map(String::from)
        .to_vec()
    };
    let (flags_a, flags_b) = (flags(&files[0]), flags(&files[1]));
    let flags_a: Vec<&str> = flags_a.iter().map(String::as_str).collect();
    let flags_b: Vec<&str> = flags_b.iter().map(String::as_str).collect();
    let a = start("live-a", &[], &[], &flags_a);
    let b = start("live-b", std::slice::from_ref(&a.gossip), &[], &flags_b);
    wait_for_members(&[&a, &b], 2);
    let mut counted = 0;
    let mut count_and_agree = |stage: &str| {
        assert!(a.check(&request("dora")), "{stage}");
        counted += 1;
        b.wait_until(Duration::from_secs(10), "hearing the count", |n| {
            remaining(n, "dora") == 1000 - counted
        });
    };
    count_and_agree("with the old secret");
    // docs/operations.md: add the new secret everywhere, then make it the
    // only one, node by node: the old one is still accepted for its grace.
    for f in &files {
        write(f, &[OLD, NEW]);
    }
    a.signal("HUP");
    let reloaded = b.post_as("/v1/cluster/keyring", "t0ken", &json!({}));
    assert_eq!(
        (reloaded["keys"].as_u64(), reloaded["retiring"].as_u64()),
        (Some(2), Some(0)),
        "{reloaded}"
    );
    std::thread::sleep(Duration::from_millis(500));
    count_and_agree("both secrets everywhere");

    write(&files[0], &[NEW]);
    a.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    // a seals with the new secret, b still with the old one: a hears b
    // while the old secret's grace lasts.
    count_and_agree("a rotated, b not yet");
    let status = a.get("/v1/cluster").unwrap();
    assert_eq!(
        (status["keys"].as_u64(), status["keys_retiring"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    write(&files[1], &[NEW]);
    let reloaded = b.post_as("/v1/cluster/keyring", "t0ken", &json!({}));
    assert_eq!(
        (reloaded["keys"].as_u64(), reloaded["retiring"].as_u64()),
        (Some(1), Some(1)),
        "{reloaded}"
    );
    count_and_agree("both rotated");

    // After the grace the old secret is refused everywhere, and no
    // datagram was refused on the way.
    std::thread::sleep(Duration::from_secs(3));
    wait_for_members(&[&a, &b], 2);
    for node in [&a, &b] {
        let status = node.get("/v1/cluster").unwrap();
        assert_eq!(status["rejected"]["auth"], 0, "{status}");
        assert_eq!(status["gossip_rejected"]["auth"], 0, "{status}");
        assert_eq!(
            (status["keys"].as_u64(), status["keys_retiring"].as_u64()),
            (Some(1), Some(0)),
            "{status}"
        );
    }
    // A node that kept the old secret is an outsider now.
    let late = start("live-late", std::slice::from_ref(&a.gossip), &[OLD], &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.live_members().len(), 2, "{:?}", a.live_members());
    drop(late);
    // A file with no secret is refused, and the running keyring stays.
    write(&files[0], &[]);
    let refused = a.post_as("/v1/cluster/keyring", "t0ken", &json!({}));
    assert_eq!(refused["code"], "invalid_keyring", "{refused}");
    assert_eq!(a.get("/v1/cluster").unwrap()["keys"], 1);
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
}
