//! Following publishers: mirroring every manifest a publisher signs, as it announces them.
//!
//! The followed publishers are kept in the repo's metadata (`follow/<peer-id>`), with a name
//! for people and the gossipsub topic their announcements are read from (the hints topic
//! unless one is given). While the daemon runs, [`Follower`] listens on those topics for
//! availability hints marked as manifests. For each one it fetches the manifest block, checks
//! that a followed publisher signed it, fetches the whole DAG with Bitswap (from the
//! announcer, connected peers, or providers found on the DHT), pins it recursively under the
//! name `follow <peer-id>`, and announces it in turn. It then walks the manifest's `prev`
//! chain, so that manifests announced while this node was away are mirrored too, until it
//! reaches one it already holds. A publisher's daemon announces its newest manifest again
//! every `Manifest.AnnounceInterval`, so a follower that starts later catches up within that
//! time even if the publisher signs nothing new.
//!
//! `Follow.Quota` caps what all followed collections may hold together: a manifest whose DAG
//! would take the total over it is skipped (logged and counted), and older ones that still fit
//! are mirrored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_merkle::Cid;
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::manifest::{check_signature, decode, Signature};
use crate::net::session::Order;
use crate::net::{hints, Network, PubsubMessage, SharedStore};
use crate::node::{IpfsPath, Node, NodeError};
use crate::online::NodeStore;
use crate::store::{PinMode, PinOwner};
use crate::BlockStore;

/// The metadata prefix of followed publishers.
const PREFIX: &str = "follow/";
/// The pin name prefix of mirrored manifests.
pub const PIN_PREFIX: &str = crate::node::FOLLOW_PIN_PREFIX;
/// The most manifests one walk of a `prev` chain visits.
const MAX_CHAIN: usize = 100_000;
/// Blocks requested at once while a DAG is mirrored.
const FETCH_WINDOW: usize = 32;

/// A followed publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publisher {
    /// Its peer ID.
    pub peer: String,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// The topic its announcements are read from (empty: the hints topic).
    #[serde(default)]
    pub topic: String,
}

impl Publisher {
    /// The topic to listen on.
    pub fn topic(&self) -> &str {
        if self.topic.is_empty() {
            hints::TOPIC
        } else {
            &self.topic
        }
    }
}

/// The followed publishers, by peer ID.
pub fn publishers(node: &Node) -> Result<BTreeMap<String, Publisher>, NodeError> {
    let list: Vec<Publisher> = node.repo().store().meta_records(PREFIX, "follow")?;
    Ok(list.into_iter().map(|p| (p.peer.clone(), p)).collect())
}

/// Follows `p` (replacing how it was followed before). Its peer ID must parse.
pub fn add(node: &Node, p: &Publisher) -> Result<(), NodeError> {
    p.peer.parse::<PeerId>().map_err(|e| NodeError::BadPath(p.peer.clone(), format!("not a peer ID: {e}")))?;
    let v = serde_json::to_vec(p).unwrap_or_default();
    Ok(node.repo().store().update_meta(&[(format!("{PREFIX}{}", p.peer).as_bytes(), &v)], &[])?)
}

/// Stops following `peer`; returns whether it was followed. With `unpin`, the pins of its
/// mirrored manifests go too (their blocks at the next GC).
pub fn remove(node: &Node, peer: &str, unpin: bool) -> Result<bool, NodeError> {
    let key = format!("{PREFIX}{peer}");
    let was = node.repo().store().get_meta(key.as_bytes())?.is_some();
    node.repo().store().update_meta(&[], &[key.as_bytes()])?;
    if unpin {
        let owner = PinOwner::Follow(peer.to_owned());
        for pin in node.pins()? {
            if pin.owner == owner {
                node.pin_rm_as(&owner, &IpfsPath { root: pin.cid, rest: String::new() })?;
            }
        }
    }
    Ok(was)
}

/// Bytes held for followed publishers: the sum of the sizes their mirrored manifests declare.
pub fn followed_bytes(node: &Node) -> Result<u64, NodeError> {
    let mut total = 0;
    for pin in node.pins()? {
        if matches!(pin.owner, PinOwner::Follow(_)) {
            if let Some(data) = node.repo().store().get(&pin.cid)? {
                if let Ok(m) = decode(&pin.cid, &data) {
                    total += m.size;
                }
            }
        }
    }
    Ok(total)
}

/// The follower's counters, for the metrics.
#[derive(Debug, Default)]
pub struct FollowStats {
    /// Manifests mirrored since the daemon started.
    pub mirrored: AtomicU64,
    /// Manifests skipped for the quota.
    pub over_quota: AtomicU64,
    /// Manifest announcements refused (not a manifest, a bad signature, not followed).
    pub refused: AtomicU64,
    /// Mirrors that failed (a block not found in time...), tried again at the next hint.
    pub failed: AtomicU64,
}

/// The running follower.
#[derive(Debug)]
pub struct Follower {
    node: Arc<Node>,
    net: Network,
    /// How long each block may take.
    timeout: Duration,
    quota: Option<u64>,
    stats: Arc<FollowStats>,
    followed: Mutex<HashMap<PeerId, Publisher>>,
    topics: tokio::sync::Mutex<HashSet<String>>,
    /// Where the topic readers send what they hear.
    inbox: mpsc::Sender<PubsubMessage>,
    /// Manifests being mirrored now.
    busy: Mutex<HashSet<Cid>>,
}

impl Follower {
    /// Starts following the publishers stored in `node`'s repo through `net`.
    pub async fn start(
        node: Arc<Node>,
        net: Network,
        timeout: Duration,
        quota: Option<u64>,
    ) -> Result<Arc<Follower>, NodeError> {
        let (inbox, mut rx) = mpsc::channel(256);
        let follower = Arc::new(Follower {
            node: node.clone(),
            net,
            timeout,
            quota,
            stats: Arc::default(),
            followed: Mutex::new(HashMap::new()),
            topics: tokio::sync::Mutex::new(HashSet::new()),
            inbox,
            busy: Mutex::new(HashSet::new()),
        });
        for p in publishers(&node)?.into_values() {
            follower.follow(p).await?;
        }
        let f = follower.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                f.heard(m);
            }
        });
        Ok(follower)
    }

    /// The counters.
    pub fn stats(&self) -> Arc<FollowStats> {
        self.stats.clone()
    }

    /// Follows `p` from now on (the caller stores it with [`add`]).
    pub async fn follow(&self, p: Publisher) -> Result<(), NodeError> {
        let peer = p.peer.parse::<PeerId>().map_err(|e| NodeError::BadPath(p.peer.clone(), e.to_string()))?;
        let topic = p.topic().to_owned();
        self.followed.lock().map_err(|_| NodeError::Poisoned)?.insert(peer, p);
        let mut topics = self.topics.lock().await;
        if topics.insert(topic.clone()) {
            match self.net.subscribe(&topic).await {
                Ok(mut rx) => {
                    let inbox = self.inbox.clone();
                    tokio::spawn(async move {
                        while let Some(m) = rx.recv().await {
                            if inbox.send(m).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                Err(e) => {
                    topics.remove(&topic);
                    tracing::warn!(%topic, error = %e, "cannot subscribe to a followed topic");
                }
            }
        }
        Ok(())
    }

    /// Stops following `peer` (the caller removes it with [`remove`]).
    pub fn unfollow(&self, peer: &str) {
        if let (Ok(peer), Ok(mut f)) = (peer.parse::<PeerId>(), self.followed.lock()) {
            f.remove(&peer);
        }
    }

    fn is_followed(&self, peer: &str) -> bool {
        let Ok(peer) = peer.parse::<PeerId>() else { return false };
        self.followed.lock().is_ok_and(|f| f.contains_key(&peer))
    }

    /// A message on a followed topic: a manifest hint starts a mirror, if a followed
    /// publisher signed the message. Anyone else's hint is refused before a byte is fetched:
    /// only a followed publisher's own announcement can make this node fetch (the manifest's
    /// signature is checked again once it is here).
    fn heard(self: &Arc<Self>, m: PubsubMessage) {
        let Some(from) = m.from else { return };
        let Ok(hint) = hints::decode(from, &m.data) else { return };
        if !hint.manifest {
            return;
        }
        if !self.followed.lock().is_ok_and(|f| f.contains_key(&from)) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, root = %hint.root, "manifest hint from a peer not followed: refused unfetched");
            return;
        }
        let f = self.clone();
        tokio::spawn(async move { f.mirror_chain(hint.root).await });
    }

    /// Mirrors `newest` and the manifests before it, up to the first one already held.
    pub async fn mirror_chain(&self, newest: Cid) {
        let mut next = Some(newest);
        let mut walked = 0;
        while let Some(cid) = next.take() {
            walked += 1;
            if walked > MAX_CHAIN {
                break;
            }
            // Another walk on the same manifest (heard from two peers at once) goes on alone.
            if !self.busy.lock().is_ok_and(|mut b| b.insert(cid)) {
                break;
            }
            let step = self.mirror(cid).await;
            if let Ok(mut b) = self.busy.lock() {
                b.remove(&cid);
            }
            match step {
                Ok(Step::Held) => break,
                Ok(Step::Mirrored(prev) | Step::OverQuota(prev)) => next = prev,
                Ok(Step::Refused(why)) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%cid, why, "manifest announcement refused");
                    break;
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%cid, error = %e, "cannot mirror a followed manifest yet");
                    break;
                }
            }
        }
    }

    async fn mirror(&self, cid: Cid) -> Result<Step, MirrorError> {
        let node = self.node.clone();
        let (held, local) = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
            Ok((node.pins_of(&cid)?, node.repo().store().get(&cid)?))
        })
        .await??;
        // Mirrored already when a followed publisher's pin holds it (the operator's pin of
        // the same manifest is the operator's, and may go).
        if held.iter().any(|p| p.mode == PinMode::Recursive && matches!(p.owner, PinOwner::Follow(_))) {
            return Ok(Step::Held);
        }
        let data = match local {
            Some(d) => d,
            None => self.net.fetch(cid, self.timeout).await?,
        };
        let manifest = match decode(&cid, &data) {
            Ok(m) => m,
            Err(e) => return Ok(Step::Refused(e.to_string())),
        };
        if !self.is_followed(&manifest.publisher) {
            return Ok(Step::Refused(format!("{} is not followed", manifest.publisher)));
        }
        if let Signature::Invalid(why) = check_signature(&manifest) {
            return Ok(Step::Refused(format!("bad signature: {why}")));
        }
        if let Some(quota) = self.quota {
            let node = self.node.clone();
            let used = tokio::task::spawn_blocking(move || followed_bytes(&node)).await??;
            if used.saturating_add(manifest.size) > quota {
                self.stats.over_quota.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%cid, size = manifest.size, used, quota, "followed manifest skipped: over Follow.Quota");
                return Ok(Step::OverQuota(manifest.prev));
            }
        }
        let store: SharedStore = Arc::new(NodeStore(self.node.clone()));
        self.net.fetch_dag(&store, cid, Order::File, FETCH_WINDOW, self.timeout).await?;
        let (node, name) = (self.node.clone(), format!("{PIN_PREFIX}{}", manifest.publisher));
        let owner = PinOwner::Follow(manifest.publisher.clone());
        tokio::task::spawn_blocking(move || {
            node.pin_add_as(owner, &IpfsPath { root: cid, rest: String::new() }, true, Some(name))
        })
        .await??;
        self.stats.mirrored.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%cid, publisher = %manifest.publisher, name = %manifest.name, size = manifest.size, "mirrored a followed manifest");
        self.net.provide_later(vec![cid, manifest.root]).await;
        self.net.announce_manifest(cid, manifest.size, Vec::new()).await;
        Ok(Step::Mirrored(manifest.prev))
    }
}

/// What one manifest of a chain came to.
/// Why a followed manifest could not be mirrored yet (it is tried again later).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The repo failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The manifest's block could not be fetched.
    #[error(transparent)]
    Fetch(#[from] crate::net::bitswap::engine::FetchError),
    /// The DAG could not be fetched.
    #[error(transparent)]
    Dag(#[from] crate::net::session::DagError),
    /// A task of the mirroring was lost (it panicked).
    #[error("a mirroring task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

enum Step {
    /// Already pinned: the chain before it is too.
    Held,
    /// Mirrored now; the one before it.
    Mirrored(Option<Cid>),
    /// Skipped for the quota; the one before it.
    OverQuota(Option<Cid>),
    /// Not a followed publisher's valid manifest.
    Refused(String),
}

/// Announces this node's newest manifest every `interval` (on the hints topic and `topics`),
/// so that followers who missed it, or started later, find the chain.
pub async fn reannounce_head(node: Arc<Node>, net: Network, interval: Duration, topics: Vec<String>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let n = node.clone();
        let head = tokio::task::spawn_blocking(move || -> Result<Option<(Cid, u64)>, NodeError> {
            let Some(cid) = n.manifest_head()? else { return Ok(None) };
            let size = n.repo().store().get(&cid)?.and_then(|d| decode(&cid, &d).ok()).map_or(0, |m| m.size);
            Ok(Some((cid, size)))
        })
        .await;
        if let Ok(Ok(Some((cid, size)))) = head {
            net.announce_manifest(cid, size, topics.clone()).await;
        }
    }
}
