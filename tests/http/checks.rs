//! Decisions, headers, tiers, endpoint rules, inline limits, batches,
//! refunds and metrics.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::harness::Harness;

fn alice() -> serde_json::Value {
    json!({ "policy": "api", "key": { "user": "alice" } })
}

#[tokio::test]
async fn allows_the_burst_then_answers_429_with_retry_after() {
    let h = Harness::new();
    for remaining in [2, 1, 0] {
        let reply = h.check(alice()).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["remaining"], remaining);
        assert_eq!(reply.body["tier"], "free");
    }
    let denied = h.check(alice()).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["allowed"], false);
    assert_eq!(denied.body["limit"], 3);
    // One token comes back after a second.
    assert_eq!(denied.body["retry_after_ms"], 1000);
    assert_eq!(denied.header("retry-after"), "1");
    assert_eq!(denied.header("x-ratelimit-limit"), "3");
    assert_eq!(denied.header("x-ratelimit-remaining"), "0");
}

#[tokio::test]
async fn sends_ietf_and_x_ratelimit_headers_when_allowed() {
    let h = Harness::new();
    let reply = h.check(alice()).await;
    assert_eq!(
        reply.header("ratelimit-policy"),
        "\"burst\";q=3;w=3, \"daily\";q=100;w=86400"
    );
    assert_eq!(
        reply.header("ratelimit"),
        "\"burst\";r=2;t=1, \"daily\";r=99;t=129600"
    );
    assert_eq!(reply.header("x-ratelimit-limit"), "3");
    assert_eq!(reply.header("x-ratelimit-remaining"), "2");
    assert_eq!(reply.header("x-ratelimit-reset"), "1");
    assert_eq!(reply.header("retry-after"), "");
    let limits = reply.body["limits"].as_array().unwrap();
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[1]["algorithm"], "sliding_window");
}

#[tokio::test]
async fn the_retry_after_time_is_honest() {
    let h = Harness::new();
    for _ in 0..3 {
        h.check(alice()).await;
    }
    let wait = h.check(alice()).await.body["retry_after_ms"].as_u64().unwrap();
    h.advance(Duration::from_millis(wait - 1));
    assert_eq!(h.check(alice()).await.status, StatusCode::TOO_MANY_REQUESTS);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.check(alice()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn nothing_is_counted_when_any_limit_denies() {
    let h = Harness::new();
    let both = json!({
        "namespace": "two-limits",
        "key": { "user": "ivy" },
        "limits": [
            { "name": "burst", "algorithm": "token_bucket", "rate": "10/s", "burst": 10 },
            { "name": "daily", "algorithm": "sliding_window", "rate": "2/day" },
        ],
    });
    assert_eq!(h.check(both.clone()).await.status, StatusCode::OK);
    assert_eq!(h.check(both.clone()).await.status, StatusCode::OK);
    for _ in 0..5 {
        let denied = h.check(both.clone()).await;
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(denied.body["limits"][0]["allowed"], true);
        assert_eq!(denied.body["limits"][1]["allowed"], false);
        // The bucket had room but was not charged for the denied requests.
        assert_eq!(denied.body["limits"][0]["remaining"], 8);
    }
}

#[tokio::test]
async fn endpoint_limits_are_counted_apart_from_the_policy_limits() {
    let h = Harness::new();
    let export = json!({ "policy": "api", "key": { "user": "bo", "endpoint": "GET /export" } });
    assert_eq!(h.check(export.clone()).await.status, StatusCode::OK);
    let denied = h.check(export).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["limits"][0]["name"], "export");
    let plain = h.check(json!({ "policy": "api", "key": { "user": "bo" } })).await;
    assert_eq!(plain.body["remaining"], 2);
}

#[tokio::test]
async fn a_peek_reports_without_counting() {
    let h = Harness::new();
    let peek = json!({ "policy": "api", "key": { "user": "alice" }, "cost": 0 });
    for _ in 0..5 {
        let reply = h.check(peek.clone()).await;
        assert_eq!(
            (reply.status, reply.body["remaining"].as_u64()),
            (StatusCode::OK, Some(3))
        );
    }
}

#[tokio::test]
async fn tiers_come_from_the_request_then_assignments_then_the_default() {
    let h = Harness::new();
    let paid = h
        .check(json!({ "policy": "api", "key": { "user": "carol" }, "tier": "paid" }))
        .await;
    assert_eq!(
        (paid.body["tier"].as_str(), paid.body["limit"].as_u64()),
        (Some("paid"), Some(10))
    );

    let assigned = h
        .check(json!({ "policy": "by_token", "key": { "token": "tok-paid" } }))
        .await;
    assert_eq!(
        (assigned.body["tier"].as_str(), assigned.body["limit"].as_u64()),
        (Some("paid"), Some(5))
    );

    let default = h
        .check(json!({ "policy": "by_token", "key": { "token": "tok-other" } }))
        .await;
    assert_eq!(
        (default.body["tier"].as_str(), default.body["limit"].as_u64()),
        (Some("free"), Some(2))
    );
}

#[tokio::test]
async fn an_unlimited_tier_always_passes_without_headers() {
    let h = Harness::new();
    for _ in 0..50 {
        let reply = h
            .check(json!({ "policy": "api", "key": { "user": "ops" }, "tier": "trusted" }))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["limit"], serde_json::Value::Null);
        assert_eq!(reply.header("ratelimit"), "");
    }
}

#[tokio::test]
async fn an_endpoint_rule_sets_the_cost_unless_the_request_does() {
    let h = Harness::new();
    let order = json!({ "policy": "api", "key": { "user": "dan", "endpoint": "POST /orders" } });
    let reply = h.check(order).await;
    assert_eq!(
        (reply.body["cost"].as_u64(), reply.body["remaining"].as_u64()),
        (Some(2), Some(1))
    );
    let explicit =
        json!({ "policy": "api", "key": { "user": "erin", "endpoint": "POST /orders" }, "cost": 1 });
    assert_eq!(h.check(explicit).await.body["remaining"], 2);
}

#[tokio::test]
async fn inline_limits_count_under_their_namespace() {
    let h = Harness::new();
    let anon = json!({
        "namespace": "drf:anon",
        "key": { "ip": "198.51.100.4" },
        "limits": [{ "algorithm": "sliding_window", "rate": "2/day" }],
    });
    assert_eq!(h.check(anon.clone()).await.body["namespace"], "drf:anon");
    assert_eq!(h.check(anon.clone()).await.status, StatusCode::OK);
    let denied = h.check(anon).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["limits"][0]["name"], "2/d");
    // Another namespace with the same key is counted apart.
    let other = json!({
        "namespace": "drf:user",
        "key": { "ip": "198.51.100.4" },
        "limits": [{ "algorithm": "sliding_window", "rate": "2/day" }],
    });
    assert_eq!(h.check(other).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_denied_batch_counts_nothing() {
    let h = Harness::new();
    let batch = json!({ "checks": [
        { "policy": "api", "key": { "user": "fay" } },
        { "policy": "by_token", "key": { "token": "t1" }, "cost": 3 },
    ]});
    let denied = h.post("/v1/check/batch", batch).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["allowed"], false);
    assert_eq!(denied.body["decisions"][0]["allowed"], true);
    assert_eq!(denied.body["decisions"][0]["remaining"], 3, "rolled back");
    assert_eq!(denied.body["decisions"][1]["allowed"], false);
    // Neither key was counted.
    let peek = h
        .check(json!({ "policy": "api", "key": { "user": "fay" }, "cost": 0 }))
        .await;
    assert_eq!(peek.body["remaining"], 3);
}

#[tokio::test]
async fn an_allowed_batch_counts_everything_including_repeats() {
    let h = Harness::new();
    let one = json!({ "policy": "api", "key": { "user": "gus" } });
    let batch = json!({ "checks": [one, one, one] });
    let reply = h.post("/v1/check/batch", batch.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["decisions"][2]["remaining"], 0);
    assert_eq!(reply.header("x-ratelimit-remaining"), "0");
    assert_eq!(
        h.post("/v1/check/batch", batch).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_refund_gives_units_back() {
    let h = Harness::new();
    for _ in 0..3 {
        h.check(alice()).await;
    }
    let refund = json!({ "policy": "api", "key": { "user": "alice" }, "cost": 2 });
    let reply = h.post("/v1/refund", refund).await;
    assert_eq!(
        (reply.status, reply.body["remaining"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    assert_eq!(h.check(alice()).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_keys_and_decisions() {
    let h = Harness::new();
    for _ in 0..4 {
        h.check(alice()).await;
    }
    h.check(json!({ "policy": "api", "key": { "user": "hal" } }))
        .await;
    let text = h.get("/metrics").await.body;
    let text = text.as_str().unwrap();
    assert!(text.contains("weir_tracked_keys 2\n"), "{text}");
    assert!(
        text.contains("weir_decisions_total{result=\"allowed\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("weir_decisions_total{result=\"denied\"} 1\n"),
        "{text}"
    );
    h.usage.drain();
    let text = h.get("/metrics").await.body;
    let text = text.as_str().unwrap();
    let by_scope = "weir_checks_total{policy=\"api\",tier=\"free\",result=\"denied\"} 1\n";
    assert!(text.contains(by_scope), "{text}");
    assert!(text.contains("weir_http_check_duration_seconds_count"), "{text}");
}

#[tokio::test]
async fn expired_keys_are_swept() {
    let h = Harness::new();
    h.check(alice()).await;
    // The daily window is remembered for three days (window plus ring).
    h.advance(Duration::from_secs(3 * 86_400));
    assert_eq!(h.engine.sweep(), 0);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.engine.sweep(), 1);
    assert_eq!(h.engine.stats().keys, 0);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let h = Harness::new();
    assert_eq!(h.get("/healthz").await.body["status"], "ok");
    let ready = h.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body["config_version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
}
