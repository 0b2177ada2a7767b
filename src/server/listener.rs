//! The one listener both servers accept through: it caps open connections,
//! counts them in a metric, and closes idle ones.
//!
//! `axum::serve` accepts as fast as it can and sets no read timeout, so a
//! flood of connections, or a few that never finish a request, could hold
//! the server's resources forever; the binary server has the same needs.
//! [`Capped`] waits for a free slot before it accepts, and every stream it
//! hands out fails with `TimedOut` once neither side has made progress for
//! the idle timeout. It wraps any [`axum::serve::Listener`] (TCP, TLS, or
//! simulated sockets).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, Instant, Sleep};

/// Connection limits, the same for both servers (`--max-connections`,
/// `--idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Most open connections; further clients wait to be accepted.
    pub max_connections: usize,
    /// A connection with no progress for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A listener that holds at most `max_connections` open.
pub struct Capped<L> {
    inner: L,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
    open: Gauge,
}

impl<L> Capped<L> {
    /// Wraps `inner` with `limits`; `open` counts the connections open.
    pub fn new(inner: L, limits: ServeLimits, open: Gauge) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            idle_timeout: limits.idle_timeout,
            open,
        }
    }
}

impl<L: Listener> Listener for Capped<L> {
    type Io = Guarded<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is open");
        let (io, addr) = self.inner.accept().await;
        self.open.inc();
        let io = Guarded {
            inner: io,
            _slot: Slot {
                _permit: permit,
                open: self.open.clone(),
            },
            idle_timeout: self.idle_timeout,
            deadline: Box::pin(sleep(self.idle_timeout)),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An open connection's place under the cap, and in the gauge.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A connection that holds its slot until dropped and times out when idle.
pub struct Guarded<T> {
    inner: T,
    /// Held for its `Drop`: the connection's place under the cap.
    _slot: Slot,
    idle_timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Guarded<T> {
    /// Pushes the deadline back after progress; on no progress, fails once
    /// the deadline has passed.
    fn track<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                let next = Instant::now() + self.idle_timeout;
                self.deadline.as_mut().reset(next);
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.track(cx, poll)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
