//! Usage analytics on real processes: any node of three answers for the
//! whole cluster and names a node that does not answer; and every series
//! the Grafana dashboard queries exists in a real `/metrics`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::nodes::{config_file, start_cluster, Node};
use support::redis::Redis;

const CONFIG: &str = r#"
[policies.per_ip]
key = ["ip"]
default_tier = "free"
[policies.per_ip.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "10/m" }]
"#;

fn usage(node: &Node) -> Value {
    node.get("/v1/usage?range=5m").unwrap_or_default()
}

#[test]
fn any_node_answers_for_the_cluster_and_names_a_missing_one() {
    let config = config_file("usage-cluster", CONFIG);
    let mut nodes = start_cluster(3, &config, &["--dead-node-grace-secs", "30"]);
    // An abuser spread over every node, and one ordinary client per node.
    for i in 0..60 {
        nodes[i % 3].check(&json!({ "policy": "per_ip", "key": { "ip": "203.0.113.66" } }));
    }
    for (i, node) in nodes.iter().enumerate() {
        node.check(&json!({ "policy": "per_ip", "key": { "ip": format!("198.51.100.{i}") } }));
    }
    for node in &nodes {
        node.wait_until(Duration::from_secs(10), "all 63 checks counted", |n| {
            let t = &usage(n)["totals"];
            t["allowed"].as_u64().unwrap_or(0) + t["denied"].as_u64().unwrap_or(0) == 63
        });
    }
    let reports: Vec<Value> = nodes.iter().map(usage).collect();
    for report in &reports {
        assert_eq!(report["scope"], "cluster");
        assert_eq!(report["nodes"].as_array().unwrap().len(), 3, "{report}");
        assert_eq!(report["missing"], json!([]));
        assert_eq!(
            report["totals"], reports[0]["totals"],
            "every node gives the same totals"
        );
        let top = &report["top_denied"][0];
        assert_eq!(top["key"]["ip"], "203.0.113.66");
        assert_eq!(top["nodes"], 3);
        assert_eq!(
            top["count"], report["totals"]["denied"],
            "only the abuser was denied"
        );
    }
    let local = nodes[0].get("/v1/usage?scope=local").unwrap();
    assert_eq!(local["nodes"], json!(["node-0"]));

    // A killed node is named as missing, not silently left out.
    nodes[2].kill();
    nodes[0].wait_until(Duration::from_secs(10), "the dead node listed as missing", |n| {
        usage(n)["missing"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["node"] == "node-2"))
    });
    let report = usage(&nodes[0]);
    assert_eq!(report["nodes"].as_array().unwrap().len(), 2, "{report}");
}

/// Metric names a PromQL expression uses: identifiers that start with
/// `weir_` or `process_`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        if starts && (rest.starts_with("weir_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

fn expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query", Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// Expressions in the Prometheus rules file: one per `expr:` line.
fn rule_expressions(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect()
}

#[test]
fn every_series_the_grafana_dashboard_and_alerting_rules_query_exists() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard = std::fs::read_to_string(format!("{root}/helm/weir/files/weir-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    let rules = std::fs::read_to_string(format!("{root}/helm/weir/files/weir-alerts.yml")).unwrap();
    let rule_exprs = rule_expressions(&rules);
    assert!(rule_exprs.len() >= 6, "{rule_exprs:?}");
    exprs.extend(rule_exprs);
    let mut names: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 20, "{names:?}");

    // Two nodes, so that the cluster series exist too, a rule, so that the
    // alert series do, and snapshots to a real redis-server.
    let config = CONFIG.to_string()
        + "[[alerts.rules]]\nname = \"hammering\"\npolicy = \"per_ip\"\nwhen = \"denied\"\nthreshold = 100\nwithin = \"1m\"\n";
    let redis = Redis::start();
    let snapshots = ["--snapshot", &redis.url()];
    let nodes = start_cluster(2, &config_file("usage-grafana", &config), &snapshots);
    nodes[0].check(&json!({ "policy": "per_ip", "key": { "ip": "192.0.2.1" } }));
    nodes[0].wait_until(Duration::from_secs(10), "checks counted by policy", |n| {
        n.get_text("/metrics")
            .is_some_and(|m| m.contains("weir_checks_total{"))
    });
    let metrics = nodes[0].get_text("/metrics").unwrap();
    let samples: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &names {
        assert!(
            samples.contains(&name.as_str()),
            "{name} is queried but /metrics lacks it"
        );
    }
}
