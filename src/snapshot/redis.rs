//! The Redis store: generations of chunks, then a pointer switch.
//!
//! Keys, all under `weir:{cluster id}:{node id}:snapshot`:
//! - `…:{generation}:manifest` and `…:{generation}:chunk:{i}`: one
//!   generation, written whole before anything points at it;
//! - the bare prefix: the pointer, `"{generation}:{chunks}"`.
//!
//! A save writes a new generation, then moves the pointer, then deletes
//! the generation before the previous one: a crash at any point leaves the
//! pointer on a complete generation. Every key carries a TTL (the longest
//! window any saved key still needs, plus a margin), so a node that never
//! comes back leaves nothing behind.

use std::collections::VecDeque;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use super::format::FormatError;
use super::{StoreError, Stored};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one reply may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunks written per round trip.
const CHUNKS_PER_PIPELINE: usize = 8;

/// A Redis database holding one node's snapshots.
pub struct RedisStore {
    client: redis::Client,
    connection: Option<MultiplexedConnection>,
    prefix: String,
    /// Generations this node knows are stored (oldest first), with their
    /// chunk counts: the one before the newest is kept, older are deleted.
    kept: VecDeque<(u64, usize)>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL, password included: never print it.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn redis_error(error: redis::RedisError) -> StoreError {
    StoreError::Unreachable(format!("redis: {error}"))
}

impl RedisStore {
    /// The store at `url` (`redis://` or `rediss://`) for node `node_id`
    /// of cluster `cluster_id`.
    ///
    /// # Errors
    /// An invalid URL.
    pub fn new(url: &str, cluster_id: &str, node_id: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        Ok(Self {
            client,
            connection: None,
            prefix: format!("weir:{cluster_id}:{node_id}:snapshot"),
            kept: VecDeque::new(),
        })
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, StoreError> {
        if let Some(connection) = &self.connection {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(redis_error)?;
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `command` on the connection; a failure drops the connection so
    /// that the next call dials again.
    async fn query<T: redis::FromRedisValue>(&mut self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection().await?;
        let result = command.query_async(&mut connection).await;
        result.map_err(|error| {
            self.connection = None;
            redis_error(error)
        })
    }

    async fn run(&mut self, pipeline: &redis::Pipeline) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        let result: Result<(), _> = pipeline.query_async(&mut connection).await;
        result.map_err(|error| {
            self.connection = None;
            redis_error(error)
        })
    }

    fn manifest_key(&self, generation: u64) -> String {
        format!("{}:{generation}:manifest", self.prefix)
    }

    fn chunk_key(&self, generation: u64, index: usize) -> String {
        format!("{}:{generation}:chunk:{index}", self.prefix)
    }

    async fn pointer(&mut self) -> Result<Option<(u64, usize)>, StoreError> {
        let pointer: Option<String> = self.query(redis::cmd("GET").arg(&self.prefix)).await?;
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        let parsed = pointer
            .split_once(':')
            .and_then(|(generation, chunks)| Some((generation.parse().ok()?, chunks.parse().ok()?)));
        match parsed {
            Some(pointer) => Ok(Some(pointer)),
            None => Err(StoreError::Format(FormatError::Corrupt(format!(
                "snapshot pointer {pointer:?} is not generation:chunks"
            )))),
        }
    }

    /// Whether a snapshot pointer is there.
    pub async fn present(&mut self) -> Result<bool, StoreError> {
        let exists: bool = self.query(redis::cmd("EXISTS").arg(&self.prefix)).await?;
        Ok(exists)
    }

    /// Reads the generation the pointer names, `None` if there is none.
    pub async fn load(&mut self) -> Result<Option<Stored>, StoreError> {
        let Some((generation, count)) = self.pointer().await? else {
            return Ok(None);
        };
        let missing = |what: String| StoreError::Format(FormatError::Corrupt(format!("{what} is missing")));
        let manifest: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(self.manifest_key(generation)))
            .await?;
        let manifest = manifest.ok_or_else(|| missing(format!("generation {generation}'s manifest")))?;
        let mut chunks = Vec::with_capacity(count.min(1 << 16));
        for index in 0..count {
            let chunk: Option<Vec<u8>> = self
                .query(redis::cmd("GET").arg(self.chunk_key(generation, index)))
                .await?;
            chunks.push(chunk.ok_or_else(|| missing(format!("generation {generation}'s chunk {index}")))?);
        }
        if self.kept.back().map(|(g, _)| *g) != Some(generation) {
            self.kept.push_back((generation, count));
        }
        Ok(Some(Stored { manifest, chunks }))
    }

    /// Writes a new generation numbered from `taken_at_ms`, each key living
    /// `ttl`, then points at it and deletes the generation before the
    /// previous one.
    pub async fn save(
        &mut self,
        taken_at_ms: u64,
        manifest: &[u8],
        chunks: &[Vec<u8>],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let newest = self.kept.back().map_or(0, |(g, _)| *g);
        let generation = taken_at_ms.max(newest + 1);
        let seconds = ttl.as_secs().max(1);
        for (batch, group) in chunks.chunks(CHUNKS_PER_PIPELINE).enumerate() {
            let mut pipeline = redis::pipe();
            for (offset, chunk) in group.iter().enumerate() {
                let key = self.chunk_key(generation, batch * CHUNKS_PER_PIPELINE + offset);
                pipeline
                    .cmd("SET")
                    .arg(key)
                    .arg(chunk)
                    .arg("EX")
                    .arg(seconds)
                    .ignore();
            }
            self.run(&pipeline).await?;
        }
        let mut pipeline = redis::pipe();
        let pointer = format!("{generation}:{}", chunks.len());
        pipeline
            .cmd("SET")
            .arg(self.manifest_key(generation))
            .arg(manifest)
            .arg("EX")
            .arg(seconds)
            .ignore();
        // MULTI/EXEC not needed: the pointer is set only once the manifest
        // reply is in, and a pipeline runs in order on one connection.
        self.run(&pipeline).await?;
        self.query::<()>(
            redis::cmd("SET")
                .arg(&self.prefix)
                .arg(pointer)
                .arg("EX")
                .arg(seconds),
        )
        .await?;
        self.kept.push_back((generation, chunks.len()));
        while self.kept.len() > 2 {
            if let Some((old, count)) = self.kept.pop_front() {
                let mut delete = redis::cmd("DEL");
                delete.arg(self.manifest_key(old));
                for index in 0..count {
                    delete.arg(self.chunk_key(old, index));
                }
                // Best effort: the TTL removes them anyway.
                let _ = self.query::<()>(&delete).await;
            }
        }
        Ok(())
    }
}
