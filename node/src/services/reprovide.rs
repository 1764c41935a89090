//! Renewing this node's announcements on the DHT (`Reprovider.Strategy`,
//! `Reprovider.Interval`).
//!
//! Provider records expire after 48 hours, so a node renews its own every interval (22 hours
//! by default). A sweep walks the keys the strategy names and announces them by keyspace
//! region ([`crate::net::sweep`]): it gathers a window of keys, sorts them by their position in the
//! keyspace, looks up each region's peers once (regions found stay known for the rest of the
//! sweep), and sends every peer all of the window's keys it should hold over one stream. The
//! cost is a lookup per region, about one per ten DHT peers, rather than a lookup per key, and
//! the sweep holds one window in memory whatever the repo's size. When the last sweep ended
//! is kept in `$repo/reprovide.json`, so a restart does not start over: the next sweep is due
//! an interval after the last one finished.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_merkle::Cid;
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};

use crate::net::dht::Dht;
use crate::net::sweep::{self, Point, Region, Regions, Window};
use crate::net::{NetError, Network};
use crate::node::{Node, NodeError};
pub use crate::settings::Strategy;
use crate::store::BlockStore;

/// Keys handed to the network at a time.
const CHUNK: usize = 1024;
/// Announcements of at most this many keys take a lookup each (exact for a few roots); more
/// go by region.
pub const PER_KEY_MOST: usize = 8;
/// How long after start the first sweep waits when one is overdue (peers connect first).
pub const FIRST_SWEEP_DELAY: Duration = Duration::from_secs(60);

/// Where a repo keeps its last sweep.
const STATE_FILE: &str = "reprovide.json";

/// What a repo's `reprovide.json` says of its last sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LastSweep {
    /// When it ended (Unix time, seconds).
    #[serde(rename = "LastSweep")]
    pub ended: u64,
    /// Keys announced to at least one peer.
    #[serde(default)]
    pub provided: u64,
    /// Keys no peer took.
    #[serde(default)]
    pub failed: u64,
    /// Region lookups made.
    #[serde(default)]
    pub lookups: u64,
    /// How long it took.
    #[serde(default)]
    pub seconds: f64,
}

/// The last sweep of the repo at `repo`, if one finished.
pub fn last_sweep_of(repo: &std::path::Path) -> Option<LastSweep> {
    serde_json::from_str(&std::fs::read_to_string(repo.join(STATE_FILE)).ok()?).ok()
}

/// Parses an interval such as `22h`, `30m`, `90s` or `0` (off).
pub fn parse_interval(s: &str) -> Result<Option<Duration>, crate::config::ConfigError> {
    crate::config::parse_duration("Reprovider.Interval", s)
}

/// How a sweep went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Keys announced to at least one peer.
    pub provided: u64,
    /// Keys no peer took.
    pub failed: u64,
    /// Region lookups made (over all DHTs).
    pub lookups: u64,
    /// Streams of announcements that peers took.
    pub streams: u64,
    /// Streams that failed (the peer unreachable, refusing or too slow).
    pub failed_streams: u64,
    /// How long it took.
    pub took: Duration,
}

/// The renewal schedule of one node.
#[derive(Debug, Clone)]
pub struct Reprovider {
    node: Arc<Node>,
    net: Network,
    strategy: Strategy,
    interval: Option<Duration>,
}

impl Reprovider {
    /// Reads the strategy and interval from the repo's config.
    pub fn from_repo(node: Arc<Node>, net: Network) -> Result<Reprovider, NetError> {
        let s = node.repo().settings()?;
        let (strategy, interval) = (s.reprovide_strategy, s.reprovide_interval);
        Ok(Reprovider { node, net, strategy, interval })
    }

    /// The strategy in force.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    fn state_file(&self) -> PathBuf {
        self.node.repo().path().join(STATE_FILE)
    }

    /// When the last sweep finished, if one did.
    pub fn last_sweep(&self) -> Option<SystemTime> {
        last_sweep_of(self.node.repo().path()).map(|l| SystemTime::UNIX_EPOCH + Duration::from_secs(l.ended))
    }

    fn record_sweep(&self, s: &Sweep) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let v = serde_json::to_string(&LastSweep {
            ended: now,
            provided: s.provided,
            failed: s.failed,
            lookups: s.lookups,
            seconds: s.took.as_secs_f64(),
        })
        .expect("a plain struct serializes");
        let tmp = self.state_file().with_extension("json.tmp");
        if std::fs::write(&tmp, v).and_then(|()| std::fs::rename(&tmp, self.state_file())).is_err() {
            tracing::warn!("cannot record the reprovide sweep in {}", self.state_file().display());
        }
    }

    /// The keys to announce when `cids` were just added or pinned: the roots, or with `all`
    /// and `pinned` every block under them (walked from the repo).
    pub fn keys_for(&self, roots: &[Cid]) -> Vec<Cid> {
        match self.strategy {
            Strategy::Roots => roots.to_vec(),
            Strategy::Pinned | Strategy::All => {
                let mut out = Vec::new();
                for r in roots {
                    match self.node.dag_cids(r) {
                        Ok(all) => out.extend(all),
                        Err(_) => out.push(*r),
                    }
                }
                out
            }
        }
    }

    /// Announces every key of the strategy once, by region, a window at a time.
    pub async fn sweep(&self) -> Result<Sweep, NetError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Cid>>(2);
        let node = self.node.clone();
        let strategy = self.strategy;
        let walker = tokio::task::spawn_blocking(move || walk(&node, strategy, &tx));
        let s = self.announce_from(rx).await?;
        if let Ok(Err(e)) = walker.await {
            tracing::warn!("reprovide sweep stopped early: {e}");
        }
        self.record_sweep(&s);
        tracing::info!(
            "reprovided {} keys ({} reached no peer) in {:?}: {} region lookups, {} streams ({} failed)",
            s.provided,
            s.failed,
            s.took,
            s.lookups,
            s.streams,
            s.failed_streams
        );
        Ok(s)
    }

    /// Announces `keys` now, by region as a sweep does: for the many blocks of an add or a pin
    /// under the `all` and `pinned` strategies, which a lookup per key would take long over.
    pub async fn announce(&self, keys: Vec<Cid>) -> Result<Sweep, NetError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Cid>>(1);
        tx.send(keys).await.map_err(|_| NetError::Stopped)?;
        drop(tx);
        self.announce_from(rx).await
    }

    /// Announces `keys` and waits: a few through the network's queue, a lookup each, more by
    /// region. Returns how many reached a peer and how many did not.
    pub async fn announce_now(&self, keys: Vec<Cid>) -> Result<(u64, u64), NetError> {
        if keys.len() <= PER_KEY_MOST {
            return self.net.provide(keys).await;
        }
        let s = self.announce(keys).await?;
        Ok((s.provided, s.failed))
    }

    /// [`Reprovider::announce_now`] in the background.
    pub async fn announce_later(&self, keys: Vec<Cid>) {
        if keys.len() <= PER_KEY_MOST {
            self.net.provide_later(keys).await;
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            match me.announce(keys).await {
                Ok(s) => tracing::debug!("announced {} keys by region ({} reached no peer)", s.provided, s.failed),
                Err(e) => tracing::debug!("announcing by region stopped: {e}"),
            }
        });
    }

    /// Announces the keys that arrive on `rx`, a window at a time.
    async fn announce_from(&self, mut rx: tokio::sync::mpsc::Receiver<Vec<Cid>>) -> Result<Sweep, NetError> {
        let started = std::time::Instant::now();
        let dhts = self.net.live_dhts().await?;
        let addrs = self.net.external_addrs().await?;
        let mut regions: Vec<(Dht, Regions)> = dhts.into_iter().map(|d| (d, Regions::default())).collect();
        let mut s = Sweep::default();
        let mut window: Vec<(Point, Vec<u8>)> = Vec::with_capacity(sweep::WINDOW);
        loop {
            let chunk = rx.recv().await;
            let last = chunk.is_none();
            for cid in chunk.unwrap_or_default() {
                let key = cid.hash().to_bytes();
                window.push((sweep::point_of_key(&key), key));
                if window.len() >= sweep::WINDOW {
                    self.announce_window(&mut window, &mut regions, &addrs, &mut s).await?;
                    window.clear();
                }
            }
            if last {
                if !window.is_empty() {
                    self.announce_window(&mut window, &mut regions, &addrs, &mut s).await?;
                }
                break;
            }
        }
        s.took = started.elapsed();
        Ok(s)
    }

    /// Announces one window of keys on every DHT: finds the regions it lacks, then sends each
    /// peer its keys.
    async fn announce_window(
        &self,
        window: &mut Vec<(Point, Vec<u8>)>,
        regions: &mut [(Dht, Regions)],
        addrs: &[Multiaddr],
        s: &mut Sweep,
    ) -> Result<(), NetError> {
        window.sort_unstable();
        window.dedup();
        let points: Vec<Point> = window.iter().map(|(p, _)| *p).collect();
        let mut reached = vec![false; window.len()];
        for (dht, known) in regions.iter_mut() {
            let dht = *dht;
            let mut w = Window::new(&points, known);
            loop {
                let targets = w.next_targets(known, sweep::LOOKUPS_AT_ONCE);
                if targets.is_empty() {
                    break;
                }
                let lookups = targets.iter().map(|&i| self.net.closest_peers(dht, window[i].1.clone()));
                let found = futures::future::join_all(lookups).await;
                for (&i, closest) in targets.iter().zip(found) {
                    let closest = closest?;
                    s.lookups += 1;
                    let r = known.add(Region::from_lookup(points[i], closest.peers, closest.complete));
                    w.apply(known, r);
                }
            }
            let mut per_peer: HashMap<PeerId, Vec<usize>> = HashMap::new();
            for i in 0..points.len() {
                let Some(r) = w.owner(i) else { continue };
                for p in &known.get(r).peers {
                    per_peer.entry(*p).or_default().push(i);
                }
            }
            let window = &*window;
            let sends = per_peer.into_iter().map(|(peer, keys)| async move {
                let bytes: Vec<&[u8]> = keys.iter().map(|&i| &window[i].1[..]).collect();
                let r = self.net.send_providers(dht, peer, addrs, &bytes).await;
                (peer, keys, r)
            });
            let mut sends = futures::stream::iter(sends).buffer_unordered(sweep::SENDS_AT_ONCE);
            while let Some((peer, keys, r)) = sends.next().await {
                match r {
                    Ok(()) => {
                        s.streams += 1;
                        for i in keys {
                            reached[i] = true;
                        }
                    }
                    Err(e) => {
                        s.failed_streams += 1;
                        tracing::debug!("announcing {} keys to {peer}: {e}", keys.len());
                    }
                }
            }
        }
        let ok = reached.iter().filter(|r| **r).count() as u64;
        s.provided += ok;
        s.failed += reached.len() as u64 - ok;
        Ok(())
    }

    /// Sweeps every interval until the network stops. Does nothing when renewal is off.
    pub async fn run(self) {
        let Some(interval) = self.interval else { return };
        loop {
            let since = self.last_sweep().and_then(|t| SystemTime::now().duration_since(t).ok());
            let wait = match since {
                Some(since) if since < interval => interval - since,
                _ => FIRST_SWEEP_DELAY,
            };
            tokio::time::sleep(wait).await;
            if let Err(e) = self.sweep().await {
                tracing::debug!("reprovider stops: {e}");
                return;
            }
        }
    }
}

/// Sends the strategy's keys down `tx` in chunks; stops when the receiver is gone.
fn walk(node: &Node, strategy: Strategy, tx: &tokio::sync::mpsc::Sender<Vec<Cid>>) -> Result<(), NodeError> {
    let mut chunk = Vec::with_capacity(CHUNK);
    let push = |cid: Cid, chunk: &mut Vec<Cid>| -> bool {
        chunk.push(cid);
        if chunk.len() < CHUNK {
            return true;
        }
        tx.blocking_send(std::mem::take(chunk)).is_ok()
    };
    match strategy {
        Strategy::Roots | Strategy::Pinned => {
            let below = match strategy {
                Strategy::Pinned => node.indirect_pins()?,
                _ => Vec::new(),
            };
            for cid in node.pins()?.into_iter().map(|p| p.cid).chain(below) {
                if !push(cid, &mut chunk) {
                    return Ok(());
                }
            }
        }
        Strategy::All => {
            for key in node.repo().store().keys() {
                let key = key?;
                let Ok(mh) = cid::multihash::Multihash::<64>::from_bytes(&key) else { continue };
                if !push(Cid::new_v1(cairn_merkle::hash::RAW, mh), &mut chunk) {
                    return Ok(());
                }
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_strategies_parse() {
        assert_eq!(parse_interval("22h").unwrap(), Some(Duration::from_secs(22 * 3600)));
        assert_eq!(parse_interval("90s").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("0").unwrap(), None);
        for bad in ["h", "22", "1y", "-1h", "1.5h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!("all".parse::<Strategy>().unwrap(), Strategy::All);
        assert!("flat".parse::<Strategy>().is_err());
    }
}
