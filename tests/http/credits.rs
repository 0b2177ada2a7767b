//! A customer's own quota terms at runtime: credits for the current period
//! (which lapse with it), resets of what they used, own quotas that lapse,
//! and `GET /v1/quota` showing each; bad terms get a clear 400.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Harness, ADMIN, BEARER, CONFIG};

/// A monthly quota of 10 (UTC); the harness's clock starts on
/// 2027-01-15, 17 days before the month ends.
fn harness() -> Harness {
    let plans = format!(
        "{CONFIG}\n[policies.plans]\nkey = [\"token\"]\ndefault_tier = \"free\"\n[policies.plans.tiers.free]\nlimits = [{{ name = \"monthly\", algorithm = \"quota\", limit = 10, period = \"month\" }}]\n"
    );
    Harness::with_config(&plans, Some(ADMIN))
}

const ADMIN_JSON: [(&str, &str); 2] = [("content-type", "application/json"), ("authorization", BEARER)];

async fn admin(h: &Harness, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let reply = h
        .send(method, uri, Body::from(body.to_string()), &ADMIN_JSON)
        .await;
    (reply.status, reply.body)
}

async fn acme(h: &Harness) -> (bool, u64, u64) {
    let reply = h
        .check(json!({ "policy": "plans", "key": { "token": "tok-acme" } }))
        .await;
    let body = reply.body;
    (
        body["allowed"].as_bool().unwrap(),
        body["limit"].as_u64().unwrap(),
        body["remaining"].as_u64().unwrap(),
    )
}

async fn own_terms(h: &Harness) -> Value {
    let auth = [("authorization", BEARER)];
    let uri = "/v1/quota?policy=plans&token=tok-acme";
    let reply = h.send(Method::GET, uri, Body::empty(), &auth).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["quotas"][0].clone()
}

#[tokio::test]
async fn a_credit_adds_to_this_period_only_and_a_reset_gives_back_what_was_used() {
    let h = harness();
    for _ in 0..4 {
        acme(&h).await;
    }
    let credit = "/v1/quotas/token/tok-acme/credit";
    let (status, given) = admin(
        &h,
        Method::POST,
        credit,
        json!({ "limit": "monthly", "units": 5 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{given}");
    assert_eq!(
        (given["credit"].as_u64(), given["lapses_at"].as_str()),
        (Some(5), Some("2027-02-01T00:00:00Z"))
    );
    assert_eq!(acme(&h).await, (true, 15, 10), "10 and 5 more; 5 used");
    let (_, more) = admin(
        &h,
        Method::POST,
        credit,
        json!({ "limit": "monthly", "units": 2 }),
    )
    .await;
    assert_eq!(more["credit"], 7, "credits of one period add up");
    assert_eq!(
        own_terms(&h).await["own_quota"],
        json!({ "subject": "token", "tier_quota": 10, "quota": null, "credit": 7 })
    );

    // A reset: the 6 used come back on top of the credits.
    acme(&h).await;
    let reset = "/v1/quotas/token/tok-acme/reset";
    let (status, reset) = admin(&h, Method::POST, reset, json!({ "policy": "plans" })).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(
        reset["reset"],
        json!([{ "limit": "monthly", "used": 6, "credit": 13 }])
    );
    assert_eq!(
        acme(&h).await,
        (true, 23, 16),
        "as whole as before any use, credits kept"
    );

    // February: the credits lapse with January, and the count starts anew.
    h.advance(Duration::from_secs(17 * 86_400));
    assert_eq!(acme(&h).await, (true, 10, 9));
    assert_eq!(own_terms(&h).await["own_quota"]["credit"], 0);
}

#[tokio::test]
async fn an_own_quota_lapses_when_it_says_and_credits_stay_beside_it() {
    let h = harness();
    let credit = "/v1/quotas/token/tok-acme/credit";
    admin(
        &h,
        Method::POST,
        credit,
        json!({ "limit": "monthly", "units": 5 }),
    )
    .await;
    let until = "2027-01-16T00:00:00Z";
    let own = json!({ "monthly": { "quota": 100, "until": until } });
    let (status, set) = admin(&h, Method::PUT, "/v1/quotas/token/tok-acme", own).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        acme(&h).await,
        (true, 105, 104),
        "its own 100 and the credit of 5"
    );
    let terms = own_terms(&h).await["own_quota"].clone();
    assert_eq!(
        (terms["quota"].as_u64(), terms["until"].as_str()),
        (Some(100), Some(until))
    );

    h.advance(Duration::from_secs(86_400));
    assert_eq!(
        acme(&h).await,
        (true, 15, 13),
        "the tier's 10 and the credit again"
    );
    assert_eq!(own_terms(&h).await["own_quota"]["quota"], Value::Null);
}

#[tokio::test]
async fn bad_terms_get_a_clear_error() {
    let h = harness();
    let cases = [
        (
            Method::POST,
            "/v1/quotas/token/t/credit",
            json!({ "limit": "monthly", "units": 0 }),
            "invalid_credit",
        ),
        (
            Method::POST,
            "/v1/quotas/token/t/credit",
            json!({ "limit": "yearly", "units": 5 }),
            "unknown_quota",
        ),
        (
            Method::PUT,
            "/v1/quotas/token/t",
            json!({ "monthly": { "credit": 5, "granted": "2027-01-15T00:00:00Z" } }),
            "credit_not_here",
        ),
        (
            Method::PUT,
            "/v1/quotas/token/t",
            json!({ "monthly": { "quota": 5, "until": "soon" } }),
            "invalid_quota",
        ),
        (
            Method::PUT,
            "/v1/quotas/token/t",
            json!({ "monthly": { "until": "2027-02-01T00:00:00Z" } }),
            "invalid_quota",
        ),
        (
            Method::POST,
            "/v1/quotas/user/u/reset",
            json!({ "policy": "plans" }),
            "unused_key_attribute",
        ),
        (
            Method::POST,
            "/v1/quotas/user/u/reset",
            json!({ "policy": "api" }),
            "no_quota",
        ),
    ];
    for (method, uri, body, code) in cases {
        let (status, reply) = admin(&h, method, uri, body.clone()).await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {reply}"
        );
    }
    let (_, lapse) = admin(
        &h,
        Method::PUT,
        "/v1/quotas/token/t",
        json!({ "monthly": { "quota": 5, "until": "soon" } }),
    )
    .await;
    let message = lapse["error"].as_str().unwrap();
    assert!(
        message.starts_with("\"monthly\": until \"soon\" is not an RFC 3339 instant"),
        "{lapse}"
    );
}
