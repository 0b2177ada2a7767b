//! The binary-protocol server (see [`crate::protocol`] and
//! docs/protocol.md).
//!
//! It accepts through the same [`Capped`] listener as the HTTP server (one
//! connection cap, one idle timeout, an open-connections gauge). Each
//! connection answers every frame it has received, then writes the replies
//! in one go; at most `max_in_flight` replies wait unwritten, and a client
//! that does not read its replies stops being read from, so one connection
//! can hold only so much. A frame must arrive whole within `frame_timeout`
//! of its first byte. A malformed frame gets an error reply (with its
//! request id when it could be read) and the connection is closed; an
//! invalid check (unknown policy, say) gets an error reply and the
//! connection stays open. Nothing a client sends can panic the server or
//! disturb another connection.
//!
//! Each frame is answered in the protocol version it came in. Version 2
//! hands out what the HTTP API does ([`Issued`]: leases, reservations) and
//! serves Release and Settle through the same functions as its routes.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info};

use super::check::Issued;
use super::error::ApiError;
use super::listener::{Capped, ServeLimits};
use super::metrics::SERVER;
use super::{problem, App};
use crate::engine::{CheckError, CheckRequest};
use crate::protocol::stream::{FrameReader, ReadError};
use crate::protocol::{
    append_frame, decode, encode_into, BatchBody, DecisionBody, Extras, FrameRef, Hello, HelloReply, Opcode,
    WireCheck, WireCheck2, WireDecision2, WireError, WireRelease, WireSettle, WireSettled, MAX_FRAME,
    MIN_VERSION, VERSION,
};

/// Limits of the binary server.
#[derive(Debug, Clone, Copy)]
pub struct BinaryLimits {
    /// The connection cap and idle timeout, shared with the HTTP server.
    pub connections: ServeLimits,
    /// Unanswered requests a connection may have before the server stops
    /// reading from it.
    pub max_in_flight: usize,
    /// A frame must arrive whole within this long of its first byte.
    pub frame_timeout: Duration,
}

impl Default for BinaryLimits {
    fn default() -> Self {
        Self {
            connections: ServeLimits::default(),
            max_in_flight: 256,
            frame_timeout: Duration::from_secs(5),
        }
    }
}

/// Replies that wait unwritten past this size are written out even before
/// `max_in_flight` is reached, so the output buffer stays small.
const FLUSH_AT: usize = 64 * 1024;

/// A drained output buffer larger than this is released rather than kept.
const KEEP_OUTPUT: usize = 8 * 1024;

/// Serves the binary protocol on `listener` until `shutdown` completes;
/// then stops accepting, lets each connection finish the frame it is on,
/// and waits (at most 5 seconds) for their replies to be written.
///
/// # Errors
/// Never for a client's behaviour; accept errors are logged and retried.
pub async fn run<L>(
    listener: L,
    app: Arc<App>,
    limits: BinaryLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let mut listener = Capped::new(listener, limits.connections, SERVER.binary_connections.clone());
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // The listener retries failed accepts itself.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stopped = stopped.clone();
        connections.spawn(async move {
            if let Err(err) = serve_connection(stream, &app, limits, stopped).await {
                debug!(?peer, error = %err, "binary connection ended");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    info!(open = connections.len(), "binary server shutting down");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// What a client speaking plaintext to a TLS binary port reads: an error
/// frame, so that a binary client reports it as such.
pub fn tls_required_reply() -> Vec<u8> {
    let mut out = Vec::new();
    let refusal = Refusal::fatal("tls_required", "this port speaks TLS: connect with TLS".into());
    refusal.append(&mut out, MIN_VERSION, 0);
    out
}

/// Serves one connection until the client closes it, it misbehaves, it
/// idles out, or the server stops.
///
/// Every frame already received is answered before the replies are written
/// in one write, as Redis does: a pipelining client costs one read and one
/// write per batch, not per request. Replies are written at the latest
/// every `max_in_flight`; a client that does not read them blocks that
/// write, and the server reads nothing more from it meanwhile.
pub async fn serve_connection<S>(
    mut stream: S,
    app: &App,
    limits: BinaryLimits,
    mut stopped: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = FrameReader::new();
    let mut out = Vec::new();
    let mut unwritten = 0;
    loop {
        if reader.is_drained() && unwritten > 0 {
            write_out(&mut stream, &mut out).await?;
            unwritten = 0;
        }
        // A buffered frame is answered without a look at `stopped`: that
        // look registers a waiter and removes it, a lock each way.
        let next = if reader.has_frame() {
            reader.next(&mut stream, limits.frame_timeout).await
        } else {
            tokio::select! {
                next = reader.next(&mut stream, limits.frame_timeout) => next,
                _ = stopped.changed() => break,
            }
        };
        let fatal = match next {
            // A release may be handed to the node that granted the lease.
            Ok(Some(frame)) if frame.opcode == Opcode::Release => release(app, frame, &mut out).await,
            Ok(Some(frame)) => answer(app, &limits, frame, &mut out),
            Ok(None) => break,
            Err(ReadError::Io(err)) => {
                debug!(error = %err, "binary read ended");
                break;
            }
            Err(ReadError::Frame(request_id, err)) => {
                Refusal::fatal(err.code(), err.to_string()).append(&mut out, MIN_VERSION, request_id);
                true
            }
        };
        unwritten += 1;
        if fatal {
            break;
        }
        if unwritten >= limits.max_in_flight || out.len() >= FLUSH_AT {
            write_out(&mut stream, &mut out).await?;
            unwritten = 0;
        }
    }
    write_out(&mut stream, &mut out).await?;
    stream.shutdown().await
}

/// Writes the replies waiting in `out`, and gives a grown buffer back.
async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        stream.flush().await?;
    }
    out.clear();
    if out.capacity() > KEEP_OUTPUT {
        *out = Vec::new();
    }
    Ok(())
}

/// Answers one frame into `out`, timing checks; true when the connection
/// closes after the reply.
fn answer(app: &App, limits: &BinaryLimits, frame: FrameRef<'_>, out: &mut Vec<u8>) -> bool {
    let timed = !matches!(frame.opcode, Opcode::Ping | Opcode::Hello);
    let start = timed.then(quanta::Instant::now);
    let fatal = refuse(dispatch(app, limits, frame, out), frame, out);
    if let Some(start) = start {
        SERVER.binary_check_seconds.observe(start.elapsed());
    }
    fatal
}

/// Appends the error reply of a refused frame; true when the connection
/// closes after it.
fn refuse(answered: Result<(), Refusal>, frame: FrameRef<'_>, out: &mut Vec<u8>) -> bool {
    match answered {
        Ok(()) => false,
        Err(refusal) => {
            let fatal = refusal.fatal;
            refusal.append(out, frame.version, frame.request_id);
            fatal
        }
    }
}

/// Answers a Release into `out`; true when the connection closes.
async fn release(app: &App, frame: FrameRef<'_>, out: &mut Vec<u8>) -> bool {
    let released = async {
        only_from_version_2(frame)?;
        let body: WireRelease = decode(frame.body).map_err(|e| Refusal::malformed(frame.opcode, e))?;
        super::release::release_lease(app, &body.lease).await?;
        append_frame(out, frame.version, Opcode::ReleaseReply, frame.request_id, |_| {});
        Ok(())
    };
    let answered = released.await;
    refuse(answered, frame, out)
}

/// Release and Settle are version 2's: a version 1 frame asking for them is
/// refused, and the connection stays.
fn only_from_version_2(frame: FrameRef<'_>) -> Result<(), Refusal> {
    if frame.version >= 2 {
        return Ok(());
    }
    Err(Refusal {
        code: "unsupported_version",
        message: format!(
            "{} needs protocol version 2; this frame is version {}",
            frame.opcode, frame.version
        ),
        fatal: false,
    })
}

/// Why a frame got an error reply, and whether the connection closes.
struct Refusal {
    code: &'static str,
    message: String,
    fatal: bool,
}

impl Refusal {
    /// The stream can no longer be trusted: reply, then close.
    fn fatal(code: &'static str, message: String) -> Self {
        Self {
            code,
            message,
            fatal: true,
        }
    }

    /// A body that does not decode as its opcode's message.
    fn malformed(opcode: Opcode, error: String) -> Self {
        Self::fatal("malformed_body", format!("{opcode} body: {error}"))
    }

    fn append(self, out: &mut Vec<u8>, version: u8, request_id: u64) {
        let body = WireError {
            code: self.code.into(),
            // Messages may quote the input: never much more than a few lines.
            message: super::error::capped(self.message),
        };
        append_frame(out, version, Opcode::Error, request_id, |out| {
            encode_into(&body, out)
        });
    }
}

impl From<ApiError> for Refusal {
    /// A request the HTTP API would refuse (an unknown lease, say): the
    /// same code, and the connection stays.
    fn from(error: ApiError) -> Self {
        Self {
            code: error.code(),
            message: error.message().to_string(),
            fatal: false,
        }
    }
}

impl From<CheckError> for Refusal {
    /// A request that decoded but cannot be checked: the connection stays.
    fn from(error: CheckError) -> Self {
        Self {
            code: error.code(),
            message: error.to_string(),
            fatal: false,
        }
    }
}

/// Appends the reply to `frame`, or says why there is none.
fn dispatch(app: &App, limits: &BinaryLimits, frame: FrameRef<'_>, out: &mut Vec<u8>) -> Result<(), Refusal> {
    let (version, opcode, id, body) = (frame.version, frame.opcode, frame.request_id, frame.body);
    let malformed = |error: String| Refusal::malformed(opcode, error);
    let engine = &app.engine;
    match opcode {
        // A ping has no body; bytes there are trailing bytes.
        Opcode::Ping if !body.is_empty() => {
            let trailing = format!("{} bytes after the end of the body (a ping has none)", body.len());
            return Err(malformed(trailing));
        }
        Opcode::Ping => append_frame(out, version, Opcode::Pong, id, |_| {}),
        Opcode::Hello => {
            let reply = hello(decode(body).map_err(malformed)?, limits)?;
            append_frame(out, version, Opcode::HelloReply, id, |out| {
                encode_into(&reply, out)
            });
        }
        Opcode::Check | Opcode::Peek => {
            let check = check_body(version, body).map_err(malformed)?;
            let (reserve, wants_problem) = (check.reserve, check.problem);
            let mut request = CheckRequest::try_from(check.check)?;
            let reply = match opcode {
                Opcode::Peek => {
                    not_reserving(reserve)?;
                    request.cost = Some(0);
                    Opcode::PeekReply
                }
                _ => Opcode::Decision,
            };
            // Encoded straight from the engine's verdict, names borrowed.
            engine.check_with(&request, |verdict| {
                let decision = verdict.view();
                // Version 1 has no place for a lease: its slots lapse.
                let issued = match (reply, version) {
                    (Opcode::Decision, 2..) => Issued::for_check(app, &request, &decision, reserve),
                    _ => Issued::default(),
                };
                let problem = (wants_problem && !decision.allowed)
                    .then(|| problem::text(&decision, &decision, &engine.config()));
                let extras = Extras {
                    problem: problem.as_deref(),
                    ..issued.extras()
                };
                let body = DecisionBody::new(&decision, version).with(extras);
                append_frame(out, version, reply, id, |out| encode_into(&body, out));
            })?;
        }
        Opcode::Refund => {
            let check = check_body(version, body).map_err(malformed)?;
            not_reserving(check.reserve)?;
            let decision = engine.refund(&CheckRequest::try_from(check.check)?)?;
            append_frame(out, version, Opcode::RefundReply, id, |out| {
                encode_into(&DecisionBody::new(&decision, version), out)
            });
        }
        Opcode::CheckMany => {
            let checks = check_bodies(version, body).map_err(malformed)?;
            let wants_problem = checks.iter().any(|check| check.problem);
            let reserves: Vec<bool> = checks.iter().map(|check| check.reserve).collect();
            let requests = checks
                .into_iter()
                .map(|check| CheckRequest::try_from(check.check))
                .collect::<Result<Vec<_>, _>>()?;
            let batch = engine.check_batch(&requests)?;
            // Version 1 has no place for what a batch hands out.
            let issued = match version {
                2.. => Issued::for_batch(app, &requests, &reserves, &batch).unwrap_or_default(),
                _ => Vec::new(),
            };
            let extras: Vec<Extras<'_>> = issued.iter().map(Issued::extras).collect();
            let problem = match batch.decisions.iter().find(|d| !d.allowed) {
                Some(denied) if wants_problem => Some(problem::text(denied, &batch, &engine.config())),
                _ => None,
            };
            let body = BatchBody::new(&batch, version).with(&extras, problem.as_deref());
            append_frame(out, version, Opcode::Batch, id, |out| encode_into(&body, out));
        }
        Opcode::Settle => {
            only_from_version_2(frame)?;
            let settle: WireSettle = decode(body).map_err(malformed)?;
            let settled = super::settle::settle_reservation(app, &settle.reservation, settle.cost)?;
            let reply = WireSettled {
                reserved: settled.reserved,
                cost: settled.cost,
                charged: settled.charged,
                refunded: settled.refunded,
                decision: WireDecision2::from(&settled.decision),
            };
            append_frame(out, version, Opcode::SettleReply, id, |out| {
                encode_into(&reply, out)
            });
        }
        other => {
            let message = format!("{other} is a reply, not a request");
            return Err(Refusal::fatal("unknown_opcode", message));
        }
    }
    Ok(())
}

/// A reservation is for checks: a peek or refund that asks for one is
/// refused, as over HTTP.
fn not_reserving(reserve: bool) -> Result<(), Refusal> {
    match reserve {
        false => Ok(()),
        true => Err(Refusal {
            code: "reserve_not_here",
            message: "reserve applies to checks (Check, CheckMany), not to peeks or refunds".into(),
            fatal: false,
        }),
    }
}

/// A check body in `version`, with version 2's flags (false in version 1).
fn check_body(version: u8, body: &[u8]) -> Result<WireCheck2, String> {
    match version {
        2.. => decode(body),
        _ => decode(body).map(version_1_check),
    }
}

/// A CheckMany body in `version`.
fn check_bodies(version: u8, body: &[u8]) -> Result<Vec<WireCheck2>, String> {
    match version {
        2.. => decode(body),
        _ => decode::<Vec<WireCheck>>(body).map(|checks| checks.into_iter().map(version_1_check).collect()),
    }
}

fn version_1_check(check: WireCheck) -> WireCheck2 {
    WireCheck2 {
        check,
        reserve: false,
        problem: false,
    }
}

/// The answer to a hello: the newest version both sides speak, and this
/// server's limits; an error for a client that speaks only versions older
/// than any served.
fn hello(hello: Hello, limits: &BinaryLimits) -> Result<HelloReply, Refusal> {
    if hello.version < MIN_VERSION {
        return Err(Refusal::fatal(
            "unsupported_version",
            format!(
                "client speaks up to version {}; this server speaks {MIN_VERSION} to {VERSION}",
                hello.version
            ),
        ));
    }
    Ok(HelloReply {
        version: hello.version.min(VERSION),
        server: format!("weir {}", env!("CARGO_PKG_VERSION")),
        max_frame: MAX_FRAME as u32,
        max_in_flight: limits.max_in_flight as u32,
    })
}
