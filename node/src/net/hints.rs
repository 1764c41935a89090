//! Availability hints over gossipsub: "I have this DAG", published when a node pins a root.
//!
//! Topic [`TOPIC`]; the message is the protobuf [`Hint`] (at most [`MAX_HINT_BYTES`]): the root
//! CID, the DAG's size in bytes, the addresses at which the publisher (the message's signed
//! source) can be dialed, and whether the root is a signed manifest (which followers of its
//! publisher mirror: `crate::follow`). Accepted hints also reach local subscribers of the
//! topic. Receivers validate every hint before gossipsub forwards it:
//! a malformed one, or one over a sender's rate ([`MAX_HINTS_PER_MINUTE`]), is rejected,
//! which costs the sender gossipsub score (invalid-message penalty); duplicates are dropped by
//! gossipsub's own seen-cache. Accepted hints are remembered (at most [`MAX_REMEMBERED`] roots,
//! [`MAX_PROVIDERS`] providers each), and a fetch of a hinted root dials its providers
//! before it asks anyone, so Bitswap can use them without a DHT walk.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use cairn_merkle::Cid;
use libp2p::{Multiaddr, PeerId};
use prost::Message as _;

use super::ratelimit::PerSender;

/// The gossipsub topic of availability hints.
pub const TOPIC: &str = "/cairn/hints/1";
/// The largest hint accepted.
pub const MAX_HINT_BYTES: usize = 4096;
/// Hints one publisher may send per minute before the rest are rejected.
pub const MAX_HINTS_PER_MINUTE: usize = 60;
/// Roots remembered.
pub const MAX_REMEMBERED: usize = 10_000;
/// Senders whose hint rates are tracked at once. Hints are signed by their sender, and
/// anyone can make new identities: past this many senders active in the last minute, hints
/// from new senders are refused (and the peers relaying them lose gossipsub score).
pub const MAX_SENDERS: usize = 10_000;
/// The window of [`MAX_HINTS_PER_MINUTE`].
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Providers remembered per root.
pub const MAX_PROVIDERS: usize = 16;
/// Addresses taken from one hint.
const MAX_ADDRS: usize = 8;

/// The wire form of a hint.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hint {
    /// The root CID, binary.
    #[prost(bytes = "vec", tag = "1")]
    pub root: Vec<u8>,
    /// Bytes in the DAG.
    #[prost(uint64, tag = "2")]
    pub size: u64,
    /// Binary multiaddrs at which the publisher can be dialed.
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub addrs: Vec<Vec<u8>>,
    /// Whether the root is a signed manifest (followers of its publisher mirror it).
    #[prost(bool, tag = "4")]
    pub manifest: bool,
}

/// A validated hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// The root.
    pub root: Cid,
    /// Bytes in the DAG.
    pub size: u64,
    /// Who has it.
    pub provider: PeerId,
    /// Where to dial it.
    pub addrs: Vec<Multiaddr>,
    /// Whether the root is a signed manifest.
    pub manifest: bool,
}

/// Encodes a hint for `root` (a signed manifest when `manifest` is set).
pub fn encode(root: &Cid, size: u64, addrs: &[Multiaddr], manifest: bool) -> Vec<u8> {
    Hint { root: root.to_bytes(), size, addrs: addrs.iter().take(MAX_ADDRS).map(|a| a.to_vec()).collect(), manifest }
        .encode_to_vec()
}

/// Why a hint was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HintError {
    /// Over [`MAX_HINT_BYTES`].
    #[error("hint of {0} bytes")]
    TooLarge(usize),
    /// Not a hint message.
    #[error("not a hint: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The root is not a CID this node accepts.
    #[error("root: {0}")]
    Root(#[from] cairn_merkle::hash::CidError),
    /// Over [`MAX_ADDRS`] addresses.
    #[error("{0} addresses")]
    TooManyAddrs(usize),
    /// An address is not a multiaddr.
    #[error("address: {0}")]
    Addr(#[from] libp2p::multiaddr::Error),
    /// The sender is over its rate ([`MAX_HINTS_PER_MINUTE`]).
    #[error("{0} sends hints too fast")]
    TooFast(PeerId),
    /// The message names no signed source.
    #[error("unsigned hint")]
    Unsigned,
}

/// Checks a hint from `source`.
pub fn decode(source: PeerId, data: &[u8]) -> Result<Available, HintError> {
    if data.len() > MAX_HINT_BYTES {
        return Err(HintError::TooLarge(data.len()));
    }
    let h = Hint::decode(data)?;
    let root = cairn_merkle::hash::parse_cid_bytes(&h.root)?;
    if h.addrs.len() > MAX_ADDRS {
        return Err(HintError::TooManyAddrs(h.addrs.len()));
    }
    let addrs = h.addrs.into_iter().map(Multiaddr::try_from).collect::<Result<Vec<_>, _>>()?;
    Ok(Available { root, size: h.size, provider: source, addrs, manifest: h.manifest })
}

/// Remembered hints and per-sender rates.
#[derive(Debug)]
pub struct Hints {
    roots: HashMap<Vec<u8>, Vec<(PeerId, Vec<Multiaddr>)>>,
    order: VecDeque<Vec<u8>>,
    rates: PerSender,
}

impl Default for Hints {
    fn default() -> Self {
        Hints {
            roots: HashMap::new(),
            order: VecDeque::new(),
            rates: PerSender::new(MAX_HINTS_PER_MINUTE, RATE_WINDOW, MAX_SENDERS),
        }
    }
}

impl Hints {
    /// Whether `source` may send another hint now (and counts it).
    pub fn allow(&mut self, source: PeerId, now: Instant) -> bool {
        self.rates.allow(source, now)
    }

    /// Remembers a validated hint.
    pub fn remember(&mut self, a: Available) {
        let key = a.root.hash().to_bytes();
        if !self.roots.contains_key(&key) {
            if self.order.len() >= MAX_REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.roots.remove(&old);
                }
            }
            self.order.push_back(key.clone());
        }
        let list = self.roots.entry(key).or_default();
        list.retain(|(p, _)| *p != a.provider);
        if list.len() >= MAX_PROVIDERS {
            list.remove(0);
        }
        list.push((a.provider, a.addrs));
    }

    /// The providers hinted for `root`.
    pub fn providers(&self, root: &Cid) -> &[(PeerId, Vec<Multiaddr>)] {
        self.roots.get(&root.hash().to_bytes()).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Cid {
        cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, b"root")
    }

    #[test]
    fn hints_round_trip_and_bad_ones_are_refused() {
        let p = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let a = decode(p, &encode(&root(), 42, std::slice::from_ref(&addr), true)).unwrap();
        assert_eq!(a, Available { root: root(), size: 42, provider: p, addrs: vec![addr], manifest: true });
        assert!(decode(p, b"\xff\xff").is_err());
        assert!(decode(
            p,
            &Hint { root: b"not a cid".to_vec(), size: 1, addrs: vec![], manifest: false }.encode_to_vec()
        )
        .is_err());
        assert!(decode(
            p,
            &Hint { root: root().to_bytes(), size: 1, addrs: vec![vec![0xff; 3]], manifest: false }.encode_to_vec()
        )
        .is_err());
        assert!(decode(p, &vec![0u8; MAX_HINT_BYTES + 1]).is_err());
    }

    #[test]
    fn a_flooding_sender_is_cut_off_and_memory_stays_bounded() {
        let mut h = Hints::default();
        let (flood, calm) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let allowed = (0..1000).filter(|_| h.allow(flood, now)).count();
        assert_eq!(allowed, MAX_HINTS_PER_MINUTE);
        assert!(h.allow(calm, now), "one sender's flood does not silence the others");
        assert!(h.allow(flood, now + Duration::from_secs(61)), "the rate recovers");
        for i in 0..(MAX_REMEMBERED as u32 + 100) {
            let r = cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, &i.to_le_bytes());
            h.remember(Available { root: r, size: 1, provider: flood, addrs: vec![], manifest: false });
        }
        assert_eq!(h.roots.len(), MAX_REMEMBERED);
    }

    #[test]
    fn senders_tracked_are_bounded_and_quiet_ones_are_forgotten() {
        let mut h = Hints::default();
        let now = Instant::now();
        let early = PeerId::random();
        assert!(h.allow(early, now));
        for _ in 1..MAX_SENDERS {
            assert!(h.allow(PeerId::random(), now + Duration::from_secs(30)));
        }
        // Full of senders active within the minute: a new one is refused, a known one is not.
        assert!(!h.allow(PeerId::random(), now + Duration::from_secs(30)));
        assert!(h.allow(early, now + Duration::from_secs(30)));
        assert_eq!(h.rates.tracked(), MAX_SENDERS);
        // Once the first ones have been quiet for a minute they are forgotten, and new ones
        // come in.
        let later = now + Duration::from_secs(95);
        let fresh = PeerId::random();
        assert!(h.allow(fresh, later));
        assert!(h.rates.tracked() <= 2, "{} senders kept", h.rates.tracked());
        assert!(h.rates.tracks(&fresh));
    }
}
