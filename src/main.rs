//! The `weir` command: `serve` runs a node, `check-config` validates a
//! config file, `default-config` prints the built-in one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing::{error, info, warn};

use axum::serve::ListenerExt;
use weir::alerts::Alerts;
use weir::clock::QuantaClock;
use weir::cluster::{ClusterNode, KeyringSource, Settings};
use weir::config::source::{ConfigSource, Reloaded};
use weir::config::{Config, DEFAULT_CONFIG};
use weir::engine::Engine;
use weir::limiter::rate::parse_period;
use weir::server::binary::{self, BinaryLimits};
use weir::server::tls::{self, TlsFiles, TlsListener};
use weir::server::{self, App, ServeLimits};
use weir::snapshot::{self, Snapshots};
use weir::usage::{Usage, UsageSettings};

#[derive(Parser)]
#[command(name = "weir", version, about = "A clustered in-memory API rate limiter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a weir node.
    Serve(Box<ServeArgs>),
    /// Validate a config file; print every problem with its line; exit 1 if any.
    /// Warnings (a webhook secret unset in this environment, a snapshot
    /// directory that does not exist) are printed but do not fail.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
        /// The snapshot URL `weir serve` will use, to check it too.
        #[arg(long = "snapshot", env = "WEIR_SNAPSHOT", hide_env_values = true)]
        snapshot: Option<String>,
    },
    /// Print the built-in config (a starting point for your own).
    DefaultConfig,
}

#[derive(Args)]
struct ServeArgs {
    /// Config file (TOML); the built-in config when absent. Reloaded on SIGHUP.
    #[arg(long, env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    /// Address for the HTTP API.
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = "127.0.0.1:7700")]
    http_addr: SocketAddr,
    /// Address for the binary protocol.
    #[arg(long, env = "WEIR_BIN_ADDR", default_value = "127.0.0.1:7701")]
    bin_addr: SocketAddr,
    /// Bearer token for the admin endpoints; without one they are disabled.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Bearer token for the usage API and dashboard data (the admin token
    /// works too); without either, only loopback clients may read usage.
    #[arg(long, env = "WEIR_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// Show API tokens in full in the usage API, the dashboard, alerts and
    /// webhooks; by default they show as a short prefix and a stable hash.
    #[arg(long, env = "WEIR_SHOW_TOKENS")]
    show_tokens: bool,
    /// Turn usage analytics (and the dashboard's data) off.
    #[arg(long)]
    no_usage: bool,
    /// Keys kept per heavy-hitter summary (per policy, allowed and denied
    /// apart, per minute for an hour and per hour for a day).
    #[arg(long, env = "WEIR_USAGE_TOP_K", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    usage_top_k: u16,
    /// Inline namespaces tracked apart in usage and metrics; the rest count
    /// together as "*".
    #[arg(long, env = "WEIR_USAGE_MAX_NAMESPACES", default_value_t = 32)]
    usage_max_namespaces: usize,
    /// PEM certificate chain (leaf first): serve HTTP and the binary
    /// protocol over TLS. Reloaded on SIGHUP.
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Most open connections, HTTP and binary each.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds before an idle connection (HTTP or binary) is closed.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Threads that serve both protocols and run the background work
    /// [default: one per core the process may use].
    #[arg(long, env = "WEIR_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    #[command(flatten)]
    snapshot: SnapshotArgs,
    /// Log filter, as in RUST_LOG (e.g. "info" or "weir=debug").
    #[arg(long, env = "WEIR_LOG", default_value = "info")]
    log: String,
    /// For tests: the clock starts at this instant (RFC 3339) rather than
    /// now, and runs on from there, so a test sees a calendar quota's reset
    /// without waiting for the month to end.
    #[arg(long, hide = true, value_parser = parse_instant)]
    clock_start: Option<u64>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// An RFC 3339 instant as Unix nanoseconds.
fn parse_instant(text: &str) -> Result<u64, String> {
    let at: jiff::Timestamp = text
        .parse()
        .map_err(|e| format!("{text:?} is not an RFC 3339 instant: {e}"))?;
    u64::try_from(at.as_nanosecond()).map_err(|_| format!("{text:?} is before 1970"))
}

/// Snapshots: on when a snapshot URL is given.
#[derive(Args)]
#[command(next_help_heading = "Snapshots")]
struct SnapshotArgs {
    /// Where to save counts, tier assignments, the runtime config and alert
    /// cooldowns, and restore them from at start: redis://[user:pass@]host:port/db,
    /// rediss://… (TLS), or file:///path. Off when absent.
    #[arg(long = "snapshot", env = "WEIR_SNAPSHOT", hide_env_values = true)]
    url: Option<String>,
    /// Time between snapshots, as 5s, 500ms or 1m.
    #[arg(long = "snapshot-interval", env = "WEIR_SNAPSHOT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    interval: Duration,
    /// How long to wait at start for an unreachable snapshot store before
    /// starting empty.
    #[arg(long = "snapshot-wait", env = "WEIR_SNAPSHOT_WAIT", default_value = "10s", value_parser = parse_duration)]
    wait: Duration,
}

/// Parses `500ms`, `5s`, `2m` or a bare number of seconds, as rates write
/// their periods ([`parse_period`]).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds;
    let text = match text.bytes().all(|b| b.is_ascii_digit()) {
        true => {
            seconds = format!("{text}s");
            seconds.as_str()
        }
        false => text,
    };
    parse_period(text, "duration").map(|nanos| Duration::from_nanos(nanos.get()))
}

/// Clustering: on when a cluster secret is given.
#[derive(Args, Clone)]
#[command(next_help_heading = "Cluster")]
struct ClusterArgs {
    /// Shared secret (16+ bytes) that encrypts and authenticates everything
    /// between peers; clustering is on when one is set. Repeat it to rotate:
    /// the first seals, every one opens.
    #[arg(long, env = "WEIR_CLUSTER_SECRET", hide_env_values = true)]
    cluster_secret: Vec<String>,
    /// A file of cluster secrets, one per line (blank lines and lines
    /// starting with # ignored), after any --cluster-secret. Re-read on
    /// SIGHUP or POST /v1/cluster/keyring.
    #[arg(long, env = "WEIR_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// A cluster CA (PEM) that peers' TLS certificates must chain to, for
    /// nodes serving TLS (--tls-cert); unchecked without it.
    #[arg(long, env = "WEIR_PEER_CA", requires = "tls_cert")]
    peer_ca: Option<PathBuf>,
    /// How long a secret that a keyring reload drops is still accepted (it
    /// no longer seals), so that nodes not yet reloaded are heard: as 5m,
    /// 30s, or 0 to refuse it at once.
    #[arg(long, env = "WEIR_CLUSTER_SECRET_GRACE", default_value = "5m", value_parser = parse_duration)]
    cluster_secret_grace: Duration,
    /// Only nodes with the same cluster id form a cluster.
    #[arg(long, env = "WEIR_CLUSTER_ID", default_value = "weir")]
    cluster_id: String,
    /// This node's id, unique in the cluster [default: $HOSTNAME, else weir-<gossip port>].
    #[arg(long, env = "WEIR_NODE_ID")]
    node_id: Option<String>,
    /// Gossip (membership) address, UDP.
    #[arg(long, env = "WEIR_GOSSIP_ADDR", default_value = "127.0.0.1:7702")]
    gossip_addr: SocketAddr,
    /// HOST:PORT where peers reach this node's gossip socket, when it binds
    /// a wildcard address [default: --gossip-addr].
    #[arg(long, env = "WEIR_ADVERTISE_ADDR")]
    advertise_addr: Option<String>,
    /// Counter-sync address, UDP; advertised on the advertise host.
    #[arg(long, env = "WEIR_SYNC_ADDR", default_value = "127.0.0.1:7703")]
    sync_addr: SocketAddr,
    /// Gossip address of another node, HOST:PORT; repeat it, or give a
    /// comma-separated list in WEIR_SEEDS. Host names are re-resolved.
    #[arg(long = "seed", env = "WEIR_SEEDS", value_delimiter = ',')]
    seeds: Vec<String>,
    /// Milliseconds between counter syncs to peers.
    #[arg(long, env = "WEIR_SYNC_INTERVAL_MS", default_value_t = 50)]
    sync_interval_ms: u64,
    /// Milliseconds between resends of recently used keys (repairs loss).
    #[arg(long, default_value_t = 1000)]
    resend_interval_ms: u64,
    /// Milliseconds between gossip rounds.
    #[arg(long, default_value_t = 200)]
    gossip_interval_ms: u64,
    /// Seconds a dead node stays listed, and counted as part of the cluster,
    /// before it is forgotten.
    #[arg(long, env = "WEIR_DEAD_NODE_GRACE_SECS", default_value_t = 60)]
    dead_node_grace_secs: u64,
}

impl ClusterArgs {
    /// This node's id: the flag, else the host name, else one from the
    /// gossip port. Snapshots are kept under it, so it must survive restarts.
    fn node_id(&self) -> String {
        self.node_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("weir-{}", self.gossip_addr.port()))
    }

    /// Where the keyring comes from: the flags' secrets, then the file's.
    fn keyring(&self) -> KeyringSource {
        KeyringSource {
            given: self
                .cluster_secret
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            file: self.cluster_secret_file.clone(),
        }
    }

    /// The cluster settings, or `None` for a standalone node.
    fn settings(&self, http_addr: SocketAddr, http_tls: bool) -> anyhow::Result<Option<Settings>> {
        let keyring = self.keyring();
        let secrets = keyring.read().map_err(anyhow::Error::msg)?;
        if secrets.is_empty() {
            if !self.seeds.is_empty() {
                anyhow::bail!(
                    "--seed needs --cluster-secret (WEIR_CLUSTER_SECRET): peers authenticate with it"
                );
            }
            return Ok(None);
        };
        let advertise_addr = match &self.advertise_addr {
            Some(text) => resolve(text).with_context(|| format!("--advertise-addr {text}"))?,
            None if self.gossip_addr.ip().is_unspecified() => {
                anyhow::bail!(
                    "--gossip-addr {} is a wildcard; give --advertise-addr",
                    self.gossip_addr
                )
            }
            None => self.gossip_addr,
        };
        let settings = Settings {
            node_id: self.node_id(),
            cluster_id: self.cluster_id.clone(),
            keyring,
            secret_grace: self.cluster_secret_grace,
            gossip_addr: self.gossip_addr,
            advertise_addr,
            sync_addr: self.sync_addr,
            seeds: self.seeds.iter().filter(|s| !s.is_empty()).cloned().collect(),
            sync_interval: Duration::from_millis(self.sync_interval_ms),
            resend_interval: Duration::from_millis(self.resend_interval_ms),
            gossip_interval: Duration::from_millis(self.gossip_interval_ms),
            dead_node_grace: Duration::from_secs(self.dead_node_grace_secs),
            http_addr: Some(http_addr),
            http_tls,
            peer_ca: self.peer_ca.clone(),
        };
        settings.validate()?;
        Ok(Some(settings))
    }
}

/// Resolves `HOST:PORT` once, preferring IPv4.
fn resolve(text: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text.to_socket_addrs()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .context("resolves to no address")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::CheckConfig { file, snapshot } => check_config(&file, snapshot.as_deref()),
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|err| {
        eprintln!("weir: {err:#}");
        ExitCode::FAILURE
    })
}

fn check_config(file: &Path, snapshot: Option<&str>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let snapshot = snapshot
        .filter(|url| !url.is_empty())
        .map(snapshot::Target::parse);
    match (Config::parse(&text), snapshot) {
        (_, Some(Err(problem))) => {
            eprintln!("--snapshot: {problem}");
            Ok(ExitCode::FAILURE)
        }
        (Ok(config), snapshot) => {
            let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
            println!("{}: ok ({} policies: {names:?})", file.display(), names.len());
            for warning in startup_warnings(&config, snapshot.and_then(Result::ok).as_ref()) {
                eprintln!("warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        (Err(problems), _) => {
            for problem in &problems.problems {
                eprintln!(
                    "{}:{}:{}: {}",
                    file.display(),
                    problem.line,
                    problem.column,
                    problem.message
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What would make a node with `config` (and a `snapshot` target) run
/// other than it was asked to, though the config is valid.
fn startup_warnings(config: &Config, snapshot: Option<&snapshot::Target>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(variable) = config.alerts.unset_secret() {
        warnings.push(format!(
            "rules with notify send webhooks signed with ${variable}, which is unset or empty here: none will be sent"
        ));
    }
    if let Some(Err(problem)) = snapshot.map(snapshot::Target::check_local) {
        warnings.push(problem);
    }
    warnings
}

impl SnapshotArgs {
    /// The snapshot settings, or `None` when snapshots are off.
    fn settings(&self, cluster: &ClusterArgs) -> anyhow::Result<Option<snapshot::Settings>> {
        let Some(url) = self.url.as_deref().filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        let target = snapshot::Target::parse(url)
            .map_err(anyhow::Error::msg)
            .context("--snapshot")?;
        target
            .check_local()
            .map_err(anyhow::Error::msg)
            .context("--snapshot")?;
        Ok(Some(snapshot::Settings {
            target,
            interval: self.interval,
            wait: self.wait,
            identity: snapshot::Identity {
                cluster_id: cluster.cluster_id.clone(),
                node_id: cluster.node_id(),
            },
        }))
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (config_source, config) = ConfigSource::open(args.config.clone())?;
    let config_source = Arc::new(config_source);
    for warning in startup_warnings(&config, None) {
        warn!("{warning}");
    }
    weir::redact::show_tokens(args.show_tokens);
    let cluster = args.cluster.settings(args.http_addr, args.tls_cert.is_some())?;
    let snapshot_settings = args.snapshot.settings(&args.cluster)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(TlsFiles::load(cert.clone(), key.clone()).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(threads.into());
    }
    let runtime = runtime.enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let clock = match args.clock_start {
            Some(start) => QuantaClock::starting_at(start),
            None => QuantaClock::new(),
        };
        let engine = Arc::new(Engine::new(config, Arc::new(clock)));
        if args.admin_token.is_none() {
            info!("no admin token: config and tier changes over HTTP are disabled");
        }
        let app = App::new(engine.clone(), config_source.clone(), args.admin_token, args.read_token);
        let usage_drain = (!args.no_usage).then(|| {
            let settings = UsageSettings {
                top_k: args.usage_top_k as usize,
                max_namespaces: args.usage_max_namespaces,
            };
            let usage = Usage::install(engine.clone(), settings);
            let _ = app.usage.set(usage.clone());
            tokio::spawn(usage.drain_every_second())
        });
        let alerts = Alerts::install(engine.clone());
        let _ = app.alerts.set(alerts.clone());
        if let Some(usage) = app.usage.get() {
            alerts.set_usage(usage.clone());
        }
        let snapshots = match snapshot_settings {
            Some(settings) => {
                let snapshots = Snapshots::new(engine.clone(), settings).map_err(anyhow::Error::msg)?;
                snapshots.set_alerts(alerts.clone());
                let _ = app.snapshots.set(snapshots.clone());
                Some(snapshots)
            }
            None => None,
        };
        let snapshotter = snapshots.clone().map(|snapshots| tokio::spawn(snapshots.run()));
        if let Some(settings) = cluster {
            let sync = tokio::net::UdpSocket::bind(settings.sync_addr)
                .await
                .with_context(|| format!("binding {} (counter sync)", settings.sync_addr))?;
            let gossip = tokio::net::UdpSocket::bind(settings.gossip_addr)
                .await
                .with_context(|| format!("binding {} (gossip)", settings.gossip_addr))?;
            let node = ClusterNode::start(engine.clone(), settings, gossip, sync).await?;
            let node = Arc::new(node);
            alerts.set_cluster(&node);
            let _ = app.cluster.set(node);
        }
        let alerting = tokio::spawn(alerts.run());
        let listener = tokio::net::TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding {}", args.http_addr))?;
        let binary = tokio::net::TcpListener::bind(args.bin_addr)
            .await
            .with_context(|| format!("binding {}", args.bin_addr))?;
        info!(http = %listener.local_addr()?, binary = %binary.local_addr()?, tls = tls.is_some(), config = ?args.config, "listening");
        let sweeper = tokio::spawn(server::sweep_every(engine.clone(), Duration::from_secs(10)));
        let reloads = Reloads {
            config: config_source,
            snapshots: snapshots.clone(),
            tls: tls.clone(),
            keyring: app.cluster.get().filter(|node| node.keyring_reloads()).cloned(),
        };
        let reloader = tokio::spawn(reload_on_hangup(engine.clone(), reloads));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signalled = shutdown_signal()?;
        tokio::spawn(async move {
            signalled.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let limits = ServeLimits {
            max_connections: args.max_connections,
            idle_timeout: Duration::from_secs(args.idle_timeout),
        };
        let binary_limits = BinaryLimits {
            connections: limits,
            ..BinaryLimits::default()
        };
        let binary_stopped = until_stopped(stopped.clone());
        let binary = match &tls {
            Some(files) => {
                let binary = TlsListener::new(binary, files.clone(), binary::tls_required_reply())?;
                tokio::spawn(binary::run(binary, app.clone(), binary_limits, binary_stopped))
            }
            None => {
                let binary = binary.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                tokio::spawn(binary::run(binary, app.clone(), binary_limits, binary_stopped))
            }
        };
        match &tls {
            Some(files) => {
                let listener = TlsListener::new(listener, files.clone(), tls::http_plaintext_reply())?;
                server::run(listener, app.clone(), limits, until_stopped(stopped)).await?;
            }
            None => server::run(listener, app.clone(), limits, until_stopped(stopped)).await?,
        }
        binary.await.context("binary server")??;
        alerting.abort();
        let _ = alerting.await;
        if let (Some(task), Some(snapshots)) = (snapshotter, &snapshots) {
            task.abort();
            let _ = task.await;
            snapshots.save_final().await;
        }
        if let Some(node) = app.cluster.get().cloned() {
            drop(app);
            match Arc::try_unwrap(node) {
                Ok(node) => node.leave().await,
                Err(_) => warn!("cluster node still in use; stopping without announcing"),
            }
        }
        sweeper.abort();
        reloader.abort();
        if let Some(drain) = usage_drain {
            drain.abort();
        }
        info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGINT or SIGTERM. The handlers are installed now, not on
/// first poll, so that a signal arriving as soon as weir is ready is caught.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

/// What SIGHUP reloads.
struct Reloads {
    /// The config file, if any.
    config: Arc<ConfigSource>,
    /// Told which config file was loaded.
    snapshots: Option<Arc<Snapshots>>,
    /// The TLS certificate and key, if any.
    tls: Option<Arc<TlsFiles>>,
    /// The node whose keyring has a file (`--cluster-secret-file`).
    keyring: Option<Arc<ClusterNode>>,
}

/// Reloads the config file, the TLS certificate and the cluster's keyring
/// file on every SIGHUP; a bad file is logged and the running one kept.
async fn reload_on_hangup(engine: Arc<Engine>, reloads: Reloads) {
    let Reloads {
        config,
        snapshots,
        tls,
        keyring,
    } = reloads;
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("cannot watch SIGHUP; reload with PUT /v1/config instead");
        return;
    };
    while hangups.recv().await.is_some() {
        if let Some(tls) = &tls {
            tls.reload();
        }
        if let Some(node) = &keyring {
            // Logged there, either way.
            let _ = node.reload_keyring();
        }
        match config.reload(engine.now() / weir::clock::MILLI) {
            Reloaded::NoFile => info!("SIGHUP: no config file to reload; keeping the built-in config"),
            Reloaded::Unchanged => info!(
                version = engine.config_version(),
                "SIGHUP: the config file is unchanged; keeping the running config"
            ),
            Reloaded::Changed(loaded) => {
                if let Some(snapshots) = &snapshots {
                    snapshots.note_config_file(&loaded);
                }
                let version = engine.replace_config(*loaded);
                info!(version, source = ?config.path(), "config reloaded");
            }
            Reloaded::Failed(err) => {
                for problem in err.lines() {
                    error!(%problem, "config reload failed; keeping the running config");
                }
            }
        }
    }
}
