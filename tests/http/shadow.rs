//! Shadow limits over HTTP: reported with their mode and in
//! `shadow_denied`, left out of the headers, counted in the usage report
//! and the metrics.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Harness, ADMIN, CONFIG};

#[tokio::test]
async fn a_shadow_limit_is_reported_counted_and_left_out_of_the_headers() {
    let config = format!(
        "{CONFIG}\n[policies.trial]\nkey = [\"user\"]\ndefault_tier = \"free\"\nmode = \"shadow\"\n[policies.trial.tiers.free]\nlimits = [\n  {{ name = \"burst\", algorithm = \"token_bucket\", rate = \"1/h\", burst = 5, mode = \"enforce\" }},\n  {{ name = \"strict\", algorithm = \"sliding_window\", rate = \"2/h\" }},\n]\n"
    );
    let h = Harness::with_config(&config, Some(ADMIN));
    let bob = json!({ "policy": "trial", "key": { "user": "bob" } });
    for shadow_denied in [json!(null), json!(null), json!(["strict"]), json!(["strict"])] {
        let reply = h.check(bob.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["shadow_denied"], shadow_denied, "{}", reply.body);
        assert_eq!(reply.body["limits"][0]["mode"], "enforce");
        assert_eq!(reply.body["limits"][1]["mode"], "shadow", "the policy's mode");
        assert_eq!(reply.header("ratelimit-policy"), "\"burst\";q=5;w=18000");
        assert_eq!(reply.body["limit"], 5, "the enforced limit binds");
    }
    h.usage.drain();
    let auth = [("authorization", "Bearer s3cret-admin")];
    let usage = h
        .send(
            Method::GET,
            "/v1/usage?policy=trial&range=5m",
            Body::empty(),
            &auth,
        )
        .await;
    assert_eq!(usage.body["totals"]["shadow_denied"], 2, "{}", usage.body);
    let top = &usage.body["top_shadow_denied"][0];
    assert_eq!(
        (top["key"]["user"].as_str(), top["count"].as_u64()),
        (Some("bob"), Some(2)),
        "{}",
        usage.body
    );
    let metrics = h.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("weir_shadow_denied_total{policy=\"trial\",tier=\"free\",limit=\"strict\"} 2"),
        "{text}"
    );
}
