//! The snapshot format: a manifest and chunks of records, each a frame that
//! names its format version and is checked by a digest.
//!
//! A frame is `"WSNP"`, the format version (u16, little-endian), a kind byte
//! (`M` manifest, `C` chunk), the bincode body (2.0.1, standard config), and
//! the first 16 bytes of SHA-256 over everything before them. The manifest
//! lists every chunk's digest, so a chunk from another generation, a
//! truncated one or a flipped bit is caught before anything is applied. A
//! chunk's body is records back to back, at most about [`CHUNK_BYTES`]: a
//! Redis value stays small however many keys a node holds.

use bincode::{Decode, Encode};
use sha2::{Digest as _, Sha256};

/// The format this build writes; it reads this one and older.
pub const FORMAT: u16 = 1;
/// Body size at which a chunk is closed.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest frame read back: a chunk's last record may run past
/// [`CHUNK_BYTES`], by at most one key.
pub const MAX_FRAME: usize = 4 << 20;

const MAGIC: [u8; 4] = *b"WSNP";
const HEADER: usize = 7;
const DIGEST: usize = 16;

/// A frame's digest.
pub type Digest = [u8; DIGEST];

/// What a snapshot is, and how to check its chunks.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The cluster id of the node that took it.
    pub cluster_id: String,
    /// The node id of the node that took it.
    pub node_id: String,
    /// Unix ns when it was taken.
    pub taken_at: u64,
    /// The node incarnations the columns belong to, by index: index 0 is
    /// the incarnation that took the snapshot.
    pub incarnations: Vec<(String, u64)>,
    /// Each chunk's digest, in order.
    pub chunks: Vec<Digest>,
    /// Keys saved.
    pub keys: u64,
}

/// One piece of saved state.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A key's limit states.
    Key(SavedKey),
    /// A runtime tier assignment.
    Tier {
        /// [`crate::engine::Subject`] by name.
        subject: String,
        /// Token, user, IP or endpoint.
        id: String,
        /// The tier.
        tier: String,
        /// Unix ns when it lapses; 0 for never.
        until: u64,
    },
    /// An alert rule's cooldown for one key.
    Cooldown {
        /// The rule.
        rule: String,
        /// The store key (empty for a whole-policy rule).
        key: String,
        /// Unix ns when it ends.
        until: u64,
    },
    /// The config in force.
    Config {
        /// Its version.
        version: u64,
        /// Its TOML text.
        toml: String,
        /// [`digest`] of the config file weir had loaded: a runtime config
        /// comes back only while the file is the same.
        base: Digest,
    },
}

/// A key's limit states.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SavedKey {
    /// The store key.
    pub key: String,
    /// Unix ns after which the key means nothing.
    pub expires_at: u64,
    /// One per limit, in config order.
    pub limits: Vec<SavedLimit>,
}

/// One limit's state.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SavedLimit {
    /// What the counts mean (the counter's tag).
    pub spec: u16,
    /// The ring's newest epoch.
    pub head: u64,
    /// A bucket's refill time, Unix ns; 0 for a window.
    pub refill_at: u64,
    /// Non-empty columns.
    pub columns: Vec<SavedColumn>,
}

/// One incarnation's counts of one limit.
#[derive(Encode, Decode, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedColumn {
    /// Index into [`Manifest::incarnations`].
    pub node: u32,
    /// Units spent per slot.
    pub spent: [u32; weir_cluster::RING],
    /// Units given back per slot.
    pub refunded: [u32; weir_cluster::RING],
}

/// Why a stored snapshot is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Written by a newer weir: this build cannot know what it means.
    #[error("written in format {0}, newer than this build's {FORMAT}")]
    Newer(u16),
    /// Damaged, truncated, or not a weir snapshot.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

impl FormatError {
    /// A short name for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FormatError::Newer(_) => "newer_format",
            FormatError::Corrupt(_) => "corrupt",
        }
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// SHA-256 of `bytes`, cut to 16 bytes: enough to catch damage.
pub fn digest(bytes: &[u8]) -> Digest {
    let full = Sha256::digest(bytes);
    let mut out = [0; DIGEST];
    out.copy_from_slice(&full[..DIGEST]);
    out
}

fn start_frame(kind: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.push(kind);
}

fn seal_frame(mut frame: Vec<u8>) -> Vec<u8> {
    let check = digest(&frame);
    frame.extend_from_slice(&check);
    frame
}

/// Checks a frame's header and digest; returns its body.
fn open_frame(kind: u8, frame: &[u8]) -> Result<&[u8], FormatError> {
    let corrupt = |what: &str| FormatError::Corrupt(what.to_string());
    if frame.len() < HEADER + DIGEST || frame.len() > MAX_FRAME {
        return Err(corrupt("frame size out of bounds"));
    }
    if frame[..4] != MAGIC {
        return Err(corrupt("not a weir snapshot"));
    }
    let format = u16::from_le_bytes([frame[4], frame[5]]);
    if format > FORMAT {
        return Err(FormatError::Newer(format));
    }
    if frame[6] != kind {
        return Err(corrupt("unexpected frame kind"));
    }
    let (body, check) = frame.split_at(frame.len() - DIGEST);
    if digest(body) != check {
        return Err(corrupt("digest mismatch"));
    }
    Ok(&body[HEADER..])
}

/// Encodes the manifest as a frame.
pub fn encode_manifest(manifest: &Manifest) -> Vec<u8> {
    let mut frame = Vec::new();
    start_frame(b'M', &mut frame);
    // Encoding into a Vec cannot fail; the limit applies to decoding.
    bincode::encode_into_std_write(manifest, &mut frame, bincode::config::standard())
        .expect("encoding into memory");
    seal_frame(frame)
}

/// Decodes a manifest frame.
///
/// # Errors
/// [`FormatError`] for a newer format or any damage.
pub fn decode_manifest(frame: &[u8]) -> Result<Manifest, FormatError> {
    let body = open_frame(b'M', frame)?;
    let (manifest, used): (Manifest, usize) = bincode::decode_from_slice(body, bincode_config())
        .map_err(|error| FormatError::Corrupt(format!("manifest: {error}")))?;
    if used != body.len() {
        return Err(FormatError::Corrupt("manifest: trailing bytes".into()));
    }
    Ok(manifest)
}

/// Packs records into chunk frames of about [`CHUNK_BYTES`].
#[derive(Default)]
pub struct ChunkWriter {
    current: Vec<u8>,
    done: Vec<Vec<u8>>,
}

impl ChunkWriter {
    /// Adds one record.
    pub fn push(&mut self, record: &Record) {
        if self.current.is_empty() {
            start_frame(b'C', &mut self.current);
        }
        bincode::encode_into_std_write(record, &mut self.current, bincode::config::standard())
            .expect("encoding into memory");
        if self.current.len() >= CHUNK_BYTES {
            self.close();
        }
    }

    fn close(&mut self) {
        if !self.current.is_empty() {
            let frame = std::mem::take(&mut self.current);
            self.done.push(seal_frame(frame));
        }
    }

    /// The chunk frames.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.close();
        self.done
    }
}

/// Checks every chunk against the manifest before any is decoded: a
/// snapshot is applied whole or not at all.
///
/// # Errors
/// [`FormatError`] for a missing, extra, newer or damaged chunk.
pub fn verify_chunks(manifest: &Manifest, chunks: &[Vec<u8>]) -> Result<(), FormatError> {
    if chunks.len() != manifest.chunks.len() {
        return Err(FormatError::Corrupt(format!(
            "{} chunks, the manifest lists {}",
            chunks.len(),
            manifest.chunks.len()
        )));
    }
    for (i, (chunk, listed)) in chunks.iter().zip(&manifest.chunks).enumerate() {
        open_frame(b'C', chunk).map_err(|error| match error {
            FormatError::Corrupt(why) => FormatError::Corrupt(format!("chunk {i}: {why}")),
            newer => newer,
        })?;
        if digest(chunk) != *listed {
            return Err(FormatError::Corrupt(format!(
                "chunk {i} is not the one the manifest lists"
            )));
        }
    }
    Ok(())
}

/// Decodes the records of a verified chunk, handing each to `each`.
///
/// # Errors
/// [`FormatError::Corrupt`] when a record does not decode.
pub fn decode_chunk(chunk: &[u8], mut each: impl FnMut(Record)) -> Result<(), FormatError> {
    let mut body = open_frame(b'C', chunk)?;
    while !body.is_empty() {
        let (record, used): (Record, usize) = bincode::decode_from_slice(body, bincode_config())
            .map_err(|error| FormatError::Corrupt(format!("record: {error}")))?;
        each(record);
        body = &body[used..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Record {
        Record::Key(SavedKey {
            key: format!("api\0free\0user-{i:06}"),
            expires_at: 1 << 40,
            limits: vec![SavedLimit {
                spec: 7,
                head: 99,
                refill_at: 0,
                columns: vec![SavedColumn {
                    node: 0,
                    spent: [1, 2, 3, 4],
                    refunded: [0; 4],
                }],
            }],
        })
    }

    fn snapshot(keys: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut writer = ChunkWriter::default();
        for i in 0..keys {
            writer.push(&key(i));
        }
        let chunks = writer.finish();
        let manifest = Manifest {
            cluster_id: "c".into(),
            node_id: "n".into(),
            taken_at: 1,
            incarnations: vec![("n".into(), 5)],
            chunks: chunks.iter().map(|c| digest(c)).collect(),
            keys: keys as u64,
        };
        (encode_manifest(&manifest), chunks)
    }

    #[test]
    fn records_come_back_in_order_across_bounded_chunks() {
        let (manifest, chunks) = snapshot(60_000);
        let manifest = decode_manifest(&manifest).unwrap();
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| c.len() < CHUNK_BYTES + 1024));
        verify_chunks(&manifest, &chunks).unwrap();
        let mut seen = Vec::new();
        for chunk in &chunks {
            decode_chunk(chunk, |r| seen.push(r)).unwrap();
        }
        assert_eq!(seen.len(), 60_000);
        assert_eq!(seen[12_345], key(12_345));
    }

    #[test]
    fn every_flipped_byte_of_a_chunk_or_manifest_is_refused() {
        let (manifest, chunks) = snapshot(20);
        let decoded = decode_manifest(&manifest).unwrap();
        for i in 0..chunks[0].len() {
            let mut bad = chunks.clone();
            bad[0][i] ^= 0x40;
            assert!(verify_chunks(&decoded, &bad).is_err(), "byte {i}");
        }
        for i in 0..manifest.len() {
            let mut bad = manifest.clone();
            bad[i] ^= 0x40;
            assert!(decode_manifest(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn a_newer_format_is_told_apart_from_damage() {
        let (mut manifest, _) = snapshot(1);
        manifest[4..6].copy_from_slice(&(FORMAT + 1).to_le_bytes());
        assert_eq!(decode_manifest(&manifest), Err(FormatError::Newer(FORMAT + 1)));
        assert_eq!(
            decode_manifest(b"garbage that is long enough")
                .unwrap_err()
                .reason(),
            "corrupt"
        );
    }

    #[test]
    fn missing_or_swapped_chunks_are_refused() {
        let (manifest, chunks) = snapshot(60_000);
        let manifest = decode_manifest(&manifest).unwrap();
        assert!(verify_chunks(&manifest, &chunks[1..]).is_err());
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert!(verify_chunks(&manifest, &swapped).is_err());
    }
}
