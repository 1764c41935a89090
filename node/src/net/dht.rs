//! Kademlia content routing: the two DHTs Kubo runs, and the store behind them.
//!
//! A node runs two DHTs at once, as Kubo does:
//! - **WAN** on `/ipfs/kad/1.0.0`, which holds only peers with public addresses. It serves
//!   others (server mode) when `Routing.Type` is `dhtserver`, or under `auto`/`dht` once
//!   AutoNAT finds the node reachable; until then it is a client.
//! - **LAN** on `/ipfs/lan/kad/1.0.0`, which holds only peers with loopback or private
//!   addresses, and is a server unless `Routing.Type` is `dhtclient`.
//!
//! Keys are the multihash bytes of a CID, so a CIDv0 and a CIDv1 of the same bytes share one
//! provider record. What this node provides is not kept in a list: [`ProvStore`] answers
//! `GET_PROVIDERS` with this node for any block the repo holds, so the answer is true for
//! exactly as long as the block is there, and nothing needs undoing after GC. Announcing is the
//! [`Provider`] queue's job; kad's own republishing is off.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_merkle::Cid;
use libp2p::kad::{self, store::MemoryStore, store::MemoryStoreConfig, store::RecordStore, ProviderRecord, Record};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};

pub use crate::settings::DhtMode;

/// The public DHT's protocol.
pub const WAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// The local-network DHT's protocol.
pub const LAN_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");

/// Keys with provider records of other peers kept at most; expired records go first.
const MAX_PROVIDER_KEYS: usize = 100_000;
/// Providers kept per key (the DHT's replication factor): later ones are ignored, which
/// blunts a flood of fake providers.
const MAX_PROVIDERS_PER_KEY: usize = 20;
/// Provider records of other peers kept at most, over all keys.
const MAX_PROVIDER_RECORDS: usize = 200_000;
/// Provider records one peer may hold here: a single peer cannot fill the store.
const MAX_RECORDS_PER_PEER: usize = 10_000;
/// A provider record's key is a multihash: longer keys are refused.
const MAX_KEY_BYTES: usize = 128;
/// Addresses kept per provider record, and the longest one kept: with the limits above, a
/// record holds at most about 600 bytes, and the store about 120 MB.
const MAX_ADDRS_PER_RECORD: usize = 4;
const MAX_ADDR_BYTES: usize = 64;
/// Values (records) kept at most, and the largest one (an IPNS record is under 10 KiB).
const MAX_VALUE_RECORDS: usize = 1024;
const MAX_VALUE_BYTES: usize = 16 << 10;
/// Provide queries running at once.
pub const PROVIDE_CONCURRENCY: usize = 16;

/// The DHT key of a CID: its multihash bytes.
pub fn key_of(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

/// The DHT's XOR distance between the key `key` (bytes, such as a multihash or a peer ID) and
/// `peer`: sorting by it puts the closest peers first.
pub fn distance(key: &[u8], peer: &PeerId) -> kad::KBucketDistance {
    kad::KBucketKey::new(key.to_vec()).distance(&kad::KBucketKey::from(*peer))
}

/// Whether an address belongs on the LAN DHT (loopback, private, link-local or unique-local)
/// rather than the WAN one. Addresses without an IP (DNS names) count as WAN.
pub fn is_lan(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified(),
        Some(Protocol::Ip6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback() || ip.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
        _ => false,
    }
}

/// Answers whether this node holds the block under a DHT key.
pub type Holds = Arc<dyn Fn(&kad::RecordKey) -> bool + Send + Sync>;

/// The record store behind both DHTs: other peers' provider records and values in memory
/// (bounded), and this node's own provider records answered from the repo.
pub struct ProvStore {
    local: PeerId,
    /// Values (records), which Cairn does not use but serves like any DHT server.
    mem: MemoryStore,
    /// Other peers' provider records.
    providers: HashMap<kad::RecordKey, Vec<ProviderRecord>>,
    /// How many of them each peer holds, and all together.
    per_peer: HashMap<PeerId, usize>,
    records: usize,
    holds: Holds,
    /// When a full store last looked for expired records: a scan of every record, so a flood of
    /// announcements into a full store runs it at most once per [`PURGE_EVERY`].
    last_purge: Option<Instant>,
}

/// How often a full record store scans for expired records, at most.
const PURGE_EVERY: Duration = Duration::from_secs(10);

impl std::fmt::Debug for ProvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvStore").field("local", &self.local).finish_non_exhaustive()
    }
}

impl ProvStore {
    /// A store for `local` that asks `holds` about this node's own blocks.
    pub fn new(local: PeerId, holds: Holds) -> ProvStore {
        let config = MemoryStoreConfig {
            max_records: MAX_VALUE_RECORDS,
            max_value_bytes: MAX_VALUE_BYTES,
            ..MemoryStoreConfig::default()
        };
        let mem = MemoryStore::with_config(local, config);
        ProvStore {
            local,
            mem,
            providers: HashMap::new(),
            per_peer: HashMap::new(),
            records: 0,
            holds,
            last_purge: None,
        }
    }

    /// Counts one record of `peer` gone.
    fn forget(per_peer: &mut HashMap<PeerId, usize>, records: &mut usize, peer: &PeerId) {
        *records -= 1;
        if let Some(n) = per_peer.get_mut(peer) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(peer);
            }
        }
    }

    /// Drops expired provider records of other peers, unless that was done lately.
    fn purge_expired(&mut self) {
        let now = Instant::now();
        if self.last_purge.is_some_and(|t| now.duration_since(t) < PURGE_EVERY) {
            return;
        }
        self.last_purge = Some(now);
        let (per_peer, records) = (&mut self.per_peer, &mut self.records);
        self.providers.retain(|_, v| {
            v.retain(|r| {
                let keep = !r.is_expired(now);
                if !keep {
                    Self::forget(per_peer, records, &r.provider);
                }
                keep
            });
            !v.is_empty()
        });
    }
}

impl RecordStore for ProvStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = std::iter::Empty<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &kad::RecordKey) -> Option<Cow<'_, Record>> {
        self.mem.get(k)
    }

    fn put(&mut self, r: Record) -> kad::store::Result<()> {
        self.mem.put(r)
    }

    fn remove(&mut self, k: &kad::RecordKey) {
        self.mem.remove(k)
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.mem.records()
    }

    fn add_provider(&mut self, mut record: ProviderRecord) -> kad::store::Result<()> {
        if record.provider == self.local {
            // Our own records are the repo's contents.
            return Ok(());
        }
        if record.key.as_ref().len() > MAX_KEY_BYTES {
            return Err(kad::store::Error::ValueTooLarge);
        }
        record.addresses.retain(|a| a.as_ref().len() <= MAX_ADDR_BYTES);
        record.addresses.truncate(MAX_ADDRS_PER_RECORD);
        let replaces = self.providers.get(&record.key).is_some_and(|v| v.iter().any(|r| r.provider == record.provider));
        if !replaces {
            let full = |s: &Self| {
                (!s.providers.contains_key(&record.key) && s.providers.len() >= MAX_PROVIDER_KEYS)
                    || s.records >= MAX_PROVIDER_RECORDS
                    || s.per_peer.get(&record.provider).is_some_and(|n| *n >= MAX_RECORDS_PER_PEER)
            };
            if full(self) {
                self.purge_expired();
                if full(self) {
                    return Err(kad::store::Error::MaxProvidedKeys);
                }
            }
        }
        let v = self.providers.entry(record.key.clone()).or_default();
        if let Some(r) = v.iter_mut().find(|r| r.provider == record.provider) {
            *r = record;
        } else if v.len() < MAX_PROVIDERS_PER_KEY {
            *self.per_peer.entry(record.provider).or_default() += 1;
            self.records += 1;
            v.push(record);
        }
        Ok(())
    }

    fn providers(&self, key: &kad::RecordKey) -> Vec<ProviderRecord> {
        let mut v = self.providers.get(key).cloned().unwrap_or_default();
        if (self.holds)(key) {
            // No addresses: kad fills in our listen and external addresses when it answers.
            v.push(ProviderRecord::new(key.clone(), self.local, Vec::new()));
        }
        v
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        std::iter::empty()
    }

    fn remove_provider(&mut self, k: &kad::RecordKey, p: &PeerId) {
        if let Some(v) = self.providers.get_mut(k) {
            let before = v.len();
            v.retain(|r| r.provider != *p);
            if v.len() < before {
                Self::forget(&mut self.per_peer, &mut self.records, p);
            }
            if v.is_empty() {
                self.providers.remove(k);
            }
        }
    }
}

/// One DHT's behaviour, on `protocol`, in `mode` (None: automatic).
pub fn behaviour(
    protocol: StreamProtocol,
    local: PeerId,
    holds: Holds,
    mode: Option<kad::Mode>,
) -> kad::Behaviour<ProvStore> {
    let mut cfg = kad::Config::new(protocol);
    cfg.set_provider_publication_interval(None)
        .set_record_ttl(Some(Duration::from_secs(48 * 3600)))
        .set_provider_record_ttl(Some(Duration::from_secs(48 * 3600)))
        .set_query_timeout(Duration::from_secs(30))
        .set_max_packet_size(64 * 1024)
        .set_parallelism(NonZeroUsize::new(10).expect("ten is not zero"));
    let mut b = kad::Behaviour::with_config(local, ProvStore::new(local, holds), cfg);
    b.set_mode(mode);
    b
}

/// Which DHT a provide or lookup runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dht {
    /// `/ipfs/kad/1.0.0`.
    Wan,
    /// `/ipfs/lan/kad/1.0.0`.
    Lan,
}

impl Dht {
    /// The DHT's stream protocol.
    pub fn protocol(self) -> StreamProtocol {
        match self {
            Dht::Wan => WAN_PROTOCOL,
            Dht::Lan => LAN_PROTOCOL,
        }
    }
}

/// A query on one of the DHTs. Each DHT numbers its queries from zero, so a query ID alone
/// does not say which DHT's query it is.
pub type Query = (Dht, kad::QueryId);

/// How announcing went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProvideStats {
    /// Keys waiting for a query.
    pub queued: usize,
    /// Queries running.
    pub running: usize,
    /// Announcements that reached at least one peer.
    pub provided: u64,
    /// Announcements that reached no peer (or had no DHT to run on).
    pub failed: u64,
}

/// A batch of keys whose announcement someone waits for.
struct Batch {
    left: usize,
    ok: u64,
    failed: u64,
    done: tokio::sync::oneshot::Sender<(u64, u64)>,
}

/// A key being announced.
struct InFlight {
    /// DHTs still to answer.
    left: usize,
    /// Whether any DHT reached a peer.
    ok: bool,
    /// The batches waiting for this key.
    batches: Vec<u64>,
}

/// The announcement queue: keys wait here and at most [`PROVIDE_CONCURRENCY`] provide
/// queries run at once, so a large reprovide cannot swamp the swarm. `Q` is the query ID type
/// (a [`Query`] in the node).
pub struct Provider<Q = Query> {
    queue: VecDeque<(kad::RecordKey, Option<u64>)>,
    running: HashMap<Q, kad::RecordKey>,
    pending: HashMap<kad::RecordKey, InFlight>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
    stats: ProvideStats,
}

impl<Q> Default for Provider<Q> {
    fn default() -> Self {
        Provider {
            queue: VecDeque::new(),
            running: HashMap::new(),
            pending: HashMap::new(),
            batches: HashMap::new(),
            next_batch: 0,
            stats: ProvideStats::default(),
        }
    }
}

impl<Q> std::fmt::Debug for Provider<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("queued", &self.queue.len()).finish_non_exhaustive()
    }
}

impl<Q: std::hash::Hash + Eq + Copy> Provider<Q> {
    /// Queues `keys` (duplicates once); `done` hears (announced, failed) once each has been
    /// tried.
    pub fn enqueue(&mut self, keys: Vec<kad::RecordKey>, done: Option<tokio::sync::oneshot::Sender<(u64, u64)>>) {
        let mut seen = HashSet::new();
        let keys: Vec<_> = keys.into_iter().filter(|k| seen.insert(k.clone())).collect();
        let batch = done.map(|done| {
            let id = self.next_batch;
            self.next_batch += 1;
            self.batches.insert(id, Batch { left: keys.len(), ok: 0, failed: 0, done });
            id
        });
        if let (Some(id), true) = (batch, keys.is_empty()) {
            self.finish_batch(id);
        }
        self.queue.extend(keys.into_iter().map(|k| (k, batch)));
    }

    /// Whether keys wait for a query.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> ProvideStats {
        ProvideStats { queued: self.queue.len(), running: self.pending.len(), ..self.stats }
    }

    /// Starts queries while there is room. `start` runs one key's provide on every DHT it
    /// can and returns the query IDs (none: no DHT could take it).
    pub fn pump(&mut self, mut start: impl FnMut(&kad::RecordKey) -> Vec<Q>) {
        while self.pending.len() < PROVIDE_CONCURRENCY {
            let Some((key, batch)) = self.queue.pop_front() else { break };
            if let Some(p) = self.pending.get_mut(&key) {
                // The same key is on its way already: this one shares its outcome.
                p.batches.extend(batch);
                continue;
            }
            let ids = start(&key);
            if ids.is_empty() {
                self.stats.failed += 1;
                self.count(batch, false);
                continue;
            }
            self.pending
                .insert(key.clone(), InFlight { left: ids.len(), ok: false, batches: batch.into_iter().collect() });
            for id in ids {
                self.running.insert(id, key.clone());
            }
        }
    }

    /// Whether `id` is one of the provide queries.
    pub fn owns(&self, id: &Q) -> bool {
        self.running.contains_key(id)
    }

    /// A provide query finished; `ok` when it reached at least one peer.
    pub fn finished(&mut self, id: &Q, ok: bool) {
        let Some(key) = self.running.remove(id) else { return };
        let Some(p) = self.pending.get_mut(&key) else { return };
        p.left -= 1;
        p.ok |= ok;
        if p.left > 0 {
            return;
        }
        let p = self.pending.remove(&key).expect("present");
        if p.ok {
            self.stats.provided += 1;
        } else {
            self.stats.failed += 1;
        }
        for b in p.batches {
            self.count(Some(b), p.ok);
        }
    }

    fn count(&mut self, batch: Option<u64>, ok: bool) {
        let Some(id) = batch else { return };
        let Some(b) = self.batches.get_mut(&id) else { return };
        if ok {
            b.ok += 1;
        } else {
            b.failed += 1;
        }
        b.left = b.left.saturating_sub(1);
        if b.left == 0 {
            self.finish_batch(id);
        }
    }

    fn finish_batch(&mut self, id: u64) {
        if let Some(b) = self.batches.remove(&id) {
            let _ = b.done.send((b.ok, b.failed));
        }
    }
}

/// A running provider lookup: who asked, and what has been found.
#[derive(Debug)]
pub struct Lookup {
    /// Its ID, for the delegated routers' answer.
    pub id: u64,
    /// The key looked up.
    pub key: kad::RecordKey,
    /// Providers found so far.
    pub found: Vec<PeerId>,
    /// Stop after this many.
    pub max: usize,
    /// Queries (one per DHT) still running.
    pub queries: Vec<Query>,
    /// Whether the delegated routers have yet to answer.
    pub routed: bool,
    /// Who waits for the answer (none: a lookup started by a fetch).
    pub reply: Option<tokio::sync::oneshot::Sender<Vec<PeerId>>>,
    /// When it ends with what it found.
    pub deadline: Instant,
}

impl Lookup {
    /// Whether it has all it will get: every DHT query and the routers done, or `max` found.
    pub fn finished(&self) -> bool {
        (self.queries.is_empty() && !self.routed) || self.found.len() >= self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_between_lan_and_wan() {
        for lan in ["/ip4/127.0.0.1/tcp/1", "/ip4/10.1.2.3/tcp/1", "/ip4/192.168.0.9/udp/1/quic-v1", "/ip6/::1/tcp/1"] {
            assert!(is_lan(&lan.parse().unwrap()), "{lan}");
        }
        for wan in ["/ip4/8.8.8.8/tcp/1", "/ip6/2001:db8::1/tcp/1", "/dns4/example.com/tcp/1"] {
            assert!(!is_lan(&wan.parse().unwrap()), "{wan}");
        }
    }

    #[test]
    fn routing_types_parse() {
        assert_eq!("auto".parse::<DhtMode>().unwrap(), DhtMode::Auto);
        assert_eq!("dht".parse::<DhtMode>().unwrap(), DhtMode::Auto);
        assert_eq!("dhtserver".parse::<DhtMode>().unwrap(), DhtMode::Server);
        assert_eq!("none".parse::<DhtMode>().unwrap(), DhtMode::Off);
        assert!("delegated".parse::<DhtMode>().is_err());
    }

    #[test]
    fn the_store_answers_for_held_blocks_and_keeps_others_records() {
        let me = PeerId::random();
        let held = kad::RecordKey::new(&b"held");
        let h = held.clone();
        let mut store = ProvStore::new(me, Arc::new(move |k| *k == h));
        let other = PeerId::random();
        let elsewhere = kad::RecordKey::new(&b"elsewhere");
        store.add_provider(ProviderRecord::new(elsewhere.clone(), other, vec![])).unwrap();
        // Our own announcement is not stored: the repo is the truth.
        store.add_provider(ProviderRecord::new(elsewhere.clone(), me, vec![])).unwrap();
        assert_eq!(store.providers(&elsewhere).iter().map(|r| r.provider).collect::<Vec<_>>(), vec![other]);
        assert_eq!(store.providers(&held).iter().map(|r| r.provider).collect::<Vec<_>>(), vec![me]);
        assert_eq!(store.provided().count(), 0, "kad must not republish on its own");
        store.remove_provider(&elsewhere, &other);
        assert!(store.providers(&elsewhere).is_empty());
    }

    /// A full store frees expired records when it is next asked to take one, but scans for
    /// them at most once per [`PURGE_EVERY`]: a flood of announcements into a full store is
    /// refused cheaply instead of scanning every record each time.
    #[test]
    fn a_full_store_purges_expired_records_at_most_once_per_interval() {
        let me = PeerId::random();
        let mut store = ProvStore::new(me, Arc::new(|_| false));
        let other = PeerId::random();
        let past = Instant::now().checked_sub(Duration::from_secs(1));
        // Many peers: one alone may hold only MAX_RECORDS_PER_PEER.
        let peers: Vec<PeerId> = (0..MAX_PROVIDER_KEYS / 1000 + 1).map(|_| PeerId::random()).collect();
        let fill = |store: &mut ProvStore, tag: u8| {
            for i in 0..(MAX_PROVIDER_KEYS - store.providers.len()) as u32 {
                let key = kad::RecordKey::new(&[&[tag][..], &i.to_be_bytes()[..]].concat());
                let mut r = ProviderRecord::new(key, peers[i as usize / 1000], vec![]);
                r.expires = past;
                store.add_provider(r).unwrap();
            }
        };
        fill(&mut store, 1);
        let fresh = |n: u8| ProviderRecord::new(kad::RecordKey::new(&[9, n]), other, vec![]);
        store.add_provider(fresh(1)).expect("the expired records made room");
        assert_eq!(store.providers.len(), 1);
        fill(&mut store, 2);
        assert!(store.add_provider(fresh(2)).is_err(), "a second scan so soon");
        store.last_purge = Instant::now().checked_sub(PURGE_EVERY);
        store.add_provider(fresh(2)).expect("the interval passed");
    }

    /// One peer cannot fill the store, nor make its records big: each record's key and
    /// addresses are bounded, and so are the records of one peer and of all.
    #[test]
    fn one_peer_cannot_fill_the_provider_store() {
        let me = PeerId::random();
        let mut store = ProvStore::new(me, Arc::new(|_| false));
        let flooder = PeerId::random();
        let long: Multiaddr = format!("/dns4/{}/tcp/1", "a".repeat(200)).parse().unwrap();
        let short: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let mut addrs = vec![long; 3];
        addrs.extend(std::iter::repeat_n(short, 100));
        for i in 0..(MAX_RECORDS_PER_PEER as u32 + 50) {
            let key = kad::RecordKey::new(&i.to_be_bytes());
            let r = store.add_provider(ProviderRecord::new(key, flooder, addrs.clone()));
            assert_eq!(r.is_ok(), (i as usize) < MAX_RECORDS_PER_PEER, "record {i}");
        }
        assert_eq!(store.records, MAX_RECORDS_PER_PEER);
        let one = store.providers(&kad::RecordKey::new(&0u32.to_be_bytes())).remove(0);
        assert_eq!(one.addresses.len(), MAX_ADDRS_PER_RECORD);
        assert!(one.addresses.iter().all(|a| a.as_ref().len() <= MAX_ADDR_BYTES));
        // A renewal of a record it holds still goes through, and an honest peer is still served.
        store.add_provider(ProviderRecord::new(kad::RecordKey::new(&0u32.to_be_bytes()), flooder, vec![])).unwrap();
        let honest = PeerId::random();
        store.add_provider(ProviderRecord::new(kad::RecordKey::new(&b"mine"), honest, vec![])).unwrap();
        assert_eq!(store.records, MAX_RECORDS_PER_PEER + 1);
        let huge_key = kad::RecordKey::new(&vec![7u8; MAX_KEY_BYTES + 1]);
        assert!(store.add_provider(ProviderRecord::new(huge_key, honest, vec![])).is_err());
        // Records removed are counted out.
        store.remove_provider(&kad::RecordKey::new(&1u32.to_be_bytes()), &flooder);
        assert_eq!(store.per_peer[&flooder], MAX_RECORDS_PER_PEER - 1);
        store.add_provider(ProviderRecord::new(kad::RecordKey::new(&b"again"), flooder, vec![])).unwrap();
        // Values: bounded in size too.
        let big = Record::new(kad::RecordKey::new(&b"v"), vec![0u8; MAX_VALUE_BYTES + 1]);
        assert!(store.put(big).is_err());
        assert!(store.put(Record::new(kad::RecordKey::new(&b"v"), vec![0u8; 100])).is_ok());
    }

    #[test]
    fn the_queue_bounds_running_queries_and_reports_batches() {
        let mut p: Provider<u32> = Provider::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let keys: Vec<_> = (0..40u32).map(|i| kad::RecordKey::new(&i.to_be_bytes())).collect();
        let mut with_dup = keys.clone();
        with_dup.push(keys[0].clone());
        p.enqueue(with_dup, Some(tx));
        // Two DHTs per key: the first key fails on both, the rest reach a peer on one.
        let mut next = 0u32;
        let mut start = |_: &kad::RecordKey| {
            next += 2;
            vec![next - 2, next - 1]
        };
        p.pump(&mut start);
        assert_eq!(p.stats().running, PROVIDE_CONCURRENCY);
        assert_eq!(p.stats().queued, 40 - PROVIDE_CONCURRENCY);
        let mut done = 0u32;
        while p.stats().running > 0 {
            let (a, b) = (done, done + 1);
            p.finished(&a, false);
            assert!(p.owns(&b), "still waiting for the other DHT");
            p.finished(&b, a != 0);
            assert!(!p.owns(&b));
            done += 2;
            p.pump(&mut start);
            assert!(p.stats().running <= PROVIDE_CONCURRENCY);
            if p.stats().running > 0 {
                assert!(rx.try_recv().is_err(), "the batch is not done yet");
            }
        }
        assert_eq!(rx.try_recv().unwrap(), (39, 1));
        assert_eq!(p.stats().provided, 39);
        assert_eq!(p.stats().failed, 1);
        // With no DHT to run on, keys fail at once rather than wait.
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        p.enqueue(keys[..3].to_vec(), Some(tx));
        p.pump(|_| Vec::new());
        assert_eq!(rx.try_recv().unwrap(), (0, 3));
        // An empty batch is done at once.
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        p.enqueue(Vec::new(), Some(tx));
        assert_eq!(rx.try_recv().unwrap(), (0, 0));
    }
}
