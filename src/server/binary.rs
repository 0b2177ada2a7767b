//! The binary-protocol server (see [`crate::protocol`] and
//! docs/protocol.md).
//!
//! Each connection answers every frame it has received, then writes the
//! replies in one go; at most `max_in_flight` replies wait unwritten, and a
//! client that does not read its replies stops being read from, so one
//! connection can hold only so much. Frames are capped in size; a connection idle for
//! `idle_timeout`, or taking longer than `frame_timeout` to send a frame it
//! has started, is closed. A malformed frame gets an error reply (with its
//! request id when it could be read) and the connection is closed; an
//! invalid check (unknown policy, say) gets an error reply and the
//! connection stays open. Nothing a client sends can panic the server or
//! disturb another connection.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info};

use super::metrics::SERVER;
use crate::engine::{CheckError, CheckRequest, Engine};
use crate::protocol::{
    decode, encode, Frame, FrameError, Hello, HelloReply, Opcode, WireBatch, WireCheck, WireDecision,
    WireError, MAX_FRAME, VERSION,
};

/// Limits of the binary server.
#[derive(Debug, Clone, Copy)]
pub struct BinaryLimits {
    /// Most open connections; more wait to be accepted.
    pub max_connections: usize,
    /// Unanswered requests a connection may have before the server stops
    /// reading from it.
    pub max_in_flight: usize,
    /// A connection with no new frame for this long is closed.
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this long of its first byte.
    pub frame_timeout: Duration,
}

impl Default for BinaryLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_in_flight: 256,
            idle_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves the binary protocol on `listener` until `shutdown` completes;
/// then stops accepting, lets each connection finish the frame it is on,
/// and waits (at most 5 seconds) for their replies to be written.
///
/// # Errors
/// Never for a client's behaviour; accept errors are logged and retried.
pub async fn run<L>(
    mut listener: L,
    engine: Arc<Engine>,
    limits: BinaryLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore is open"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // The listener retries failed accepts itself.
        let (stream, peer) = accepted;
        let engine = engine.clone();
        let stopped = stopped.clone();
        connections.spawn(async move {
            SERVER.binary_connections.inc();
            if let Err(err) = serve_connection(stream, &engine, limits, stopped).await {
                debug!(?peer, error = %err, "binary connection ended");
            }
            SERVER.binary_connections.dec();
            drop(permit);
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

/// A reply to write, and whether the connection closes after it.
struct Reply {
    bytes: Vec<u8>,
    fatal: bool,
}

fn reply<T: bincode::Encode>(opcode: Opcode, request_id: u64, body: &T) -> Vec<u8> {
    Frame {
        opcode,
        request_id,
        body: encode(body),
    }
    .to_bytes()
}

/// What a client speaking plaintext to a TLS binary port reads: an error
/// frame, so that a binary client reports it as such.
pub fn tls_required_reply() -> Vec<u8> {
    let message = "this port speaks TLS: connect with TLS".to_string();
    error_reply(0, "tls_required", message, true).bytes
}

fn error_reply(request_id: u64, code: &str, message: String, fatal: bool) -> Reply {
    let body = WireError {
        code: code.into(),
        // Messages may quote the input: never much more than a few lines.
        message: super::error::capped(message),
    };
    Reply {
        bytes: reply(Opcode::Error, request_id, &body),
        fatal,
    }
}

/// Serves one connection until the client closes it, it misbehaves, it
/// idles out, or the server stops.
///
/// Every frame already received is answered before the replies are flushed
/// in one write, as Redis does: a pipelining client costs one read and one
/// write per batch, not per request. Replies are flushed at the latest every
/// `max_in_flight`; a client that does not read them blocks that flush, and
/// the server reads nothing more from it meanwhile.
pub async fn serve_connection<S>(
    stream: S,
    engine: &Engine,
    limits: BinaryLimits,
    mut stopped: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut unflushed = 0;
    loop {
        if reader.buffer().is_empty() && unflushed > 0 {
            writer.flush().await?;
            unflushed = 0;
        }
        let next = tokio::select! {
            next = read_frame(&mut reader, limits) => next,
            _ = stopped.changed() => break,
        };
        let reply = match next {
            Ok(Some(frame)) if matches!(frame.opcode, Opcode::Ping | Opcode::Hello) => {
                handle(engine, &limits, frame)
            }
            Ok(Some(frame)) => {
                let start = quanta::Instant::now();
                let reply = handle(engine, &limits, frame);
                SERVER.binary_check_seconds.observe(start.elapsed().as_secs_f64());
                reply
            }
            Ok(None) => break,
            Err(ReadError::Io(err)) => {
                debug!(error = %err, "binary read ended");
                break;
            }
            Err(ReadError::Frame(request_id, err)) => {
                error_reply(request_id, err.code(), err.to_string(), true)
            }
        };
        writer.write_all(&reply.bytes).await?;
        unflushed += 1;
        if reply.fatal {
            break;
        }
        if unflushed >= limits.max_in_flight {
            writer.flush().await?;
            unflushed = 0;
        }
    }
    writer.flush().await?;
    writer.shutdown().await
}

enum ReadError {
    Io(io::Error),
    Frame(u64, FrameError),
}

/// The next frame; `None` when the client closed the connection cleanly
/// between frames. A frame already in the buffer is taken without a timer
/// or a syscall; otherwise the wait for its first byte is bounded by the
/// idle timeout and the rest by the frame timeout.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    limits: BinaryLimits,
) -> Result<Option<Frame>, ReadError> {
    if let Some(frame) = buffered_frame(reader) {
        return frame.map(Some);
    }
    if reader.buffer().is_empty() {
        match tokio::time::timeout(limits.idle_timeout, reader.fill_buf()).await {
            Err(_) => return Err(ReadError::Io(io::ErrorKind::TimedOut.into())),
            Ok(Ok([])) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(ReadError::Io(err)),
        }
    }
    let rest = async {
        let mut prefix = [0u8; 4];
        reader.read_exact(&mut prefix).await?;
        let length = u32::from_le_bytes(prefix) as usize;
        if let Err(err) = Frame::check_length(length) {
            return Ok(Err((0, err)));
        }
        let mut bytes = vec![0u8; length];
        reader.read_exact(&mut bytes).await?;
        Ok::<_, io::Error>(Frame::parse(&bytes))
    };
    match tokio::time::timeout(limits.frame_timeout, rest).await {
        Err(_) => Err(ReadError::Io(io::ErrorKind::TimedOut.into())),
        Ok(Err(err)) => Err(ReadError::Io(err)),
        Ok(Ok(Err((request_id, err)))) => Err(ReadError::Frame(request_id, err)),
        Ok(Ok(Ok(frame))) => Ok(Some(frame)),
    }
}

/// A frame that is whole in the buffer, taken from it.
fn buffered_frame<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Result<Frame, ReadError>> {
    let buffer = reader.buffer();
    let prefix: [u8; 4] = buffer.get(..4)?.try_into().ok()?;
    let length = u32::from_le_bytes(prefix) as usize;
    if let Err(err) = Frame::check_length(length) {
        return Some(Err(ReadError::Frame(0, err)));
    }
    let bytes = buffer.get(4..4 + length)?;
    let frame = Frame::parse(bytes).map_err(|(id, err)| ReadError::Frame(id, err));
    reader.consume(4 + length);
    Some(frame)
}

fn check_request(body: &[u8]) -> Result<Result<CheckRequest, CheckError>, String> {
    decode::<WireCheck>(body).map(CheckRequest::try_from)
}

fn decision_reply(
    opcode: Opcode,
    request_id: u64,
    answer: Result<crate::engine::Decision, CheckError>,
) -> Reply {
    match answer {
        Ok(decision) => Reply {
            bytes: reply(opcode, request_id, &WireDecision::from(&decision)),
            fatal: false,
        },
        Err(err) => error_reply(request_id, err.code(), err.to_string(), false),
    }
}

/// Answers one frame.
fn handle(engine: &Engine, limits: &BinaryLimits, frame: Frame) -> Reply {
    let id = frame.request_id;
    let malformed = |err: String| {
        error_reply(
            id,
            "malformed_body",
            format!("{} body: {err}", frame.opcode),
            true,
        )
    };
    match frame.opcode {
        // A ping has no body; bytes there are trailing bytes.
        Opcode::Ping if !frame.body.is_empty() => malformed(format!(
            "{} bytes after the end of the body (a ping has none)",
            frame.body.len()
        )),
        Opcode::Ping => Reply {
            bytes: Frame {
                opcode: Opcode::Pong,
                request_id: id,
                body: Vec::new(),
            }
            .to_bytes(),
            fatal: false,
        },
        Opcode::Hello => match decode::<Hello>(&frame.body) {
            Ok(hello) if hello.version >= VERSION => {
                let body = HelloReply {
                    version: VERSION,
                    server: format!("weir {}", env!("CARGO_PKG_VERSION")),
                    max_frame: MAX_FRAME as u32,
                    max_in_flight: limits.max_in_flight as u32,
                };
                Reply {
                    bytes: reply(Opcode::HelloReply, id, &body),
                    fatal: false,
                }
            }
            Ok(hello) => error_reply(
                id,
                "unsupported_version",
                format!(
                    "client speaks up to version {}; this server speaks {VERSION}",
                    hello.version
                ),
                true,
            ),
            Err(err) => malformed(err),
        },
        Opcode::Check => match check_request(&frame.body) {
            Ok(request) => decision_reply(Opcode::Decision, id, request.and_then(|r| engine.check(&r))),
            Err(err) => malformed(err),
        },
        Opcode::Peek => match check_request(&frame.body) {
            Ok(request) => {
                let answer = request.and_then(|mut r| {
                    r.cost = Some(0);
                    engine.check(&r)
                });
                decision_reply(Opcode::PeekReply, id, answer)
            }
            Err(err) => malformed(err),
        },
        Opcode::Refund => match check_request(&frame.body) {
            Ok(request) => decision_reply(Opcode::RefundReply, id, request.and_then(|r| engine.refund(&r))),
            Err(err) => malformed(err),
        },
        Opcode::CheckMany => match decode::<Vec<WireCheck>>(&frame.body) {
            Ok(checks) => {
                let answer = checks
                    .into_iter()
                    .map(CheckRequest::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|requests| engine.check_batch(&requests));
                match answer {
                    Ok(batch) => {
                        let body = WireBatch {
                            allowed: batch.allowed,
                            decisions: batch.decisions.iter().map(WireDecision::from).collect(),
                        };
                        Reply {
                            bytes: reply(Opcode::Batch, id, &body),
                            fatal: false,
                        }
                    }
                    Err(err) => error_reply(id, err.code(), err.to_string(), false),
                }
            }
            Err(err) => malformed(err),
        },
        other => error_reply(
            id,
            "unknown_opcode",
            format!("{other} is a reply, not a request"),
            true,
        ),
    }
}
