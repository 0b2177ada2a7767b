//! Tiers on a real `weir serve` with the built-in config: a check cannot
//! name a tier that is not requestable; the built-in `blocked` tier denies
//! everything with `Retry-After` until the penalty lapses, whatever tier a
//! check names; `GET /v1/tiers` shows tokens redacted.

mod support;

use serde_json::{json, Value};
use support::nodes::{Addrs, Launch, Node};

const ADMIN: &str = "tiers-test-admin-token";

fn builtin_node() -> Node {
    let flags = ["--admin-token", ADMIN];
    let launch = Launch {
        extra: &flags,
        standalone: true,
        ..Launch::default()
    };
    let config = support::nodes::config_file("tiers-builtin", weir::config::DEFAULT_CONFIG);
    Node::launch("tiers", &config, Addrs::loopback(), &launch)
}

/// `POST /v1/check`: the status, the `Retry-After` header and the body.
fn check(node: &Node, body: &Value) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut reply = agent
        .post(format!("{}/v1/check", node.base))
        .send_json(body)
        .unwrap();
    let retry = reply
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        reply.status().as_u16(),
        retry,
        reply.body_mut().read_json().unwrap(),
    )
}

#[test]
fn the_builtin_tiers_hold_against_what_a_check_names() {
    let node = builtin_node();
    let ip = |ip: &str, tier: &str| json!({ "policy": "per_ip", "key": { "ip": ip }, "tier": tier });

    let (status, _, body) = check(&node, &ip("203.0.113.1", "trusted"));
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("tier_not_requestable")),
        "{body}"
    );
    assert_eq!(check(&node, &ip("203.0.113.1", "paid")).2["tier"], "paid");

    // A 15-minute penalty in the built-in deny tier, and a check naming
    // "paid": denied, told to come back when the penalty lapses.
    let assigned = node.put(
        "/v1/tiers/ip/203.0.113.66",
        ADMIN,
        r#"{"tier": "blocked", "for": "15m"}"#,
    );
    assert_eq!(assigned, 200);
    let (status, retry, body) = check(&node, &ip("203.0.113.66", "paid"));
    assert_eq!((status, body["tier"].as_str()), (429, Some("blocked")), "{body}");
    let retry: u64 = retry.expect("a Retry-After").parse().unwrap();
    assert!((895..=900).contains(&retry), "{retry}");
    assert_eq!(body["limits"][0]["algorithm"], "deny");

    // Tokens are secrets in the tier list too.
    let token = "sk-live-9c8b7a6f5e4d3c2b1a0f";
    assert_eq!(
        node.put(&format!("/v1/tiers/token/{token}"), ADMIN, r#"{"tier": "paid"}"#),
        200
    );
    let listed = node.get_as("/v1/tiers", ADMIN).unwrap();
    assert!(!listed.to_string().contains(token), "{listed}");
}
