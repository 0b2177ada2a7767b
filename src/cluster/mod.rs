//! A weir node in a cluster: membership by gossip, the counter sync, the
//! config sync, and what `GET /v1/cluster` reports.
//!
//! [`ClusterNode::start`] takes its gossip transport and its sync socket as
//! arguments, and every timer is tokio's, so that whole nodes run inside a
//! simulated network (turmoil) in tests exactly as they run in production.
//!
//! - [`sync`]: counters out and in.
//! - [`config_sync`]: the newest config wins everywhere.
//! - [`tier_sync`]: so does the newest change to each tier assignment.
//! - [`keyring`]: the cluster secrets, and their reload on a running node.
//! - [`status`]: the member list and sync statistics.
//!
//! The accuracy rules that use the cluster's shape live with the engine
//! ([`crate::engine::share`]).

pub mod config_sync;
pub mod join_watch;
pub mod keyring;
pub mod peer_http;
pub mod status;
pub mod sync;
pub mod tier_sync;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{error, info};
use weir_cluster::frame::{FrameError, RingStatus, Sealer, MIN_SECRET_BYTES};
use weir_cluster::gossip::{GossipStats, SealedGossip};
use weir_cluster::membership::{keys, ClusterShape, Member, Membership, MembershipConfig};
use weir_cluster::transport::Datagram;

use crate::clock::{Nanos, MILLI};
use crate::engine::Engine;
use config_sync::ConfigSync;
use join_watch::{JoinWatch, Round, Trouble};
pub use keyring::KeyringSource;
pub use status::SyncStats;
use tier_sync::TierSync;

/// Most secrets in the keyring: each is tried on every datagram.
pub const MAX_SECRETS: usize = 4;

/// How this node joins its cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Unique in the cluster.
    pub node_id: String,
    /// Only nodes with the same id form a cluster.
    pub cluster_id: String,
    /// The keyring: every secret opens datagrams and verifies signatures,
    /// the first seals and signs (see [`weir_cluster::frame::Sealer`]).
    /// Read at start, and again on a reload.
    pub keyring: KeyringSource,
    /// How long a secret dropped from the keyring by a reload is still
    /// accepted.
    pub secret_grace: Duration,
    /// Where the gossip socket (UDP) binds.
    pub gossip_addr: SocketAddr,
    /// Where peers reach this node's gossip socket; the counter-sync
    /// address is advertised on the same host.
    pub advertise_addr: SocketAddr,
    /// Where the counter-sync socket (UDP) binds.
    pub sync_addr: SocketAddr,
    /// `host:port` gossip addresses of other nodes.
    pub seeds: Vec<String>,
    /// Time between counter syncs.
    pub sync_interval: Duration,
    /// Time between resends of recently used keys.
    pub resend_interval: Duration,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// How long a dead node is remembered (and counted, see
    /// [`crate::engine::share`]) before it is forgotten.
    pub dead_node_grace: Duration,
    /// This node's HTTP address, gossiped for operators.
    pub http_addr: Option<SocketAddr>,
    /// Whether the nodes serve HTTP over TLS (`--tls-cert`): peers then
    /// speak TLS to each other's HTTP port.
    pub http_tls: bool,
    /// The cluster CA (a PEM file) that peers' TLS certificates must chain
    /// to (`--peer-ca`); unchecked without it.
    pub peer_ca: Option<std::path::PathBuf>,
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that cannot work.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Gossip could not start.
    #[error(transparent)]
    Gossip(#[from] weir_cluster::membership::MembershipError),
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// No secret, a secret too short to protect anything, or too many.
    #[error("give 1 to {MAX_SECRETS} cluster secrets of at least {MIN_SECRET_BYTES} bytes each")]
    ShortSecret,
    /// The keyring's file could not be read, or holds no secret.
    #[error("cluster keyring: {0}")]
    Keyring(String),
    /// An empty or oversized node or cluster id.
    #[error("{0} must be 1 to 128 characters")]
    BadId(&'static str),
    /// An interval out of range.
    #[error("{0} must be between {1:?} and {2:?}")]
    Interval(&'static str, Duration, Duration),
    /// The cluster CA cannot be used.
    #[error("{0}")]
    PeerCa(String),
}

/// Checks a keyring: 1 to [`MAX_SECRETS`] secrets of at least
/// [`MIN_SECRET_BYTES`] each.
///
/// # Errors
/// [`SettingsError::ShortSecret`].
pub fn check_keyring(secrets: &[Vec<u8>]) -> Result<(), SettingsError> {
    if secrets.is_empty() || secrets.len() > MAX_SECRETS || secrets.iter().any(|s| s.len() < MIN_SECRET_BYTES)
    {
        return Err(SettingsError::ShortSecret);
    }
    Ok(())
}

impl Settings {
    /// Checks every setting.
    ///
    /// # Errors
    /// The first [`SettingsError`] found.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_keyring(&self.keyring.read().map_err(SettingsError::Keyring)?)?;
        for (name, id) in [("node id", &self.node_id), ("cluster id", &self.cluster_id)] {
            if id.is_empty() || id.len() > 128 {
                return Err(SettingsError::BadId(name));
            }
        }
        let ms = Duration::from_millis;
        let ranges = [
            ("sync interval", self.sync_interval, ms(5), ms(10_000)),
            (
                "resend interval",
                self.resend_interval,
                self.sync_interval,
                ms(60_000),
            ),
            ("gossip interval", self.gossip_interval, ms(10), ms(10_000)),
            ("dead node grace", self.dead_node_grace, ms(1_000), ms(86_400_000)),
        ];
        for (name, value, low, high) in ranges {
            if value < low || value > high {
                return Err(SettingsError::Interval(name, low, high));
            }
        }
        Ok(())
    }

    /// The counter-sync address peers use: the advertised host, the sync
    /// port.
    pub fn advertised_sync_addr(&self) -> SocketAddr {
        SocketAddr::new(self.advertise_addr.ip(), self.sync_addr.port())
    }
}

/// What the loops share.
pub struct Shared {
    engine: Arc<Engine>,
    settings: Settings,
    generation: u64,
    sealer: Sealer,
    stats: SyncStats,
    gossip_stats: Arc<GossipStats>,
    view: Mutex<View>,
    /// Set when a peer is heard after a gap: the sender resends recent keys
    /// at once.
    resend_now: std::sync::atomic::AtomicBool,
    /// Whether this node can be part of its cluster (a wrong secret, seeds
    /// that never answer).
    join: Mutex<JoinWatch>,
    /// Peer request signatures taken, against replays.
    seen_signatures: Mutex<peer_http::SeenSignatures>,
    /// The TLS client for peers' HTTP ports, when they serve TLS.
    peer_tls: Option<Arc<rustls::ClientConfig>>,
}

/// The latest membership round, as the other loops read it.
#[derive(Default)]
struct View {
    /// Members as gossip last reported them.
    gossiped: Vec<Member>,
    /// The same, with reachability from sync frames applied.
    members: Vec<Member>,
    shape: Option<ClusterShape>,
    targets: Vec<SocketAddr>,
    /// Per node id: last frame received (engine time), its lag, and count.
    frames: HashMap<String, status::PeerFrames>,
}

impl Shared {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self) -> std::sync::MutexGuard<'_, JoinWatch> {
        // Every step leaves the watch whole.
        self.join.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches for a node that cannot be part of the cluster, after a
    /// membership round; logs what it finds at ERROR.
    fn watch_joining(&self) {
        let live_peers = self.view().shape.map_or(0, |s| s.live.saturating_sub(1) as usize);
        let round = Round {
            now: self.engine.now(),
            live_peers,
            foreign: self.gossip_stats.rejected.count_of(FrameError::Auth),
            foreign_from: self.gossip_stats.last_foreign(),
        };
        for trouble in self.join().step(round) {
            match trouble {
                Trouble::Foreign { from } => error!(
                    from = ?from,
                    "gossip from another node fails authentication: it (or this node) has another cluster secret or cluster id, so the two cannot form one cluster"
                ),
                Trouble::Alone { seconds } => error!(
                    seconds,
                    seeds = ?self.settings.seeds,
                    "no peer heard from: the seeds are down or unreachable, or they have another cluster secret or cluster id; this node enforces every limit alone"
                ),
            }
        }
    }

    /// What `/readyz` shows of the cluster: whether this node is alone
    /// although it has seeds, and gossip that failed authentication.
    fn joining(&self) -> serde_json::Value {
        self.join().describe(self.engine.now())
    }

    /// Sync addresses of the live peers.
    fn targets(&self) -> Vec<SocketAddr> {
        self.view().targets.clone()
    }

    /// Notes a frame from `node_id` as a sign that it is reachable. A frame
    /// no newer than the last one heard from that incarnation is a replay
    /// (or reordered): its counts merge harmlessly, but it says nothing of
    /// whether the peer is reachable now.
    fn note_frame(&self, node_id: &str, generation: u64, now: Nanos, sent_at: Nanos) {
        let reach_timeout = self.reach_timeout();
        let mut view = self.view();
        let frames = view.frames.entry(node_id.to_string()).or_default();
        let replayed = frames.count > 0
            && (generation < frames.generation
                || (generation == frames.generation && sent_at <= frames.last_sent));
        if replayed {
            return;
        }
        if frames.count == 0
            || frames.generation != generation
            || now.saturating_sub(frames.last_at) > reach_timeout
        {
            // Heard from a new, restarted or returning peer: send it the
            // recent counts now rather than at the next resend.
            self.resend_now.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        frames.generation = generation;
        frames.last_at = now;
        frames.last_sent = sent_at;
        frames.lag = now as i64 - sent_at as i64;
        frames.count += 1;
    }

    /// How long a live member may go without a sync frame (every node sends
    /// one each interval, heartbeats included) before it counts as cut off:
    /// much sooner than gossip's failure detector, which bounds how long a
    /// partition runs at full limits.
    fn reach_timeout(&self) -> Nanos {
        let settings = &self.settings;
        (settings.sync_interval * 12)
            .max(settings.gossip_interval * 3)
            .as_nanos() as Nanos
    }

    /// Takes a new member list from gossip and refreshes the view.
    fn set_members(&self, members: Vec<Member>) {
        let mut view = self.view();
        let known: Vec<&str> = members.iter().map(|m| m.node_id.as_str()).collect();
        view.frames.retain(|id, _| known.contains(&id.as_str()));
        view.gossiped = members;
        self.refresh_view(&mut view);
    }

    /// Works out who is reachable now; the sender calls it every sync
    /// interval, so that a cut-off peer is noticed within one interval of
    /// [`reach_timeout`](Self::reach_timeout), not at the next gossip round.
    fn refresh(&self) {
        self.refresh_view(&mut self.view());
    }

    /// The shape goes to the engine, the targets to the sender. For a member
    /// whose sync frames this node has had, the frames decide reachability
    /// (they come every sync interval; gossip's verdict takes seconds either
    /// way); for the others, gossip decides.
    fn refresh_view(&self, view: &mut View) {
        let now = self.engine.now();
        let mut members = view.gossiped.clone();
        for member in members.iter_mut().filter(|m| !m.is_self && !m.leaving()) {
            let heard = view
                .frames
                .get(&member.node_id)
                .filter(|f| f.generation == member.generation);
            if let Some(frames) = heard {
                member.live = now.saturating_sub(frames.last_at) <= self.reach_timeout();
            }
        }
        let shape = ClusterShape::of(&members);
        self.engine
            .cluster_view()
            .update(shape, self.settings.sync_interval.as_nanos() as Nanos);
        // Cut-off members still get frames: that is how they are heard again.
        view.targets = members
            .iter()
            .filter(|m| !m.is_self && !m.leaving())
            .filter(|m| m.live || view.frames.contains_key(&m.node_id))
            .filter_map(Member::sync_addr)
            .collect();
        if view.shape != Some(shape) {
            info!(
                live = shape.live,
                expected = shape.expected,
                "cluster shape changed"
            );
        }
        view.members = members;
        view.shape = Some(shape);
    }
}

/// A running cluster node.
pub struct ClusterNode {
    shared: Arc<Shared>,
    membership: Arc<Membership>,
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterNode {
    /// Joins the cluster: starts gossip over `gossip_socket` and the counter
    /// sync over `sync_socket` (each already bound to its address), both
    /// sealed under the settings' keyring.
    ///
    /// # Errors
    /// [`StartError`] for invalid settings or gossip that cannot start.
    pub async fn start<G: Datagram, D: Datagram>(
        engine: Arc<Engine>,
        settings: Settings,
        gossip_socket: G,
        sync_socket: D,
    ) -> Result<Self, StartError> {
        settings.validate()?;
        let peer_tls = match settings.http_tls {
            true => Some(peer_http::client_tls(settings.peer_ca.as_deref()).map_err(SettingsError::PeerCa)?),
            false => None,
        };
        let secrets = settings.keyring.read().map_err(SettingsError::Keyring)?;
        let sealer = Sealer::new(&secrets, &settings.cluster_id);
        let gossip_stats = Arc::<GossipStats>::default();
        let clock = engine.clone();
        let gossip = SealedGossip::new(
            gossip_socket,
            sealer.clone(),
            gossip_stats.clone(),
            Arc::new(move || clock.now() / MILLI),
        );
        let generation = engine.generation();
        let mut values = vec![(
            keys::SYNC_ADDR.to_string(),
            settings.advertised_sync_addr().to_string(),
        )];
        if let Some(http) = settings.http_addr {
            // Peers dial it (the usage API asks them for their counts): a
            // wildcard bind is advertised on the advertise host.
            let ip = match http.ip().is_unspecified() {
                true => settings.advertise_addr.ip(),
                false => http.ip(),
            };
            values.push((
                keys::HTTP_ADDR.to_string(),
                SocketAddr::new(ip, http.port()).to_string(),
            ));
        }
        let membership = Membership::start(
            MembershipConfig {
                node_id: settings.node_id.clone(),
                generation,
                listen_addr: settings.gossip_addr,
                advertise_addr: settings.advertise_addr,
                seeds: settings.seeds.clone(),
                cluster_id: settings.cluster_id.clone(),
                gossip_interval: settings.gossip_interval,
                dead_node_grace: settings.dead_node_grace,
            },
            values,
            &gossip,
        )
        .await?;
        let shared = Arc::new(Shared {
            sealer,
            gossip_stats,
            generation,
            stats: SyncStats::default(),
            join: Mutex::new(JoinWatch::new(engine.now(), !settings.seeds.is_empty())),
            seen_signatures: Mutex::default(),
            peer_tls,
            view: Mutex::default(),
            resend_now: Default::default(),
            engine,
            settings,
        });
        let membership = Arc::new(membership);
        let socket = Arc::new(sync_socket);
        let tasks = vec![
            tokio::spawn(membership_loop(shared.clone(), membership.clone())),
            tokio::spawn(sync::send_loop(shared.clone(), socket.clone())),
            tokio::spawn(sync::receive_loop(shared.clone(), socket)),
        ];
        info!(
            node = %shared.settings.node_id,
            cluster = %shared.settings.cluster_id,
            gossip = %shared.settings.gossip_addr,
            sync = %shared.settings.sync_addr,
            seeds = ?shared.settings.seeds,
            "cluster node started"
        );
        Ok(Self {
            shared,
            membership,
            tasks,
        })
    }

    /// What `GET /v1/cluster` reports.
    pub fn status(&self) -> serde_json::Value {
        status::describe(&self.shared)
    }

    /// Whether this node can be part of its cluster, for `/readyz` (see
    /// [`join_watch`]).
    pub fn joining(&self) -> serde_json::Value {
        self.shared.joining()
    }

    /// Whether this node has seeds but has heard no peer for a while.
    pub fn alone(&self) -> bool {
        self.shared.join().alone(self.shared.engine.now())
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.settings.node_id
    }

    /// The TLS client for peers' HTTP ports, when they serve TLS.
    pub fn peer_tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.shared.peer_tls.clone()
    }

    /// Whether peers' certificates are checked against a cluster CA.
    pub fn peer_ca_checked(&self) -> bool {
        self.shared.settings.peer_ca.is_some()
    }

    /// Peers still in the member list and not leaving: id, the HTTP
    /// address they gossip (if any), and whether they are live.
    pub fn peers(&self) -> Vec<(String, Option<SocketAddr>, bool)> {
        let view = self.shared.view();
        view.members
            .iter()
            .filter(|m| !m.is_self && !m.leaving())
            .map(|m| {
                let http = m.values.get(keys::HTTP_ADDR).and_then(|a| a.parse().ok());
                (m.node_id.clone(), http, m.live)
            })
            .collect()
    }

    /// Signs a request from this node to a peer's HTTP API (see
    /// [`peer_http`]): the [`peer_http::PEER_HEADER`] value, with a nonce
    /// unique to this request.
    pub fn sign_peer_request(&self, request: &peer_http::Signed<'_>, unix_secs: u64) -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SENT: AtomicU64 = AtomicU64::new(0);
        // Unique to this request: this incarnation, and a count.
        let nonce = format!(
            "{:x}.{:x}",
            self.shared.generation,
            SENT.fetch_add(1, Ordering::Relaxed)
        );
        peer_http::sign(&self.shared.sealer, request, unix_secs, &nonce)
    }

    /// Reads the keyring again and puts it in force, the sealing secret
    /// first, for gossip, the counter sync and peer requests alike: a
    /// secret rotated on a running node (SIGHUP or `POST
    /// /v1/cluster/keyring`, with `--cluster-secret-file`). Secrets it drops
    /// are accepted for the grace period still.
    ///
    /// # Errors
    /// A keyring that cannot be read or cannot work; the one in force
    /// stays.
    pub fn reload_keyring(&self) -> Result<RingStatus, SettingsError> {
        let reloaded = self
            .shared
            .settings
            .keyring
            .read()
            .map_err(SettingsError::Keyring)
            .and_then(|secrets| {
                check_keyring(&secrets)?;
                self.shared
                    .sealer
                    .rekey(&secrets, self.shared.settings.secret_grace);
                Ok(self.shared.sealer.status())
            });
        // The secrets themselves are never logged: their count only.
        match &reloaded {
            Ok(ring) => info!(
                secrets = ring.keys,
                retiring = ring.retiring,
                retiring_secs = ring.retiring_for.as_secs(),
                "cluster keyring reloaded"
            ),
            Err(problem) => error!(%problem, "cluster keyring reload failed; keeping the running keyring"),
        }
        reloaded
    }

    /// Whether the keyring has a file to reload from.
    pub fn keyring_reloads(&self) -> bool {
        self.shared.settings.keyring.file.is_some()
    }

    /// This cluster's signature of `parts`, as hex: what any node of the
    /// cluster can verify ([`verify_parts`](Self::verify_parts)).
    pub fn sign_parts(&self, parts: &[&[u8]]) -> String {
        self.shared.sealer.sign_hex(parts)
    }

    /// Whether `mac` is this cluster's signature of `parts` (under any of
    /// its secrets).
    pub fn verify_parts(&self, parts: &[&[u8]], mac: &str) -> bool {
        self.shared.sealer.verify_hex(parts, mac)
    }

    /// Whether `mac` is this cluster's signature of `parts`.
    pub(crate) fn verify_peer_request(&self, parts: &[&[u8]], mac: &str) -> bool {
        self.shared.sealer.verify_hex(parts, mac)
    }

    /// Takes a peer request's signature once: false for one seen before.
    pub(crate) fn first_use(&self, mac: &str, at: u64, now: u64) -> bool {
        let mut seen = self
            .shared
            .seen_signatures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.first_use(mac, at, now)
    }

    /// Per live peer: seconds since its last sync frame (`None` before the
    /// first), for metrics.
    pub fn sync_ages(&self) -> Vec<(String, Option<f64>)> {
        let now = self.shared.engine.now();
        let view = self.shared.view();
        view.members
            .iter()
            .filter(|m| !m.is_self && !m.leaving())
            .map(|m| {
                let frames = view
                    .frames
                    .get(&m.node_id)
                    .filter(|f| f.generation == m.generation);
                let age = frames.map(|f| now.saturating_sub(f.last_at) as f64 / 1e9);
                (m.node_id.clone(), age)
            })
            .collect()
    }

    /// Sync statistics, for metrics.
    pub fn stats(&self) -> &SyncStats {
        &self.shared.stats
    }

    /// Gossip statistics, for metrics.
    pub fn gossip_stats(&self) -> &GossipStats {
        &self.shared.gossip_stats
    }

    /// The cluster's shape as last seen.
    pub fn shape(&self) -> Option<ClusterShape> {
        self.shared.view().shape
    }

    /// Leaves on purpose: tells peers (so they stop counting this node as
    /// part of the cluster at once), sends the last counts, then stops.
    pub async fn leave(self) {
        self.membership.set(keys::LEAVING, "1".into()).await;
        tokio::time::sleep(self.shared.settings.gossip_interval * 3 + self.shared.settings.sync_interval)
            .await;
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        if let Ok(membership) = Arc::try_unwrap(self.membership) {
            membership.shutdown().await;
        }
        info!("left the cluster");
    }
}

/// Every gossip interval: reads the member list, updates the engine's view,
/// and runs the config sync.
async fn membership_loop(shared: Arc<Shared>, membership: Arc<Membership>) {
    let mut ticks = tokio::time::interval(shared.settings.gossip_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut config = ConfigSync::new(&shared.settings.node_id, &shared.engine);
    let mut running = String::new();
    let mut tiers = TierSync::new(&shared.settings.node_id, &shared.engine);
    loop {
        ticks.tick().await;
        let members = membership.members().await;
        let peers = || members.iter().filter(|m| !m.is_self);
        let gossiped = peers().filter_map(|m| m.values.get(keys::CONFIG).map(String::as_str));
        if let Some(text) = config.step(&shared.engine, &shared.sealer, gossiped) {
            membership.set(keys::CONFIG, text).await;
        }
        let now_running = config_sync::running(&shared.engine);
        if now_running != running {
            membership.set(keys::RUNNING, now_running.clone()).await;
            running = now_running;
        }
        let assignments = peers().flat_map(|m| {
            m.values
                .range(tier_sync::PREFIX.to_string()..)
                .take_while(|(k, _)| k.starts_with(tier_sync::PREFIX))
                .map(|(k, v)| (k.as_str(), v.as_str()))
        });
        let publish = tiers.step(&shared.engine, &shared.sealer, assignments);
        if !publish.is_empty() {
            membership.set_many(publish).await;
        }
        let load = shared.engine.stats();
        membership
            .set(keys::LOAD, (load.allowed + load.denied).to_string())
            .await;
        shared.set_members(members);
        shared.watch_joining();
    }
}
