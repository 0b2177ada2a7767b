//! Runtime changes: config swaps and tier assignments, behind the admin
//! bearer token.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Harness, ADMIN, BEARER, CONFIG};

async fn put_config(h: &Harness, text: &str, auth: Option<&str>) -> crate::harness::Reply {
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
    h.send(Method::PUT, "/v1/config", Body::from(text.to_owned()), &headers)
        .await
}

#[tokio::test]
async fn changes_are_disabled_without_an_admin_token_and_say_so() {
    let h = Harness::with_config(CONFIG, None);
    let reply = put_config(&h, CONFIG, Some(BEARER)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body["error"].as_str().unwrap().contains("--admin-token"));
}

#[tokio::test]
async fn changes_need_the_right_bearer_token() {
    let h = Harness::new();
    for auth in [None, Some("Bearer wrong"), Some(ADMIN)] {
        let reply = put_config(&h, CONFIG, auth).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(reply.header("www-authenticate"), "Bearer");
    }
    assert_eq!(h.engine.config_version(), 1);
}

#[tokio::test]
async fn an_invalid_config_is_refused_with_every_problem_and_its_line() {
    let h = Harness::new();
    let bad = CONFIG.replace("rate = \"2/m\"", "rate = \"2/eon\"").replace(
        "default_tier = \"free\"\n\n[policies.by_token.tiers",
        "default_tier = \"gold\"\n\n[policies.by_token.tiers",
    );
    let reply = put_config(&h, &bad, Some(BEARER)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["code"], "invalid_config");
    let problems = reply.body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().all(|p| p["line"].as_u64().unwrap() > 1));
    assert_eq!(h.engine.config_version(), 1, "the running config is kept");
}

#[tokio::test]
async fn an_empty_body_is_refused_rather_than_dropping_every_policy() {
    let h = Harness::new();
    for empty in ["", " \n\t\n"] {
        let reply = put_config(&h, empty, Some(BEARER)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{empty:?}");
        assert_eq!(reply.body["code"], "invalid_config");
    }
    assert_eq!(h.engine.config_version(), 1, "the running config is kept");
}

#[tokio::test]
async fn a_new_config_applies_at_once_and_keeps_counters() {
    let h = Harness::new();
    let key = json!({ "policy": "by_token", "key": { "token": "t9" } });
    h.check(key.clone()).await;
    h.check(key.clone()).await;
    assert_eq!(h.check(key.clone()).await.status, StatusCode::TOO_MANY_REQUESTS);

    // Same window, larger count: the two requests already made still count.
    let raised = CONFIG.replace("rate = \"2/m\"", "rate = \"3/m\"");
    let reply = put_config(&h, &raised, Some(BEARER)).await;
    assert_eq!(
        (reply.status, reply.body["version"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let after = h.check(key.clone()).await;
    assert_eq!(
        (after.status, after.body["remaining"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    assert_eq!(h.get("/v1/config").await.body["version"], 2);
}

#[tokio::test]
async fn get_config_shows_policies_but_not_token_secrets() {
    let h = Harness::new();
    let reply = h.get("/v1/config").await;
    let config = &reply.body["config"];
    assert_eq!(config["policies"]["api"]["default_tier"], "free");
    assert_eq!(config["assignments"]["tokens"], json!({ "count": 1 }));
    assert!(!reply.body.to_string().contains("tok-paid"));
}

#[tokio::test]
async fn tier_assignments_change_at_runtime() {
    let h = Harness::new();
    let dave = json!({ "policy": "api", "key": { "user": "dave" } });
    assert_eq!(h.check(dave.clone()).await.body["tier"], "free");

    let json = [("content-type", "application/json"), ("authorization", BEARER)];
    let body = || Body::from(json!({ "tier": "trusted" }).to_string());
    let set = h.send(Method::PUT, "/v1/tiers/user/dave", body(), &json).await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(h.check(dave.clone()).await.body["tier"], "trusted");

    let listed = h.send(Method::GET, "/v1/tiers", Body::empty(), &json[1..]).await;
    assert_eq!(listed.body["users"]["dave"], "trusted");

    let removed = h
        .send(Method::DELETE, "/v1/tiers/user/dave", Body::empty(), &json[1..])
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(h.check(dave).await.body["tier"], "free");

    let unknown = h
        .send(
            Method::PUT,
            "/v1/tiers/user/dave",
            Body::from("{\"tier\":\"gold\"}"),
            &json,
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_tier"))
    );
    let bad_kind = h.send(Method::PUT, "/v1/tiers/team/x", body(), &json).await;
    assert_eq!(bad_kind.status, StatusCode::NOT_FOUND);
    let no_auth = h.send(Method::PUT, "/v1/tiers/user/x", body(), &json[..1]).await;
    assert_eq!(no_auth.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_penalty_lasts_as_long_as_asked_then_lapses() {
    let h = Harness::new();
    let json = [("content-type", "application/json"), ("authorization", BEARER)];
    let erin = json!({ "policy": "api", "key": { "user": "erin" } });
    let penalty = Body::from(json!({ "tier": "paid", "for": "10s" }).to_string());
    let set = h.send(Method::PUT, "/v1/tiers/user/erin", penalty, &json).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let until = set.body["until_ms"].as_u64().unwrap();
    assert_eq!(until, crate::harness::T0 / 1_000_000 + 10_000);
    assert_eq!(h.check(erin.clone()).await.body["tier"], "paid");

    let listed = h
        .send(Method::GET, "/v1/tiers", Body::empty(), &json[1..])
        .await
        .body;
    assert_eq!(listed["users"]["erin"], "paid");
    assert_eq!(listed["lapsing"][0]["until_ms"], until);
    assert_eq!(listed["lapsing"][0]["subject"], "user");

    h.advance(Duration::from_secs(10));
    assert_eq!(h.check(erin).await.body["tier"], "free", "lapsed at its time");
    let listed = h
        .send(Method::GET, "/v1/tiers", Body::empty(), &json[1..])
        .await
        .body;
    assert_eq!(listed["users"], json!({}));
    assert_eq!(h.engine.tier_overlay().sweep(h.engine.now()), 1);
}

#[tokio::test]
async fn any_key_attribute_can_be_assigned_a_tier() {
    let config = CONFIG.to_string()
        + "[policies.per_ip]\nkey = [\"ip\"]\ndefault_tier = \"free\"\n[policies.per_ip.tiers.free]\nlimits = [{ algorithm = \"sliding_window\", rate = \"5/m\" }]\n[policies.per_ip.tiers.blocked]\nlimits = [{ algorithm = \"sliding_window\", rate = \"1/day\" }]\n";
    let h = Harness::with_config(&config, Some(ADMIN));
    let json = [("content-type", "application/json"), ("authorization", BEARER)];
    let scraper = json!({ "policy": "per_ip", "key": { "ip": "203.0.113.66" } });
    let block = Body::from(json!({ "tier": "blocked", "for": "15m" }).to_string());
    let set = h
        .send(Method::PUT, "/v1/tiers/ip/203.0.113.66", block, &json)
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(h.check(scraper.clone()).await.body["tier"], "blocked");
    assert_eq!(h.check(scraper).await.status, StatusCode::TOO_MANY_REQUESTS);
    let other = json!({ "policy": "per_ip", "key": { "ip": "198.51.100.1" } });
    assert_eq!(h.check(other).await.body["tier"], "free");

    let bad = Body::from(json!({ "tier": "blocked", "for": "forever" }).to_string());
    let refused = h.send(Method::PUT, "/v1/tiers/ip/1.2.3.4", bad, &json).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["code"], "invalid_duration");
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("unknown duration"),
        "{}",
        refused.body
    );
    let kind = h
        .send(
            Method::PUT,
            "/v1/tiers/team/x",
            Body::from("{\"tier\":\"blocked\"}"),
            &json,
        )
        .await;
    assert!(kind.body["error"]
        .as_str()
        .unwrap()
        .contains("token, user, ip or endpoint"));
}

#[tokio::test]
async fn a_config_with_a_bad_rule_is_refused_and_the_old_one_kept() {
    let h = Harness::new();
    let json = [("content-type", "application/toml"), ("authorization", BEARER)];
    let bad = CONFIG.to_string()
        + "[[alerts.rules]]\nname = \"x\"\npolicy = \"nope\"\nwhen = \"denied\"\nthreshold = 0\nwithin = \"1m\"\n";
    let reply = h.send(Method::PUT, "/v1/config", Body::from(bad), &json).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let text = reply.body.to_string();
    assert!(
        text.contains("unknown policy \\\"nope\\\"") && text.contains("whole number"),
        "{text}"
    );
    assert_eq!(
        h.get("/v1/config").await.body["version"],
        1,
        "the old config stays"
    );
}

#[tokio::test]
async fn a_deny_tier_admits_nothing_and_says_when_the_penalty_lapses() {
    let config = CONFIG.to_string()
        + "[policies.per_ip]\nkey = [\"ip\"]\ndefault_tier = \"free\"\n[policies.per_ip.tiers.free]\nlimits = [{ algorithm = \"sliding_window\", rate = \"5/m\" }]\n[policies.per_ip.tiers.blocked]\ndeny = true\n";
    let h = Harness::with_config(&config, Some(ADMIN));
    let json = [("content-type", "application/json"), ("authorization", BEARER)];
    let block = Body::from(json!({ "tier": "blocked", "for": "15m" }).to_string());
    let set = h
        .send(Method::PUT, "/v1/tiers/ip/203.0.113.66", block, &json)
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let scraper = json!({ "policy": "per_ip", "key": { "ip": "203.0.113.66" } });

    h.advance(Duration::from_secs(60));
    let denied = h.check(scraper.clone()).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    let body = &denied.body;
    assert_eq!(
        (body["allowed"].as_bool(), body["tier"].as_str()),
        (Some(false), Some("blocked"))
    );
    assert_eq!(
        (body["limit"].as_u64(), body["remaining"].as_u64()),
        (Some(0), Some(0))
    );
    // 15 minutes less the one that passed: 840 s, in every header.
    assert_eq!(body["retry_after_ms"], 840_000);
    assert_eq!(body["limits"][0]["algorithm"], "deny");
    assert_eq!(denied.header("retry-after"), "840");
    assert_eq!(denied.header("ratelimit"), "\"blocked\";r=0;t=840");
    assert_eq!(denied.header("ratelimit-policy"), "\"blocked\";q=0;w=840");
    assert_eq!(denied.header("x-ratelimit-reset"), "840");

    // Past the lapse, the free tier decides again.
    h.advance(Duration::from_secs(840));
    let free = h.check(scraper.clone()).await;
    assert_eq!(
        (free.status, free.body["tier"].as_str()),
        (StatusCode::OK, Some("free"))
    );

    // Assigned for good: denied, with no time to wait for.
    let block = Body::from(json!({ "tier": "blocked" }).to_string());
    h.send(Method::PUT, "/v1/tiers/ip/203.0.113.66", block, &json)
        .await;
    let forever = h.check(scraper).await;
    assert_eq!(forever.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(forever.body["retry_after_ms"].is_null(), "{}", forever.body);
    assert_eq!(forever.header("retry-after"), "");
}

#[tokio::test]
async fn a_tier_cannot_be_both_deny_and_limited() {
    let h = Harness::new();
    let json = [("content-type", "application/toml"), ("authorization", BEARER)];
    let both = CONFIG.replace("unlimited = true", "unlimited = true\ndeny = true");
    let reply = h.send(Method::PUT, "/v1/config", Body::from(both), &json).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body["error"]
            .as_str()
            .unwrap()
            .contains("unlimited or deny, not both"),
        "{}",
        reply.body
    );
}

const PER_IP: &str = r#"
[policies.per_ip]
key = ["ip"]
default_tier = "free"
[policies.per_ip.tiers.free]
requestable = true
limits = [{ algorithm = "sliding_window", rate = "5/m" }]
[policies.per_ip.tiers.paid]
requestable = true
limits = [{ algorithm = "sliding_window", rate = "50/m" }]
[policies.per_ip.tiers.trusted]
unlimited = true
[policies.per_ip.tiers.blocked]
deny = true
[assignments.ips]
"198.51.100.7" = "blocked"
"198.51.100.8" = "trusted"
"#;

#[tokio::test]
async fn a_check_names_only_requestable_tiers_and_a_penalty_holds_against_it() {
    let h = Harness::with_config(PER_IP, Some(ADMIN));
    let check = |ip: &str, tier: &str| json!({ "policy": "per_ip", "key": { "ip": ip }, "tier": tier });
    // Nobody names their own way into "trusted".
    let refused = h.check(check("203.0.113.1", "trusted")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["code"], "tier_not_requestable");
    assert!(
        refused.body["error"].as_str().unwrap().contains("free, paid"),
        "{}",
        refused.body
    );
    assert_eq!(h.check(check("203.0.113.1", "paid")).await.body["tier"], "paid");

    // A penalty (runtime) wins over the tier a check names; an ordinary
    // assignment does not.
    let json = [("content-type", "application/json"), ("authorization", BEARER)];
    let block = Body::from(json!({ "tier": "blocked", "for": "15m" }).to_string());
    h.send(Method::PUT, "/v1/tiers/ip/203.0.113.2", block, &json)
        .await;
    let penalized = h.check(check("203.0.113.2", "paid")).await;
    assert_eq!(
        (penalized.status, penalized.body["tier"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("blocked"))
    );
    let free = Body::from(json!({ "tier": "free" }).to_string());
    h.send(Method::PUT, "/v1/tiers/ip/203.0.113.3", free, &json).await;
    assert_eq!(h.check(check("203.0.113.3", "paid")).await.body["tier"], "paid");

    // The config pins IPs too: a penalty there holds the same way.
    let pinned = h.check(check("198.51.100.7", "paid")).await;
    assert_eq!(
        (pinned.status, pinned.body["tier"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("blocked"))
    );
    let partner = json!({ "policy": "per_ip", "key": { "ip": "198.51.100.8" } });
    assert_eq!(h.check(partner).await.body["tier"], "trusted");
}

#[tokio::test]
async fn the_tier_list_shows_api_tokens_redacted() {
    let h = Harness::new();
    let json = [("content-type", "application/json"), ("authorization", BEARER)];
    let token = "sk-live-4f9a8b7c6d5e4f3a2b1c";
    let body = Body::from(json!({ "tier": "paid", "for": "1h" }).to_string());
    let set = h
        .send(Method::PUT, &format!("/v1/tiers/token/{token}"), body, &json)
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let listed = h.send(Method::GET, "/v1/tiers", Body::empty(), &json[1..]).await;
    let text = listed.body.to_string();
    assert!(!text.contains(token), "{text}");
    assert_eq!(listed.body["tokens"].as_object().unwrap().len(), 1, "{text}");
    assert_eq!(listed.body["lapsing"][0]["subject"], "token");
}

#[tokio::test]
async fn the_config_view_hides_webhook_secrets_and_shows_rules_to_readers_only() {
    let config = CONFIG.to_string()
        + "[policies.api.tiers.blocked]\ndeny = true\n[alerts]\nwebhook_secret_env = \"S\"\n[[alerts.rules]]\nname = \"r\"\npolicy = \"api\"\nwhen = \"denied\"\nthreshold = 30\nwithin = \"1m\"\nnotify = [\"https://user:pw@hooks.slack.com/services/T0/B0/SECRETPART\"]\npenalty = { tier = \"blocked\", for = \"5m\" }\n";
    let h = Harness::with_config(&config, Some(ADMIN));
    let anyone = h.get("/v1/config").await.body;
    assert_eq!(
        anyone["config"]["alerts"]["rules"],
        json!({ "count": 1 }),
        "{anyone}"
    );
    let reader = h
        .send(
            Method::GET,
            "/v1/config",
            Body::empty(),
            &[("authorization", BEARER)],
        )
        .await
        .body;
    let rule = &reader["config"]["alerts"]["rules"][0];
    assert_eq!(rule["threshold"], 30.0);
    assert_eq!(rule["notify"], json!(["https://hooks.slack.com/…"]));
    for shown in [anyone.to_string(), reader.to_string()] {
        assert!(!shown.contains("SECRETPART") && !shown.contains("pw@"), "{shown}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let h = Harness::new();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {ADMIN}");
        let listed = h
            .send(
                Method::GET,
                "/v1/tiers",
                Body::empty(),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{scheme}");
    }
    let wrong = h
        .send(
            Method::GET,
            "/v1/tiers",
            Body::empty(),
            &[("authorization", "Basic s3cret-admin")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_customers_own_quota_is_set_and_removed_at_runtime() {
    let plans = format!(
        "{CONFIG}\n[policies.plans]\nkey = [\"token\"]\ndefault_tier = \"free\"\n[policies.plans.tiers.free]\n# the plan\nlimits = [{{ name = \"monthly\", algorithm = \"quota\", limit = 10, period = \"month\" }}]\n"
    );
    let h = Harness::with_config(&plans, Some(ADMIN));
    let acme = json!({ "policy": "plans", "key": { "token": "tok-acme" } });
    assert_eq!(h.check(acme.clone()).await.body["remaining"], 9);

    let json = [("content-type", "application/json"), ("authorization", BEARER)];
    let own = || Body::from(json!({ "monthly": 500 }).to_string());
    let set = h
        .send(Method::PUT, "/v1/quotas/token/tok-acme", own(), &json)
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["version"], 2);
    let checked = h.check(acme.clone()).await;
    assert_eq!(
        (checked.body["limit"].as_u64(), checked.body["remaining"].as_u64()),
        (Some(500), Some(498))
    );
    // Other policies and counts stay as they were.
    assert_eq!(
        h.check(json!({ "policy": "api", "key": { "user": "u" } }))
            .await
            .body["tier"],
        "free"
    );

    let unknown = h
        .send(
            Method::PUT,
            "/v1/quotas/token/tok-acme",
            Body::from(r#"{"yearly": 5}"#),
            &json,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.body["error"]
            .as_str()
            .unwrap()
            .contains("no quota limit's name"),
        "{}",
        unknown.body
    );
    let unauthorized = h.send(Method::PUT, "/v1/quotas/token/x", own(), &json[..1]).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    let bad_kind = h.send(Method::PUT, "/v1/quotas/team/x", own(), &json).await;
    assert_eq!(bad_kind.status, StatusCode::NOT_FOUND);

    let remove = || {
        h.send(
            Method::DELETE,
            "/v1/quotas/token/tok-acme",
            Body::empty(),
            &json[1..],
        )
    };
    let removed = remove().await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(
        h.check(acme.clone()).await.body["remaining"],
        7,
        "the plan's 10, 3 used"
    );
    assert_eq!(remove().await.status, StatusCode::NOT_FOUND);
}
