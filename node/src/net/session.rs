//! Fetching a whole DAG: many blocks in flight at once, in file order or spread out.
//!
//! [`Network::fetch_dag`] walks the DAG from its root. Blocks the store holds are read there
//! (and their links followed); the others are fetched through the Bitswap engine, at most
//! `window` at a time. Every fetched block is verified and stored by the engine before the
//! walk sees it, so the links it follows are the real ones.
//!
//! - [`Order::File`]: depth-first in link order, so that the front of a file arrives first
//!   (a reader waiting at the start, or at a seek point).
//! - [`Order::Spread`]: a pseudo-random order, different on every node. Nodes fetching the
//!   same DAG at once then ask for different blocks, each can serve the others what it has,
//!   and the first holder (the seed) is not asked for everything by everyone. These blocks
//!   are fetched at bulk priority: when peers' windows are full, the engine gives the room
//!   that frees to readers' blocks first, then to the rarest of these
//!   ([`super::bitswap::engine::PRIORITY_BULK`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use cairn_merkle::Cid;
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use super::bitswap::engine::FetchError;
use super::{Network, SharedStore};

/// The order a DAG's blocks are requested in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Depth-first, in link order.
    File,
    /// Pseudo-random, seeded (use something that differs between nodes, like the peer ID).
    Spread(u64),
}

/// What a DAG fetch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DagFetch {
    /// Blocks in the DAG (each counted once).
    pub blocks: u64,
    /// Of those, fetched from peers.
    pub fetched: u64,
    /// Bytes fetched from peers.
    pub bytes: u64,
}

/// Why a DAG fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DagError {
    /// A block could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A block's links could not be read.
    #[error("block {0}: {1}")]
    Links(Cid, String),
}

/// Counts a running DAG fetch for as long as it lives.
struct SessionGuard(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl SessionGuard {
    fn enter(count: &std::sync::Arc<std::sync::atomic::AtomicU64>) -> SessionGuard {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SessionGuard(count.clone())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The blocks a DAG fetch has yet to look at, each with how many levels below it the fetch
/// goes (`None`: all). A depth-limited fetch in file order takes them breadth-first, so that a
/// block is met first as high up as it lies (with the most levels left below it).
struct Frontier {
    order: Order,
    limited: bool,
    items: std::collections::VecDeque<(Cid, Option<u32>)>,
    rng: u64,
}

impl Frontier {
    /// Adds the links of a node met with `left` levels below it (none when 0) so that, in file
    /// order, the first link comes out first.
    fn push_links(&mut self, links: Vec<Cid>, left: Option<u32>) {
        crate::node::queue_links(&mut self.items, links, left, self.limited);
    }

    fn pop(&mut self) -> Option<(Cid, Option<u32>)> {
        match self.order {
            Order::File if self.limited => self.items.pop_front(),
            Order::File => self.items.pop_back(),
            Order::Spread(_) if self.items.is_empty() => None,
            Order::Spread(_) => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let i = (self.rng % self.items.len() as u64) as usize;
                self.items.swap_remove_back(i)
            }
        }
    }
}

impl Network {
    /// Makes every block of the DAG under `root` present in `store`, fetching the missing ones
    /// with up to `window` requests in flight, each allowed `timeout`.
    pub async fn fetch_dag(
        &self,
        store: &SharedStore,
        root: Cid,
        order: Order,
        window: usize,
        timeout: Duration,
    ) -> Result<DagFetch, DagError> {
        self.fetch_dag_counting(store, root, order, window, timeout, &AtomicU64::new(0)).await
    }

    /// [`Network::fetch_dag`], adding one to `progress` for each block of the DAG as its
    /// links become known (held already, or fetched): what `pin/add?progress=true` reports.
    pub async fn fetch_dag_counting(
        &self,
        store: &SharedStore,
        root: Cid,
        order: Order,
        window: usize,
        timeout: Duration,
        progress: &AtomicU64,
    ) -> Result<DagFetch, DagError> {
        self.fetch_dag_within(store, root, None, order, window, timeout, progress).await
    }

    /// [`Network::fetch_dag_counting`] down to `max_depth` links below `root` (all the way
    /// with `None`): what a depth-limited pin needs. A block met again higher up than before
    /// is looked at again, to go deeper under it.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_dag_within(
        &self,
        store: &SharedStore,
        root: Cid,
        max_depth: Option<u32>,
        order: Order,
        window: usize,
        timeout: Duration,
        progress: &AtomicU64,
    ) -> Result<DagFetch, DagError> {
        // splitmix64 of the seed: near seeds (1, 2, 3...) must still give unrelated orders.
        let seed = match order {
            Order::Spread(s) => {
                let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) | 1
            }
            Order::File => 1,
        };
        let limited = max_depth.is_some();
        let mut frontier = Frontier { order, limited, items: [(root, max_depth)].into(), rng: seed };
        let _session = SessionGuard::enter(&self.sessions);
        // Each block's levels left below it when last looked at (`None`: all the way): a block
        // met again with more levels left is looked at again, to go deeper; one being fetched
        // is not asked for twice, and is walked as deep as it was met when it comes.
        let mut reached: HashMap<Vec<u8>, Option<u32>> = HashMap::new();
        let mut fetching = HashSet::new();
        let mut in_flight = FuturesUnordered::new();
        let mut report = DagFetch::default();
        let started = Instant::now();
        loop {
            while in_flight.len() < window.max(1) {
                let Some((cid, left)) = frontier.pop() else { break };
                if cid.hash().code() == cairn_merkle::hash::IDENTITY {
                    continue;
                }
                let key = cid.hash().to_bytes();
                let first = match reached.get(&key) {
                    Some(&before) if crate::store::reaches_as_deep(before, left) => continue,
                    before => before.is_none(),
                };
                reached.insert(key.clone(), left);
                if first {
                    report.blocks += 1;
                }
                if fetching.contains(&key) {
                    continue;
                }
                // A raw block has no links, nor one at the depth limit that the fetch needs:
                // whether it is there is all that matters.
                let local = if cid.codec() == cairn_merkle::hash::RAW || left == Some(0) {
                    store.has(&cid)?.then(bytes::Bytes::new)
                } else {
                    store.get(&cid)?
                };
                match local {
                    Some(data) => {
                        if first {
                            progress.fetch_add(1, AtomicOrdering::Relaxed);
                        }
                        if left != Some(0) {
                            frontier.push_links(links(&cid, &data)?, left);
                        }
                    }
                    None => {
                        fetching.insert(key);
                        let net = self.clone();
                        in_flight.push(async move {
                            let got = match order {
                                Order::File => net.fetch(cid, timeout).await,
                                Order::Spread(_) => net.fetch_bulk(cid, timeout).await,
                            };
                            (cid, got)
                        });
                    }
                }
            }
            let Some((cid, result)) = in_flight.next().await else { break };
            let data = result?;
            let key = cid.hash().to_bytes();
            fetching.remove(&key);
            report.fetched += 1;
            report.bytes += data.len() as u64;
            progress.fetch_add(1, AtomicOrdering::Relaxed);
            // As deep as the block was last met (it was recorded before it was asked for).
            let left = reached.get(&key).copied().unwrap_or(Some(0));
            if left != Some(0) {
                frontier.push_links(links(&cid, &data)?, left);
            }
        }
        tracing::debug!(?report, elapsed = ?started.elapsed(), "fetched DAG {root}");
        Ok(report)
    }
}

fn links(cid: &Cid, data: &bytes::Bytes) -> Result<Vec<Cid>, DagError> {
    cairn_merkle::links::links(cid, data).map_err(|e| DagError::Links(*cid, e.to_string()))
}
