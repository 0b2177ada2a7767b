//! Webhook delivery: signed POSTs (http, or https verified against the
//! system's CA certificates) from a bounded queue, retried with back-off,
//! off the check path.
//!
//! Signatures are done as the well-known services do them: the body is
//! signed with HMAC-SHA256 over `"{timestamp}.{body}"`, the timestamp (Unix
//! seconds) sent in `X-Weir-Timestamp` and the signature as
//! `X-Weir-Signature: sha256=<hex>`; a receiver recomputes it and rejects
//! stale timestamps. The queue holds at most [`QUEUE`] deliveries: past it
//! the oldest is dropped and counted, so a dead receiver costs bounded
//! memory and never slows a check.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::http::{header, Request, Uri};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, warn};

/// Deliveries waiting at most; past it the oldest is dropped.
pub const QUEUE: usize = 1000;
/// Attempts per delivery.
pub const ATTEMPTS: u32 = 5;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// One attempt's deadline: connect, send, answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before the second attempt; doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// One webhook to send.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where.
    pub url: String,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The HMAC key.
    pub secret: Arc<[u8]>,
}

/// Counts by outcome, for metrics.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl DeliveryStats {
    /// `(result, count)` for `weir_webhook_deliveries_total`.
    pub fn snapshot(&self) -> [(&'static str, u64); 4] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("delivered", get(&self.delivered)),
            ("retried", get(&self.retried)),
            ("failed", get(&self.failed)),
            ("dropped", get(&self.dropped)),
        ]
    }
}

/// The queue and its workers.
#[derive(Debug, Default)]
pub struct Webhooks {
    queue: Mutex<VecDeque<Delivery>>,
    wake: Notify,
    /// Delivery outcomes.
    pub stats: DeliveryStats,
}

/// `sha256=<hex>` of `"{timestamp}.{body}"` under `secret`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

impl Webhooks {
    /// Queues `delivery`; drops the oldest waiting one if the queue is full.
    pub fn enqueue(&self, delivery: Delivery) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.push_back(delivery);
        if queue.len() > QUEUE {
            queue.pop_front();
            // Counted; a log line per drop would flood the log in a storm.
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            debug!("webhook queue full: dropped the oldest delivery");
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// Deliveries waiting.
    pub fn waiting(&self) -> usize {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Sends what is queued, [`CONCURRENCY`] at a time, forever; spawn it.
    pub async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(delivery) = next else {
                self.wake.notified().await;
                continue;
            };
            // The semaphore is never closed.
            let permit = slots.clone().acquire_owned().await.expect("semaphore is open");
            let this = self.clone();
            tokio::spawn(async move {
                this.deliver(delivery).await;
                drop(permit);
            });
        }
    }

    async fn deliver(&self, delivery: Delivery) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, post(&delivery)).await;
            let error = match outcome {
                Ok(Ok(())) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Err(error)) => error,
                Err(_) => format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            };
            debug!(url = %crate::redact::url(&delivery.url), attempt, %error, "webhook attempt failed");
            if attempt == ATTEMPTS {
                warn!(url = %crate::redact::url(&delivery.url), attempts = ATTEMPTS, %error, "webhook delivery failed");
                break;
            }
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// TLS for `https://` webhooks: the system's CA certificates (honouring
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`), loaded once.
fn tls() -> &'static Result<tokio_rustls::TlsConnector, String> {
    static TLS: OnceLock<Result<tokio_rustls::TlsConnector, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(format!("no CA certificates found ({:?})", found.errors.first()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    })
}

/// One attempt: POST the signed body over http or https; a 2xx answer is
/// success.
async fn post(delivery: &Delivery) -> Result<(), String> {
    let uri: Uri = delivery.url.parse().map_err(|e| format!("url: {e}"))?;
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the url is neither http:// nor https://".into()),
    };
    let host = uri
        .host()
        .ok_or("url has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = crate::net::connect(host, port)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.to_string(), |a| a.to_string());
    let request = Request::post(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, concat!("weir/", env!("CARGO_PKG_VERSION")))
        .header("x-weir-timestamp", timestamp.to_string())
        .header(
            "x-weir-signature",
            signature(&delivery.secret, timestamp, &delivery.body),
        )
        .body(Full::new(Bytes::from(delivery.body.clone())))
        .map_err(|e| format!("request: {e}"))?;
    if !secure {
        return exchange(tcp, request).await;
    }
    let connector = tls().as_ref().map_err(Clone::clone)?;
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("tls name: {e}"))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    exchange(stream, request).await
}

/// Sends `request` over `stream` and reads the answer.
async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    // Read (a bounded part of) the answer so the connection ends cleanly.
    let _ = Limited::new(response.into_body(), 64 * 1024).collect().await;
    match status.is_success() {
        true => Ok(()),
        false => Err(format!("status {}", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_timestamp_dot_body_with_hmac_sha256() {
        // Computed independently: Python's
        // hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest().
        let signed = signature(b"key", 1_700_000_000, b"{}");
        assert_eq!(
            signed,
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let hooks = Webhooks::default();
        for i in 0..QUEUE + 3 {
            hooks.enqueue(Delivery {
                url: format!("http://127.0.0.1:9/{i}"),
                body: vec![],
                secret: Arc::from(&b"k"[..]),
            });
        }
        assert_eq!(hooks.waiting(), QUEUE);
        assert_eq!(hooks.stats.snapshot()[3], ("dropped", 3));
        let first = hooks.queue.lock().unwrap().front().unwrap().url.clone();
        assert_eq!(first, "http://127.0.0.1:9/3");
    }
}
