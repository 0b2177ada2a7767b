//! Concurrency limits over HTTP: a lease per allowed check, released to
//! free its slot, lapsing when nobody does; one slot per request whatever
//! its cost; the draft's `qu` in the headers.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Harness, CONFIG};

fn harness() -> Harness {
    let config = format!(
        "{CONFIG}\n[policies.jobs]\nkey = [\"user\"]\ndefault_tier = \"t\"\n[policies.jobs.tiers.t]\nlimits = [\n  {{ name = \"hourly\", algorithm = \"sliding_window\", rate = \"100/h\" }},\n  {{ name = \"running\", algorithm = \"concurrency\", max = 2, lease = \"30s\" }},\n]\n"
    );
    Harness::with_config(&config, None)
}

fn job(cost: u32) -> Value {
    json!({ "policy": "jobs", "key": { "user": "ann" }, "cost": cost })
}

async fn release(h: &Harness, lease: &str) -> (StatusCode, Value) {
    let reply = h.post("/v1/release", json!({ "lease": lease })).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn a_third_request_in_flight_waits_for_a_release() {
    let h = harness();
    let first = h.check(job(5)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.body["limits"][1]["remaining"], 1,
        "one slot, whatever the cost"
    );
    assert_eq!(first.body["limits"][0]["remaining"], 95);
    assert_eq!(
        first.header("ratelimit-policy"),
        "\"hourly\";q=100;w=3600, \"running\";q=2;w=30;qu=\"concurrent-requests\""
    );
    let lease = first.body["lease"].as_str().unwrap().to_string();
    assert_eq!(h.check(job(1)).await.status, StatusCode::OK);
    let third = h.check(job(1)).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(third.body.get("lease").is_none(), "a denied check holds nothing");

    let (status, released) = release(&h, &lease).await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["decision"]["limits"][1]["remaining"], 1);
    assert_eq!(
        released["decision"]["limits"][0]["remaining"], 94,
        "a release is no refund"
    );
    assert_eq!(h.check(job(1)).await.status, StatusCode::OK);
    let (status, again) = release(&h, &lease).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_released"))
    );
}

#[tokio::test]
async fn a_lease_nobody_releases_lapses_and_bad_leases_are_refused() {
    let h = harness();
    let lease = h.check(job(1)).await.body["lease"].as_str().unwrap().to_string();
    assert_eq!(h.check(job(1)).await.status, StatusCode::OK);
    assert_eq!(h.check(job(1)).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Up to one and a half leases (the window's weighted oldest slot).
    h.advance(Duration::from_secs(46));
    assert_eq!(h.check(job(1)).await.status, StatusCode::OK);
    let (status, lapsed) = release(&h, &lease).await;
    assert_eq!(
        (status, lapsed["code"].as_str()),
        (StatusCode::GONE, Some("lease_lapsed"))
    );

    for bad in ["", "x.y", "nonsense"] {
        let (status, body) = release(&h, bad).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_lease"))
        );
    }
    // A reservation is no lease.
    let reserving = json!({ "policy": "jobs", "key": { "user": "bob" }, "reserve": true });
    let reservation = h.check(reserving).await.body["reservation"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(release(&h, &reservation).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_concurrency_limits_say_what_is_wrong() {
    let h = Harness::new();
    for (limit, problem) in [
        (json!({ "algorithm": "concurrency", "lease": "30s" }), "needs max"),
        (json!({ "algorithm": "concurrency", "max": 2 }), "needs lease"),
        (
            json!({ "algorithm": "concurrency", "max": 0, "lease": "30s" }),
            "at least 1",
        ),
        (
            json!({ "algorithm": "concurrency", "max": 2, "lease": "30s", "rate": "1/s" }),
            "max and lease only",
        ),
        (
            json!({ "algorithm": "sliding_window", "rate": "1/s", "max": 2 }),
            "concurrency limits only",
        ),
    ] {
        let body = json!({ "namespace": "n", "key": { "user": "u" }, "limits": [limit] });
        let reply = h.check(body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(
            reply.body["error"].as_str().unwrap().contains(problem),
            "{}",
            reply.body
        );
    }
}

#[tokio::test]
async fn an_allowed_batch_leases_each_slot_it_took() {
    let h = harness();
    let batch = h
        .post(
            "/v1/check/batch",
            json!({ "checks": [job(1), { "policy": "api", "key": { "user": "ann" } }] }),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK, "{}", batch.body);
    let lease = batch.body["decisions"][0]["lease"].as_str().unwrap().to_string();
    assert!(
        batch.body["decisions"][1].get("lease").is_none(),
        "no concurrency limit, no lease"
    );
    let (status, released) = release(&h, &lease).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(released["decision"]["limits"][1]["remaining"], 2);
}
