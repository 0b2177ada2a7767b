//! A listener wrapper that caps open connections and closes idle ones.
//!
//! `axum::serve` accepts as fast as it can and sets no read timeout, so a
//! flood of connections, or a few that never finish a request, could hold
//! the server's resources forever. [`Capped`] waits for a free slot before it
//! accepts, and every stream it hands out fails with `TimedOut` once neither
//! side has made progress for the idle timeout. It wraps any
//! [`axum::serve::Listener`], so simulated sockets work too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, Instant, Sleep};

/// A listener that holds at most `max` connections open.
pub struct Capped<L> {
    inner: L,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl<L> Capped<L> {
    /// Wraps `inner`, allowing `max` open connections, each closed after
    /// `idle_timeout` without progress.
    pub fn new(inner: L, max: usize, idle_timeout: Duration) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max.max(1))),
            idle_timeout,
        }
    }

    /// A handle that tells how many connections are open.
    pub fn gauge(&self) -> ConnectionGauge {
        ConnectionGauge {
            slots: self.slots.clone(),
            max: self.slots.available_permits(),
        }
    }
}

/// Reads the number of open connections of a [`Capped`] listener.
#[derive(Clone)]
pub struct ConnectionGauge {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionGauge {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
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
        let io = Guarded {
            inner: io,
            _permit: permit,
            idle_timeout: self.idle_timeout,
            deadline: Box::pin(sleep(self.idle_timeout)),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that holds its slot until dropped and times out when idle.
pub struct Guarded<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
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
