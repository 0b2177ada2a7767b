//! Outbound TCP connections (a node asking its peers, webhooks) behind one
//! function, so that a simulation can put them on its own network: turmoil
//! replaces it with its simulated sockets ([`set_connector`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::OnceLock;

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Opens a connection to `host:port`.
pub type Connector = fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Box<dyn Stream>>> + Send>>;

static CONNECTOR: OnceLock<Connector> = OnceLock::new();

/// Replaces tokio's TCP for the whole process (once; later calls are
/// ignored). For simulations.
pub fn set_connector(connector: Connector) {
    let _ = CONNECTOR.set(connector);
}

/// Connects to `host:port` over TCP, or over the simulation's network.
///
/// # Errors
/// As the connect does.
pub async fn connect(host: &str, port: u16) -> io::Result<Box<dyn Stream>> {
    match CONNECTOR.get() {
        Some(connector) => connector(host.to_string(), port).await,
        None => Ok(Box::new(tokio::net::TcpStream::connect((host, port)).await?)),
    }
}
