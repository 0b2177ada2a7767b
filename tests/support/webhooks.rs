//! A real HTTP receiver for webhooks on loopback: it checks every
//! signature the way a receiver should and keeps what it got.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The secret the tests give weir in `WEIR_TEST_WEBHOOK_SECRET`.
pub const WEBHOOK_SECRET: &str = "webhook-test-secret";

/// A webhook as received: its JSON body and when it came.
pub type Received = Arc<Mutex<Vec<(Value, Instant)>>>;

#[derive(Clone)]
struct Receiver {
    received: Received,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<u32>>,
}

/// Checks the signature and timestamp the way a receiver should.
pub fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("no {name}"))
    };
    let timestamp: u64 = header("x-weir-timestamp")?.parse().map_err(|_| "bad timestamp")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    if now.abs_diff(timestamp) > 300 {
        return Err("stale timestamp".into());
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match header("x-weir-signature")? == format!("sha256={expected}") {
        true => Ok(()),
        false => Err("bad signature".into()),
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Err(error) = verify(&headers, &body) {
        panic!("webhook refused: {error}");
    }
    {
        let mut fail = receiver.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    receiver.received.lock().unwrap().push((body, Instant::now()));
    StatusCode::NO_CONTENT
}

/// A real HTTP receiver on loopback, in its own runtime thread.
pub fn start_receiver(fail_first: u32) -> (SocketAddr, Received) {
    let received = Received::default();
    let state = Receiver {
        received: received.clone(),
        fail_first: Arc::new(Mutex::new(fail_first)),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new()
                .route("/hook", axum::routing::post(receive))
                .with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), received)
}
