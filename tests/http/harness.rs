//! A router around a fresh engine with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use weir::clock::{ManualClock, SECOND};
use weir::config::Config;
use weir::engine::Engine;
use weir::server::{router, App};
use weir::usage::{Usage, UsageSettings};

/// A config with every feature the tests need, and limits small enough to
/// reach by hand.
pub const CONFIG: &str = r#"
[policies.api]
key = ["user"]
default_tier = "free"

[policies.api.tiers.free]
limits = [
  { name = "burst", algorithm = "token_bucket", rate = "1/s", burst = 3 },
  { name = "daily", algorithm = "sliding_window", rate = "100/day" },
]

[policies.api.tiers.paid]
requestable = true
limits = [{ name = "burst", algorithm = "token_bucket", rate = "10/s", burst = 10 }]

[policies.api.tiers.trusted]
requestable = true
unlimited = true

[[policies.api.endpoints]]
endpoint = "POST /orders"
cost = 2

[[policies.api.endpoints]]
endpoint = "GET /export"
[policies.api.endpoints.tiers.free]
limits = [{ name = "export", algorithm = "sliding_window", rate = "1/h" }]

[policies.by_token]
key = ["token"]
default_tier = "free"

[policies.by_token.tiers.free]
limits = [{ algorithm = "sliding_window", rate = "2/m" }]

[policies.by_token.tiers.paid]
limits = [{ algorithm = "sliding_window", rate = "5/m" }]

[assignments.tokens]
"tok-paid" = "paid"
"#;

/// Aligned to every slot width the tests use, so slot phases start at 0.
pub const T0: u64 = 1_800_000_000 * SECOND - (1_800_000_000 * SECOND) % (86_400 * SECOND);

pub const ADMIN: &str = "s3cret-admin";
/// `Authorization` with the admin token.
pub const BEARER: &str = "Bearer s3cret-admin";

pub struct Harness {
    router: Router,
    pub clock: Arc<ManualClock>,
    pub engine: Arc<Engine>,
    pub usage: Arc<Usage>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(CONFIG, Some(ADMIN))
    }

    pub fn with_config(config: &str, admin_token: Option<&str>) -> Self {
        let clock = Arc::new(ManualClock::new(T0));
        let engine = Arc::new(Engine::new(Config::parse(config).unwrap(), clock.clone()));
        let source = Arc::new(weir::config::source::ConfigSource::none(&engine.config()));
        let app = App::new(engine.clone(), source, admin_token.map(str::to_owned), None);
        let usage = Usage::install(engine.clone(), UsageSettings::default());
        let _ = app.usage.set(usage.clone());
        Self {
            router: router(app),
            clock,
            engine,
            usage,
        }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn send(&self, method: Method, uri: &str, body: Body, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        assert!(status.as_u16() < 500, "{status} {body}");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        let json = [("content-type", "application/json")];
        self.send(Method::POST, uri, Body::from(body.to_string()), &json)
            .await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(Method::GET, uri, Body::empty(), &[]).await
    }

    pub async fn check(&self, body: Value) -> Reply {
        self.post("/v1/check", body).await
    }
}
