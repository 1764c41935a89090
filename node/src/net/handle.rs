//! The handle the rest of the node holds: [`Network`], cheap to clone, which talks to the
//! driver through [`Command`]s over a bounded channel and waits for the answers. Fetches
//! decide here, on the caller's task, when an HTTP origin is asked instead of the peers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_merkle::{Block, Cid};
use tokio::sync::{mpsc, oneshot};

use super::bitswap::engine::{FetchError, Stats};
use super::{bitswap, dht, origin, sweep};
use super::{Closest, DhtStats, Multiaddr, NetError, PeerId, PeerInfo, PortMapping, PubsubMessage};

/// What the handle asks of the driver.
pub(super) enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, NetError>>),
    Subscribe(String, mpsc::Sender<PubsubMessage>, oneshot::Sender<Result<(), NetError>>),
    Publish(String, Vec<u8>, oneshot::Sender<Result<(), NetError>>),
    TopicPeers(String, oneshot::Sender<Vec<PeerId>>),
    Score(PeerId, oneshot::Sender<Option<f64>>),
    Hint { root: Cid, size: u64, manifest: bool, topics: Vec<String> },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Fetch { cid: Cid, priority: i32, deadline: Instant, waiter: bitswap::engine::Waiter },
    // A block from elsewhere (the HTTP origin) to store like a peer's; the sender, if any,
    // hears once it is stored and its waiters answered.
    Deliver(Block, Option<oneshot::Sender<()>>),
    // What the peers said (`Engine::peers_answer`), and whether every one was told.
    PeersAnswer(Cid, oneshot::Sender<(Option<bool>, bool)>),
    Stats(oneshot::Sender<Stats>),
    Provide(Vec<Cid>, Option<oneshot::Sender<(u64, u64)>>),
    // `routers`: ask the delegated routers too.
    FindProviders { cid: Cid, max: usize, deadline: Instant, routers: bool, reply: oneshot::Sender<Vec<PeerId>> },
    DhtStats(oneshot::Sender<DhtStats>),
    // `connect`: dial the peers found (announcements follow).
    ClosestPeers { dht: dht::Dht, key: Vec<u8>, connect: bool, reply: oneshot::Sender<Closest> },
    PeerAddrs(Vec<PeerId>, oneshot::Sender<std::collections::HashMap<PeerId, Vec<Multiaddr>>>),
    ExternalAddrs(oneshot::Sender<Vec<Multiaddr>>),
    PortMapping(oneshot::Sender<PortMapping>),
    Shutdown,
}

/// A handle to the running network; cheap to clone.
#[derive(Clone, Debug)]
pub struct Network {
    pub(super) peer_id: PeerId,
    pub(super) listening: Vec<Multiaddr>,
    pub(super) tx: mpsc::Sender<Command>,
    /// DAG fetches ([`Network::fetch_dag`]) running now.
    pub(super) sessions: Arc<std::sync::atomic::AtomicU64>,
    /// HTTP origins, if configured.
    pub(super) origin: Option<Arc<origin::Origin>>,
    /// The runtime the network task runs on, for [`Network::fetch_blocking`].
    pub(super) runtime: tokio::runtime::Handle,
    /// Opens streams to peers without going through the driver.
    pub(super) streams: Streams,
}

/// A [`libp2p_stream::Control`], which has no `Debug`.
#[derive(Clone)]
pub(super) struct Streams(pub(super) libp2p_stream::Control);

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Streams")
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Dial(..) => "Dial",
            Command::Subscribe(..) => "Subscribe",
            Command::Publish(..) => "Publish",
            Command::TopicPeers(..) => "TopicPeers",
            Command::Score(..) => "Score",
            Command::Hint { .. } => "Hint",
            Command::Peers(_) => "Peers",
            Command::Fetch { .. } => "Fetch",
            Command::Deliver(..) => "Deliver",
            Command::Stats(_) => "Stats",
            Command::PeersAnswer(..) => "PeersAnswer",
            Command::Provide(..) => "Provide",
            Command::FindProviders { .. } => "FindProviders",
            Command::DhtStats(_) => "DhtStats",
            Command::ClosestPeers { .. } => "ClosestPeers",
            Command::PeerAddrs(..) => "PeerAddrs",
            Command::ExternalAddrs(_) => "ExternalAddrs",
            Command::PortMapping(_) => "PortMapping",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl Network {
    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the swarm listens on (ports resolved), each ending in `/p2p/<id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listening
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Connects to `addr` (which must end in `/p2p/<id>`) and returns the peer's ID.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.ask(Command::Peers).await
    }

    /// Subscribes to a gossipsub topic; messages arrive on the returned channel (a slow
    /// reader loses messages rather than holding the network up).
    pub async fn subscribe(&self, topic: &str) -> Result<mpsc::Receiver<PubsubMessage>, NetError> {
        let (tx, rx) = mpsc::channel(256);
        self.ask(|r| Command::Subscribe(topic.to_owned(), tx, r)).await??;
        Ok(rx)
    }

    /// Publishes `data` on a gossipsub topic.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        self.ask(|r| Command::Publish(topic.to_owned(), data, r)).await?
    }

    /// A peer's gossipsub score (negative after misbehaviour such as invalid hints).
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.ask(|r| Command::Score(peer, r)).await
    }

    /// The peers known to be subscribed to `topic`.
    pub async fn topic_peers(&self, topic: &str) -> Result<Vec<PeerId>, NetError> {
        self.ask(|r| Command::TopicPeers(topic.to_owned(), r)).await
    }

    /// Tells the network that this node holds the DAG under `root` (`size` bytes): an
    /// availability hint goes out on [`hints::TOPIC`].
    pub async fn announce_root(&self, root: Cid, size: u64) {
        let _ = self.tx.send(Command::Hint { root, size, manifest: false, topics: Vec::new() }).await;
    }

    /// Announces the signed manifest `cid` (of a `size`-byte DAG) as an availability hint
    /// marked as a manifest, on [`hints::TOPIC`] and on each of `topics`.
    pub async fn announce_manifest(&self, cid: Cid, size: u64, topics: Vec<String>) {
        let _ = self.tx.send(Command::Hint { root: cid, size, manifest: true, topics }).await;
    }

    /// Bitswap counters.
    pub async fn stats(&self) -> Result<Stats, NetError> {
        self.ask(Command::Stats).await
    }

    /// DAG fetches ([`Network::fetch_dag`]) running now: Bitswap sessions.
    pub fn active_sessions(&self) -> u64 {
        self.sessions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Announces on the DHTs that this node provides `cids`, and waits until every
    /// announcement has been tried: returns how many reached a peer and how many did not.
    /// Announcements queue behind each other, a bounded number at a time.
    pub async fn provide(&self, cids: Vec<Cid>) -> Result<(u64, u64), NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Provide(cids, Some(tx))).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Queues announcements of `cids` without waiting for them.
    pub async fn provide_later(&self, cids: Vec<Cid>) {
        let _ = self.tx.send(Command::Provide(cids, None)).await;
    }

    /// Looks up providers of `cid` on the DHTs and the delegated routers: up to `max` of
    /// them, as found within `timeout`.
    pub async fn find_providers(&self, cid: Cid, max: usize, timeout: Duration) -> Result<Vec<PeerId>, NetError> {
        let deadline = Instant::now() + timeout;
        self.ask(|reply| Command::FindProviders { cid, max: max.max(1), deadline, routers: true, reply }).await
    }

    /// [`Network::find_providers`] on the DHTs alone: for answering others as a router, so
    /// that two nodes that list each other as routers never ask each other in a circle.
    pub async fn find_dht_providers(&self, cid: Cid, max: usize, timeout: Duration) -> Result<Vec<PeerId>, NetError> {
        let deadline = Instant::now() + timeout;
        self.ask(|reply| Command::FindProviders { cid, max: max.max(1), deadline, routers: false, reply }).await
    }

    /// The DHTs' routing tables and announcement counters.
    pub async fn dht_stats(&self) -> Result<DhtStats, NetError> {
        self.ask(Command::DhtStats).await
    }

    /// The DHTs whose routing tables hold peers, where announcements can go.
    pub async fn live_dhts(&self) -> Result<Vec<dht::Dht>, NetError> {
        let s = self.dht_stats().await?;
        Ok([(dht::Dht::Wan, s.wan_peers), (dht::Dht::Lan, s.lan_peers)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(d, _)| d)
            .collect())
    }

    /// Looks up the peers closest to the DHT key `key` (a multihash's bytes) on one DHT. The
    /// swarm stays connected to (or dials) those found, so streams to them open at once.
    pub async fn closest_peers(&self, dht: dht::Dht, key: Vec<u8>) -> Result<Closest, NetError> {
        self.ask(|reply| Command::ClosestPeers { dht, key, connect: true, reply }).await
    }

    /// [`Network::closest_peers`] without dialing what it finds: for answering others (the
    /// delegated routing API), where a lookup must not turn into connections.
    pub async fn find_closest(&self, dht: dht::Dht, key: Vec<u8>) -> Result<Closest, NetError> {
        self.ask(|reply| Command::ClosestPeers { dht, key, connect: false, reply }).await
    }

    /// Where `peers` can be dialed, as far as this node knows without asking anyone: the
    /// listen addresses a connected peer told (identify) and those in the DHTs' routing
    /// tables. At most [`MAX_PEER_ADDRS`](super::MAX_PEER_ADDRS) per peer; a peer with none
    /// is left out.
    pub async fn peer_addrs(
        &self,
        peers: Vec<PeerId>,
    ) -> Result<std::collections::HashMap<PeerId, Vec<Multiaddr>>, NetError> {
        self.ask(|reply| Command::PeerAddrs(peers, reply)).await
    }

    /// The addresses this node tells peers, as provider records carry them.
    pub async fn external_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(Command::ExternalAddrs).await
    }

    /// Where UPnP port mapping stands.
    pub async fn port_mapping(&self) -> Result<PortMapping, NetError> {
        self.ask(Command::PortMapping).await
    }

    /// Tells `peer` on `dht` that this node (at `addrs`) provides `keys` (multihash bytes),
    /// over one stream: [`sweep::send`].
    pub async fn send_providers(
        &self,
        dht: dht::Dht,
        peer: PeerId,
        addrs: &[Multiaddr],
        keys: &[&[u8]],
    ) -> Result<(), sweep::SendError> {
        sweep::send(&mut self.streams.0.clone(), peer, dht.protocol(), &self.peer_id, addrs, keys).await
    }

    /// Fetches a block from peers (and from the HTTP origins, when configured: [`origin`]),
    /// stores it, and returns its bytes.
    pub async fn fetch(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.fetch_from(cid, timeout, bitswap::engine::PRIORITY_READER).await
    }

    /// [`Network::fetch`] for a block no reader waits for (a pin, a DAG fetched in spread
    /// order): it takes peers' room after readers and read-ahead, rarest first.
    pub async fn fetch_bulk(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.fetch_from(cid, timeout, bitswap::engine::PRIORITY_BULK).await
    }

    /// Fetches a block a reader will want soon. While a peer has it, the origin is asked only
    /// once a reader waits on the block ([`Network::fetch`], which then shares this want):
    /// read-ahead that raced the origin would have every reader of a crowd ask the origin for
    /// every block it fetches ahead, doubling the load on the publisher's uplink. A block that
    /// every peer says it lacks goes to the origin after the stall timeout.
    pub async fn fetch_ahead(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.fetch_from(cid, timeout, bitswap::engine::PRIORITY_AHEAD).await
    }

    /// Fetches at `priority`; read-ahead ([`bitswap::engine::PRIORITY_AHEAD`]) also waits
    /// longer before the origin is asked (see [`Network::fetch_ahead`]).
    async fn fetch_from(&self, cid: Cid, timeout: Duration, priority: i32) -> Result<Bytes, FetchError> {
        let ahead = priority == bitswap::engine::PRIORITY_AHEAD;
        let (waiter, mut rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        tracing::trace!(target: "cairn_trace", %cid, priority, "fetch");
        self.tx.send(Command::Fetch { cid, priority, deadline, waiter }).await.map_err(|_| FetchError::Shutdown)?;
        let Some(origin) = self.origin.clone() else { return rx.await.map_err(|_| FetchError::Shutdown)? };
        if !origin.has_sources() {
            // No gateway configured: a router may name an HTTP provider while the peers are
            // asked (a lookup starts when none has the block), and the origin's rules apply
            // from then on.
            let mut learned = origin.learned_changes();
            while !origin.has_sources() {
                tokio::select! {
                    r = &mut rx => return r.map_err(|_| FetchError::Shutdown)?,
                    changed = learned.changed() => if changed.is_err() {
                        return rx.await.map_err(|_| FetchError::Shutdown)?;
                    },
                }
            }
        }
        // The peers get `delay` to themselves, and more while they keep delivering blocks
        // (slow, not stalled), up to `PATIENCE` stall timeouts; then the origin races them. A
        // block fetched ahead is left to the peers for as long as one of them has it.
        let give_up = Instant::now() + origin.stall() * origin::PATIENCE;
        let mut wait = if ahead { origin.stall() } else { origin.delay() };
        if !origin.has_gateways() {
            // Only HTTP providers a router named for this content: asked at once, as a peer
            // that has the block would be. The waits spare a configured origin, often the
            // publisher's own uplink.
            wait = Duration::ZERO;
        }
        let mut fast_start = !ahead && wait.is_zero() && origin.has_gateways();
        // The fast start goes to the origin at once unless a peer says, within
        // `FAST_START_WAIT` of being told, that it has the block: a crowd's readers then leave
        // the origin (often the publisher's own uplink) alone, and take it only for what no
        // peer has yet. With more peers than are told of a want at first, the wait runs from
        // when the last of them was told, up to `FAST_START_MAX` in all.
        if fast_start {
            let mut patience = FastStartWait::new(Instant::now());
            loop {
                let (answer, told) = self.peers_told(cid, Some(false)).await;
                match patience.decide(answer, told, Instant::now()) {
                    Some(true) => {
                        wait = origin.stall();
                        fast_start = false;
                        break;
                    }
                    Some(false) => break,
                    None => tokio::select! {
                        r = &mut rx => return r.map_err(|_| FetchError::Shutdown)?,
                        () = tokio::time::sleep(FAST_START_POLL) => {}
                    },
                }
            }
        }
        while !wait.is_zero() {
            tokio::select! {
                r = &mut rx => return r.map_err(|_| FetchError::Shutdown)?,
                () = tokio::time::sleep(wait) => {}
            }
            wait = if ahead {
                Duration::ZERO
            } else {
                origin.stall_left().min(give_up.saturating_duration_since(Instant::now()))
            };
        }
        if ahead {
            // Only a block every peer said it lacks: a busy peer's answer may be late.
            if self.peers_answer(cid, None).await != Some(false) {
                return rx.await.map_err(|_| FetchError::Shutdown)?;
            }
        }
        // A CAR from the origin on its way may hold the block: wait for it rather than ask
        // twice. Its blocks are answered as they are stored, so this want is answered by now
        // if the CAR held the block.
        tokio::select! {
            r = &mut rx => return r.map_err(|_| FetchError::Shutdown)?,
            () = origin.cars_settled() => {}
        }
        if let Ok(r) = rx.try_recv() {
            return r;
        }
        // Another fetch of this block is asking the origin already: its delivery answers this
        // want too.
        let Some(_claim) = origin.claim(cid) else { return rx.await.map_err(|_| FetchError::Shutdown)? };
        let why = if ahead {
            &origin.stats.asked_ahead
        } else if fast_start {
            &origin.stats.asked_fast_start
        } else if Instant::now() >= give_up {
            &origin.stats.asked_patience
        } else {
            &origin.stats.asked_stalled
        };
        why.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::trace!(target: "cairn_trace", %cid, ahead, fast_start, "origin asked");
        tokio::select! {
            r = &mut rx => {
                origin.lost_to_peers();
                r.map_err(|_| FetchError::Shutdown)?
            }
            got = origin.get(cid) => {
                match got {
                    // Stored like a block from a peer: the engine then answers every waiter
                    // (this one included) and cancels the want with the peers.
                    Ok(block) => {
                        tracing::trace!(target: "cairn_trace", %cid, "origin delivered");
                        origin.won();
                        let _ = self.tx.send(Command::Deliver(block, None)).await;
                    }
                    Err(e) => tracing::debug!(%cid, error = %e, "the origin did not supply the block"),
                }
                rx.await.map_err(|_| FetchError::Shutdown)?
            }
        }
    }

    /// What the peers said about `cid` ([`Engine::peers_answer`]); `shut` if the network task
    /// is gone.
    async fn peers_answer(&self, cid: Cid, shut: Option<bool>) -> Option<bool> {
        self.peers_told(cid, shut).await.0
    }

    /// [`Network::peers_answer`], and whether every connected peer has been told of the want.
    async fn peers_told(&self, cid: Cid, shut: Option<bool>) -> (Option<bool>, bool) {
        let (tx, answer) = oneshot::channel();
        let _ = self.tx.send(Command::PeersAnswer(cid, tx)).await;
        answer.await.unwrap_or((shut, true))
    }

    /// A reader starts on bytes `from .. to` of the file `file` and the store lacks what it
    /// needs first: under `Origins.Format = "car"`, while the burst's fast start is not spent,
    /// the start of that stretch is asked of the origin as one CAR, its blocks stored as they
    /// stream in ([`origin::Origin::get_range`]). Returns at once; the CAR is fetched in the
    /// background.
    pub fn fetch_range(&self, file: Cid, from: u64, to: u64) {
        let Some(origin) = self.origin.clone().filter(|o| o.has_sources()) else { return };
        // Peers delivering lately (the file's root most likely came from one): the read's
        // blocks are left to them, as a raw fast start leaves blocks a peer has.
        if !origin.stall_left().is_zero() {
            return;
        }
        let Some(len) = origin.take_fast_start(to.saturating_sub(from)) else { return };
        let offset = from;
        let ticket = origin.car_ticket();
        let tx = self.tx.clone();
        self.runtime.spawn(async move {
            // Each block is stored, and its waiters answered, before the next is read, so that
            // once the CAR is done a reader waiting for it finds its block answered.
            let deliver = move |block: Block| {
                let (ack, stored) = oneshot::channel();
                if tx.blocking_send(Command::Deliver(block, Some(ack))).is_ok() {
                    let _ = stored.blocking_recv();
                }
            };
            match origin.get_range(ticket, file, offset, len, deliver).await {
                Ok(n) => tracing::debug!(%file, offset, len, blocks = n, "fast start from the origin as a CAR"),
                Err(e) => tracing::debug!(%file, offset, error = %e, "the origin's CAR failed"),
            }
        });
    }

    /// [`Network::fetch_ahead`] in the background, on the network's runtime: callable from any
    /// thread; a failure is only logged.
    pub fn fetch_ahead_detached(&self, cid: Cid, timeout: Duration) {
        let net = self.clone();
        self.runtime.spawn(async move {
            if let Err(e) = net.fetch_ahead(cid, timeout).await {
                tracing::debug!(%cid, error = %e, "read-ahead fetch failed");
            }
        });
    }

    /// [`Network::fetch`] for synchronous callers (not on a runtime thread).
    pub fn fetch_blocking(&self, cid: Cid, timeout: Duration) -> Result<Bytes, FetchError> {
        self.runtime.block_on(self.fetch(cid, timeout))
    }

    /// What the HTTP origins delivered, when there are any.
    pub fn origin_stats(&self) -> Option<&origin::OriginStats> {
        self.origin.as_deref().map(|o| &o.stats)
    }

    /// Stops the network task.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// How long a fetch in a burst's fast start waits for a peer to say it has the block before
/// the origin is asked (peers that answered DONT_HAVE, or none connected, do not wait it out).
const FAST_START_WAIT: Duration = Duration::from_millis(250);
/// How long a fetch in a burst's fast start leaves to the peers: until one says it has the
/// block (the peers', `Some(true)`), every one told says it lacks it (the origin's,
/// `Some(false)`), or [`FAST_START_WAIT`] has passed since the last of them was told (the
/// origin's). With more peers than a want is told to at first ([`bitswap::engine::FIRST_TOLD`]),
/// the rest hear of it only once the first lack the block, so the wait runs from then, up to
/// [`FAST_START_MAX`] in all: in a crowd the one peer that has the block (the publisher, often
/// behind the same uplink as the origin) is then heard before the origin is asked.
struct FastStartWait {
    until: Instant,
}

impl FastStartWait {
    fn new(now: Instant) -> Self {
        FastStartWait { until: now + FAST_START_MAX }
    }

    /// Where the block should come from, given what the peers said and whether every one has
    /// been told of the want; `None` to wait on. The first call that sees every peer told
    /// sets the deadline; later ones, being later, cannot lower it.
    fn decide(&mut self, answer: Option<bool>, all_told: bool, now: Instant) -> Option<bool> {
        if all_told {
            self.until = self.until.min(now + FAST_START_WAIT);
        }
        match answer {
            None if now < self.until => None,
            None => Some(false),
            known => known,
        }
    }
}

/// The longest a fetch in a fast start waits for the peers, when the want is told to some of
/// them only after the first ones answered.
const FAST_START_MAX: Duration = Duration::from_secs(1);
/// How often the peers' answers are looked at meanwhile.
const FAST_START_POLL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_start_waits_for_the_peers_told_last() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);

        // Every peer told at once: the origin after FAST_START_WAIT, unless a peer answers.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, true, start), None);
        assert_eq!(w.decide(None, true, ms(249)), None);
        assert_eq!(w.decide(None, true, ms(250)), Some(false), "nobody said HAVE in time");
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(Some(true), true, ms(100)), Some(true), "a peer has it");
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(Some(false), true, ms(10)), Some(false), "every peer lacks it");

        // The rest told only at 400 ms: the wait runs from then.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, false, start), None);
        assert_eq!(w.decide(None, false, ms(300)), None, "some peers have not heard of the want yet");
        assert_eq!(w.decide(None, true, ms(400)), None);
        assert_eq!(w.decide(None, true, ms(649)), None);
        assert_eq!(w.decide(Some(true), true, ms(600)), Some(true));
        assert_eq!(w.decide(None, true, ms(650)), Some(false));

        // Never all told: FAST_START_MAX at most.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, false, ms(999)), None);
        assert_eq!(w.decide(None, false, ms(1000)), Some(false));
        // Told late: still no more than FAST_START_MAX.
        let mut w = FastStartWait::new(start);
        assert_eq!(w.decide(None, true, ms(900)), None);
        assert_eq!(w.decide(None, true, ms(1000)), Some(false));
    }
}
