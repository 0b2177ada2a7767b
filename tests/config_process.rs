//! Which config a cluster of three real processes runs (docs/operations.md,
//! "Which config wins"): a runtime edit survives a SIGHUP of an unchanged
//! file and a restart with the same file; a broken file is refused, counted
//! and shown in `/readyz`; a node restarted with another file makes it the
//! cluster's; nodes started from different files end on one config; and
//! `/v1/cluster` shows what each member runs.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::nodes::{config_file, Node};

const ADMIN: &str = "config-test-admin";

const CONFIG: &str = r#"
[policies.shared]
key = ["user"]
default_tier = "t"
[policies.shared.tiers.t]
limits = [{ algorithm = "token_bucket", rate = "20/s", burst = 20 }]
"#;

fn with_rate(rate: &str) -> String {
    CONFIG.replace("20/s", rate)
}

/// The rate of the one limit the node runs.
fn rate(node: &Node) -> Option<String> {
    let config = node.get("/v1/config")?;
    let limits = &config["config"]["policies"]["shared"]["tiers"]["t"]["limits"][0];
    limits["rate"].as_str().map(String::from)
}

fn fingerprint(node: &Node) -> Option<String> {
    node.get("/v1/config")?["fingerprint"].as_str().map(String::from)
}

/// Three nodes, each with a config file of its own (`texts`), the first the
/// others' seed; waits until every node sees all three.
fn start(name: &str, texts: [&str; 3]) -> (Vec<Node>, Vec<PathBuf>) {
    let files: Vec<PathBuf> = (0..3)
        .map(|i| config_file(&format!("{name}-{i}"), texts[i]))
        .collect();
    let extra = ["--admin-token", ADMIN];
    let first = Node::start("node-0", &files[0], &[], &extra);
    let seeds = vec![first.gossip.clone()];
    let mut nodes = vec![first];
    for (i, file) in files.iter().enumerate().skip(1) {
        nodes.push(Node::start(&format!("node-{i}"), file, &seeds, &extra));
    }
    for node in &nodes {
        node.wait_until(Duration::from_secs(30), "seeing every member", |n| {
            n.live_members().len() == 3
        });
    }
    (nodes, files)
}

/// Waits until every node runs the config with `rate`, and returns its
/// fingerprint, the same on every node, as `/v1/cluster` also shows it.
fn all_run(nodes: &[Node], rate_now: &str) -> String {
    for node in nodes {
        node.wait_until(Duration::from_secs(15), &format!("running {rate_now}"), |n| {
            rate(n).as_deref() == Some(rate_now)
        });
    }
    let fingerprints: Vec<Option<String>> = nodes.iter().map(fingerprint).collect();
    assert!(
        fingerprints.iter().all(|f| f.is_some() && *f == fingerprints[0]),
        "{fingerprints:?}"
    );
    let expected = fingerprints[0].clone().unwrap();
    nodes[0].wait_until(
        Duration::from_secs(30),
        "listing every member's fingerprint",
        |n| {
            let status = n.get("/v1/cluster").unwrap_or_default();
            let members = status["members"].as_array().cloned().unwrap_or_default();
            // A restarted node's earlier incarnation stays listed until it is
            // found dead: each node id's newest incarnation is the one to ask.
            let mut newest: std::collections::BTreeMap<String, &Value> = Default::default();
            for member in &members {
                let id = member["node_id"].as_str().unwrap_or_default().to_string();
                let generation = |m: &Value| m["generation"].as_u64().unwrap_or(0);
                if newest.get(&id).is_none_or(|m| generation(m) < generation(member)) {
                    newest.insert(id, member);
                }
            }
            newest.len() == 3
                && newest
                    .values()
                    .all(|m| m["live"] == true && m["config_fingerprint"] == expected.as_str())
        },
    );
    expected
}

fn last_reload(node: &Node) -> Value {
    node.get("/readyz").unwrap_or_default()["config"]["last_reload"].clone()
}

fn restart(nodes: &mut [Node], index: usize, file: &Path) {
    nodes[index].kill();
    let seeds = vec![nodes[(index + 1) % nodes.len()].gossip.clone()];
    nodes[index] = Node::start(&format!("node-{index}"), file, &seeds, &["--admin-token", ADMIN]);
}

#[test]
fn runtime_edits_survive_sighup_and_restarts_and_a_new_file_wins_everywhere() {
    let (mut nodes, files) = start("rule", [CONFIG, CONFIG, CONFIG]);
    all_run(&nodes, "20/s");

    // A runtime edit on one node reaches every node.
    assert_eq!(nodes[0].put("/v1/config", ADMIN, &with_rate("7/s")), 200);
    let edited = all_run(&nodes, "7/s");

    // SIGHUP with the file unchanged keeps the edit, here and everywhere.
    nodes[1].signal("HUP");
    nodes[1].wait_until(Duration::from_secs(5), "reporting the reload", |n| {
        last_reload(n)["result"] == "unchanged"
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(all_run(&nodes, "7/s"), edited);

    // A broken file: refused, counted, shown with its problems; the edit stays.
    std::fs::write(
        &files[1],
        CONFIG.replace("default_tier = \"t\"", "default_tier = \"gold\""),
    )
    .unwrap();
    nodes[1].signal("HUP");
    nodes[1].wait_until(Duration::from_secs(5), "reporting the failed reload", |n| {
        last_reload(n)["result"] == "failed"
    });
    let problems = last_reload(&nodes[1])["problems"].clone();
    assert!(problems[0].as_str().unwrap().contains("gold"), "{problems}");
    assert_eq!(nodes[1].metric("weir_config_reload_failures_total"), 1.0);
    assert_eq!(nodes[1].get("/readyz").unwrap()["status"], "ready");
    std::fs::write(&files[1], CONFIG).unwrap();

    // A node restarted with the same file adopts the cluster's edit.
    restart(&mut nodes, 1, &files[1].clone());
    assert_eq!(all_run(&nodes, "7/s"), edited);

    // A node restarted with another file (a rolled-out ConfigMap) makes it
    // the cluster's config.
    std::fs::write(&files[2], with_rate("5/s")).unwrap();
    restart(&mut nodes, 2, &files[2].clone());
    let rolled = all_run(&nodes, "5/s");
    assert_ne!(rolled, edited);
    let version = |n: &Node| n.get("/v1/config").unwrap()["version"].as_u64();
    assert!(nodes.iter().all(|n| version(n) == version(&nodes[2])));
}

#[test]
fn nodes_started_from_different_files_end_on_one_config() {
    let (nodes, _) = start("split", [CONFIG, CONFIG, &with_rate("12/s")]);
    // Which one wins is the rule's tie-break; that all run it is the point.
    for node in &nodes {
        node.wait_until(Duration::from_secs(15), "a config of the two", |n| {
            matches!(rate(n).as_deref(), Some("20/s" | "12/s"))
        });
    }
    let winner = rate(&nodes[2]).unwrap();
    all_run(&nodes, &winner);
}

/// `CONFIG` with `users` user assignments: about 24 bytes each.
fn with_assignments(users: usize) -> String {
    let mut text = CONFIG.to_string() + "[assignments.users]\n";
    for i in 0..users {
        text.push_str(&format!("\"customer-{i:06}\" = \"t\"\n"));
    }
    text
}

#[test]
fn a_config_too_large_to_replicate_is_refused_and_a_large_one_reaches_every_node() {
    let (nodes, _) = start("large", [CONFIG, CONFIG, CONFIG]);
    let before = all_run(&nodes, "20/s");
    let huge = with_assignments(2500);
    assert!(huge.len() > 60_000, "{}", huge.len());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut reply = agent
        .put(format!("{}/v1/config", nodes[0].base))
        .header("authorization", &format!("Bearer {ADMIN}"))
        .send(huge.as_str())
        .unwrap();
    assert_eq!(reply.status().as_u16(), 413);
    let body: Value = reply.body_mut().read_json().unwrap();
    assert_eq!(body["code"], "config_too_large_for_cluster", "{body}");
    assert_eq!(fingerprint(&nodes[0]).unwrap(), before, "nothing changed");

    // About 20 KB is replicated to every node.
    let large = with_assignments(820).replace("20/s", "9/s");
    assert!(large.len() > 19_000, "{}", large.len());
    assert_eq!(nodes[0].put("/v1/config", ADMIN, &large), 200);
    all_run(&nodes, "9/s");
}
