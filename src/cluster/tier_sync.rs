//! Runtime tier assignments (`PUT`/`DELETE /v1/tiers/...`), the same on
//! every node: the newest change to each assignment wins.
//!
//! Each assignment is one gossiped value per node, under
//! `tier:{token|user|ip|endpoint}:{id}`, holding the tier (empty once
//! removed), when it lapses (Unix ms, 0 for never: absolute, so every node
//! lets it lapse at the same moment), a Lamport version, the node where the
//! change was made, and an HMAC under the cluster secret over all of them. Every node gossips every assignment it holds, so one
//! that joins later learns them from any peer. Per assignment, a
//! `crdts::LWWReg` keyed by (version, origin) keeps the newest.

use std::collections::HashMap;

use crdts::LWWReg;
use serde::{Deserialize, Serialize};
use tracing::warn;
use weir_cluster::frame::Sealer;

use crate::clock::{Nanos, MILLI};
use crate::engine::{Engine, Subject};

/// Prefix of the gossiped keys.
pub const PREFIX: &str = "tier:";

/// Most assignments replicated; beyond, changes stay on their node (the
/// gossip state of every node holds all of them).
pub const MAX_REPLICATED: usize = 10_000;

/// One assignment as gossiped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
struct Gossiped {
    /// Tier; empty for a removal.
    tier: String,
    /// Unix ms when it lapses; 0 for never.
    #[serde(default)]
    until_ms: u64,
    version: u64,
    origin: String,
    mac: String,
}

type Register = LWWReg<Gossiped, (u64, String)>;

/// One node's view of every replicated assignment.
#[derive(Debug)]
pub struct TierSync {
    me: String,
    clock: u64,
    assignments: HashMap<String, Register>,
    published: HashMap<String, (u64, String)>,
    warned: bool,
}

fn parse_key(key: &str) -> Option<(Subject, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (subject, id) = rest.split_once(':')?;
    Some((Subject::parse(subject)?, id))
}

impl Gossiped {
    fn sign(key: &str, tier: &str, until_ms: u64, version: u64, origin: &str, sealer: &Sealer) -> Self {
        let mut value = Self {
            tier: tier.into(),
            until_ms,
            version,
            origin: origin.into(),
            mac: String::new(),
        };
        value.mac = sealer.sign_hex(&value.parts(key, &version.to_le_bytes(), &until_ms.to_le_bytes()));
        value
    }

    fn parts<'a>(&'a self, key: &'a str, version: &'a [u8; 8], until: &'a [u8; 8]) -> [&'a [u8]; 5] {
        [
            key.as_bytes(),
            self.tier.as_bytes(),
            version,
            self.origin.as_bytes(),
            until,
        ]
    }

    fn authentic(&self, key: &str, sealer: &Sealer) -> bool {
        let (version, until) = (self.version.to_le_bytes(), self.until_ms.to_le_bytes());
        sealer.verify_hex(&self.parts(key, &version, &until), &self.mac)
    }

    /// When it lapses, in engine time (Unix ns).
    fn until(&self) -> Option<Nanos> {
        (self.until_ms > 0).then(|| self.until_ms.saturating_mul(MILLI))
    }
}

impl TierSync {
    /// A view for node `me`; starts recording the engine's local changes.
    pub fn new(me: &str, engine: &Engine) -> Self {
        engine.tier_overlay().record_changes();
        Self {
            me: me.into(),
            clock: 0,
            assignments: HashMap::new(),
            published: HashMap::new(),
            warned: false,
        }
    }

    /// One round: records local changes, takes in the `gossiped` (key,
    /// value) pairs of every peer, applies newer ones to the engine, and
    /// returns the values this node should gossip now.
    pub fn step<'a>(
        &mut self,
        engine: &Engine,
        sealer: &Sealer,
        gossiped: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(String, String)> {
        let overlay = engine.tier_overlay();
        for change in overlay.take_changes() {
            let key = format!("{PREFIX}{}:{}", change.subject.name(), change.id);
            if self.assignments.len() >= MAX_REPLICATED && !self.assignments.contains_key(&key) {
                self.warn_full();
                continue;
            }
            self.clock += 1;
            let tier = change.tier.as_deref().unwrap_or("");
            // Rounded up, so that a penalty never lapses early on a peer.
            let until_ms = change.until.map_or(0, |until| until.div_ceil(MILLI));
            let value = Gossiped::sign(&key, tier, until_ms, self.clock, &self.me, sealer);
            self.assignments
                .entry(key)
                .or_default()
                .update(value, (self.clock, self.me.clone()));
        }
        for (key, text) in gossiped {
            let Some((subject, id)) = parse_key(key) else {
                continue;
            };
            let value = match serde_json::from_str::<Gossiped>(text) {
                Ok(value) if value.authentic(key, sealer) => value,
                _ => {
                    warn!(
                        key,
                        "ignoring a gossiped tier assignment that fails authentication or decoding"
                    );
                    continue;
                }
            };
            if self.assignments.len() >= MAX_REPLICATED && !self.assignments.contains_key(key) {
                self.warn_full();
                continue;
            }
            self.clock = self.clock.max(value.version);
            let register = self.assignments.entry(key.to_string()).or_default();
            let marker = (value.version, value.origin.clone());
            if marker > register.marker {
                let tier = (!value.tier.is_empty()).then_some(value.tier.as_str());
                if let Err(error) = overlay.apply(subject, id, tier, value.until()) {
                    warn!(%error, "a replicated tier assignment was refused");
                }
                register.update(value, marker);
            }
        }
        let mut publish = Vec::new();
        for (key, register) in &self.assignments {
            if self.published.get(key) != Some(&register.marker) {
                if let Ok(text) = serde_json::to_string(&register.val) {
                    publish.push((key.clone(), text));
                }
                self.published.insert(key.clone(), register.marker.clone());
            }
        }
        publish
    }

    fn warn_full(&mut self) {
        if !self.warned {
            warn!("over {MAX_REPLICATED} runtime tier assignments: further ones are not replicated");
            self.warned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::Config;

    fn engine() -> Engine {
        Engine::new(Config::builtin(), Arc::new(ManualClock::new(0)))
    }

    fn sealer() -> Sealer {
        Sealer::new(&[b"0123456789abcdef"], "test")
    }

    #[test]
    fn an_assignment_and_its_removal_travel_from_node_to_node() {
        let (a, b, sealer) = (engine(), engine(), sealer());
        let (mut sync_a, mut sync_b) = (TierSync::new("a", &a), TierSync::new("b", &b));
        a.assign_tier(Subject::Token, "tok-1", "paid", None).unwrap();
        let gossip = sync_a.step(&a, &sealer, std::iter::empty());
        assert_eq!(gossip.len(), 1);
        let pairs = || gossip.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let republished = sync_b.step(&b, &sealer, pairs());
        assert_eq!(
            b.tier_overlay().get(Subject::Token, "tok-1", 0).as_deref(),
            Some("paid")
        );
        // b gossips it too, for nodes that join later.
        assert_eq!(republished, gossip);
        assert!(a.tier_overlay().remove(Subject::Token, "tok-1"));
        let gossip = sync_a.step(&a, &sealer, std::iter::empty());
        let pairs = || gossip.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        sync_b.step(&b, &sealer, pairs());
        assert_eq!(b.tier_overlay().get(Subject::Token, "tok-1", 0), None);
    }

    #[test]
    fn a_forged_or_stale_assignment_changes_nothing() {
        let (b, sealer) = (engine(), sealer());
        let mut sync_b = TierSync::new("b", &b);
        let key = "tier:user:mallory";
        let forged = Gossiped::sign(
            key,
            "trusted",
            0,
            9,
            "evil",
            &Sealer::new(&[b"another-secret-000"], "test"),
        );
        let text = serde_json::to_string(&forged).unwrap();
        sync_b.step(&b, &sealer, [(key, text.as_str())].into_iter());
        assert_eq!(b.tier_overlay().get(Subject::User, "mallory", 0), None);
        let newer = serde_json::to_string(&Gossiped::sign(key, "paid", 0, 5, "a", &sealer)).unwrap();
        let older = serde_json::to_string(&Gossiped::sign(key, "trusted", 0, 4, "c", &sealer)).unwrap();
        sync_b.step(
            &b,
            &sealer,
            [(key, newer.as_str()), (key, older.as_str())].into_iter(),
        );
        assert_eq!(
            b.tier_overlay().get(Subject::User, "mallory", 0).as_deref(),
            Some("paid")
        );
    }

    #[test]
    fn a_penalty_on_an_ip_travels_with_its_expiry_and_lapses_everywhere() {
        let clock = Arc::new(ManualClock::new(1_800_000_000 * crate::clock::SECOND));
        let a = Engine::new(Config::builtin(), clock.clone());
        let b = Engine::new(Config::builtin(), clock.clone());
        let sealer = sealer();
        let (mut sync_a, mut sync_b) = (TierSync::new("a", &a), TierSync::new("b", &b));
        let lasting = Some(60 * crate::clock::SECOND);
        let until = a
            .assign_tier(Subject::Ip, "203.0.113.66", "trusted", lasting)
            .unwrap();
        let gossip = sync_a.step(&a, &sealer, std::iter::empty());
        let pairs = || gossip.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        sync_b.step(&b, &sealer, pairs());
        let now = clock.now();
        let on_b = b
            .tier_overlay()
            .assigned(Subject::Ip, "203.0.113.66", now)
            .unwrap();
        assert_eq!(on_b.tier, "trusted");
        assert_eq!(on_b.until, until);
        // A tampered expiry fails authentication.
        let (key, text) = &gossip[0];
        let longer = text.replace(&format!("{}", until.unwrap() / MILLI), "99999999999999");
        let c = engine();
        TierSync::new("c", &c).step(&c, &sealer, [(key.as_str(), longer.as_str())].into_iter());
        assert_eq!(c.tier_overlay().get(Subject::Ip, "203.0.113.66", 0), None);
        clock.advance(std::time::Duration::from_secs(60));
        assert_eq!(
            b.tier_overlay().get(Subject::Ip, "203.0.113.66", clock.now()),
            None
        );
        assert_eq!(b.tier_overlay().sweep(clock.now()), 1);
    }
}
