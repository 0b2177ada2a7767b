//! Asking peers over their HTTP API: a GET with a deadline, signed with the
//! cluster secret so that a peer answers another node without a read token.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use crate::cluster::ClusterNode;

/// The header that carries a peer's signature: `UNIX_SECS:HEX_MAC`.
pub const PEER_HEADER: &str = "x-weir-peer";

/// How far a signed request's time may be from ours.
const SKEW_SECS: u64 = 30;

/// Largest answer read from a peer.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// GETs `path_and_query` from the peer at `addr` within `deadline`.
///
/// # Errors
/// A short reason: unreachable, timed out, an error status, bad JSON.
pub async fn get_json<T: DeserializeOwned>(
    node: &ClusterNode,
    addr: SocketAddr,
    path_and_query: &str,
    deadline: Duration,
) -> Result<T, String> {
    let now = unix_secs();
    let signature = format!("{now}:{}", node.sign_peer_request(path_and_query, now));
    let request = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let request = Request::get(path_and_query)
            .header("host", addr.to_string())
            .header(PEER_HEADER, signature)
            .body(Empty::<Bytes>::new())
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
        if !status.is_success() {
            return Err(format!("status {}", status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|e| format!("answer: {e}"))
    };
    tokio::time::timeout(deadline, request)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", deadline.as_millis())))
}

/// Whether `headers` carry a valid, fresh peer signature of `path_and_query`.
pub fn is_signed_by_peer(node: &ClusterNode, headers: &HeaderMap, path_and_query: &str) -> bool {
    let Some((at, mac)) = headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(':'))
    else {
        return false;
    };
    let Ok(at) = at.parse::<u64>() else {
        return false;
    };
    unix_secs().abs_diff(at) <= SKEW_SECS && node.verify_peer_request(path_and_query, at, mac)
}
