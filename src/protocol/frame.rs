//! Frame layout and header checks.

use std::fmt;

/// `"WR"`: the first two bytes of every header.
pub const MAGIC: [u8; 2] = *b"WR";

/// The newest protocol version this server speaks.
pub const VERSION: u8 = 2;

/// The oldest version still served: a client written for it keeps working.
pub const MIN_VERSION: u8 = 1;

/// Header bytes after the length prefix: magic (2), version (1), opcode (1),
/// request id (8).
pub const HEADER_LEN: usize = 12;

/// Largest value of the length prefix: header plus body.
pub const MAX_FRAME: usize = 64 * 1024;

/// What a frame asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Version negotiation; body [`Hello`](super::Hello).
    Hello = 0x01,
    /// One check; body [`WireCheck`](super::WireCheck).
    Check = 0x02,
    /// Several checks, atomically; body `Vec<WireCheck>`.
    CheckMany = 0x03,
    /// A check that counts nothing; body `WireCheck` (its cost is ignored).
    Peek = 0x04,
    /// Gives units back; body `WireCheck` (its cost is the amount).
    Refund = 0x05,
    /// Liveness; empty body.
    Ping = 0x06,
    /// Frees a concurrency lease (version 2); body [`WireRelease`](super::WireRelease).
    Release = 0x07,
    /// Charges a reservation's actual cost (version 2); body [`WireSettle`](super::WireSettle).
    Settle = 0x08,
    /// Reply to Hello; body [`HelloReply`](super::HelloReply).
    HelloReply = 0x81,
    /// Reply to Check; body [`WireDecision`](super::WireDecision).
    Decision = 0x82,
    /// Reply to CheckMany; body [`WireBatch`](super::WireBatch).
    Batch = 0x83,
    /// Reply to Peek; body `WireDecision`.
    PeekReply = 0x84,
    /// Reply to Refund; body `WireDecision`.
    RefundReply = 0x85,
    /// Reply to Ping; empty body.
    Pong = 0x86,
    /// Reply to Release; empty body.
    ReleaseReply = 0x87,
    /// Reply to Settle; body [`WireSettled`](super::WireSettled).
    SettleReply = 0x88,
    /// An error; body [`WireError`](super::WireError).
    Error = 0xFF,
}

impl Opcode {
    /// The opcode with this byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        use Opcode::*;
        [
            Hello,
            Check,
            CheckMany,
            Peek,
            Refund,
            Ping,
            Release,
            Settle,
            HelloReply,
            Decision,
            Batch,
            PeekReply,
            RefundReply,
            Pong,
            ReleaseReply,
            SettleReply,
            Error,
        ]
        .into_iter()
        .find(|op| *op as u8 == byte)
    }
}

/// A frame: its header fields and its body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The protocol version its body is written in.
    pub version: u8,
    /// What it is.
    pub opcode: Opcode,
    /// Chosen by the client, echoed in the reply.
    pub request_id: u64,
    /// The bincode body.
    pub body: Vec<u8>,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The length prefix is less than a header.
    #[error("frame of {0} bytes is shorter than its 12-byte header")]
    TooShort(usize),
    /// The header does not start with `"WR"`.
    #[error("bad magic {0:02x?}; frames start with \"WR\"")]
    BadMagic([u8; 2]),
    /// A version this server does not speak.
    #[error("unsupported protocol version {0}; this server speaks {MIN_VERSION} to {VERSION}")]
    Version(u8),
    /// An opcode this server does not know.
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
}

impl FrameError {
    /// The code sent in the error reply.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge(_) => "frame_too_large",
            FrameError::TooShort(_) | FrameError::BadMagic(_) => "malformed_frame",
            FrameError::Version(_) => "unsupported_version",
            FrameError::UnknownOpcode(_) => "unknown_opcode",
        }
    }
}

impl Frame {
    /// Checks a length prefix before reading that many bytes.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] or [`FrameError::TooShort`].
    pub fn check_length(length: usize) -> Result<(), FrameError> {
        if length > MAX_FRAME {
            Err(FrameError::TooLarge(length))
        } else if length < HEADER_LEN {
            Err(FrameError::TooShort(length))
        } else {
            Ok(())
        }
    }

    /// Parses the bytes after the length prefix.
    ///
    /// # Errors
    /// A [`FrameError`] for a bad magic, version or opcode. The request id,
    /// when it could be read, comes with it so the error reply can carry it.
    pub fn parse(bytes: &[u8]) -> Result<Frame, (u64, FrameError)> {
        let frame = FrameRef::parse(bytes)?;
        Ok(Frame {
            version: frame.version,
            opcode: frame.opcode,
            request_id: frame.request_id,
            body: frame.body.to_vec(),
        })
    }

    /// The whole frame, length prefix included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + HEADER_LEN + self.body.len());
        append_frame(&mut out, self.version, self.opcode, self.request_id, |out| {
            out.extend_from_slice(&self.body)
        });
        out
    }
}

/// A frame whose body is borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The protocol version its body is written in.
    pub version: u8,
    /// What it is.
    pub opcode: Opcode,
    /// Chosen by the client, echoed in the reply.
    pub request_id: u64,
    /// The bincode body.
    pub body: &'a [u8],
}

impl<'a> FrameRef<'a> {
    /// Parses the bytes after the length prefix, as [`Frame::parse`] does,
    /// without copying the body.
    ///
    /// # Errors
    /// As [`Frame::parse`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, (u64, FrameError)> {
        Frame::check_length(bytes.len()).map_err(|e| (0, e))?;
        let id_bytes: [u8; 8] = bytes[4..12]
            .try_into()
            .map_err(|_| (0, FrameError::TooShort(bytes.len())))?;
        let request_id = u64::from_le_bytes(id_bytes);
        let magic = [bytes[0], bytes[1]];
        if magic != MAGIC {
            return Err((request_id, FrameError::BadMagic(magic)));
        }
        let version = bytes[2];
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err((request_id, FrameError::Version(version)));
        }
        let opcode = Opcode::from_byte(bytes[3]).ok_or((request_id, FrameError::UnknownOpcode(bytes[3])))?;
        Ok(Self {
            version,
            opcode,
            request_id,
            body: &bytes[HEADER_LEN..],
        })
    }
}

/// Appends a whole frame of protocol `version` to `out`: the length prefix
/// and header, then the body that `body` writes in place (no intermediate
/// copy).
pub fn append_frame(
    out: &mut Vec<u8>,
    version: u8,
    opcode: Opcode,
    request_id: u64,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&MAGIC);
    out.push(version);
    out.push(opcode as u8);
    out.extend_from_slice(&request_id.to_le_bytes());
    body(out);
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips() {
        let frame = Frame {
            version: 1,
            opcode: Opcode::Ping,
            request_id: 0x0102_0304_0506_0708,
            body: vec![],
        };
        let bytes = frame.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(Frame::parse(&bytes[4..]).unwrap(), frame);
    }

    #[test]
    fn bad_headers_are_named_with_the_request_id() {
        let mut bytes = Frame {
            version: VERSION,
            opcode: Opcode::Ping,
            request_id: 9,
            body: vec![],
        }
        .to_bytes();
        bytes[7] = 0x42;
        assert_eq!(
            Frame::parse(&bytes[4..]),
            Err((9, FrameError::UnknownOpcode(0x42)))
        );
        bytes[6] = 3;
        assert_eq!(Frame::parse(&bytes[4..]), Err((9, FrameError::Version(3))));
        bytes[6] = 0;
        assert_eq!(Frame::parse(&bytes[4..]), Err((9, FrameError::Version(0))));
        bytes[4] = b'X';
        assert!(matches!(
            Frame::parse(&bytes[4..]),
            Err((9, FrameError::BadMagic(_)))
        ));
        assert_eq!(
            Frame::check_length(MAX_FRAME + 1),
            Err(FrameError::TooLarge(MAX_FRAME + 1))
        );
        assert_eq!(Frame::check_length(3), Err(FrameError::TooShort(3)));
    }
}
