//! Asking peers over their HTTP API, signed with the cluster secret so that
//! a peer answers another node without a read token: a GET (the usage and
//! alerts APIs merge peers' answers) and a POST (an alarm forwarded to the
//! node that owns it). The signature covers the method, the node it is
//! meant for, the path and query, the body, the time and a nonce; a node
//! takes each signature once, within [`SKEW_SECS`] of its time, so a
//! captured request can be replayed neither to it nor to another node.
//!
//! When the nodes serve TLS (`--tls-cert`), peers speak TLS to each other.
//! With `--peer-ca`, a peer's certificate must chain to that cluster CA
//! (its name is not checked: nodes dial each other by IP, which
//! certificates rarely name); without it, the exchange is encrypted but the
//! certificate is not checked. Either way the signature is what
//! authenticates a request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::ClusterNode;

/// The header that carries a peer's signature: `UNIX_SECS:NONCE:HEX_MAC`.
pub const PEER_HEADER: &str = "x-weir-peer";

/// How far a signed request's time may be from ours.
pub const SKEW_SECS: u64 = 30;

/// Signatures remembered at most: far more than peers send in twice
/// [`SKEW_SECS`]; past it, a request is refused rather than forgotten.
const MAX_SEEN: usize = 200_000;

/// Largest answer read from a peer.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a request is, as a signature covers it.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The node it is meant for.
    pub to: &'a str,
    /// The path and query.
    pub path_and_query: &'a str,
    /// The body, empty for a GET.
    pub body: &'a [u8],
}

/// The parts a signature covers, in order.
fn signed_parts<'a>(request: &Signed<'a>, at: &'a str, nonce: &'a str) -> [&'a [u8]; 7] {
    [
        b"peer-http/2",
        request.method.as_bytes(),
        request.to.as_bytes(),
        request.path_and_query.as_bytes(),
        request.body,
        at.as_bytes(),
        nonce.as_bytes(),
    ]
}

/// The [`PEER_HEADER`] value signing `request` at `at` (Unix seconds) with
/// `nonce` (any short string unique to this request).
pub fn sign(sealer: &weir_cluster::frame::Sealer, request: &Signed<'_>, at: u64, nonce: &str) -> String {
    let at = at.to_string();
    let mac = sealer.sign_hex(&signed_parts(request, &at, nonce));
    format!("{at}:{nonce}:{mac}")
}

/// The signatures a node has taken within [`SKEW_SECS`]: each is taken
/// once.
#[derive(Debug, Default)]
pub struct SeenSignatures {
    /// MAC to its time, Unix seconds.
    seen: std::collections::HashMap<String, u64>,
}

impl SeenSignatures {
    /// Takes `mac`, signed at `at`, at `now`; false if it was taken before
    /// (a replay), or if too many are remembered to tell.
    pub(crate) fn first_use(&mut self, mac: &str, at: u64, now: u64) -> bool {
        if self.seen.len() >= MAX_SEEN {
            self.seen.retain(|_, t| now.abs_diff(*t) <= SKEW_SECS);
        }
        if self.seen.len() >= MAX_SEEN || self.seen.contains_key(mac) {
            return false;
        }
        self.seen.insert(mac.to_string(), at);
        true
    }
}

/// GETs `path_and_query` from the peer at `addr` within `deadline`.
///
/// # Errors
/// A short reason: unreachable, timed out, an error status, bad JSON.
pub async fn get_json<T: DeserializeOwned>(
    node: &ClusterNode,
    (to, addr): (&str, SocketAddr),
    path_and_query: &str,
    deadline: Duration,
) -> Result<T, String> {
    let body = exchange(node, (to, addr), "GET", path_and_query, Vec::new(), deadline).await?;
    serde_json::from_slice(&body).map_err(|e| format!("answer: {e}"))
}

/// POSTs `body` (JSON) to `path` on the peer `to` at `addr` within
/// `deadline`.
///
/// # Errors
/// As [`get_json`].
pub async fn post_json(
    node: &ClusterNode,
    (to, addr): (&str, SocketAddr),
    path: &str,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<Bytes, String> {
    exchange(node, (to, addr), "POST", path, body, deadline).await
}

async fn exchange(
    node: &ClusterNode,
    (to, addr): (&str, SocketAddr),
    method: &str,
    path_and_query: &str,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<Bytes, String> {
    let request = Signed {
        method,
        to,
        path_and_query,
        body: &body,
    };
    let signature = node.sign_peer_request(&request, unix_secs());
    let request = async {
        let mut stream = crate::net::connect(&addr.ip().to_string(), addr.port())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if let Some(tls) = node.peer_tls() {
            let server = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let tls = tokio_rustls::TlsConnector::from(tls)
                .connect(server, stream)
                .await
                .map_err(|e| match node.peer_ca_checked() {
                    true => format!("TLS: {e} (is the peer's certificate signed by --peer-ca?)"),
                    false => format!("TLS: {e}"),
                })?;
            stream = Box::new(tls);
        }
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header(PEER_HEADER, signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading: {e}"))?
            .to_bytes();
        match status.is_success() {
            true => Ok(body),
            false => Err(format!("status {}", status.as_u16())),
        }
    };
    tokio::time::timeout(deadline, request)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", deadline.as_millis())))
}

/// The TLS client for peers: one that checks a peer's certificate against
/// the cluster CA in `ca` (a PEM file), or, without one, only its
/// handshake signatures (see the module docs).
///
/// # Errors
/// A CA file that cannot be read or holds no certificate.
pub fn client_tls(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match ca {
        None => Arc::new(AnyPeerCertificate(provider)),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--peer-ca {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("--peer-ca {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--peer-ca {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("--peer-ca {}: no certificate in it", path.display()));
            }
            let inner =
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("--peer-ca {}: {e}", path.display()))?;
            Arc::new(ClusterCa(inner))
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A peer's certificate must chain to the cluster CA; the name it is for
/// is not checked, as peers dial each other by IP.
#[derive(Debug)]
struct ClusterCa(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ClusterCa {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct AnyPeerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyPeerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether `headers` carry a valid, fresh peer signature of a `method`
/// request for this node of `path_and_query` and `body`, not seen before.
pub fn is_signed_by_peer(
    node: &ClusterNode,
    method: &str,
    headers: &HeaderMap,
    path_and_query: &str,
    body: &[u8],
) -> bool {
    let Some(value) = headers.get(PEER_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.splitn(3, ':');
    let (Some(at_text), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(at) = at_text.parse::<u64>() else {
        return false;
    };
    let now = unix_secs();
    if now.abs_diff(at) > SKEW_SECS || nonce.is_empty() || nonce.len() > 64 {
        return false;
    }
    let request = Signed {
        method,
        to: node.node_id(),
        path_and_query,
        body,
    };
    node.verify_peer_request(&signed_parts(&request, at_text, nonce), mac) && node.first_use(mac, at, now)
}

/// A member that did not answer, and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MissingNode {
    /// Its id.
    pub node: String,
    /// Why.
    pub error: String,
}

/// GETs `path_and_query` from every peer still in the member list: the
/// answers, and every member that gave none (down, cut off, slow, failing),
/// never silently left out.
pub async fn ask_peers<T: DeserializeOwned + Send + 'static>(
    node: &Arc<ClusterNode>,
    path_and_query: String,
    deadline: Duration,
) -> (Vec<T>, Vec<MissingNode>) {
    let mut asks = tokio::task::JoinSet::new();
    let mut missing = Vec::new();
    for (id, addr, live) in node.peers() {
        let addr = match (addr, live) {
            (Some(addr), true) => addr,
            (_, false) => {
                let error = "not reachable: down or cut off".to_string();
                missing.push(MissingNode { node: id, error });
                continue;
            }
            (None, true) => {
                let error = "gossips no HTTP address".to_string();
                missing.push(MissingNode { node: id, error });
                continue;
            }
        };
        let (node, path) = (node.clone(), path_and_query.clone());
        asks.spawn(async move {
            let answer = get_json::<T>(&node, (&id, addr), &path, deadline).await;
            (id, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok((_, Ok(answer))) => answers.push(answer),
            Ok((node, Err(error))) => missing.push(MissingNode { node, error }),
            Err(error) => missing.push(MissingNode {
                node: "?".into(),
                error: error.to_string(),
            }),
        }
    }
    (answers, missing)
}
