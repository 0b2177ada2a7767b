//! Post-response cost: reserve an estimate with the check, settle the
//! actual cost after; over-use charged, under-use given back; ids that are
//! forged, settled twice or lapsed are refused.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::harness::Harness;

/// A check of the `api` policy (burst 3, then 100 a day) reserving `cost`.
fn reserving(user: &str, cost: u32) -> Value {
    json!({ "policy": "api", "key": { "user": user }, "cost": cost, "reserve": true })
}

async fn reserve(h: &Harness, user: &str, cost: u32) -> String {
    let reply = h.check(reserving(user, cost)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["reservation"].as_str().unwrap().to_string()
}

async fn settle(h: &Harness, reservation: &str, cost: u64) -> (StatusCode, Value) {
    let reply = h
        .post("/v1/settle", json!({ "reservation": reservation, "cost": cost }))
        .await;
    (reply.status, reply.body)
}

fn daily_remaining(decision: &Value) -> u64 {
    decision["limits"][1]["remaining"].as_u64().unwrap()
}

#[tokio::test]
async fn over_use_is_charged_and_under_use_given_back() {
    let h = Harness::new();
    let id = reserve(&h, "ann", 2).await;
    let (status, settled) = settle(&h, &id, 7).await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    assert_eq!(
        (settled["reserved"].as_u64(), settled["charged"].as_u64()),
        (Some(2), Some(5))
    );
    assert_eq!(daily_remaining(&settled["decision"]), 93, "7 of 100 used");
    // The burst of 3 is overdrawn: the next check waits.
    assert_eq!(
        h.check(json!({ "policy": "api", "key": { "user": "ann" } }))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );

    let id = reserve(&h, "bob", 3).await;
    let (status, settled) = settle(&h, &id, 1).await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    assert_eq!(settled["refunded"], 2);
    assert_eq!(daily_remaining(&settled["decision"]), 99);
}

#[tokio::test]
async fn a_reservation_is_settled_once_and_lapses_after_an_hour() {
    let h = Harness::new();
    let id = reserve(&h, "cat", 1).await;
    assert_eq!(settle(&h, &id, 1).await.0, StatusCode::OK);
    let (status, again) = settle(&h, &id, 1).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_settled"))
    );

    let late = reserve(&h, "cat", 1).await;
    h.advance(Duration::from_secs(3601));
    let (status, lapsed) = settle(&h, &late, 5).await;
    assert_eq!(
        (status, lapsed["code"].as_str()),
        (StatusCode::GONE, Some("reservation_lapsed"))
    );
}

#[tokio::test]
async fn forged_and_malformed_settles_are_refused_clearly() {
    let h = Harness::new();
    let id = reserve(&h, "dan", 1).await;
    let (payload, _) = id.rsplit_once('.').unwrap();
    let forged = format!("{payload}.{}", "0".repeat(64));
    for bad in [forged.as_str(), "nonsense", "", "a.b.c"] {
        let (status, body) = settle(&h, bad, 1).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_reservation")),
            "{bad}"
        );
    }
    let (status, body) = settle(&h, &id, 2_000_000).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cost_too_large"))
    );
    let negative = h
        .post("/v1/settle", json!({ "reservation": id, "cost": -1 }))
        .await;
    assert_eq!(
        negative.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        negative.body
    );
    let refund = h.post("/v1/refund", reserving("dan", 1)).await;
    assert_eq!(
        (refund.status, refund.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reserve_not_here"))
    );
    // The refused attempts did not use the reservation up.
    assert_eq!(settle(&h, &id, 1).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_reservation_holds_what_the_endpoint_rule_charged() {
    let h = Harness::new();
    // POST /orders costs 2 in the harness's config.
    let order =
        json!({ "policy": "api", "key": { "user": "eve", "endpoint": "POST /orders" }, "reserve": true });
    let reply = h.check(order).await;
    assert_eq!(reply.body["cost"], 2, "{}", reply.body);
    let id = reply.body["reservation"].as_str().unwrap().to_string();
    let (status, settled) = settle(&h, &id, 2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            settled["reserved"].as_u64(),
            settled["charged"].as_u64(),
            settled["refunded"].as_u64()
        ),
        (Some(2), Some(0), Some(0))
    );
}

#[tokio::test]
async fn a_batch_hands_out_a_reservation_for_each_check_that_asked() {
    let h = Harness::new();
    let plain = json!({ "policy": "api", "key": { "user": "fay" } });
    let batch = h
        .post(
            "/v1/check/batch",
            json!({ "checks": [reserving("gus", 2), plain] }),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    let id = batch.body["decisions"][0]["reservation"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(batch.body["decisions"][1].get("reservation").is_none());
    let (status, settled) = settle(&h, &id, 1).await;
    assert_eq!((status, settled["refunded"].as_u64()), (StatusCode::OK, Some(1)));

    // A denied batch counts nothing, and reserves nothing.
    for _ in 0..3 {
        h.check(json!({ "policy": "api", "key": { "user": "hal" } }))
            .await;
    }
    let denied = h
        .post(
            "/v1/check/batch",
            json!({ "checks": [reserving("ida", 1), { "policy": "api", "key": { "user": "hal" } }] }),
        )
        .await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        denied.body["decisions"][0].get("reservation").is_none(),
        "{}",
        denied.body
    );
}
