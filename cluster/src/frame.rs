//! The counter-sync datagram: one node's own counts for a batch of keys,
//! sealed with an HMAC of the cluster secret.
//!
//! Layout: `"WS"`, version (1), a zero byte, the bincode body (2.0.1,
//! fixed-width little-endian integers, as the client protocol), then 32
//! bytes of HMAC-SHA256 over the cluster id and everything before the MAC.
//! A datagram is at most [`MAX_DATAGRAM`] bytes. Opening checks the size,
//! the MAC, then decodes under a byte limit and checks every bound, so a
//! peer that sends garbage costs one failed check and never an allocation
//! it chose.

use bincode::{Decode, Encode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::counter::{Column, Epoch, MAX_EPOCH, RING};

/// Largest datagram sent or accepted: well under UDP's 64 KiB, and a few
/// IP fragments on a 1,500-byte network.
pub const MAX_DATAGRAM: usize = 16 * 1024;
/// Longest store key carried.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most limits one key carries.
pub const MAX_LIMITS: usize = 16;
/// Shortest cluster secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

const MAGIC: [u8; 2] = *b"WS";
const VERSION: u8 = 1;
const HEADER: usize = 4;
const MAC_BYTES: usize = 32;

/// One node's counts for some keys.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SyncBatch {
    /// The sender's node id.
    pub from: String,
    /// The sender's generation (start time), so a restarted node is a new
    /// column rather than one that went backwards.
    pub generation: u64,
    /// Sender's clock when sent, Unix nanoseconds, for the lag report.
    pub sent_at: u64,
    /// The counts are `from`'s as the sender holds them, relayed to a
    /// restarted or returning peer; not a sign that `from` is reachable.
    pub relayed: bool,
    /// The keys.
    pub entries: Vec<SyncEntry>,
}

/// The sender's own counts for one key.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SyncEntry {
    /// The store key.
    pub key: String,
    /// How long the key stays meaningful without requests, in seconds, so
    /// that a receiver that never checks it locally can expire it.
    pub keep_secs: u32,
    /// One per limit of the key, in the order of its config.
    pub limits: Vec<SyncLimit>,
}

/// The sender's column of one limit.
#[derive(Encode, Decode, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncLimit {
    /// What the counts mean (algorithm and slot width), as the counter's tag.
    pub spec: u16,
    /// The newest epoch of the column's ring.
    pub head: Epoch,
    /// Units spent per slot.
    pub spent: [u32; RING],
    /// Units given back per slot.
    pub refunded: [u32; RING],
}

impl SyncLimit {
    /// The counts as a counter column.
    pub fn column(&self) -> Column {
        Column {
            spent: self.spent,
            refunded: self.refunded,
        }
    }
}

/// Bytes `entry` adds to a batch: bincode's fixed-int sizes (u64 lengths).
pub fn encoded_len(entry: &SyncEntry) -> usize {
    const LIMIT: usize = 2 + 8 + 2 * 4 * RING;
    8 + entry.key.len() + 4 + 8 + LIMIT * entry.limits.len()
}

/// Bytes of a datagram around its entries.
pub fn overhead(from: &str) -> usize {
    HEADER + 8 + from.len() + 8 + 8 + 1 + 8 + MAC_BYTES
}

/// Why a datagram was dropped.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than a header and a MAC, or longer than [`MAX_DATAGRAM`].
    #[error("datagram size out of bounds")]
    Size,
    /// Not a weir sync datagram, or another version.
    #[error("bad magic or version")]
    Header,
    /// The MAC does not match: another cluster, another secret, or tampering.
    #[error("authentication failed")]
    Auth,
    /// Authentic but undecodable: a bug or an incompatible sender.
    #[error("undecodable body")]
    Decode,
    /// Decoded, but a key, limit count or epoch is out of bounds.
    #[error("value out of bounds")]
    Bounds,
}

impl FrameError {
    /// A short name for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::Size => "size",
            FrameError::Header => "header",
            FrameError::Auth => "auth",
            FrameError::Decode => "decode",
            FrameError::Bounds => "bounds",
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

const BINCODE: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MAX_DATAGRAM>,
> = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DATAGRAM>();

/// Seals and opens datagrams for one cluster.
#[derive(Clone)]
pub struct Sealer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer for `cluster_id` keyed by `secret`. The cluster id is part of
    /// every MAC, so two clusters sharing a secret still reject each other.
    pub fn new(secret: &[u8], cluster_id: &str) -> Self {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(&(cluster_id.len() as u64).to_le_bytes());
        mac.update(cluster_id.as_bytes());
        Self { mac }
    }

    /// An HMAC of `parts` (each length-prefixed) under this cluster's key:
    /// for small values that travel outside sync frames, such as the config.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is [`sign`](Self::sign) of `parts`, compared in
    /// constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }

    /// [`sign`](Self::sign) as lower-case hex, for values gossiped as text.
    pub fn sign_hex(&self, parts: &[&[u8]]) -> String {
        self.sign(parts).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `hex` is [`sign_hex`](Self::sign_hex) of `parts`; malformed
    /// hex is simply not authentic.
    pub fn verify_hex(&self, parts: &[&[u8]], hex: &str) -> bool {
        if hex.len() != 2 * MAC_BYTES || !hex.is_ascii() {
            return false;
        }
        let tag: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        tag.is_some_and(|tag| self.verify(parts, &tag))
    }

    /// Encodes and seals `batch` into `out` (cleared first).
    ///
    /// # Errors
    /// [`FrameError::Size`] when the batch does not fit in a datagram; the
    /// caller packs by [`encoded_len`] so that it does.
    pub fn seal(&self, batch: &SyncBatch, out: &mut Vec<u8>) -> Result<(), FrameError> {
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, 0]);
        bincode::encode_into_std_write(batch, out, BINCODE).map_err(|_| FrameError::Size)?;
        let mut mac = self.mac.clone();
        mac.update(out);
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(&tag);
        if out.len() > MAX_DATAGRAM {
            return Err(FrameError::Size);
        }
        Ok(())
    }

    /// Checks and decodes a datagram.
    ///
    /// # Errors
    /// [`FrameError`] saying why it was dropped.
    pub fn open(&self, datagram: &[u8]) -> Result<SyncBatch, FrameError> {
        if datagram.len() < HEADER + MAC_BYTES || datagram.len() > MAX_DATAGRAM {
            return Err(FrameError::Size);
        }
        if datagram[..2] != MAGIC || datagram[2] != VERSION {
            return Err(FrameError::Header);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - MAC_BYTES);
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| FrameError::Auth)?;
        let (batch, used): (SyncBatch, usize) =
            bincode::decode_from_slice(&signed[HEADER..], BINCODE).map_err(|_| FrameError::Decode)?;
        if used != signed.len() - HEADER {
            return Err(FrameError::Decode);
        }
        let in_bounds = batch.entries.iter().all(|entry| {
            entry.key.len() <= MAX_KEY_BYTES
                && !entry.limits.is_empty()
                && entry.limits.len() <= MAX_LIMITS
                && entry.limits.iter().all(|limit| limit.head <= MAX_EPOCH)
        });
        if !in_bounds || batch.from.is_empty() || batch.from.len() > MAX_KEY_BYTES {
            return Err(FrameError::Bounds);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(keys: usize) -> SyncBatch {
        SyncBatch {
            from: "node-a".into(),
            generation: 7,
            sent_at: 1_800_000_000_000_000_000,
            relayed: false,
            entries: (0..keys)
                .map(|i| SyncEntry {
                    key: format!("api\0free\0u{i}"),
                    keep_secs: 60,
                    limits: vec![SyncLimit {
                        spec: 0x1234,
                        head: 1_800_000_000,
                        spent: [1, 2, 3, 4],
                        refunded: [0, 0, 1, 0],
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn a_sealed_batch_opens_to_itself_and_its_length_is_predicted() {
        let sealer = Sealer::new(b"0123456789abcdef", "prod");
        let batch = batch(3);
        let mut bytes = Vec::new();
        sealer.seal(&batch, &mut bytes).unwrap();
        let predicted = overhead(&batch.from) + batch.entries.iter().map(encoded_len).sum::<usize>();
        assert_eq!(bytes.len(), predicted);
        assert_eq!(sealer.open(&bytes).unwrap(), batch);
    }

    #[test]
    fn another_secret_or_cluster_or_any_flipped_bit_fails_authentication() {
        let sealer = Sealer::new(b"0123456789abcdef", "prod");
        let mut bytes = Vec::new();
        sealer.seal(&batch(2), &mut bytes).unwrap();
        let other_secret = Sealer::new(b"0123456789abcdeX", "prod");
        let other_cluster = Sealer::new(b"0123456789abcdef", "staging");
        assert_eq!(other_secret.open(&bytes), Err(FrameError::Auth));
        assert_eq!(other_cluster.open(&bytes), Err(FrameError::Auth));
        for i in HEADER..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            assert_eq!(sealer.open(&flipped), Err(FrameError::Auth), "byte {i}");
        }
    }

    #[test]
    fn a_hex_signature_verifies_and_anything_else_does_not() {
        let sealer = Sealer::new(b"0123456789abcdef", "prod");
        let tag = sealer.sign_hex(&[b"a", b"bc"]);
        assert!(sealer.verify_hex(&[b"a", b"bc"], &tag));
        assert!(!sealer.verify_hex(&[b"ab", b"c"], &tag));
        assert!(!sealer.verify_hex(&[b"a", b"bc"], &tag[2..]));
        assert!(!sealer.verify_hex(&[b"a", b"bc"], &"zz".repeat(32)));
        assert!(!sealer.verify_hex(&[b"a", b"bc"], &"é".repeat(32)));
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let sealer = Sealer::new(b"0123456789abcdef", "prod");
        assert_eq!(sealer.open(b""), Err(FrameError::Size));
        assert_eq!(sealer.open(&[0u8; 64]), Err(FrameError::Header));
        assert_eq!(sealer.open(&vec![0u8; MAX_DATAGRAM + 1]), Err(FrameError::Size));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in [36, 37, 100, 1000, 4000] {
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            bytes[..4].copy_from_slice(b"WS\x01\x00");
            assert_eq!(sealer.open(&bytes), Err(FrameError::Auth));
        }
    }

    #[test]
    fn an_authentic_frame_with_a_huge_declared_length_is_refused_by_the_limit() {
        // A sender holding the secret but sending nonsense: a vector length
        // of 2^60 must fail to decode, not allocate.
        let sealer = Sealer::new(b"0123456789abcdef", "prod");
        let mut body = b"WS\x01\x00".to_vec();
        body.extend_from_slice(&1u64.to_le_bytes());
        body.push(b'a');
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.push(0);
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let mut mac = sealer.mac.clone();
        mac.update(&body);
        body.extend_from_slice(&mac.finalize().into_bytes());
        assert_eq!(sealer.open(&body), Err(FrameError::Decode));
    }

    #[test]
    fn out_of_bounds_values_are_refused() {
        let sealer = Sealer::new(b"0123456789abcdef", "prod");
        let mut bad = batch(1);
        bad.entries[0].limits.clear();
        let mut bytes = Vec::new();
        sealer.seal(&bad, &mut bytes).unwrap();
        assert_eq!(sealer.open(&bytes), Err(FrameError::Bounds));
        let mut bad = batch(1);
        bad.entries[0].limits[0].head = MAX_EPOCH + 1;
        sealer.seal(&bad, &mut bytes).unwrap();
        assert_eq!(sealer.open(&bytes), Err(FrameError::Bounds));
    }
}
