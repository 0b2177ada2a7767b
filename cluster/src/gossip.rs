//! Sealed gossip: a chitchat [`Transport`] that encrypts and authenticates
//! every membership message under the cluster's keyring, over any
//! [`Datagram`] socket (UDP in production, a simulated network in tests).
//!
//! chitchat itself sends plaintext that anyone can read or forge. Here each
//! message is serialized, cut into at most [`MAX_PIECES`] pieces (chitchat
//! fills a datagram to 64 KiB, and sealing adds a few bytes), and each piece
//! sealed ([`Sealer::seal_gossip`]) behind a header that rides inside the
//! encryption: the sender's clock (Unix ms), a message id, and the piece's
//! index and count. A receiver drops what no key opens, and what was sent
//! more than [`REPLAY_WINDOW_MS`] ago or ahead: a membership message
//! replayed later (say, one that still lists a node the cluster has since
//! forgotten) cannot roll membership back. Pieces wait for their siblings in
//! a small bounded buffer.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tracing::{debug, warn};

use crate::frame::{FrameError, Rejections, Sealer, SEAL_OVERHEAD};
use crate::transport::Datagram;

/// How far a gossip message's send time may be from the receiver's clock.
pub const REPLAY_WINDOW_MS: u64 = 30_000;
/// Largest piece of a message in one datagram.
pub const PIECE_BYTES: usize = 60_000;
/// Most pieces one message is cut into.
pub const MAX_PIECES: usize = 4;
/// The header inside each sealed piece.
const INNER: usize = 8 + 8 + 1 + 1;
/// Largest datagram received.
const MAX_DATAGRAM: usize = 65_536;
/// Messages waiting for pieces, at most; the oldest gives way.
const PENDING: usize = 16;
/// How long pieces wait for their siblings.
const PENDING_MS: u64 = 5_000;

/// The clock a transport reads: Unix ms.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Counters of the sealed gossip, for metrics.
#[derive(Debug, Default)]
pub struct GossipStats {
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    received: AtomicU64,
    /// Datagrams dropped, by reason.
    pub rejected: Rejections,
    /// Who sent the last datagram that failed authentication: a node with
    /// another cluster secret or cluster id, most likely.
    last_foreign: std::sync::Mutex<Option<SocketAddr>>,
}

impl GossipStats {
    /// The sender of the last datagram that failed authentication.
    pub fn last_foreign(&self) -> Option<SocketAddr> {
        *self
            .last_foreign
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Datagrams and bytes sent, and messages received.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("datagrams_sent", self.sent.load(Ordering::Relaxed)),
            ("bytes_sent", self.bytes_sent.load(Ordering::Relaxed)),
            ("messages_received", self.received.load(Ordering::Relaxed)),
        ]
    }
}

/// A chitchat transport over one bound socket, sealed.
pub struct SealedGossip<D: Datagram> {
    socket: Mutex<Option<D>>,
    sealer: Sealer,
    stats: Arc<GossipStats>,
    clock: Clock,
}

impl<D: Datagram> SealedGossip<D> {
    /// Gossip over `socket` (already bound), sealed by `sealer`, reading
    /// time from `clock`.
    pub fn new(socket: D, sealer: Sealer, stats: Arc<GossipStats>, clock: Clock) -> Self {
        Self {
            socket: Mutex::new(Some(socket)),
            sealer,
            stats,
            clock,
        }
    }
}

#[async_trait]
impl<D: Datagram> Transport for SealedGossip<D> {
    /// Hands out the socket given to [`new`](SealedGossip::new), once: it
    /// was bound to the gossip address already.
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self.socket.lock().unwrap_or_else(PoisonError::into_inner).take();
        let socket = socket.ok_or_else(|| anyhow::anyhow!("the sealed gossip socket is already open"))?;
        Ok(Box::new(SealedSocket {
            socket,
            sealer: self.sealer.clone(),
            stats: self.stats.clone(),
            clock: self.clock.clone(),
            next_id: rand_id(),
            pending: Reassembly::default(),
            sealed: Vec::with_capacity(MAX_DATAGRAM),
            received: vec![0; MAX_DATAGRAM],
            warned_plain: false,
        }))
    }
}

/// A random start for message ids, so that two incarnations of a node do
/// not reuse them.
fn rand_id() -> u64 {
    use chacha20poly1305::aead::rand_core::RngCore;
    chacha20poly1305::aead::OsRng.next_u64()
}

/// Pieces of one message, waiting for the rest.
struct Partial {
    from: SocketAddr,
    id: u64,
    first_ms: u64,
    pieces: Vec<Option<Vec<u8>>>,
}

/// Messages waiting for pieces.
#[derive(Default)]
struct Reassembly {
    pending: VecDeque<Partial>,
}

struct SealedSocket<D> {
    socket: D,
    sealer: Sealer,
    stats: Arc<GossipStats>,
    clock: Clock,
    next_id: u64,
    pending: Reassembly,
    sealed: Vec<u8>,
    received: Vec<u8>,
    /// Set once unsealed gossip has been logged.
    warned_plain: bool,
}

/// The header inside a sealed piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inner {
    sent_ms: u64,
    id: u64,
    index: u8,
    count: u8,
}

impl Inner {
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sent_ms.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&[self.index, self.count]);
    }

    fn read(plain: &[u8]) -> Result<(Self, &[u8]), FrameError> {
        let Some((head, piece)) = plain.split_first_chunk::<INNER>() else {
            return Err(FrameError::Decode);
        };
        let inner = Self {
            sent_ms: u64::from_le_bytes(head[..8].try_into().expect("8 bytes")),
            id: u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")),
            index: head[16],
            count: head[17],
        };
        if inner.count == 0 || inner.count as usize > MAX_PIECES || inner.index >= inner.count {
            return Err(FrameError::Bounds);
        }
        Ok((inner, piece))
    }
}

/// chitchat's message from a whole, reassembled plaintext; trailing bytes
/// are an error.
fn decode_message(mut bytes: &[u8]) -> Result<ChitchatMessage, FrameError> {
    match ChitchatMessage::deserialize(&mut bytes) {
        Ok(message) if bytes.is_empty() => Ok(message),
        _ => Err(FrameError::Decode),
    }
}

/// What a receiver makes of an opened single-piece datagram's plaintext: its
/// piece header read, then the message decoded (the send time is not
/// judged here). For fuzzing the path authentic bytes take.
///
/// # Errors
/// [`FrameError::Decode`] or [`FrameError::Bounds`].
pub fn open_message(plain: &[u8]) -> Result<ChitchatMessage, FrameError> {
    let (inner, piece) = Inner::read(plain)?;
    if inner.count != 1 {
        return Err(FrameError::Bounds);
    }
    decode_message(piece)
}

/// Whether a message sent at `sent_ms` may be taken at `now_ms`.
fn fresh(sent_ms: u64, now_ms: u64) -> bool {
    sent_ms.abs_diff(now_ms) <= REPLAY_WINDOW_MS
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::OutOfMemory
    )
}

impl Reassembly {
    /// Adds a piece; returns the whole message once every piece is in.
    fn add(&mut self, from: SocketAddr, inner: Inner, piece: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        if inner.count == 1 {
            return Some(piece.to_vec());
        }
        self.pending
            .retain(|p| now_ms.saturating_sub(p.first_ms) <= PENDING_MS);
        let position = self
            .pending
            .iter()
            .position(|p| p.from == from && p.id == inner.id);
        let position = match position {
            Some(position) => position,
            None => {
                if self.pending.len() >= PENDING {
                    self.pending.pop_front();
                }
                self.pending.push_back(Partial {
                    from,
                    id: inner.id,
                    first_ms: now_ms,
                    pieces: vec![None; inner.count as usize],
                });
                self.pending.len() - 1
            }
        };
        let partial = &mut self.pending[position];
        if partial.pieces.len() != inner.count as usize {
            return None;
        }
        partial.pieces[inner.index as usize] = Some(piece.to_vec());
        if partial.pieces.iter().any(Option::is_none) {
            return None;
        }
        let partial = self.pending.remove(position)?;
        Some(partial.pieces.into_iter().flatten().flatten().collect())
    }
}

impl<D: Datagram> SealedSocket<D> {
    /// Receives one datagram; a whole message when it completes one.
    async fn receive_one(&mut self) -> anyhow::Result<Option<(SocketAddr, ChitchatMessage)>> {
        let (length, from) = match self.socket.recv_from(&mut self.received).await {
            Ok(received) => received,
            Err(error) if is_transient(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let plain = match self.sealer.open_gossip(&self.received[..length]) {
            Ok(plain) => plain,
            Err(error) => return Ok(self.reject(error, from)),
        };
        let (inner, piece) = match Inner::read(&plain) {
            Ok(read) => read,
            Err(error) => return Ok(self.reject(error, from)),
        };
        let now_ms = (self.clock)();
        if !fresh(inner.sent_ms, now_ms) {
            return Ok(self.reject(FrameError::Stale, from));
        }
        let Some(message) = self.pending.add(from, inner, piece, now_ms) else {
            return Ok(None);
        };
        match decode_message(&message) {
            Ok(message) => {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                Ok(Some((from, message)))
            }
            Err(error) => Ok(self.reject(error, from)),
        }
    }

    fn reject<T>(&mut self, error: FrameError, from: SocketAddr) -> Option<T> {
        self.stats.rejected.count(error);
        if error == FrameError::Auth {
            let mut last = self
                .stats
                .last_foreign
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *last = Some(from);
        }
        if error == FrameError::Header && !self.warned_plain {
            self.warned_plain = true;
            warn!(%from, "unsealed gossip dropped: a weir before encrypted gossip, plain chitchat, or not a cluster member");
        }
        debug!(%error, %from, "gossip datagram dropped");
        None
    }
}

#[async_trait]
impl<D: Datagram> Socket for SealedSocket<D> {
    async fn send(&mut self, to: SocketAddr, message: ChitchatMessage) -> anyhow::Result<()> {
        let message = message.serialize_to_vec();
        let pieces: Vec<&[u8]> = match message.is_empty() {
            true => vec![&[]],
            false => message.chunks(PIECE_BYTES).collect(),
        };
        anyhow::ensure!(
            pieces.len() <= MAX_PIECES,
            "a gossip message of {} bytes",
            message.len()
        );
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let sent_ms = (self.clock)();
        let mut plain = Vec::with_capacity(INNER + PIECE_BYTES);
        for (index, piece) in pieces.iter().enumerate() {
            plain.clear();
            let inner = Inner {
                sent_ms,
                id,
                index: index as u8,
                count: pieces.len() as u8,
            };
            inner.write(&mut plain);
            plain.extend_from_slice(piece);
            self.sealer.seal_gossip(&plain, &mut self.sealed);
            self.socket.send_to(&self.sealed, to).await?;
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_sent
                .fetch_add(self.sealed.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            if let Some(outcome) = self.receive_one().await? {
                return Ok(outcome);
            }
        }
    }
}

/// Bytes sealing adds to a piece.
pub const OVERHEAD: usize = SEAL_OVERHEAD + INNER;

// A full piece, sealed, still fits in one UDP datagram over IPv4.
const _: () = assert!(PIECE_BYTES + OVERHEAD <= 65_507);

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn inner(id: u64, index: u8, count: u8) -> Inner {
        Inner {
            sent_ms: 1_000_000,
            id,
            index,
            count,
        }
    }

    #[test]
    fn the_inner_header_round_trips_and_bad_counts_are_refused() {
        let mut out = Vec::new();
        inner(9, 1, 2).write(&mut out);
        out.extend_from_slice(b"piece");
        assert_eq!(Inner::read(&out).unwrap(), (inner(9, 1, 2), &b"piece"[..]));
        for (index, count) in [(0, 0), (2, 2), (0, MAX_PIECES as u8 + 1)] {
            let mut out = Vec::new();
            inner(9, index, count).write(&mut out);
            assert!(Inner::read(&out).is_err());
        }
        assert_eq!(Inner::read(b"short"), Err(FrameError::Decode));
    }

    #[test]
    fn a_message_sent_outside_the_window_is_stale() {
        assert!(fresh(1_000_000, 1_000_000 + REPLAY_WINDOW_MS));
        assert!(!fresh(1_000_000, 1_000_001 + REPLAY_WINDOW_MS));
        assert!(!fresh(1_000_001 + REPLAY_WINDOW_MS, 1_000_000));
    }

    fn sealed(clock: Clock, stats: Arc<GossipStats>) -> SealedGossip<tokio::net::UdpSocket> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let socket = tokio::net::UdpSocket::from_std(socket).unwrap();
        SealedGossip::new(socket, Sealer::new(&[b"0123456789abcdef"], "c"), stats, clock)
    }

    fn message(cluster_id: &str) -> ChitchatMessage {
        ChitchatMessage::Syn {
            cluster_id: cluster_id.to_string(),
            digest: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_large_message_arrives_whole_and_a_replay_past_the_window_is_dropped() {
        let now = Arc::new(AtomicU64::new(1_000_000));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::Relaxed))
        };
        let stats = Arc::<GossipStats>::default();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut sender = sealed(clock.clone(), Arc::default()).open(any).await.unwrap();
        let receiving = sealed(clock, stats.clone());
        let to = receiving
            .socket
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .local_addr()
            .unwrap();
        let mut receiver = receiving.open(any).await.unwrap();

        // A message larger than one piece: a Syn whose cluster id is long.
        let long = "x".repeat(65_000);
        sender.send(to, message(&long)).await.unwrap();
        let (_, got) = receiver.recv().await.unwrap();
        assert_eq!(got, message(&long));

        // The same kind of message, sent with a clock 31 s behind: dropped.
        now.fetch_sub(REPLAY_WINDOW_MS + 1_000, Ordering::Relaxed);
        sender.send(to, message("late")).await.unwrap();
        now.fetch_add(REPLAY_WINDOW_MS + 1_000, Ordering::Relaxed);
        sender.send(to, message("fresh")).await.unwrap();
        let (_, got) = receiver.recv().await.unwrap();
        assert_eq!(got, message("fresh"));
        let stale = stats.rejected.snapshot().into_iter().find(|(r, _)| *r == "stale");
        assert_eq!(stale, Some(("stale", 1)));
    }

    #[test]
    fn pieces_come_together_in_any_order_and_strays_stay_bounded() {
        let mut waiting = Reassembly::default();
        assert_eq!(waiting.add(addr(1), inner(5, 1, 2), b"world", 0), None);
        assert_eq!(waiting.add(addr(2), inner(5, 0, 2), b"other", 0), None);
        assert_eq!(
            waiting.add(addr(1), inner(5, 0, 2), b"hello ", 0),
            Some(b"hello world".to_vec())
        );
        assert_eq!(
            waiting.add(addr(1), inner(6, 0, 1), b"whole", 0),
            Some(b"whole".to_vec())
        );
        for id in 100..200 {
            waiting.add(addr(3), inner(id, 0, 3), b"x", 0);
            assert!(waiting.pending.len() <= PENDING);
        }
        // Old pieces give way.
        waiting.add(addr(4), inner(1, 0, 2), b"y", PENDING_MS + 1);
        assert_eq!(waiting.pending.len(), 1);
    }
}
