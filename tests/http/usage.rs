//! The usage API over the in-process router: counts, series and heavy
//! hitters after real checks, the key view, and who may read them.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::Harness;

const AUTH: [(&str, &str); 1] = [("authorization", "Bearer s3cret-admin")];

async fn check_user(h: &Harness, user: &str) -> bool {
    let body = json!({"policy": "api", "key": {"user": user}});
    h.post("/v1/check", body).await.body["allowed"].as_bool().unwrap()
}

async fn usage(h: &Harness, query: &str) -> (StatusCode, Value) {
    let reply = h
        .send(Method::GET, &format!("/v1/usage{query}"), Body::empty(), &AUTH)
        .await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn counts_and_top_keys_follow_the_checks_made() {
    let h = Harness::new();
    // The abuser spends its burst of 3 and is refused 7 times; two others
    // pass once each.
    let mut denied = 0;
    for _ in 0..10 {
        denied += !check_user(&h, "mallory").await as u64;
    }
    assert!(check_user(&h, "alice").await);
    assert!(check_user(&h, "bob").await);
    h.usage.drain();

    let (status, report) = usage(&h, "?range=5m").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(denied, 7);
    assert_eq!(report["totals"]["allowed"], 5);
    assert_eq!(report["totals"]["denied"], 7);
    let allowed: u64 = report["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(allowed, 5, "the series adds up to the totals");
    let top = &report["top_denied"][0];
    assert_eq!(top["key"]["user"], "mallory");
    assert_eq!(
        (top["policy"].as_str(), top["tier"].as_str()),
        (Some("api"), Some("free"))
    );
    assert_eq!((top["count"].as_u64(), top["error"].as_u64()), (Some(7), Some(0)));
    assert_eq!(report["top_allowed"][0]["key"]["user"], "mallory");
    assert_eq!(report["top_allowed"][0]["count"], 3);
    assert_eq!(report["scope"], "local", "a standalone node answers for itself");
    assert!(report["memory_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn filters_by_policy_and_tier() {
    let h = Harness::new();
    check_user(&h, "alice").await;
    let token = json!({"policy": "by_token", "key": {"token": "tok-paid"}});
    h.post("/v1/check", token).await;
    h.usage.drain();
    let (_, by_token) = usage(&h, "?policy=by_token").await;
    assert_eq!(by_token["totals"]["allowed"], 1);
    assert_eq!(by_token["scopes"][0]["tier"], "paid");
    // API tokens are secrets: listed as a prefix and a stable hash, and so
    // is the key id that carries them.
    let listed = &by_token["top_allowed"][0];
    assert_eq!(listed["key"]["token"], weir::redact::token("tok-paid"));
    assert!(
        listed["key"]["token"].as_str().unwrap().starts_with("to…"),
        "{listed}"
    );
    assert!(!listed.to_string().contains("tok-paid"), "{listed}");
    let (_, free) = usage(&h, "?tier=free").await;
    assert_eq!(free["totals"]["allowed"], 1);
    assert_eq!(free["top_allowed"].as_array().unwrap().len(), 1);
    assert_eq!(free["top_allowed"][0]["key"]["user"], "alice");
}

#[tokio::test]
async fn ranges_keep_older_traffic_and_five_minutes_forget_it() {
    let h = Harness::new();
    check_user(&h, "alice").await;
    h.usage.drain();
    h.advance(std::time::Duration::from_secs(600));
    check_user(&h, "bob").await;
    h.usage.drain();
    let (_, recent) = usage(&h, "?range=5m").await;
    assert_eq!(recent["totals"]["allowed"], 1);
    assert_eq!(recent["top_allowed"][0]["key"]["user"], "bob");
    let (_, hour) = usage(&h, "?range=1h").await;
    assert_eq!(hour["totals"]["allowed"], 2);
    assert_eq!(hour["step_s"], 10);
    assert_eq!(hour["allowed"].as_array().unwrap().len(), 360);
    let (_, day) = usage(&h, "?range=24h").await;
    assert_eq!(day["totals"]["allowed"], 2);
    assert_eq!(day["top_allowed"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn inline_namespaces_past_the_cap_count_together() {
    let h = Harness::new();
    for i in 0..40 {
        let body = json!({"namespace": format!("ns{i}"), "limits": [{"algorithm": "sliding_window", "rate": "5/m"}], "key": {"ip": "10.0.0.1"}});
        assert_eq!(h.post("/v1/check", body).await.status, StatusCode::OK);
    }
    h.usage.drain();
    let (_, report) = usage(&h, "").await;
    let scopes = report["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 33, "32 namespaces apart and one for the rest");
    let rest = scopes.iter().find(|s| s["namespace"] == "*").unwrap();
    assert_eq!(rest["counts"]["allowed"], 8);
}

#[tokio::test]
async fn the_key_view_peeks_without_counting() {
    let h = Harness::new();
    for _ in 0..5 {
        check_user(&h, "mallory").await;
    }
    h.usage.drain();
    let uri = "/v1/usage/key?policy=api&user=mallory";
    let reply = h.send(Method::GET, uri, Body::empty(), &AUTH).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let view = reply.body;
    assert_eq!(view["tier_source"], "default");
    assert_eq!(view["decision"]["tier"], "free");
    assert_eq!(view["decision"]["limits"][0]["name"], "burst");
    assert_eq!(view["decision"]["limits"][0]["remaining"], 0);
    assert_eq!(view["decision"]["limits"][1]["remaining"], 97);
    assert_eq!(view["recent"]["5m"]["denied"]["count"], 2);
    assert_eq!(view["recent"]["1h"]["allowed"]["count"], 3);
    // Looking counted nothing.
    let again = h.send(Method::GET, uri, Body::empty(), &AUTH).await.body;
    assert_eq!(again["decision"]["limits"][1]["remaining"], 97);

    // Moved to another tier, the key keeps its recent counts.
    let json = [("content-type", "application/json"), AUTH[0]];
    let body = Body::from(json!({ "tier": "paid", "for": "1h" }).to_string());
    h.send(Method::PUT, "/v1/tiers/user/mallory", body, &json).await;
    let moved = h.send(Method::GET, uri, Body::empty(), &AUTH).await.body;
    assert_eq!(moved["tier_source"], "assignment");
    assert_eq!(moved["assignment"]["subject"], "user");
    assert_eq!(moved["recent"]["5m"]["denied"]["count"], 2, "{moved}");

    let token = "/v1/usage/key?policy=by_token&token=tok-paid";
    let view = h.send(Method::GET, token, Body::empty(), &AUTH).await.body;
    assert_eq!(
        (view["tier_source"].as_str(), view["decision"]["tier"].as_str()),
        (Some("config"), Some("paid"))
    );
}

#[tokio::test]
async fn usage_needs_a_token_and_says_why_without_one() {
    let h = Harness::new();
    let reply = h.get("/v1/usage").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Only an admin token is set here: the answer says that it is needed,
    // from loopback too.
    let says = reply.body["error"].as_str().unwrap();
    assert!(
        says.contains("no read token") && says.contains("admin token"),
        "{says}"
    );
    let wrong = [("authorization", "Bearer nope")];
    assert_eq!(
        h.send(Method::GET, "/v1/usage", Body::empty(), &wrong)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // No token at all: only loopback clients; this request has no address.
    let open = Harness::with_config(crate::harness::CONFIG, None);
    let reply = open.get("/v1/usage").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["code"], "read_token_required", "{}", reply.body);
}

#[tokio::test]
async fn bad_queries_get_clear_errors() {
    let h = Harness::new();
    let (status, body) = usage(&h, "?range=7d").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("5m, 1h or 24h"), "{body}");
    let (status, _) = usage(&h, "?scope=planet").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reply = h
        .send(
            Method::GET,
            "/v1/usage/key?policy=nope&user=a",
            Body::empty(),
            &AUTH,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["code"], "unknown_policy");
}
