//! Denials as RFC 9457 problem details for clients that accept them.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Harness, CONFIG};

const PROBLEM: &str = "application/problem+json";

async fn check_accepting(h: &Harness, uri: &str, body: Value, accept: &str) -> crate::harness::Reply {
    let headers = [("content-type", "application/json"), ("accept", accept)];
    h.send(Method::POST, uri, Body::from(body.to_string()), &headers)
        .await
}

fn alice() -> Value {
    json!({ "policy": "api", "key": { "user": "alice" } })
}

#[tokio::test]
async fn a_denial_is_a_quota_exceeded_problem_naming_the_limits_that_denied() {
    let h = Harness::new();
    for _ in 0..3 {
        let allowed = check_accepting(&h, "/v1/check", alice(), PROBLEM).await;
        assert_eq!(allowed.status, StatusCode::OK);
        assert_eq!(
            allowed.header("content-type"),
            "application/json",
            "allowed stays a decision"
        );
    }
    let denied = check_accepting(
        &h,
        "/v1/check",
        alice(),
        "application/json, application/problem+json;q=0.9",
    )
    .await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.header("content-type"), PROBLEM);
    let body = &denied.body;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"], json!(["burst"]), "{body}");
    assert_eq!(body["decision"]["allowed"], false);
    assert_eq!(body["decision"]["retry_after_ms"], 1000);
    assert_eq!(denied.header("retry-after"), "1");
    assert!(denied.header("ratelimit").starts_with("\"burst\";r=0"));

    let plain = h.check(alice()).await;
    assert_eq!(
        plain.header("content-type"),
        "application/json",
        "no Accept, no problem"
    );
    assert_eq!(plain.body["allowed"], false);
}

#[tokio::test]
async fn a_penalty_tier_is_abnormal_usage() {
    let config = format!(
        "{CONFIG}\n[policies.api.tiers.blocked]\ndeny = true\n\n[assignments.users]\nmallory = \"blocked\"\n"
    );
    let h = Harness::with_config(&config, None);
    let mallory = json!({ "policy": "api", "key": { "user": "mallory" } });
    let denied = check_accepting(&h, "/v1/check", mallory, PROBLEM).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    let body = &denied.body;
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#abnormal-usage-detected"
    );
    assert_eq!(body["violated-policies"], json!(["blocked"]), "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("penalty tier \"blocked\""),
        "{body}"
    );
}

#[tokio::test]
async fn a_denied_batch_is_a_problem_about_its_first_denied_check() {
    let h = Harness::new();
    let checks: Vec<Value> = (0..4).map(|_| alice()).collect();
    let denied = check_accepting(&h, "/v1/check/batch", json!({ "checks": checks }), PROBLEM).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.header("content-type"), PROBLEM);
    assert_eq!(
        denied.body["violated-policies"],
        json!(["burst"]),
        "{}",
        denied.body
    );
    assert_eq!(denied.body["decision"]["allowed"], false);
    assert_eq!(denied.body["decision"]["decisions"].as_array().unwrap().len(), 4);
}
