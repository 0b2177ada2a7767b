//! TLS for the client listeners (HTTP and binary), with rustls.
//!
//! [`TlsFiles`] holds the certificate chain and key read from PEM files
//! and reads them again on SIGHUP; a reload that fails is logged and the
//! running certificate stays. [`TlsListener`] accepts TCP connections in
//! the background and hands out those whose handshake finished, so a slow
//! or silent client never holds up the others. A client that speaks
//! plaintext to a TLS port gets a short plaintext answer saying so (an HTTP
//! 400, or a binary error frame) and the connection is closed: a clear
//! error, not a hang.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once, at most; more wait to be accepted.
const HANDSHAKES: usize = 1024;
/// A TLS record of type handshake starts every TLS connection.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A certificate and key from PEM files, reloadable.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    config: ArcSwap<ServerConfig>,
}

fn load(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in the file",
            cert.display()
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("--tls-cert and --tls-key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsFiles {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key).
    ///
    /// # Errors
    /// A message naming the file and what is wrong with it.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, String> {
        let config = load(&cert, &key)?;
        Ok(Arc::new(Self {
            cert,
            key,
            config: ArcSwap::from_pointee(config),
        }))
    }

    /// Reads the files again; on failure keeps the running certificate.
    pub fn reload(&self) {
        match load(&self.cert, &self.key) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => warn!(%error, "TLS reload failed; keeping the running certificate"),
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// A listener that hands out TLS streams.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsListener {
    /// Serves TLS on `tcp` with `files`; a plaintext client is sent
    /// `plaintext_reply` and closed.
    pub fn new(tcp: TcpListener, files: Arc<TlsFiles>, plaintext_reply: Vec<u8>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (ready, incoming) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(tcp, files, Arc::new(plaintext_reply), ready));
        Ok(Self {
            incoming,
            local,
            task,
        })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    files: Arc<TlsFiles>,
    plaintext_reply: Arc<Vec<u8>>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        // Never closed: acquiring cannot fail.
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(%error, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, reply, ready) = (files.acceptor(), plaintext_reply.clone(), ready.clone());
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, acceptor, &reply)).await;
            drop(permit);
            match handshake {
                Ok(Ok(Some(stream))) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Ok(None)) => debug!(%peer, "plaintext client on a TLS port answered and closed"),
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Completes the handshake, or answers a plaintext client (`None`).
async fn handshake(
    mut stream: TcpStream,
    acceptor: TlsAcceptor,
    reply: &[u8],
) -> io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    let peeked = stream.peek(&mut first).await?;
    if peeked == 0 {
        return Ok(None);
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        stream.write_all(reply).await?;
        stream.shutdown().await?;
        return Ok(None);
    }
    acceptor.accept(stream).await.map(Some)
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends with the listener; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What an HTTP client speaking plaintext to the TLS port reads.
pub fn http_plaintext_reply() -> Vec<u8> {
    let body = r#"{"code":"tls_required","error":"this port speaks TLS: use https://"}"#;
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
