//! docs/openapi.json against the router: every documented operation is
//! routed, every route is documented, and the server hands the document out.
//! (`make api-tests` runs schemathesis against a real weir for the schemas.)

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::Value;

use super::harness::{Harness, ADMIN};

fn document() -> Value {
    serde_json::from_str(weir::server::ops::OPENAPI).expect("docs/openapi.json is JSON")
}

/// `/v1/tiers/{subject}/{id}` as a request path.
fn concrete(path: &str) -> String {
    path.replace("{subject}", "user")
        .replace("{id}", "alice")
        .replace("{asset}", "app.js")
}

/// The route with its parameters blanked, as axum and OpenAPI both spell it.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push_str("{}");
            }
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn the_server_serves_the_document_as_openapi_3_1_at_the_crate_version() {
    let h = Harness::new();
    let reply = h.send(Method::GET, "/v1/openapi.json", Body::empty(), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.body, document());
    assert_eq!(reply.body["openapi"], "3.1.0");
    assert_eq!(reply.body["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let h = Harness::new();
    let doc = document();
    let auth = format!("Bearer {ADMIN}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if method.as_str() == "PARAMETERS" {
                continue;
            }
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let reply = h
                .send(method.clone(), &concrete(path), Body::from("{}"), &headers)
                .await;
            let code = reply.body["code"].as_str().unwrap_or("");
            let fallback = code == "method_not_allowed" || (code == "not_found" && !path.contains("{asset}"));
            assert!(
                !fallback,
                "{method} {path} is documented but not routed: {}",
                reply.body
            );
        }
    }
}

#[test]
fn every_route_is_documented() {
    let source = include_str!("../../src/server/mod.rs");
    let mut routes: Vec<String> = source
        .split(".route(\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    routes.extend([
        weir::alerts::FORWARD_PATH.to_string(),
        weir::alerts::COOLDOWN_PATH.to_string(),
    ]);
    assert!(routes.len() > 15, "{routes:?}");
    let doc = document();
    let documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| shape(p))
        .collect();
    for route in routes {
        assert!(
            documented.contains(&shape(&route)),
            "{route} is not in docs/openapi.json"
        );
    }
}
