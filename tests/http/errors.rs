//! Bad input: every case is a 4xx with a JSON body that names the problem;
//! never a 500, never a panic.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::Harness;

#[tokio::test]
async fn every_bad_check_gets_a_clear_4xx() {
    let h = Harness::new();
    let cases = [
        (
            json!({ "policy": "nope", "key": { "user": "a" } }),
            400,
            "unknown_policy",
            "known policies: api, by_token",
        ),
        (
            json!({ "policy": "api", "key": { "user": "a", "ip": "1.2.3.4" } }),
            400,
            "unused_key_attribute",
            "does not use key attribute \"ip\"",
        ),
        (
            json!({ "policy": "api", "key": {} }),
            400,
            "missing_key_attribute",
            "needs key attribute \"user\"",
        ),
        (
            json!({ "policy": "api", "key": { "user": "a" }, "tier": "gold" }),
            400,
            "unknown_tier",
            "its tiers: free, paid, trusted",
        ),
        (
            json!({ "policy": "api", "key": { "user": "a" }, "cost": 5_000_000 }),
            400,
            "cost_too_large",
            "maximum of 1000000",
        ),
        (
            json!({ "policy": "api", "key": { "user": "a" }, "cost": -1 }),
            422,
            "invalid_body",
            "cost",
        ),
        (
            json!({ "policy": "api", "key": { "user": "" } }),
            400,
            "bad_key_value",
            "key.user is empty",
        ),
        (
            json!({ "policy": "api", "key": { "user": "x".repeat(300) } }),
            400,
            "bad_key_value",
            "longer than 256",
        ),
        (
            json!({ "policy": "api", "key": { "email": "a@b" } }),
            422,
            "invalid_body",
            "unknown field `email`",
        ),
        (
            json!({ "policy": "api", "key": { "user": "a" }, "colour": 1 }),
            422,
            "invalid_body",
            "unknown field `colour`",
        ),
        (
            json!({ "key": { "user": "a" } }),
            400,
            "bad_target",
            "either \"policy\"",
        ),
        (
            json!({ "policy": "api", "namespace": "x", "key": { "user": "a" } }),
            400,
            "bad_target",
            "either \"policy\"",
        ),
        (
            json!({ "namespace": "n", "key": { "ip": "1" }, "limits": [{ "algorithm": "sliding_window", "rate": "5/fortnight" }] }),
            400,
            "invalid_limits",
            "unknown period \"fortnight\"",
        ),
        (
            json!({ "namespace": "n", "key": { "ip": "1" }, "limits": [] }),
            400,
            "invalid_limits",
            "at least one limit",
        ),
        (
            json!({ "namespace": "n", "key": { "ip": "1" }, "limits": [{ "algorithm": "leaky", "rate": "5/s" }] }),
            422,
            "invalid_body",
            "unknown variant `leaky`",
        ),
        (
            json!({ "namespace": "bad name", "key": { "ip": "1" }, "limits": [{ "algorithm": "sliding_window", "rate": "5/s" }] }),
            400,
            "invalid_namespace",
            "must be 1-64",
        ),
        (
            json!({ "namespace": "n", "key": {}, "limits": [{ "algorithm": "sliding_window", "rate": "5/s" }] }),
            400,
            "empty_key",
            "at least one of",
        ),
    ];
    for (body, status, code, message) in cases {
        let reply = h.check(body.clone()).await;
        assert_eq!(reply.status.as_u16(), status, "{body} -> {}", reply.body);
        assert_eq!(reply.body["code"], code, "{body} -> {}", reply.body);
        let error = reply.body["error"].as_str().unwrap();
        assert!(error.contains(message), "{body} -> {error}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_rejected() {
    let h = Harness::new();
    let json = [("content-type", "application/json")];
    let garbage = h
        .send(Method::POST, "/v1/check", Body::from("{\"policy\": "), &json)
        .await;
    assert_eq!(
        (garbage.status, garbage.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_body"))
    );

    let binary = h
        .send(
            Method::POST,
            "/v1/check",
            Body::from(vec![0xff, 0x00, 0x13, 0x37]),
            &json,
        )
        .await;
    assert_eq!(binary.status, StatusCode::BAD_REQUEST);

    let no_type = h.send(Method::POST, "/v1/check", Body::from("{}"), &[]).await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = format!(
        "{{\"policy\": \"api\", \"key\": {{\"user\": \"{}\"}}}}",
        "x".repeat(100_000)
    );
    let oversized = h.send(Method::POST, "/v1/check", Body::from(huge), &json).await;
    assert_eq!(
        (oversized.status, oversized.body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
}

#[tokio::test]
async fn batches_name_the_bad_check_and_count_nothing() {
    let h = Harness::new();
    let batch = json!({ "checks": [
        { "policy": "api", "key": { "user": "a" } },
        { "policy": "nope", "key": { "user": "a" } },
    ]});
    let reply = h.post("/v1/check/batch", batch).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["error"]
        .as_str()
        .unwrap()
        .starts_with("check 1: unknown policy"));
    assert_eq!(h.engine.stats().keys, 0);

    let empty = h.post("/v1/check/batch", json!({ "checks": [] })).await;
    assert_eq!(empty.body["code"], "batch_size");
    let checks: Vec<_> = (0..40)
        .map(|i| json!({ "policy": "api", "key": { "user": i.to_string() } }))
        .collect();
    let too_many = h.post("/v1/check/batch", json!({ "checks": checks })).await;
    assert_eq!(too_many.body["code"], "batch_size");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new();
    let missing = h.get("/v2/anything").await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let wrong_method = h.get("/v1/check").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.body["code"], "method_not_allowed");
}
