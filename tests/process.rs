//! The real `weir` binary, started as a user would start it: readiness,
//! 429s with headers, SIGHUP reload, admin changes, `check-config`, garbage
//! on the socket, and graceful shutdown.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::nodes::free_tcp_port;

/// A running `weir serve`, killed when dropped.
struct Weir {
    child: Child,
    base: String,
    bin_addr: String,
    agent: ureq::Agent,
}

impl Weir {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_tcp_port());
        let bin_addr = format!("127.0.0.1:{}", free_tcp_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args(["serve", "--http-addr", &addr, "--bin-addr", &bin_addr])
            .args(args)
            .env_remove("WEIR_ADMIN_TOKEN")
            .env_remove("WEIR_CONFIG")
            .env_remove("WEIR_CLUSTER_SECRET")
            .env_remove("WEIR_SEEDS")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let weir = Self {
            child: command.spawn().unwrap(),
            base: format!("http://{addr}"),
            bin_addr,
            agent,
        };
        weir.wait_ready();
        weir
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(reply) = self.agent.get(format!("{}/readyz", self.base)).call() {
                if reply.status() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("weir did not become ready");
    }

    fn check(&self, body: Value) -> (u16, ureq::http::HeaderMap, Value) {
        let mut reply = self
            .agent
            .post(format!("{}/v1/check", self.base))
            .send_json(body)
            .unwrap();
        let headers = reply.headers().clone();
        (
            reply.status().as_u16(),
            headers,
            reply.body_mut().read_json().unwrap(),
        )
    }

    fn readyz(&self) -> Value {
        let mut reply = self.agent.get(format!("{}/readyz", self.base)).call().unwrap();
        reply.body_mut().read_json::<Value>().unwrap()
    }

    fn config_version(&self) -> u64 {
        let mut reply = self.agent.get(format!("{}/v1/config", self.base)).call().unwrap();
        reply.body_mut().read_json::<Value>().unwrap()["version"]
            .as_u64()
            .unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "weir did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("weir.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn weir_command(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .unwrap()
}

const ONE_PER_MINUTE: &str = r#"
[policies.p]
key = ["user"]
default_tier = "free"
[policies.p.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "1/m" }]
"#;

#[test]
fn the_default_config_answers_429_with_rate_limit_headers() {
    let weir = Weir::start(&[], &[]);
    let body = json!({ "policy": "per_ip", "key": { "ip": "203.0.113.9" } });
    let mut denied = None;
    for _ in 0..60 {
        let (status, headers, decision) = weir.check(body.clone());
        assert_eq!(decision["tier"], "free");
        assert!(headers.contains_key("ratelimit-policy"));
        if status == 429 {
            denied = Some((headers, decision));
            break;
        }
    }
    let (headers, decision) = denied.expect("the free tier's burst of 20 runs out");
    assert_eq!(decision["allowed"], false);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert!(headers["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"burst\";r=0;t="));
}

#[test]
fn sighup_reloads_the_config_file_and_keeps_counters() {
    let path = temp_file("sighup", ONE_PER_MINUTE);
    let weir = Weir::start(&["--config", path.to_str().unwrap()], &[]);
    let body = json!({ "policy": "p", "key": { "user": "u" } });
    assert_eq!(weir.check(body.clone()).0, 200);
    assert_eq!(weir.check(body.clone()).0, 429);

    std::fs::write(&path, ONE_PER_MINUTE.replace("1/m", "2/m")).unwrap();
    weir.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while weir.config_version() != 2 {
        assert!(Instant::now() < deadline, "config not reloaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _, decision) = weir.check(body.clone());
    assert_eq!(
        (status, decision["remaining"].as_u64()),
        (200, Some(0)),
        "the first request still counts"
    );

    // A broken file is refused (and said so in /readyz) and the running
    // config kept.
    std::fs::write(&path, "this is not toml").unwrap();
    weir.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while weir.readyz()["config"]["last_reload"]["result"] != "failed" {
        assert!(Instant::now() < deadline, "the failed reload not reported");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(weir.config_version(), 2);
    assert_eq!(weir.check(body).0, 429);
}

#[test]
fn admin_changes_work_with_the_token_from_the_environment() {
    let weir = Weir::start(&[], &[("WEIR_ADMIN_TOKEN", "t0ken")]);
    let url = format!("{}/v1/config", weir.base);
    let denied = weir.agent.put(&url).send(ONE_PER_MINUTE).unwrap();
    assert_eq!(denied.status(), 401);
    let accepted = weir
        .agent
        .put(&url)
        .header("authorization", "Bearer t0ken")
        .send(ONE_PER_MINUTE)
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(weir.config_version(), 2);
    assert_eq!(
        weir.check(json!({ "policy": "p", "key": { "user": "x" } })).0,
        200
    );
}

#[test]
fn check_config_accepts_good_files_and_lists_problems_with_lines() {
    let good = temp_file("good", ONE_PER_MINUTE);
    let output = weir_command(&["check-config", good.to_str().unwrap()]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok (1 policies"));

    let bad = temp_file(
        "bad",
        &ONE_PER_MINUTE
            .replace("1/m", "1/eon")
            .replace("\"free\"\n", "\"gold\"\n"),
    );
    let output = weir_command(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].contains(":4:") && lines[0].contains("default_tier \"gold\""),
        "{errors}"
    );
    assert!(
        lines[1].contains(":6:") && lines[1].contains("unknown period \"eon\""),
        "{errors}"
    );

    let missing = weir_command(&["check-config", "/nonexistent/weir.toml"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn check_config_reports_every_independent_problem_and_no_phantom() {
    let text = r#"
[store]
max_key = 5
[policies.per_ip]
key = ["ip"]
default_tier = "gold"
[policies.per_ip.tiers.free]
limits = [{ algorithm = "token_bucket", rate = "1/forever" }]
[policies.per_ip.tiers.blocked]
deny = true
[policies.b]
key = ["nose"]
default_tier = "free"
[assignments.users]
bob = "platinum"
[[alerts.rules]]
name = "x"
policy = "per_ip"
when = "sometimes"
"#;
    // Shape problems first: each section is read on its own.
    let shape = temp_file("shapes", text);
    let output = weir_command(&["check-config", shape.to_str().unwrap()]);
    let errors = String::from_utf8_lossy(&output.stderr);
    for (line, text) in [(3, "max_key"), (12, "nose"), (19, "sometimes")] {
        assert!(
            errors.contains(&format!(":{line}:")) && errors.contains(text),
            "{line} {text}: {errors}"
        );
    }
    // Then, the shapes right, every problem of meaning, and no rule's
    // policy called unknown because the policy has a problem of its own.
    let meaning = temp_file(
        "meaning",
        &text
            .replace("max_key = 5", "max_keys = 5")
            .replace("[\"nose\"]", "[\"ip\"]\ntiers = {}")
            .replace(
                "\"sometimes\"",
                "\"denied\"\nthreshold = 3\nwithin = \"1m\"\npenalty = { tier = \"blocked\", for = \"5m\" }",
            ),
    );
    let output = weir_command(&["check-config", meaning.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    let expected = [
        r#"default_tier "gold""#,
        r#"unknown period "forever""#,
        "has no tiers",
        r#""platinum""#,
    ];
    for text in expected {
        assert!(errors.contains(text), "{text}: {errors}");
    }
    assert!(!errors.contains("unknown policy"), "{errors}");
    assert!(!errors.contains("penalty tier"), "{errors}");
}

#[test]
fn check_config_warns_of_an_unset_webhook_secret_and_a_missing_snapshot_directory() {
    let text = format!(
        "{ONE_PER_MINUTE}[alerts]\nwebhook_secret_env = \"WEIR_TEST_UNSET_SECRET\"\n[[alerts.rules]]\nname = \"r\"\npolicy = \"p\"\nwhen = \"denied\"\nthreshold = 3\nwithin = \"1m\"\nnotify = [\"https://hooks.example.com/x\"]\n"
    );
    let path = temp_file("warnings", &text);
    let output = weir_command(&[
        "check-config",
        path.to_str().unwrap(),
        "--snapshot",
        "file:///nonexistent-weir-dir/snapshot",
    ]);
    assert!(output.status.success(), "warnings do not fail the check");
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("warning:") && errors.contains("$WEIR_TEST_UNSET_SECRET"),
        "{errors}"
    );
    assert!(
        errors.contains("/nonexistent-weir-dir does not exist"),
        "{errors}"
    );
    // weir serve refuses the missing directory at once.
    let serve = weir_command(&[
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--snapshot",
        "file:///nonexistent-weir-dir/snapshot",
    ]);
    assert_eq!(serve.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&serve.stderr).contains("does not exist"));
}

#[test]
fn an_invalid_config_file_stops_serve_with_a_clear_error() {
    let bad = temp_file("serve-bad", "[policies.x]\nkey = [\"user\"]\n");
    let output = weir_command(&[
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("invalid config") && errors.contains("missing field `default_tier`"),
        "{errors}"
    );
}

#[test]
fn the_default_config_printed_is_a_valid_config() {
    let output = weir_command(&["default-config"]);
    let path = temp_file("default", &String::from_utf8(output.stdout).unwrap());
    assert!(weir_command(&["check-config", path.to_str().unwrap()])
        .status
        .success());
}

fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn garbage_on_the_socket_never_disturbs_the_server() {
    let weir = Weir::start(&[], &[]);
    let addr = weir.base.trim_start_matches("http://").to_owned();
    let reply = raw_exchange(&addr, b"\x00\x01\x02 not http at all\r\n\r\n");
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = raw_exchange(
        &addr,
        b"POST /v1/check HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc",
    );
    assert!(!reply.contains(" 500 "), "{reply}");
    let (status, _, _) = weir.check(json!({ "policy": "per_ip", "key": { "ip": "1.1.1.1" } }));
    assert_eq!(status, 200);
}

#[test]
fn sigterm_stops_serve_gracefully() {
    let mut weir = Weir::start(&[], &[]);
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let weir = Weir::start(&["--idle-timeout", "1"], &[]);
    let addr = weir.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Half a request, then silence: the server hangs up.
    stream.write_all(b"POST /v1/check HTTP/1.1\r\n").unwrap();
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf);
    // A hang-up, not our own read timeout running out.
    let hung_up = match &read {
        Ok(0) => true,
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(hung_up, "{read:?}");
}

#[test]
fn the_binary_protocol_is_served_on_bin_addr() {
    use weir::protocol::{decode, encode, Frame, Opcode, WireCheck, WireDecision, WireKey, WireTarget};
    let weir = Weir::start(&[], &[]);
    let mut stream = TcpStream::connect(&weir.bin_addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let check = WireCheck {
        target: WireTarget::Policy("per_ip".into()),
        key: WireKey {
            ip: Some("192.0.2.1".into()),
            ..WireKey::default()
        },
        tier: None,
        cost: None,
    };
    let frame = Frame {
        version: 1,
        opcode: Opcode::Check,
        request_id: 7,
        body: encode(&check),
    };
    stream.write_all(&frame.to_bytes()).unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut bytes = vec![0u8; u32::from_le_bytes(prefix) as usize];
    stream.read_exact(&mut bytes).unwrap();
    let reply = Frame::parse(&bytes).unwrap();
    let decision: WireDecision = decode(&reply.body).unwrap();
    assert_eq!((reply.opcode, reply.request_id), (Opcode::Decision, 7));
    assert_eq!((decision.allowed, decision.remaining), (true, Some(19)));
}

#[test]
fn one_worker_thread_serves_both_protocols_and_none_is_refused() {
    let weir = Weir::start(&["--worker-threads", "1"], &[]);
    let (status, _, decision) = weir.check(json!({ "policy": "per_ip", "key": { "ip": "192.0.2.2" } }));
    assert_eq!((status, decision["allowed"].as_bool()), (200, Some(true)));
    let ping = weir::protocol::Frame {
        version: 1,
        opcode: weir::protocol::Opcode::Ping,
        request_id: 3,
        body: Vec::new(),
    };
    let mut stream = TcpStream::connect(&weir.bin_addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(&ping.to_bytes()).unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let mut reply = vec![0u8; u32::from_le_bytes(prefix) as usize];
    stream.read_exact(&mut reply).unwrap();
    let pong = weir::protocol::Frame::parse(&reply).unwrap();
    assert_eq!((pong.opcode, pong.request_id), (weir::protocol::Opcode::Pong, 3));

    let output = weir_command(&["serve", "--http-addr", "127.0.0.1:0", "--worker-threads", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("--worker-threads"), "{errors}");
}

#[test]
fn http_connections_beyond_the_cap_wait_until_one_closes() {
    let weir = Weir::start(&["--max-connections", "1"], &[]);
    let addr = weir.base.trim_start_matches("http://").to_owned();
    let request = b"GET /healthz HTTP/1.1\r\nhost: weir\r\n\r\n";
    let read_reply = |stream: &mut TcpStream| {
        let mut buffer = [0u8; 512];
        let read = stream
            .read(&mut buffer)
            .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
        read.unwrap_or_default()
    };
    // The readiness poll's connection may still be open: wait for the slot.
    std::thread::sleep(Duration::from_millis(200));

    let mut first = TcpStream::connect(&addr).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    first.write_all(request).unwrap();
    assert!(read_reply(&mut first).starts_with("HTTP/1.1 200"));

    // The first stays open (keep-alive); the second is not served meanwhile.
    let mut second = TcpStream::connect(&addr).unwrap();
    second.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    second.write_all(request).unwrap();
    assert_eq!(
        read_reply(&mut second),
        "",
        "served past the cap of one connection"
    );

    drop(first);
    second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(read_reply(&mut second).starts_with("HTTP/1.1 200"));
}

/// A sample of the node's metrics.
fn metric(weir: &Weir, sample: &str) -> f64 {
    let mut reply = weir.agent.get(format!("{}/metrics", weir.base)).call().unwrap();
    let text = reply.body_mut().read_to_string().unwrap();
    support::nodes::metric_in(&text, sample).unwrap_or_else(|| panic!("no {sample} in {text}"))
}

#[test]
fn both_servers_count_their_connections_and_close_idle_ones_alike() {
    use weir::protocol::{Frame, Opcode};
    let weir = Weir::start(&["--idle-timeout", "2"], &[]);
    let ping = Frame {
        version: 1,
        opcode: Opcode::Ping,
        request_id: 1,
        body: vec![],
    }
    .to_bytes();
    let mut binary: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&weir.bin_addr).unwrap())
        .collect();
    for stream in &mut binary {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(&ping).unwrap();
        let mut pong = [0u8; 16];
        stream.read_exact(&mut pong).unwrap();
    }
    let addr = weir.base.trim_start_matches("http://").to_owned();
    let mut http: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for stream in &mut http {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: weir\r\n\r\n")
            .unwrap();
        let mut reply = [0u8; 256];
        assert!(stream.read(&mut reply).unwrap() > 0);
    }
    assert_eq!(metric(&weir, "weir_binary_connections"), 3.0);
    // Ours, and the scrape's own.
    assert!(metric(&weir, "weir_http_connections") >= 3.0);

    // Idle past --idle-timeout: both servers hang up.
    std::thread::sleep(Duration::from_secs(3));
    for stream in binary.iter_mut().chain(http.iter_mut()) {
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(
            matches!(read, Ok(0)) || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "an idle connection stayed open"
        );
    }
    assert_eq!(metric(&weir, "weir_binary_connections"), 0.0);
}
