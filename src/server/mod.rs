//! The HTTP server: routes, shared state, and the serve loop with graceful
//! shutdown; [`binary`] is the binary-protocol server beside it. Both accept
//! through one [`listener`], with one connection cap and idle timeout.
//!
//! - [`check`]: the decision endpoints.
//! - [`admin`]: config and tier assignment endpoints (bearer token).
//! - [`own_quotas`]: customers' own quotas, credits and resets (bearer token).
//! - [`ops`]: health, readiness, the member list, the OpenAPI document.
//! - [`metrics`]: Prometheus metrics; [`process`] reads the process's own.
//! - [`usage`]: the usage API, merged across the cluster.
//! - [`alerts`]: recent alerts, and alarms forwarded by peers.
//! - [`dashboard`]: the web page, embedded.
//! - [`headers`]: rate-limit headers from a decision.
//! - [`listener`]: the capped, idle-timing listener both servers accept through.
//! - [`tls`]: TLS on the client listeners, reloaded on SIGHUP.
//! - [`error`]: JSON errors.

pub mod admin;
pub mod alerts;
pub mod binary;
pub mod check;
pub mod dashboard;
pub mod error;
pub mod headers;
pub mod latency;
pub mod listener;
pub mod metrics;
pub mod ops;
pub mod own_quotas;
pub mod problem;
pub mod process;
pub mod quota;
pub mod release;
pub mod settle;
pub mod tickets;
pub mod tls;
pub mod usage;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::serve::Listener;
use axum::Router;
use tracing::info;

use crate::alerts::Alerts;
use crate::cluster::ClusterNode;
use crate::config::source::ConfigSource;
use crate::config::MAX_CONFIG_BYTES;
use crate::engine::Engine;
use crate::snapshot::Snapshots;
use crate::usage::Usage;
use listener::Capped;
pub use listener::ServeLimits;
use metrics::SERVER;

/// Largest check, batch or assignment body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// State shared by every handler.
pub struct App {
    /// The limiter.
    pub engine: Arc<Engine>,
    /// Bearer token for admin endpoints; `None` disables them.
    pub admin_token: Option<String>,
    /// Bearer token for the usage API (the admin token works too); with
    /// neither, only loopback clients may read usage.
    pub read_token: Option<String>,
    /// Usage analytics, when on.
    pub usage: OnceLock<Arc<Usage>>,
    /// Abuse alerts.
    pub alerts: OnceLock<Arc<Alerts>>,
    /// False once shutdown has begun.
    pub ready: AtomicBool,
    /// The cluster this node is part of, if any.
    pub cluster: OnceLock<Arc<ClusterNode>>,
    /// Snapshots, when on.
    pub snapshots: OnceLock<Arc<Snapshots>>,
    /// The config file, and what became of its last reload.
    pub config_source: Arc<ConfigSource>,
    /// Reservations and leases issued here, and those used here.
    pub tickets: tickets::Tickets,
}

impl App {
    /// Shared state around `engine`.
    pub fn new(
        engine: Arc<Engine>,
        config_source: Arc<ConfigSource>,
        admin_token: Option<String>,
        read_token: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config_source,
            engine,
            admin_token: admin_token.filter(|token| !token.is_empty()),
            read_token: read_token.filter(|token| !token.is_empty()),
            usage: OnceLock::new(),
            alerts: OnceLock::new(),
            ready: AtomicBool::new(true),
            cluster: OnceLock::new(),
            snapshots: OnceLock::new(),
            tickets: tickets::Tickets::default(),
        })
    }
}

/// Every route.
pub fn router(app: Arc<App>) -> Router {
    let small_bodies = Router::new()
        .route("/v1/check", post(check::check))
        .route("/v1/check/batch", post(check::check_batch))
        .route("/v1/refund", post(check::refund))
        .route("/v1/settle", post(settle::settle))
        .route("/v1/release", post(release::release))
        .route_layer(axum::middleware::from_fn(metrics::time_checks))
        .route(
            "/v1/tiers/{subject}/{id}",
            put(admin::put_tier).delete(admin::delete_tier),
        )
        .route(
            "/v1/quotas/{subject}/{id}",
            put(own_quotas::put_own_quotas).delete(own_quotas::delete_own_quotas),
        )
        .route("/v1/quotas/{subject}/{id}/credit", post(own_quotas::post_credit))
        .route("/v1/quotas/{subject}/{id}/reset", post(own_quotas::post_reset))
        .route(crate::alerts::FORWARD_PATH, post(alerts::forwarded))
        .route(crate::alerts::COOLDOWN_PATH, post(alerts::cooldown))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let config = get(admin::get_config)
        .put(admin::put_config)
        .layer(DefaultBodyLimit::max(MAX_CONFIG_BYTES));
    Router::new()
        .merge(small_bodies)
        .route("/v1/config", config)
        .route("/v1/tiers", get(admin::list_tiers))
        .route("/v1/cluster", get(ops::cluster))
        .route("/v1/cluster/keyring", post(admin::reload_keyring))
        .route("/v1/usage", get(usage::get_usage))
        .route("/v1/usage/key", get(usage::get_key))
        .route("/v1/quota", get(quota::get_quota))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/dashboard", get(dashboard::index))
        .route("/dashboard/", get(dashboard::index))
        .route("/dashboard/{*path}", get(dashboard::asset))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(metrics::metrics))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(app)
}

/// The address a request came from: lets the usage API tell loopback
/// clients apart.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl<L> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Capped<L>>> for ClientAddr
where
    L: Listener<Addr = SocketAddr>,
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Capped<L>>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Serves HTTP on `listener` until `shutdown` completes, then stops
/// accepting, reports not ready, and finishes the requests in flight.
///
/// # Errors
/// Only what the underlying serve loop reports; accept errors are retried.
pub async fn run<L>(
    listener: L,
    app: Arc<App>,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let listener = Capped::new(listener, limits, SERVER.http_connections.clone());
    let state = app.clone();
    let shutdown = async move {
        shutdown.await;
        state.ready.store(false, Ordering::SeqCst);
        info!("shutting down: finishing requests in flight");
    };
    // The peer address tells loopback clients apart (see `usage`).
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Drops expired keys every `period`, forever; spawn it and abort it.
pub async fn sweep_every(engine: Arc<Engine>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    let mut endpoint_rules = EndpointRuleWatch::default();
    loop {
        ticks.tick().await;
        let removed = engine.sweep();
        if removed > 0 {
            tracing::debug!(removed, "expired keys swept");
        }
        endpoint_rules.look(&engine.config(), std::time::Instant::now());
    }
}

/// How long a config's endpoint rules may go unmatched, while checks name
/// other endpoints, before weir warns that one may be misspelt.
const UNMATCHED_GRACE: Duration = Duration::from_secs(600);

/// Warns once per config about endpoint rules that no check matched within
/// [`UNMATCHED_GRACE`] while checks named endpoints that match no rule: most
/// likely a rule spelled otherwise than the adapters send.
#[derive(Default)]
struct EndpointRuleWatch {
    /// The config watched (its fingerprint) and since when.
    watching: Option<(u64, std::time::Instant)>,
    warned: bool,
}

impl EndpointRuleWatch {
    fn look(&mut self, config: &crate::config::Config, now: std::time::Instant) {
        let since = match self.watching {
            Some((fingerprint, since)) if fingerprint == config.fingerprint => since,
            _ => {
                *self = Self {
                    watching: Some((config.fingerprint, now)),
                    warned: false,
                };
                return;
            }
        };
        if self.warned || now.duration_since(since) < UNMATCHED_GRACE {
            return;
        }
        self.warned = true;
        for policy in &config.policies {
            if let Some((rules, sample)) = policy.never_matched() {
                tracing::warn!(
                    policy = %policy.name,
                    rules = ?rules,
                    seen = %sample,
                    "endpoint rules matched no check in 10 minutes while checks named other endpoints; rules are matched exactly, as METHOD /route/{{param}}"
                );
            }
        }
    }
}
