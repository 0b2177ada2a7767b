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

use weir::clock::QuantaClock;
use weir::config::{Config, DEFAULT_CONFIG};
use weir::engine::Engine;
use weir::server::binary::{self, BinaryLimits};
use weir::server::{self, App, ServeLimits};

#[derive(Parser)]
#[command(name = "weir", version, about = "A clustered in-memory API rate limiter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a weir node.
    Serve(ServeArgs),
    /// Validate a config file; print every problem with its line; exit 1 if any.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
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
    /// Most open connections, HTTP and binary each.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds before an idle connection (HTTP or binary) is closed.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Log filter, as in RUST_LOG (e.g. "info" or "weir=debug").
    #[arg(long, env = "WEIR_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig { file } => check_config(&file),
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

fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match Config::parse(&text) {
        Ok(config) => {
            let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
            println!("{}: ok ({} policies: {names:?})", file.display(), names.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
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

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::builtin());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::parse(&text).with_context(|| format!("invalid config {}", path.display()))
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = load(args.config.as_deref())?;
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let engine = Arc::new(Engine::new(config, Arc::new(QuantaClock::new())));
        if args.admin_token.is_none() {
            info!("no admin token: config and tier changes over HTTP are disabled");
        }
        let app = App::new(engine.clone(), args.admin_token);
        let listener = tokio::net::TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding {}", args.http_addr))?;
        let binary = tokio::net::TcpListener::bind(args.bin_addr)
            .await
            .with_context(|| format!("binding {}", args.bin_addr))?;
        info!(http = %listener.local_addr()?, binary = %binary.local_addr()?, config = ?args.config, "listening");
        let sweeper = tokio::spawn(server::sweep_every(engine.clone(), Duration::from_secs(10)));
        let reloader = tokio::spawn(reload_on_hangup(engine.clone(), args.config));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let signalled = shutdown_signal()?;
        tokio::spawn(async move {
            signalled.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let binary_limits = BinaryLimits {
            max_connections: args.max_connections,
            idle_timeout: Duration::from_secs(args.idle_timeout),
            ..BinaryLimits::default()
        };
        let binary = tokio::spawn(binary::run(binary, engine, binary_limits, until_stopped(stopped.clone())));
        let limits = ServeLimits {
            max_connections: args.max_connections,
            idle_timeout: Duration::from_secs(args.idle_timeout),
        };
        server::run(listener, app, limits, until_stopped(stopped)).await?;
        binary.await.context("binary server")??;
        sweeper.abort();
        reloader.abort();
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

/// Reloads the config file on every SIGHUP; a bad file is logged and the
/// running config kept.
async fn reload_on_hangup(engine: Arc<Engine>, path: Option<PathBuf>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("cannot watch SIGHUP; reload with PUT /v1/config instead");
        return;
    };
    while hangups.recv().await.is_some() {
        let Some(path) = path.as_deref() else {
            info!("SIGHUP: no config file to reload; keeping the built-in config");
            continue;
        };
        match load(Some(path)) {
            Ok(config) => {
                let version = engine.replace_config(config);
                info!(version, source = %path.display(), "config reloaded");
            }
            Err(err) => error!(
                error = format!("{err:#}"),
                "config reload failed; keeping the running config"
            ),
        }
    }
}
