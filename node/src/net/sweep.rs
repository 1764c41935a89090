//! Announcing many keys by keyspace region: one lookup per region, then every key of the
//! region sent to the region's peers over one stream each.
//!
//! A DHT stores a key's provider records on the K peers whose IDs are closest to the key, by
//! XOR distance between SHA-256 images (the keyspace). Announcing keys one at a time costs a
//! lookup per key, which a million keys cannot afford on a real network. But every key whose
//! image starts with the same bits has nearly the same closest peers, so a sweep sorts its
//! keys by image and does one lookup per *region*: the keys sharing a prefix.
//!
//! How a region is found: a lookup of a key at point `t` returns the K peers closest to `t`.
//! Let the farthest of them differ from `t` first at bit `c`. Every peer whose image shares
//! `t`'s first `c + 1` bits is closer to `t` than that farthest one, so the lookup found all of
//! them; the region is that `c + 1`-bit prefix, and for any key in it the peers returned hold
//! all of the region's peers, which are the key's closest, and the nearest of the rest. When a
//! complete lookup returns fewer than K peers, the DHT has no more: the region is the whole
//! keyspace and one lookup serves the sweep. Regions hold fewer than K peers, so there are
//! about `2 × peers / K` of them, however many keys there are.
//!
//! The sending side writes ADD_PROVIDER messages (the `dht.pb` `Message` of the kad-dht spec,
//! type 2, one key each, the provider being this node with its addresses), length-prefixed,
//! back to back on one stream of the DHT's protocol per peer. Receivers read messages off a
//! stream until it ends, so a region's keys cost one stream, not one per key.

use std::time::Duration;

use futures::AsyncWriteExt;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use prost::Message as _;

/// Peers that hold a key's provider records (the DHT's replication factor, K).
pub const K: usize = 20;
/// Keys sorted and sent together: the most a sweep holds in memory at once.
pub const WINDOW: usize = 16 * 1024;
/// Region lookups running at once.
pub const LOOKUPS_AT_ONCE: usize = 4;
/// Streams to peers being written at once.
pub const SENDS_AT_ONCE: usize = 16;
/// How long a peer has to take one stream's messages, plus a second per thousand keys.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A position in the DHT's keyspace: the SHA-256 image of a key or a peer ID.
pub type Point = [u8; 32];

/// The keyspace position of a DHT key (a multihash's bytes).
pub fn point_of_key(key: &[u8]) -> Point {
    let mh = cairn_merkle::hash::HashAlg::Sha2_256.digest(key);
    mh.digest().try_into().expect("sha2-256 digests are 32 bytes")
}

/// The keyspace position of a peer.
pub fn point_of_peer(peer: &PeerId) -> Point {
    point_of_key(&peer.to_bytes())
}

/// How many leading bits `a` and `b` share (256 when equal).
pub fn common_prefix(a: &Point, b: &Point) -> u32 {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = x ^ y;
        if d != 0 {
            return i as u32 * 8 + d.leading_zeros();
        }
    }
    256
}

/// The keys whose images start with `bits` bits of `prefix`, and the peers that hold their
/// records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// A point in the region (its first `bits` bits are the prefix).
    pub prefix: Point,
    /// The prefix's length.
    pub bits: u32,
    /// The peers the keys go to (empty: the lookup found none).
    pub peers: Vec<PeerId>,
}

impl Region {
    /// Whether `p` lies in the region.
    pub fn contains(&self, p: &Point) -> bool {
        common_prefix(&self.prefix, p) >= self.bits
    }

    /// The region that a lookup of `target` answered with `peers` covers (`complete`: the
    /// lookup ended by itself rather than by timing out).
    pub fn from_lookup(target: Point, peers: Vec<PeerId>, complete: bool) -> Region {
        if peers.is_empty() {
            // Nothing to go on: this key alone, which then fails.
            return Region { prefix: target, bits: 256, peers };
        }
        if complete && peers.len() < K {
            return Region { prefix: target, bits: 0, peers };
        }
        let nearest_far = peers.iter().map(|p| common_prefix(&target, &point_of_peer(p))).min().unwrap_or(0);
        Region { prefix: target, bits: (nearest_far + 1).min(256), peers }
    }
}

/// The regions found during one sweep of one DHT.
#[derive(Debug, Default)]
pub struct Regions {
    known: Vec<Region>,
}

impl Regions {
    /// Regions found so far (one per lookup).
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether none has been found.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The region at `i`.
    pub fn get(&self, i: usize) -> &Region {
        &self.known[i]
    }

    /// Adds what a lookup found; returns its index.
    pub fn add(&mut self, r: Region) -> usize {
        self.known.push(r);
        self.known.len() - 1
    }

    /// The median prefix length of the regions that found peers: how far apart two lookups
    /// must be to likely land in different regions.
    fn typical_bits(&self) -> Option<u32> {
        let mut bits: Vec<u32> = self.known.iter().filter(|r| !r.peers.is_empty()).map(|r| r.bits).collect();
        bits.sort_unstable();
        bits.get(bits.len() / 2).copied()
    }
}

/// One window of a sweep: its keys' points in keyspace order, and the narrowest known region
/// of each.
#[derive(Debug)]
pub struct Window<'a> {
    points: &'a [Point],
    owner: Vec<Option<usize>>,
}

impl<'a> Window<'a> {
    /// A window over `points` (sorted), with the regions found so far applied.
    pub fn new(points: &'a [Point], regions: &Regions) -> Window<'a> {
        debug_assert!(points.is_sorted());
        let mut w = Window { points, owner: vec![None; points.len()] };
        for i in 0..regions.len() {
            w.apply(regions, i);
        }
        w
    }

    /// Gives the keys in region `i` to it, where it is narrower than what they had.
    pub fn apply(&mut self, regions: &Regions, i: usize) {
        let r = regions.get(i);
        let mut lo = r.prefix;
        let mut hi = r.prefix;
        for bit in r.bits..256 {
            let (byte, mask) = ((bit / 8) as usize, 0x80u8 >> (bit % 8));
            lo[byte] &= !mask;
            hi[byte] |= mask;
        }
        let from = self.points.partition_point(|p| *p < lo);
        let to = self.points.partition_point(|p| *p <= hi);
        for o in &mut self.owner[from..to] {
            if o.is_none_or(|j| regions.get(j).bits < r.bits) {
                *o = Some(i);
            }
        }
    }

    /// The region that key `i` goes to, once one holds it.
    pub fn owner(&self, i: usize) -> Option<usize> {
        self.owner[i]
    }

    /// The keys to look up next, at most `n`: the first key no region holds, then further
    /// ones unlikely to share a region with those chosen (they differ within the typical
    /// prefix length of the regions found so far; with none found yet, one lookup goes first
    /// to learn it).
    pub fn next_targets(&self, regions: &Regions, n: usize) -> Vec<usize> {
        let guess = regions.typical_bits();
        let n = if guess.is_some() { n } else { 1 };
        let mut out: Vec<usize> = Vec::new();
        for (i, p) in self.points.iter().enumerate() {
            if out.len() >= n {
                break;
            }
            if self.owner[i].is_some() {
                continue;
            }
            let apart = |j: &usize| guess.is_some_and(|g| common_prefix(&self.points[*j], p) < g);
            if out.iter().all(apart) {
                out.push(i);
            }
        }
        out
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct WirePeer {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    addrs: Vec<Vec<u8>>,
    #[prost(int32, tag = "3")]
    connection: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireMessage {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(bytes = "vec", tag = "2")]
    key: Vec<u8>,
    #[prost(message, repeated, tag = "9")]
    provider_peers: Vec<WirePeer>,
}

/// `ADD_PROVIDER` in the kad-dht message's type enum.
const ADD_PROVIDER: i32 = 2;

/// The ADD_PROVIDER messages announcing `me` (reachable at `addrs`) for `keys`, each
/// length-prefixed (unsigned varint) as the DHT's streams carry them.
pub fn encode_add_providers<'a>(me: &PeerId, addrs: &[Multiaddr], keys: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let provider = WirePeer { id: me.to_bytes(), addrs: addrs.iter().map(|a| a.to_vec()).collect(), connection: 0 };
    let mut out = Vec::new();
    for key in keys {
        let m = WireMessage { kind: ADD_PROVIDER, key: key.to_vec(), provider_peers: vec![provider.clone()] };
        m.encode_length_delimited(&mut out).expect("a Vec grows");
    }
    out
}

/// Why announcements to a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No stream could be opened to the peer.
    #[error("cannot open a stream to {0}: {1}")]
    Open(PeerId, libp2p_stream::OpenStreamError),
    /// Writing to the stream failed.
    #[error("writing to {0}: {1}")]
    Write(PeerId, std::io::Error),
    /// The peer did not take the announcements within the time allowed.
    #[error("{0} did not take the announcements in time")]
    Timeout(PeerId),
}

/// Announces `me` (at `addrs`) to `peer` as a provider of `keys`, on one new stream of
/// `protocol`: ADD_PROVIDER messages written a few hundred at a time, then the stream closed.
/// A peer that does not take them in time fails.
pub async fn send(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    protocol: StreamProtocol,
    me: &PeerId,
    addrs: &[Multiaddr],
    keys: &[&[u8]],
) -> Result<(), SendError> {
    let limit = SEND_TIMEOUT + Duration::from_secs((keys.len() / 1000) as u64);
    let write = async {
        let mut stream = control.open_stream(peer, protocol).await.map_err(|e| SendError::Open(peer, e))?;
        for chunk in keys.chunks(512) {
            let bytes = encode_add_providers(me, addrs, chunk.iter().copied());
            stream.write_all(&bytes).await.map_err(|e| SendError::Write(peer, e))?;
        }
        stream.close().await.map_err(|e| SendError::Write(peer, e))
    };
    tokio::time::timeout(limit, write).await.map_err(|_| SendError::Timeout(peer))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded ADD_PROVIDER: the key, the provider, its addresses.
    type Announced = (Vec<u8>, PeerId, Vec<Multiaddr>);

    /// Decodes a stream of length-prefixed ADD_PROVIDER messages into (key, provider, addresses).
    fn decode_add_providers(mut buf: &[u8]) -> Result<Vec<Announced>, String> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let m = WireMessage::decode_length_delimited(&mut buf).map_err(|e| e.to_string())?;
            if m.kind != ADD_PROVIDER {
                return Err(format!("message type {} is not ADD_PROVIDER", m.kind));
            }
            let [p] = &m.provider_peers[..] else { return Err("one provider per message".into()) };
            let peer = PeerId::from_bytes(&p.id).map_err(|e| e.to_string())?;
            let addrs = p.addrs.iter().map(|a| Multiaddr::try_from(a.clone()).map_err(|e| e.to_string()));
            out.push((m.key, peer, addrs.collect::<Result<_, _>>()?));
        }
        Ok(out)
    }

    /// The K closest of `peers` to a point.
    fn closest(peers: &[(PeerId, Point)], t: &Point) -> Vec<PeerId> {
        let mut v: Vec<_> = peers.iter().map(|(p, q)| (xor(q, t), *p)).collect();
        v.sort();
        v.into_iter().take(K).map(|(_, p)| p).collect()
    }

    fn xor(a: &Point, b: &Point) -> Point {
        std::array::from_fn(|i| a[i] ^ b[i])
    }

    fn random_peers(n: usize) -> Vec<(PeerId, Point)> {
        (0..n)
            .map(|_| {
                let p = PeerId::random();
                (p, point_of_peer(&p))
            })
            .collect()
    }

    fn keys(n: usize) -> Vec<Point> {
        let mut v: Vec<Point> = (0..n as u64).map(|i| point_of_key(&i.to_be_bytes())).collect();
        v.sort();
        v
    }

    /// Runs the region planner over `keys` on a DHT where lookups are exact.
    fn cover(peers: &[(PeerId, Point)], keys: &[Point]) -> (Regions, Vec<usize>) {
        let mut regions = Regions::default();
        let mut w = Window::new(keys, &regions);
        loop {
            let targets = w.next_targets(&regions, LOOKUPS_AT_ONCE);
            if targets.is_empty() {
                let owners = (0..keys.len()).map(|i| w.owner(i).expect("every key is covered")).collect();
                return (regions, owners);
            }
            for i in targets {
                let found = closest(peers, &keys[i]);
                let r = regions.add(Region::from_lookup(keys[i], found, true));
                w.apply(&regions, r);
            }
        }
    }

    #[test]
    fn common_prefixes_count_bits() {
        let a = [0u8; 32];
        let mut b = a;
        assert_eq!(common_prefix(&a, &b), 256);
        b[0] = 0x80;
        assert_eq!(common_prefix(&a, &b), 0);
        b[0] = 0x01;
        assert_eq!(common_prefix(&a, &b), 7);
        b = a;
        b[3] = 0x10;
        assert_eq!(common_prefix(&a, &b), 27);
    }

    /// On a DHT of 2000 peers, ten thousand keys take a number of lookups that follows the
    /// peers, not the keys, and each key's peers hold every one of its true closest that lie in
    /// its region, and three quarters of all its true closest on average.
    #[test]
    fn regions_cost_lookups_by_peers_and_reach_the_closest() {
        let peers = random_peers(2000);
        let keys = keys(10_000);
        let (regions, owners) = cover(&peers, &keys);
        assert!(regions.len() <= 2000 / K * 3, "{} lookups for 2000 peers", regions.len());
        assert!(regions.len() >= 2000 / K / 2, "{} lookups: regions too wide", regions.len());
        // A later window reuses the regions: hardly a key is left without one.
        let more = super::tests::keys(20_000);
        let w = Window::new(&more, &regions);
        let bare = (0..more.len()).filter(|i| w.owner(*i).is_none()).count();
        assert!(bare < more.len() / 100, "{bare} keys of a second window need a lookup");
        let mut overlap = 0usize;
        for (k, owner) in keys.iter().zip(owners) {
            let r = regions.get(owner);
            assert!(r.contains(k));
            assert!(r.peers.len() == K);
            let truth = closest(&peers, k);
            for p in &truth {
                if r.contains(&point_of_peer(p)) {
                    assert!(r.peers.contains(p), "a peer inside the region was missed");
                }
            }
            overlap += truth.iter().filter(|p| r.peers.contains(p)).count();
        }
        let mean = overlap as f64 / keys.len() as f64;
        assert!(mean >= K as f64 * 0.75, "a key reaches {mean:.1} of its {K} closest on average");
    }

    /// A DHT smaller than K: one lookup covers every key.
    #[test]
    fn a_small_dht_is_one_region() {
        let peers = random_peers(7);
        let (regions, _) = cover(&peers, &keys(5000));
        assert_eq!(regions.len(), 1);
        assert_eq!(regions.get(0).bits, 0);
        // A lookup that timed out with few peers does not claim the whole keyspace.
        let t = keys(1)[0];
        let r = Region::from_lookup(t, peers.iter().map(|p| p.0).collect(), false);
        assert!(r.bits > 0);
        assert!(r.contains(&t));
        // No peers: the target alone, so the planner still moves on.
        let r = Region::from_lookup(t, Vec::new(), true);
        assert_eq!((r.bits, r.contains(&t)), (256, true));
    }

    #[test]
    fn add_provider_messages_round_trip_and_match_the_spec_layout() {
        let me = PeerId::random();
        let addrs: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
        let keys: Vec<Vec<u8>> = vec![vec![0x12, 0x20, 1, 2, 3], vec![0x12, 0x20, 9]];
        let wire = encode_add_providers(&me, &addrs, keys.iter().map(|k| &k[..]));
        let back = decode_add_providers(&wire).unwrap();
        assert_eq!(back.len(), 2);
        for ((k, p, a), want) in back.into_iter().zip(&keys) {
            assert_eq!((&k, p, a), (want, me, addrs.clone()));
        }
        // The first message by hand: length, then field 1 (type) = 2, field 2 (key).
        assert_eq!(&wire[1..3], &[0x08, 0x02]);
        assert_eq!(&wire[3..5], &[0x12, 5]);
        assert!(decode_add_providers(&wire[..wire.len() - 1]).is_err(), "a cut message is an error");
    }
}
