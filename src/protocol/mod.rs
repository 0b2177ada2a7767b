//! The binary protocol: length-prefixed frames with bincode bodies, for
//! clients that call weir on every request and want it to cost as little as
//! possible. docs/protocol.md documents every byte; docs/protocol-vectors.json
//! holds test vectors that the Rust and the Python tests both check.
//!
//! A frame is `u32 length` (little-endian; the bytes after it), then a
//! 12-byte header (`magic` "WR", `version`, `opcode`, `u64 request id`), then
//! the body. Versions 1 and 2 are served; each frame's body is read and
//! answered in the version its header names. Bodies use bincode 2 with fixed-size little-endian integers, so
//! every field has one fixed layout a client can write with `struct.pack`.

mod frame;
pub mod stream;
mod wire;

pub use frame::{
    append_frame, Frame, FrameError, FrameRef, Opcode, HEADER_LEN, MAGIC, MAX_FRAME, MIN_VERSION, VERSION,
};
pub use wire::{
    decode, encode, encode_into, BatchBody, DecisionBody, Extras, Hello, HelloReply, WireBatch, WireBatch2,
    WireCheck, WireCheck2, WireDecision, WireDecision2, WireError, WireKey, WireLimit, WireRelease,
    WireReport, WireReport2, WireSettle, WireSettled, WireTarget,
};
