//! Frames over an async byte stream, as the server reads them.
//!
//! [`FrameReader`] takes whole frames out of a buffer that is sized lazily:
//! a few KB to start, grown only to fit a large frame, and given back once
//! drained, so an idle connection holds little memory whatever it sent
//! before. Frames already in the buffer cost no syscall and no timer.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::frame::{Frame, FrameError, FrameRef};

/// Bytes asked for per read when no larger frame is pending.
const READ_CHUNK: usize = 4 * 1024;

/// A drained buffer larger than this is released rather than kept.
const KEEP: usize = 2 * READ_CHUNK;

/// Why no frame was read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed, timed out, or ended inside a frame.
    Io(io::Error),
    /// The bytes are not a frame; the request id when it could be read.
    Frame(u64, FrameError),
}

/// Reads length-prefixed frames from a stream it is handed on each call,
/// so the caller keeps the stream for writing replies.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Where the unread bytes of `buffer` start.
    start: usize,
}

impl FrameReader {
    /// A reader with no buffer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when every byte read has been taken as a frame: the client is
    /// waiting for replies, so this is when to write them.
    pub fn is_drained(&self) -> bool {
        self.start == self.buffer.len()
    }

    /// True when a whole frame (or bytes that cannot start one) is
    /// buffered: [`next`](Self::next) answers without waiting.
    pub fn has_frame(&self) -> bool {
        !matches!(self.whole_frame(), Ok(None))
    }

    /// Bytes of buffer held now.
    pub fn capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// The next frame; `None` when the client closed the stream cleanly
    /// between frames. Waiting for a frame's first byte has no timer here
    /// (the connection's idle timeout bounds it); the rest of a frame must
    /// arrive within `frame_timeout`.
    ///
    /// # Errors
    /// [`ReadError::Frame`] for bytes that are not a frame (the stream is
    /// then out of step and should be closed); [`ReadError::Io`] otherwise.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        frame_timeout: Duration,
    ) -> Result<Option<FrameRef<'_>>, ReadError> {
        if self.is_drained() {
            self.release();
            if self.fill(stream).await.map_err(ReadError::Io)? == 0 {
                return Ok(None);
            }
        }
        let length = match self.whole_frame()? {
            Some(length) => length,
            None => tokio::time::timeout(frame_timeout, self.fill_until_whole(stream))
                .await
                .map_err(|_| ReadError::Io(io::ErrorKind::TimedOut.into()))??,
        };
        let bytes = &self.buffer[self.start + 4..self.start + 4 + length];
        self.start += 4 + length;
        FrameRef::parse(bytes)
            .map(Some)
            .map_err(|(id, err)| ReadError::Frame(id, err))
    }

    /// The length prefix of the frame at `start`, once its 4 bytes are in.
    fn pending_length(&self) -> Option<usize> {
        let prefix: [u8; 4] = self.buffer.get(self.start..self.start + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(prefix) as usize)
    }

    /// The length of the frame at `start` when it is whole in the buffer.
    fn whole_frame(&self) -> Result<Option<usize>, ReadError> {
        let Some(length) = self.pending_length() else {
            return Ok(None);
        };
        Frame::check_length(length).map_err(|err| ReadError::Frame(0, err))?;
        Ok((self.buffer.len() - self.start >= 4 + length).then_some(length))
    }

    async fn fill_until_whole<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> Result<usize, ReadError> {
        loop {
            if self.fill(stream).await.map_err(ReadError::Io)? == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(length) = self.whole_frame()? {
                return Ok(length);
            }
        }
    }

    /// Reads once, after moving the unread bytes to the front and making
    /// room for the rest of the pending frame (at least a chunk).
    async fn fill<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<usize> {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        // The prefix was checked against the frame limit before any read
        // that completes its frame.
        let pending = self.pending_length().map_or(0, |length| 4 + length);
        let wanted = pending.saturating_sub(self.buffer.len()).max(READ_CHUNK);
        self.buffer.reserve(wanted);
        stream.read_buf(&mut self.buffer).await
    }

    /// Forgets the drained bytes, and a buffer grown past [`KEEP`].
    fn release(&mut self) {
        self.buffer.clear();
        self.start = 0;
        if self.buffer.capacity() > KEEP {
            self.buffer = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Opcode, MAX_FRAME};

    fn ping(id: u64, body: Vec<u8>) -> Vec<u8> {
        Frame {
            version: 1,
            opcode: Opcode::Ping,
            request_id: id,
            body,
        }
        .to_bytes()
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn frames_come_out_whole_however_the_bytes_arrive() {
        let mut bytes = ping(1, vec![]);
        bytes.extend(ping(2, vec![7; 5000]));
        bytes.extend(ping(3, vec![]));
        // One byte at a time, then all at once.
        for chunk in [1, bytes.len()] {
            let (mut client, mut server) = tokio::io::duplex(chunk);
            let sent = bytes.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                client.write_all(&sent).await.unwrap();
            });
            let mut reader = FrameReader::new();
            for (id, len) in [(1, 0), (2, 5000), (3, 0)] {
                let frame = reader.next(&mut server, WAIT).await.unwrap().unwrap();
                assert_eq!((frame.request_id, frame.body.len()), (id, len));
            }
            writer.await.unwrap();
            assert!(reader.next(&mut server, WAIT).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn has_a_frame_only_when_one_is_buffered_whole() {
        let mut bytes = ping(1, vec![]);
        bytes.extend(ping(2, vec![]));
        bytes.extend(&ping(3, vec![])[..5]);
        let mut stream: &[u8] = &bytes;
        let mut reader = FrameReader::new();
        assert!(!reader.has_frame());
        reader.next(&mut stream, WAIT).await.unwrap().unwrap();
        assert!(reader.has_frame(), "the second frame came in the same read");
        reader.next(&mut stream, WAIT).await.unwrap().unwrap();
        assert!(!reader.has_frame(), "the third is not whole");
        let mut garbage: &[u8] = &[0xff; 8];
        let mut reader = FrameReader::new();
        let _ = reader.fill(&mut garbage).await;
        assert!(reader.has_frame(), "an oversized prefix is answered at once");
    }

    #[tokio::test]
    async fn a_large_frame_grows_the_buffer_and_a_drained_one_gives_it_back() {
        let big = ping(1, vec![0; MAX_FRAME - 12]);
        let mut stream: &[u8] = &big;
        let mut reader = FrameReader::new();
        assert_eq!(reader.capacity(), 0);
        let frame = reader.next(&mut stream, WAIT).await.unwrap().unwrap();
        assert_eq!(frame.body.len(), MAX_FRAME - 12);
        assert!(reader.capacity() >= MAX_FRAME);
        assert!(reader.is_drained());
        let small = ping(2, vec![]);
        let mut stream: &[u8] = &small;
        reader.next(&mut stream, WAIT).await.unwrap().unwrap();
        assert!(reader.capacity() <= KEEP, "{}", reader.capacity());
    }

    #[tokio::test]
    async fn an_oversized_prefix_is_refused_before_reading_its_body() {
        let mut bytes = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        bytes.extend([0; 8]);
        let mut stream: &[u8] = &bytes;
        let error = FrameReader::new().next(&mut stream, WAIT).await.unwrap_err();
        assert!(
            matches!(error, ReadError::Frame(0, FrameError::TooLarge(_))),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_an_error_and_a_slow_one_times_out() {
        let bytes = ping(1, vec![1; 100]);
        let mut stream: &[u8] = &bytes[..50];
        let error = FrameReader::new().next(&mut stream, WAIT).await.unwrap_err();
        assert!(matches!(error, ReadError::Io(ref e) if e.kind() == io::ErrorKind::UnexpectedEof));

        let (mut client, mut server) = tokio::io::duplex(1024);
        use tokio::io::AsyncWriteExt;
        client.write_all(&bytes[..50]).await.unwrap();
        let error = FrameReader::new()
            .next(&mut server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(error, ReadError::Io(ref e) if e.kind() == io::ErrorKind::TimedOut));
        drop(client);
    }
}
