//! Abuse alerts on real processes: an abuser spread over three nodes fires
//! exactly one signed webhook per cooldown, at a real HTTP receiver; its
//! penalty reaches every node and lapses; and a failed delivery is retried.
//! An abuser moved to the penalty tier is the same key to its rule: one
//! alert and one penalty per cooldown, on one node and on three.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;

use serde_json::{json, Value};
use support::nodes::{config_file, start_cluster, Node};
use support::webhooks::{start_receiver, verify, Received, WEBHOOK_SECRET};

fn config(receiver: SocketAddr, threshold: u32, penalty_for: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[policies.per_ip]
key = ["ip"]
default_tier = "free"
[policies.per_ip.tiers.free]
limits = [{{ algorithm = "token_bucket", rate = "5/s", burst = 5 }}]
[policies.per_ip.tiers.blocked]
penalty = true
limits = [{{ algorithm = "sliding_window", rate = "1/day" }}]

[alerts]
webhook_secret_env = "WEIR_TEST_WEBHOOK_SECRET"

[[alerts.rules]]
name = "hammering"
policy = "per_ip"
when = "denied"
threshold = {threshold}
within = "1m"
cooldown = "10m"
exempt_tiers = ["blocked"]
notify = ["http://{receiver}/hook"]
penalty = {{ tier = "blocked", for = "{penalty_for}" }}
"#
    );
    config_file(&format!("alerts-{threshold}"), &text)
}

fn metric(node: &Node, sample: &str) -> u64 {
    node.metric(sample) as u64
}

/// Alerts `hammering` fired, over every node.
fn fired(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| metric(n, "weir_alerts_total{rule=\"hammering\"}"))
        .sum()
}

#[test]
fn an_abuser_spread_over_three_nodes_fires_one_alert_and_is_penalized_everywhere() {
    // Before any node starts: the children inherit it.
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let (receiver, received) = start_receiver(0);
    let nodes = start_cluster(3, &config(receiver, 30, "4s"), &[]);
    let abuser = json!({ "policy": "per_ip", "key": { "ip": "203.0.113.66" } });

    // Round robin until the client has seen 30 denials: the threshold.
    let (mut denied, mut sent) = (0, 0);
    while denied < 30 {
        denied += !nodes[sent % 3].check(&abuser) as u32;
        sent += 1;
    }
    let crossed = Instant::now();
    let deadline = crossed + Duration::from_secs(10);
    while received.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let delay = received
        .lock()
        .unwrap()
        .first()
        .map(|(_, at)| at.saturating_duration_since(crossed));
    eprintln!("detection delay, threshold crossed to webhook received: {delay:?} ({sent} checks sent)");

    // The abuser keeps going; no second alert within the cooldown.
    for i in 0..60 {
        nodes[i % 3].check(&abuser);
    }
    std::thread::sleep(Duration::from_secs(2));
    let hooks = received.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "exactly one alert per cooldown: {hooks:?}");
    let alert = &hooks[0].0;
    assert_eq!(alert["rule"], "hammering");
    assert_eq!(alert["policy"], "per_ip");
    assert_eq!(alert["tier"], "free");
    assert_eq!(alert["key"]["ip"], "203.0.113.66");
    assert!(alert["count"].as_f64().unwrap() >= 30.0, "{alert}");
    assert_eq!(alert["threshold"], 30.0);
    assert_eq!(alert["window_s"], 60.0);
    assert_eq!(alert["severity"], "warning");
    assert!(alert["fired_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alert["penalty"]["tier"], "blocked");
    assert_eq!(alert["penalty"]["subject"], "ip");

    // The penalty decides the abuser's checks on every node (it lasts 4 s:
    // long enough to be seen), then lapses.
    for node in &nodes {
        node.wait_until(Duration::from_secs(3), "the penalty tier", |n| {
            n.post("/v1/check", &abuser)["tier"] == "blocked"
        });
    }
    for node in &nodes {
        node.wait_until(Duration::from_secs(10), "the penalty to lapse", |n| {
            n.post("/v1/check", &abuser)["tier"] == "free"
        });
    }

    // Every node lists the one alert; the metrics agree.
    for node in &nodes {
        let listed = node.get("/v1/alerts").unwrap();
        let alerts = listed["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 1, "{listed}");
        assert_eq!(alerts[0]["key"]["ip"], "203.0.113.66");
        assert_eq!(listed["missing"], json!([]));
    }
    assert_eq!(fired(&nodes), 1);
    let delivered: u64 = nodes
        .iter()
        .map(|n| metric(n, "weir_webhook_deliveries_total{result=\"delivered\"}"))
        .sum();
    assert_eq!(delivered, 1);
}

#[test]
fn a_failed_delivery_is_retried() {
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let (receiver, received) = start_receiver(2);
    let nodes = start_cluster(1, &config(receiver, 3, "1m"), &[]);
    let abuser = json!({ "policy": "per_ip", "key": { "ip": "198.51.100.9" } });
    for _ in 0..10 {
        nodes[0].check(&abuser);
    }
    nodes[0].wait_until(Duration::from_secs(15), "the webhook, third time lucky", |_| {
        !received.lock().unwrap().is_empty()
    });
    assert_eq!(
        metric(&nodes[0], "weir_webhook_deliveries_total{result=\"retried\"}"),
        2
    );
    assert_eq!(
        metric(&nodes[0], "weir_webhook_deliveries_total{result=\"delivered\"}"),
        1
    );
}

#[test]
fn a_policy_wide_denial_ratio_fires_once() {
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let (receiver, received) = start_receiver(0);
    let text = format!(
        r#"
[policies.per_ip]
key = ["ip"]
default_tier = "free"
[policies.per_ip.tiers.free]
limits = [{{ algorithm = "sliding_window", rate = "1/m" }}]

[alerts]
webhook_secret_env = "WEIR_TEST_WEBHOOK_SECRET"

[[alerts.rules]]
name = "plan-in-trouble"
policy = "per_ip"
when = "denied_ratio"
threshold = 0.5
within = "1m"
min_checks = 20
severity = "critical"
format = "slack"
notify = ["http://{receiver}/hook"]
"#
    );
    let nodes = start_cluster(2, &config_file("ratio", &text), &[]);
    // Ten clients, three checks each: about one passes, two are denied.
    let mut denied = 0;
    for i in 0..30 {
        let client = json!({ "policy": "per_ip", "key": { "ip": format!("192.0.2.{}", i % 10) } });
        denied += !nodes[i % 2].check(&client) as u32;
    }
    nodes[0].wait_until(Duration::from_secs(20), "the ratio alert", |_| {
        !received.lock().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_secs(6));
    let hooks = received.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let text = hooks[0].0["text"].as_str().unwrap();
    assert!(
        text.contains("plan-in-trouble") && text.contains("Critical"),
        "{text}"
    );
    let listed = nodes[1].get("/v1/alerts").unwrap();
    let alert = &listed["alerts"][0];
    assert_eq!(alert["when"], "denied_ratio");
    let ratio = denied as f64 / 30.0;
    assert!(
        (alert["count"].as_f64().unwrap() - ratio).abs() < 0.01,
        "{alert} vs {ratio}"
    );
}

/// A real HTTPS receiver: a certificate for `localhost` made here, served
/// with rustls; its CA file for `SSL_CERT_FILE`.
fn start_tls_receiver() -> (u16, std::path::PathBuf, Received) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca = std::env::temp_dir().join(format!("weir-webhook-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, cert.pem()).unwrap();
    let chain = vec![cert.der().clone()];
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let received = Received::default();
    let sink = received.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, sink) = (acceptor.clone(), sink.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            verify(&parts.headers, &body).unwrap();
                            sink.lock()
                                .unwrap()
                                .push((serde_json::from_slice(&body).unwrap(), Instant::now()));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Empty::<
                                Bytes,
                            >::new(
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    (rx.recv().unwrap(), ca, received)
}

#[test]
fn webhooks_reach_an_https_receiver_that_the_system_trusts() {
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let (port, ca, received) = start_tls_receiver();
    let text = std::fs::read_to_string(config("127.0.0.1:9".parse().unwrap(), 3, "1m"))
        .unwrap()
        .replace(
            "http://127.0.0.1:9/hook",
            &format!("https://localhost:{port}/hook"),
        );
    let config = config_file("tls", &text);
    // The node trusts exactly this CA, as with a private CA in production.
    std::env::set_var("SSL_CERT_FILE", &ca);
    let nodes = start_cluster(1, &config, &[]);
    std::env::remove_var("SSL_CERT_FILE");
    for _ in 0..10 {
        nodes[0].check(&json!({ "policy": "per_ip", "key": { "ip": "198.51.100.77" } }));
    }
    nodes[0].wait_until(Duration::from_secs(10), "the webhook over https", |_| {
        !received.lock().unwrap().is_empty()
    });
    assert_eq!(received.lock().unwrap()[0].0["key"]["ip"], "198.51.100.77");
}

#[test]
fn when_the_firing_node_dies_its_successor_keeps_the_cooldown() {
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let (receiver, received) = start_receiver(0);
    let mut nodes = start_cluster(3, &config(receiver, 30, "1s"), &["--dead-node-grace-secs", "30"]);
    let abuser = json!({ "policy": "per_ip", "key": { "ip": "203.0.113.99" } });
    let mut sent = 0;
    while received.lock().unwrap().is_empty() && sent < 600 {
        nodes[sent % 3].check(&abuser);
        sent += 1;
    }
    std::thread::sleep(Duration::from_millis(500));
    let fired_on = received.lock().unwrap()[0].0["node"]
        .as_str()
        .unwrap()
        .to_string();
    let dead = nodes.iter().position(|n| n.id == fired_on).unwrap();
    nodes[dead].kill();
    let survivors: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead)
        .map(|(_, n)| n)
        .collect();
    for node in &survivors {
        node.wait_until(Duration::from_secs(10), "the dead node no longer live", |n| {
            n.live_members().len() == 2
        });
    }
    // The abuser goes on (its one-second penalty is over): the key's new
    // owner knows the cooldown and does not fire again.
    for i in 0..200 {
        survivors[i % 2].check(&abuser);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received.lock().unwrap().len(), 1, "fired on {fired_on} only");
}

/// The issue's config: a penalty tier the rule does not exempt.
fn penalty_config(receiver: SocketAddr, cooldown: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[policies.api]
key = ["ip"]
default_tier = "free"
[policies.api.tiers.free]
limits = [{{ name = "burst", algorithm = "token_bucket", rate = "5/s", burst = 5 }}]
[policies.api.tiers.blocked]
penalty = true
limits = [{{ name = "penalty", algorithm = "token_bucket", rate = "1/hour", burst = 1 }}]
[alerts]
webhook_secret_env = "WEIR_TEST_WEBHOOK_SECRET"
[[alerts.rules]]
name = "hammering"
policy = "api"
when = "denied"
threshold = 30
within = "1m"
cooldown = "{cooldown}"
notify = ["http://{receiver}/hook"]
penalty = {{ tier = "blocked", for = "15m" }}
"#
    );
    config_file(&format!("alerts-penalty-{cooldown}"), &text)
}

/// Sends `count` checks for `ip`, round robin over `nodes`.
fn hammer(nodes: &[Node], ip: &str, count: usize) {
    let abuser = json!({ "policy": "api", "key": { "ip": ip } });
    for i in 0..count {
        nodes[i % nodes.len()].check(&abuser);
    }
}

const ADMIN: &str = "alerts-test-admin-token";

/// When the lapsing assignment of `ip` on `node` ends, Unix ms.
fn penalty_until(node: &Node, ip: &str) -> Option<u64> {
    let tiers = node.get_as("/v1/tiers", ADMIN)?;
    let lapsing = tiers["lapsing"].as_array()?.iter();
    let mut of_ip = lapsing.filter(|a| a["subject"] == "ip" && a["id"] == ip);
    of_ip.next()?["until_ms"].as_u64()
}

/// The issue's scenario on `count` nodes: 100 quick checks from one IP give
/// one webhook and one penalty, and nothing more while the abuser, now in
/// the penalty tier, goes on within the cooldown.
fn one_alert_for_an_abuser_moved_to_the_penalty_tier(count: usize) {
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let (receiver, received) = start_receiver(0);
    let nodes = start_cluster(count, &penalty_config(receiver, "10m"), &["--admin-token", ADMIN]);
    let ip = "203.0.113.70";
    hammer(&nodes, ip, 100);
    nodes[0].wait_until(Duration::from_secs(10), "the webhook", |_| {
        !received.lock().unwrap().is_empty()
    });
    for node in &nodes {
        node.wait_until(Duration::from_secs(5), "the penalty", |n| {
            penalty_until(n, ip).is_some()
        });
    }
    let applied = penalty_until(&nodes[0], ip).unwrap();
    // The penalty tier denies everything now: 30 more denials past the
    // threshold, all in tier "blocked".
    hammer(&nodes, ip, 60);
    std::thread::sleep(Duration::from_secs(2));
    let hooks: Vec<Value> = received.lock().unwrap().iter().map(|(v, _)| v.clone()).collect();
    assert_eq!(hooks.len(), 1, "one webhook: {hooks:?}");
    assert_eq!(
        (hooks[0]["tier"].as_str(), hooks[0]["key"]["ip"].as_str()),
        (Some("free"), Some(ip))
    );
    assert_eq!(hooks[0]["penalty"]["until_ms"].as_u64(), Some(applied));
    for node in &nodes {
        assert_eq!(
            penalty_until(node, ip),
            Some(applied),
            "the penalty was applied once"
        );
    }
    assert_eq!(fired(&nodes), 1);
}

#[test]
fn an_abuser_moved_to_the_penalty_tier_fires_once_on_one_node() {
    one_alert_for_an_abuser_moved_to_the_penalty_tier(1);
}

#[test]
fn an_abuser_moved_to_the_penalty_tier_fires_once_on_three_nodes() {
    one_alert_for_an_abuser_moved_to_the_penalty_tier(3);
}

#[test]
fn continued_abuse_fires_once_more_after_the_cooldown_and_renews_the_penalty() {
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let (receiver, received) = start_receiver(0);
    let nodes = start_cluster(1, &penalty_config(receiver, "2s"), &["--admin-token", ADMIN]);
    let ip = "203.0.113.71";
    hammer(&nodes, ip, 40);
    nodes[0].wait_until(Duration::from_secs(10), "the first webhook", |_| {
        received.lock().unwrap().len() == 1
    });
    let first = received.lock().unwrap()[0].0.clone();
    // Past the cooldown, the abuser (denied by the penalty tier, still over
    // the threshold within the minute) is alerted on again.
    std::thread::sleep(Duration::from_millis(2500));
    hammer(&nodes, ip, 5);
    nodes[0].wait_until(Duration::from_secs(10), "the second webhook", |_| {
        received.lock().unwrap().len() == 2
    });
    let second = received.lock().unwrap()[1].0.clone();
    assert_eq!(
        (first["tier"].as_str(), second["tier"].as_str()),
        (Some("free"), Some("blocked"))
    );
    let until = |hook: &Value| hook["penalty"]["until_ms"].as_u64().unwrap();
    assert!(
        until(&second) >= until(&first) + 2000,
        "renewed: {first} then {second}"
    );
    assert_eq!(penalty_until(&nodes[0], ip), Some(until(&second)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(received.lock().unwrap().len(), 2);
}

#[test]
fn webhook_secrets_show_in_neither_the_config_view_nor_the_logs() {
    std::env::set_var("WEIR_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET);
    // Nothing listens on port 9: every delivery fails and is logged.
    let hook = "http://hookuser:hookpass@127.0.0.1:9/hooks/T0/B0/SECRETPATH?token=SECRETQUERY";
    let text = std::fs::read_to_string(config("127.0.0.1:9".parse().unwrap(), 3, "1m"))
        .unwrap()
        .replace("http://127.0.0.1:9/hook", hook);
    let config = config_file("secret-hooks", &text);
    let log = std::env::temp_dir().join(format!("weir-hooks-{}.log", std::process::id()));
    let launch = support::nodes::Launch {
        standalone: true,
        log: Some(&log),
        ..Default::default()
    };
    let node = Node::launch("hooks", &config, support::nodes::Addrs::loopback(), &launch);
    for _ in 0..10 {
        node.check(&json!({ "policy": "per_ip", "key": { "ip": "198.51.100.99" } }));
    }
    node.wait_until(Duration::from_secs(30), "the delivery to fail", |n| {
        metric(n, "weir_webhook_deliveries_total{result=\"failed\"}") == 1
    });
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("webhook delivery failed"), "{logged}");
    let shown = node.get("/v1/config").unwrap().to_string();
    for secret in ["SECRETPATH", "SECRETQUERY", "hookpass", "hookuser"] {
        assert!(!logged.contains(secret), "{secret} logged: {logged}");
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    let _ = std::fs::remove_file(log);
}
