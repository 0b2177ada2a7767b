//! The counter-sync datagram: one node's own counts for a batch of keys,
//! encrypted and authenticated under the cluster's keyring ([`Sealer`]).
//!
//! Layout: `"WS"`, version (2), a zero byte, a random 12-byte nonce, the
//! bincode body (2.0.1, fixed-width little-endian integers, as the client
//! protocol) encrypted with ChaCha20-Poly1305, and its 16-byte tag. The
//! associated data is the header and the cluster id, so the id is bound to
//! every datagram without being sent. A datagram is at most
//! [`MAX_DATAGRAM`] bytes. Opening checks the size and header, decrypts
//! under each key of the ring, then decodes under a byte limit and checks
//! every bound, so a peer that sends garbage costs one failed check and
//! never an allocation it chose. Version 1 (HMAC only, readable by anyone
//! on the path) is refused as [`FrameError::OldVersion`].

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bincode::{Decode, Encode};
use chacha20poly1305::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use hkdf::Hkdf;
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
const VERSION: u8 = 2;
/// The HMAC-only format, refused.
const OLD_VERSION: u8 = 1;
const HEADER: usize = 4;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// What sealing adds around a body: header, nonce and tag.
pub const SEAL_OVERHEAD: usize = HEADER + NONCE_BYTES + TAG_BYTES;
const MAC_BYTES: usize = 32;
/// Gossip datagrams: `"WG"`, version, a zero byte, then as sync.
const GOSSIP_MAGIC: [u8; 2] = *b"WG";
const GOSSIP_VERSION: u8 = 1;

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
    SEAL_OVERHEAD + 8 + from.len() + 8 + 8 + 1 + 8
}

/// Why a datagram was dropped.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than a header and a MAC, or longer than [`MAX_DATAGRAM`].
    #[error("datagram size out of bounds")]
    Size,
    /// Not a weir datagram of this kind, or an unknown version.
    #[error("bad magic or version")]
    Header,
    /// A weir datagram in the HMAC-only format of earlier releases.
    #[error("old format (a weir release before encrypted sync): upgrade that node")]
    OldVersion,
    /// No key of the ring opens it: another cluster, another secret, or
    /// tampering.
    #[error("authentication failed")]
    Auth,
    /// Authentic, but sent too long ago (or too far ahead): a replay, or a
    /// clock far off.
    #[error("stale")]
    Stale,
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
            FrameError::OldVersion => "old_version",
            FrameError::Auth => "auth",
            FrameError::Stale => "stale",
            FrameError::Decode => "decode",
            FrameError::Bounds => "bounds",
        }
    }
}

impl FrameError {
    /// Every reason, in the order metrics list them.
    pub const ALL: [FrameError; 7] = [
        FrameError::Size,
        FrameError::Header,
        FrameError::OldVersion,
        FrameError::Auth,
        FrameError::Stale,
        FrameError::Decode,
        FrameError::Bounds,
    ];
}

/// Datagrams dropped, by reason.
#[derive(Debug, Default)]
pub struct Rejections([std::sync::atomic::AtomicU64; 7]);

impl Rejections {
    /// Counts one datagram dropped for `reason`.
    pub fn count(&self, reason: FrameError) {
        let index = FrameError::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.0[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Datagrams dropped for `reason`.
    pub fn count_of(&self, reason: FrameError) -> u64 {
        let index = FrameError::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.0[index].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every reason by name, with its count.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        FrameError::ALL
            .iter()
            .zip(&self.0)
            .map(|(reason, count)| (reason.reason(), count.load(std::sync::atomic::Ordering::Relaxed)))
            .collect()
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

/// The keys of one secret, derived apart with HKDF-SHA256 so that no key
/// serves two purposes.
#[derive(Clone)]
struct Keys {
    sync: ChaCha20Poly1305,
    gossip: ChaCha20Poly1305,
    mac: HmacSha256,
    /// Tells secrets apart without keeping them: another derived key.
    id: [u8; 32],
    /// A secret dropped from the keyring still opens and verifies until
    /// then (never seals); `None` while it is in the keyring.
    retires: Option<Instant>,
}

impl Keys {
    fn derive(secret: &[u8]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(b"weir cluster keys v2"), secret);
        let key = |label: &[u8]| {
            let mut key = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's limit; this cannot fail.
            hkdf.expand(label, &mut key).expect("a valid HKDF length");
            key
        };
        Self {
            sync: ChaCha20Poly1305::new(&key(b"sync").into()),
            gossip: ChaCha20Poly1305::new(&key(b"gossip").into()),
            // HMAC takes a key of any length; this cannot fail.
            mac: <HmacSha256 as Mac>::new_from_slice(&key(b"sign")).expect("HMAC accepts any key length"),
            id: key(b"id"),
            retires: None,
        }
    }

    /// Still accepted at `now`.
    fn live(&self, now: Option<Instant>) -> bool {
        match (self.retires, now) {
            (Some(retires), Some(now)) => now < retires,
            _ => true,
        }
    }
}

/// Most secrets kept after they left the keyring: each is tried on every
/// datagram while it lasts.
const MAX_RETIRING: usize = 4;

/// What a keyring holds: its secrets, and those dropped from it that are
/// still accepted for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingStatus {
    /// Secrets in the keyring.
    pub keys: usize,
    /// Secrets dropped from it and still accepted.
    pub retiring: usize,
    /// Until the last of them is refused.
    pub retiring_for: Duration,
}

/// Seals and opens datagrams for one cluster, and signs small values, under
/// a keyring: the first secret seals and signs, every secret opens and
/// verifies, so that a secret can be rotated without a partition. Clones
/// share the keyring, so [`rekey`](Self::rekey) on one reaches every part
/// of the node that seals or opens.
#[derive(Clone)]
pub struct Sealer {
    ring: Arc<RwLock<Arc<[Keys]>>>,
    /// The cluster id, length-prefixed: bound to every datagram and
    /// signature as associated data.
    cluster: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.ring().len())
    }
}

impl Sealer {
    /// A sealer for `cluster_id` keyed by `secrets`, the sealing one first.
    /// The cluster id is part of every seal and MAC, so two clusters
    /// sharing a secret still reject each other.
    ///
    /// # Panics
    /// With no secret at all: callers validate that there is one.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S], cluster_id: &str) -> Self {
        assert!(!secrets.is_empty(), "a keyring needs a secret");
        let mut cluster = (cluster_id.len() as u64).to_le_bytes().to_vec();
        cluster.extend_from_slice(cluster_id.as_bytes());
        Self {
            ring: Arc::new(RwLock::new(Self::derive(secrets))),
            cluster,
        }
    }

    fn derive<S: AsRef<[u8]>>(secrets: &[S]) -> Arc<[Keys]> {
        secrets.iter().map(|s| Keys::derive(s.as_ref())).collect()
    }

    /// The keyring in force: taken once per datagram or signature.
    fn ring(&self) -> Arc<[Keys]> {
        self.ring.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The keys that open and verify now: the keyring's, and those dropped
    /// from it whose grace has not run out. The clock is read only while a
    /// dropped key is kept.
    fn accepted(ring: &[Keys]) -> impl Iterator<Item = &Keys> {
        let now = ring.iter().any(|k| k.retires.is_some()).then(Instant::now);
        ring.iter().filter(move |keys| keys.live(now))
    }

    /// The keyring's secrets, and those dropped from it still accepted.
    pub fn status(&self) -> RingStatus {
        let ring = self.ring();
        let now = Instant::now();
        let retiring: Vec<Duration> = ring
            .iter()
            .filter_map(|keys| keys.retires)
            .filter(|retires| now < *retires)
            .map(|retires| retires - now)
            .collect();
        RingStatus {
            keys: ring.iter().filter(|keys| keys.retires.is_none()).count(),
            retiring: retiring.len(),
            retiring_for: retiring.into_iter().max().unwrap_or_default(),
        }
    }

    /// Puts a new keyring in force, the sealing secret first, for this
    /// sealer and every clone of it: how a running node rotates its secret.
    /// A secret the new keyring drops still opens and verifies for `grace`
    /// (never seals), so that nodes which have not rotated yet are heard
    /// meanwhile; then it is refused. One already retiring keeps its time.
    ///
    /// # Panics
    /// With no secret at all: callers validate that there is one.
    pub fn rekey<S: AsRef<[u8]>>(&self, secrets: &[S], grace: Duration) {
        assert!(!secrets.is_empty(), "a keyring needs a secret");
        let mut ring = self.ring.write().unwrap_or_else(PoisonError::into_inner);
        let mut keys: Vec<Keys> = Self::derive(secrets).to_vec();
        let now = Instant::now();
        let kept: Vec<Keys> = Self::accepted(&ring)
            .filter(|old| !keys.iter().any(|new| new.id == old.id))
            .map(|old| Keys {
                retires: Some(old.retires.unwrap_or(now + grace).min(now + grace)),
                ..old.clone()
            })
            .filter(|old| old.live(Some(now)))
            .take(MAX_RETIRING)
            .collect();
        keys.extend(kept);
        *ring = keys.into();
    }

    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = header.to_vec();
        aad.extend_from_slice(&self.cluster);
        aad
    }

    /// Encrypts `out[start..]` in place under `cipher` and wraps it:
    /// `out[..start]` must hold the header and room for the nonce.
    fn seal_in_place(&self, cipher: &ChaCha20Poly1305, out: &mut Vec<u8>) {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        out[HEADER..HEADER + NONCE_BYTES].copy_from_slice(&nonce);
        let aad = self.aad(&out[..HEADER]);
        let tag = cipher
            .encrypt_in_place_detached(&nonce, &aad, &mut out[HEADER + NONCE_BYTES..])
            // Only fails past ChaCha20's 256 GiB message limit.
            .expect("a datagram is far below the cipher's limit");
        out.extend_from_slice(&tag);
    }

    /// Opens a sealed datagram whose header was checked: tries every key
    /// of the ring, returns the plaintext body.
    fn open_sealed(
        &self,
        cipher: impl Fn(&Keys) -> &ChaCha20Poly1305,
        datagram: &[u8],
    ) -> Result<Vec<u8>, FrameError> {
        if datagram.len() < SEAL_OVERHEAD {
            return Err(FrameError::Size);
        }
        let (header, rest) = datagram.split_at(HEADER);
        let (nonce, rest) = rest.split_at(NONCE_BYTES);
        let (body, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let aad = self.aad(header);
        let (nonce, tag) = (Nonce::from_slice(nonce), Tag::from_slice(tag));
        let mut plain = body.to_vec();
        for keys in Self::accepted(&self.ring()) {
            if cipher(keys)
                .decrypt_in_place_detached(nonce, &aad, &mut plain, tag)
                .is_ok()
            {
                return Ok(plain);
            }
            // A failed attempt leaves the buffer as it was.
        }
        Err(FrameError::Auth)
    }

    /// Seals a gossip datagram around `plain` into `out` (cleared first).
    pub fn seal_gossip(&self, plain: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&GOSSIP_MAGIC);
        out.extend_from_slice(&[GOSSIP_VERSION, 0]);
        out.extend_from_slice(&[0; NONCE_BYTES]);
        out.extend_from_slice(plain);
        self.seal_in_place(&self.ring()[0].gossip, out);
    }

    /// Opens a gossip datagram: its plaintext.
    ///
    /// # Errors
    /// [`FrameError`] saying why it was dropped.
    pub fn open_gossip(&self, datagram: &[u8]) -> Result<Vec<u8>, FrameError> {
        if datagram.len() < SEAL_OVERHEAD {
            return Err(FrameError::Size);
        }
        if datagram[..2] != GOSSIP_MAGIC || datagram[2] != GOSSIP_VERSION {
            return Err(FrameError::Header);
        }
        self.open_sealed(|keys| &keys.gossip, datagram)
    }

    fn mac_of(&self, keys: &Keys, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = keys.mac.clone();
        mac.update(&self.cluster);
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }

    /// An HMAC of `parts` (each length-prefixed) under the sealing key: for
    /// small values that travel inside gossip, such as the config.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        self.mac_of(&self.ring()[0], parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is [`sign`](Self::sign) of `parts` under any key of
    /// the ring, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        Self::accepted(&self.ring()).any(|keys| self.mac_of(keys, parts).verify_slice(tag).is_ok())
    }

    /// [`sign`](Self::sign) as lower-case hex, for values gossiped as text.
    pub fn sign_hex(&self, parts: &[&[u8]]) -> String {
        self.sign(parts).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `hex` is [`sign_hex`](Self::sign_hex) of `parts`; malformed
    /// hex is simply not authentic.
    pub fn verify_hex(&self, parts: &[&[u8]], hex: &str) -> bool {
        // Hex digits only: `from_str_radix` alone would take "+a" for "0a".
        if hex.len() != 2 * MAC_BYTES || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
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
        out.extend_from_slice(&[0; NONCE_BYTES]);
        bincode::encode_into_std_write(batch, out, BINCODE).map_err(|_| FrameError::Size)?;
        if out.len() + TAG_BYTES > MAX_DATAGRAM {
            return Err(FrameError::Size);
        }
        self.seal_in_place(&self.ring()[0].sync, out);
        Ok(())
    }

    /// Seals an already encoded `body` as a sync datagram: what a peer
    /// holding the secret could send, whatever its bytes (for fuzzing).
    pub fn seal_sync_body(&self, body: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, 0]);
        out.extend_from_slice(&[0; NONCE_BYTES]);
        out.extend_from_slice(body);
        self.seal_in_place(&self.ring()[0].sync, out);
    }

    /// Checks and decodes a datagram.
    ///
    /// # Errors
    /// [`FrameError`] saying why it was dropped.
    pub fn open(&self, datagram: &[u8]) -> Result<SyncBatch, FrameError> {
        if datagram.len() < HEADER || datagram.len() > MAX_DATAGRAM {
            return Err(FrameError::Size);
        }
        if datagram[..2] != MAGIC {
            return Err(FrameError::Header);
        }
        match datagram[2] {
            VERSION => {}
            OLD_VERSION => return Err(FrameError::OldVersion),
            _ => return Err(FrameError::Header),
        }
        let body = self.open_sealed(|keys| &keys.sync, datagram)?;
        let (batch, used): (SyncBatch, usize) =
            bincode::decode_from_slice(&body, BINCODE).map_err(|_| FrameError::Decode)?;
        if used != body.len() {
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

    const SECRET: &[u8] = b"0123456789abcdef";

    fn sealer() -> Sealer {
        Sealer::new(&[SECRET], "prod")
    }

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

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_sealed_batch_opens_to_itself_its_length_is_predicted_and_nothing_shows() {
        let batch = batch(3);
        let mut bytes = Vec::new();
        sealer().seal(&batch, &mut bytes).unwrap();
        let predicted = overhead(&batch.from) + batch.entries.iter().map(encoded_len).sum::<usize>();
        assert_eq!(bytes.len(), predicted);
        assert_eq!(sealer().open(&bytes).unwrap(), batch);
        for needle in [&b"api\0free\0u1"[..], b"node-a", b"prod"] {
            assert!(!contains(&bytes, needle));
        }
        // A fresh nonce each time: the same batch never seals the same.
        let mut again = Vec::new();
        sealer().seal(&batch, &mut again).unwrap();
        assert_ne!(bytes, again);
    }

    #[test]
    fn a_secret_dropped_from_the_keyring_opens_for_its_grace_then_not() {
        const NEW: &[u8] = b"fedcba9876543210";
        let old = sealer();
        let rotated = sealer();
        rotated.rekey(&[NEW], Duration::from_millis(300));
        let mut bytes = Vec::new();
        old.seal(&batch(1), &mut bytes).unwrap();
        assert!(rotated.open(&bytes).is_ok(), "within its grace");
        let status = rotated.status();
        assert_eq!((status.keys, status.retiring), (1, 1));
        assert!(status.retiring_for <= Duration::from_millis(300));
        // The new secret seals: the old keyring cannot open it.
        rotated.seal(&batch(1), &mut bytes).unwrap();
        assert_eq!(old.open(&bytes), Err(FrameError::Auth));
        // A reload within the grace keeps its time; back in the keyring, a
        // secret is whole again.
        rotated.rekey(&[NEW], Duration::from_secs(3600));
        assert!(rotated.status().retiring_for <= Duration::from_millis(300));
        std::thread::sleep(Duration::from_millis(350));
        old.seal(&batch(1), &mut bytes).unwrap();
        assert_eq!(rotated.open(&bytes), Err(FrameError::Auth), "after its grace");
        assert_eq!(rotated.status().retiring, 0);
        rotated.rekey(&[NEW, SECRET], Duration::ZERO);
        assert!(rotated.open(&bytes).is_ok());
    }

    #[test]
    fn another_secret_or_cluster_or_any_flipped_byte_is_rejected() {
        let mut bytes = Vec::new();
        sealer().seal(&batch(2), &mut bytes).unwrap();
        let other_secret = Sealer::new(&[b"0123456789abcdeX"], "prod");
        let other_cluster = Sealer::new(&[SECRET], "staging");
        assert_eq!(other_secret.open(&bytes), Err(FrameError::Auth));
        assert_eq!(other_cluster.open(&bytes), Err(FrameError::Auth));
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            assert!(sealer().open(&flipped).is_err(), "byte {i}");
            if i >= HEADER {
                assert_eq!(sealer().open(&flipped), Err(FrameError::Auth), "byte {i}");
            }
        }
    }

    #[test]
    fn the_first_secret_seals_and_every_secret_opens() {
        let old = Sealer::new(&[b"old-secret-0123456"], "prod");
        let both = Sealer::new(&[&b"new-secret-0123456"[..], b"old-secret-0123456"], "prod");
        let new = Sealer::new(&[b"new-secret-0123456"], "prod");
        let mut from_old = Vec::new();
        old.seal(&batch(1), &mut from_old).unwrap();
        let mut from_both = Vec::new();
        both.seal(&batch(1), &mut from_both).unwrap();
        assert!(both.open(&from_old).is_ok());
        assert!(new.open(&from_both).is_ok());
        assert_eq!(old.open(&from_both), Err(FrameError::Auth));
        assert_eq!(new.open(&from_old), Err(FrameError::Auth));
        let tag = old.sign_hex(&[b"config"]);
        assert!(both.verify_hex(&[b"config"], &tag));
        assert!(!new.verify_hex(&[b"config"], &tag));
    }

    #[test]
    fn gossip_is_sealed_apart_from_sync() {
        let mut sealed = Vec::new();
        sealer().seal_gossip(b"membership of node-a", &mut sealed);
        assert!(!contains(&sealed, b"node-a"));
        assert_eq!(sealer().open_gossip(&sealed).unwrap(), b"membership of node-a");
        // Another purpose's key does not open it, nor does the sync path.
        assert_eq!(sealer().open(&sealed), Err(FrameError::Header));
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 0x80;
            assert!(sealer().open_gossip(&flipped).is_err(), "byte {i}");
        }
        let mut sync = Vec::new();
        sealer().seal(&batch(1), &mut sync).unwrap();
        sync[..4].copy_from_slice(&[b'W', b'G', GOSSIP_VERSION, 0]);
        assert_eq!(sealer().open_gossip(&sync), Err(FrameError::Auth));
    }

    #[test]
    fn the_hmac_only_format_is_refused_as_old() {
        let mut old = b"WS\x01\x00".to_vec();
        old.extend_from_slice(&[0; 64]);
        assert_eq!(sealer().open(&old), Err(FrameError::OldVersion));
    }

    #[test]
    fn a_hex_signature_verifies_and_anything_else_does_not() {
        let tag = sealer().sign_hex(&[b"a", b"bc"]);
        assert!(sealer().verify_hex(&[b"a", b"bc"], &tag));
        assert!(!sealer().verify_hex(&[b"ab", b"c"], &tag));
        assert!(!sealer().verify_hex(&[b"a", b"bc"], &tag[2..]));
        assert!(!sealer().verify_hex(&[b"a", b"bc"], &"zz".repeat(32)));
        assert!(!sealer().verify_hex(&[b"a", b"bc"], &"é".repeat(32)));
        assert!(!Sealer::new(&[SECRET], "other").verify_hex(&[b"a", b"bc"], &tag));
        // A sign where a byte's leading 0 should be ("+a" for "0a"): never
        // read as one. Some part of these parts' tag has such a byte.
        let leading_zero = |tag: &str| (0..tag.len()).step_by(2).find(|i| &tag[*i..*i + 1] == "0");
        let (byte, tag) = (0u8..=255)
            .map(|i| (i, sealer().sign_hex(&[b"a", &[i]])))
            .find(|(_, tag)| leading_zero(tag).is_some())
            .unwrap();
        let zero = leading_zero(&tag).unwrap();
        let plus = format!("{}+{}", &tag[..zero], &tag[zero + 1..]);
        assert!(sealer().verify_hex(&[b"a", &[byte]], &tag));
        assert!(!sealer().verify_hex(&[b"a", &[byte]], &plus), "{plus}");
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        let sealer = sealer();
        assert_eq!(sealer.open(b""), Err(FrameError::Size));
        assert_eq!(sealer.open(&[0u8; 64]), Err(FrameError::Header));
        assert_eq!(sealer.open(&vec![0u8; MAX_DATAGRAM + 1]), Err(FrameError::Size));
        assert_eq!(sealer.open(b"WS\x02\x00short"), Err(FrameError::Size));
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
            bytes[..4].copy_from_slice(b"WS\x02\x00");
            assert_eq!(sealer.open(&bytes), Err(FrameError::Auth));
            bytes[..4].copy_from_slice(b"WG\x01\x00");
            assert_eq!(sealer.open_gossip(&bytes), Err(FrameError::Auth));
        }
    }

    #[test]
    fn an_authentic_frame_with_a_huge_declared_length_is_refused_by_the_limit() {
        // A sender holding the secret but sending nonsense: a vector length
        // of 2^60 must fail to decode, not allocate.
        let sealer = sealer();
        let mut body = 1u64.to_le_bytes().to_vec();
        body.push(b'a');
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.push(0);
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let mut sealed = Vec::new();
        sealer.seal_sync_body(&body, &mut sealed);
        assert_eq!(sealer.open(&sealed), Err(FrameError::Decode));
    }

    #[test]
    fn out_of_bounds_values_are_refused() {
        let sealer = sealer();
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
