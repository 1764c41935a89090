//! The background scrub: every stored block is re-read and re-hashed once per
//! `Scrub.Interval`, paced evenly over it, and a damaged block is repaired from peers.
//!
//! A pass walks the block keys in order. After each block it sleeps as long as it takes to
//! stay on pace: the share of the interval spent so far matches the share of the repo's bytes
//! checked (each block weighing its size plus [`BLOCK_WEIGHT`], so that many small blocks pace
//! too). Where the pass stands is saved in the repo's metadata every few seconds, so a restart
//! carries on from there instead of starting over; the next pass starts one interval after the
//! last one started.
//!
//! A block whose bytes no longer match its hash, read twice, is deleted (its bytes are
//! worthless: nothing can tell which of them are right) and fetched again from peers with
//! Bitswap, which verifies what arrives before storing it. A block that cannot be read (EIO,
//! EMFILE) is tried again a few times and, if it still fails, kept as it is: a passing fault
//! never costs a block. When no peer has a deleted block, or a block stays unreadable, it is
//! recorded as damaged (`scrub/damaged/` in the metadata): `cairn repo verify` reports
//! it, the metrics count it, the log says so, and every later pass (and every
//! [`RETRY_EVERY`]) tries to fetch it again until one succeeds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_merkle::Cid;
use serde::{Deserialize, Serialize};

use crate::net::Network;
pub use crate::node::{damaged, is_damaged, Damaged};
use crate::node::{damaged_key, Node, NodeError};
use crate::store::{block_key, BlockStore};

/// What each block weighs in the pacing, beyond its size.
pub const BLOCK_WEIGHT: u64 = 4096;
/// How often damaged blocks are fetched again between passes.
pub const RETRY_EVERY: Duration = Duration::from_secs(600);
/// The metadata key of the pass in progress.
const STATE_KEY: &[u8] = b"scrub/state";
/// How often the position is saved.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// The longest single sleep, so that a stop is noticed quickly.
const SLICE: Duration = Duration::from_millis(200);

/// The scrub's counters, for the metrics.
#[derive(Debug, Default)]
pub struct ScrubStats {
    /// Blocks checked since the daemon started.
    pub checked_blocks: AtomicU64,
    /// Bytes checked since the daemon started.
    pub checked_bytes: AtomicU64,
    /// Damaged blocks found since the daemon started.
    pub corrupt: AtomicU64,
    /// Damaged blocks fetched again from peers since the daemon started.
    pub repaired: AtomicU64,
    /// Damaged blocks no peer has supplied yet (now).
    pub unrepaired: AtomicU64,
    /// Passes completed since the daemon started.
    pub passes: AtomicU64,
    /// Blocks the last completed pass checked (in this process, when it was resumed).
    pub last_pass_blocks: AtomicU64,
    /// When the last pass completed (Unix seconds; 0: none yet).
    pub last_pass_end: AtomicU64,
}

/// Where a pass stands, as saved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PassState {
    /// When the pass started (Unix milliseconds).
    started_ms: u64,
    /// The weight of the repo when it started.
    total: u64,
    /// The weight checked so far.
    done: u64,
    /// The last key checked (hex); empty: none yet.
    cursor: String,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The scrub of one node.
#[derive(Debug)]
pub struct Scrubber {
    node: Arc<Node>,
    interval: Duration,
    /// Where damaged blocks are fetched from, and how long each may take.
    net: Option<(Network, Duration)>,
    stats: Arc<ScrubStats>,
    stop: Arc<AtomicBool>,
}

impl Scrubber {
    /// A scrub of `node` checking everything once per `interval`, repairing through `net`
    /// (each block allowed `timeout`) when given.
    pub fn new(node: Arc<Node>, interval: Duration, net: Option<(Network, Duration)>) -> Scrubber {
        Scrubber { node, interval, net, stats: Arc::default(), stop: Arc::default() }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ScrubStats> {
        self.stats.clone()
    }

    /// Runs on a thread of its own until the returned handle is stopped.
    pub fn spawn(self) -> std::io::Result<ScrubHandle> {
        let stop = self.stop.clone();
        let thread = std::thread::Builder::new().name("cairn-scrub".into()).spawn(move || self.run())?;
        Ok(ScrubHandle { stop, thread: Some(thread) })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps until `until`, in slices; false when asked to stop.
    fn sleep_until(&self, until: Instant) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(SLICE));
        }
    }

    fn run(self) {
        if let Ok(list) = damaged(&self.node) {
            self.stats.unrepaired.store(list.len() as u64, Ordering::Relaxed);
        }
        while !self.stopped() {
            if let Err(e) = self.pass() {
                tracing::error!(error = %e, "scrub pass failed; trying again in a minute");
                if !self.sleep_until(Instant::now() + Duration::from_secs(60)) {
                    return;
                }
            }
        }
    }

    fn load(&self) -> Result<PassState, NodeError> {
        let store = self.node.repo().store();
        let saved = store.get_meta(STATE_KEY)?.and_then(|v| serde_json::from_slice::<PassState>(&v).ok());
        Ok(match saved {
            Some(s) => s,
            None => {
                let stats = store.stats()?;
                PassState {
                    started_ms: now_ms(),
                    total: stats.bytes + stats.blocks * BLOCK_WEIGHT,
                    done: 0,
                    cursor: String::new(),
                }
            }
        })
    }

    fn save(&self, s: &PassState) -> Result<(), NodeError> {
        let v = serde_json::to_vec(s).unwrap_or_default();
        Ok(self.node.repo().store().put_meta(STATE_KEY, &v)?)
    }

    /// One pass (or the rest of one), then the wait for the next.
    fn pass(&self) -> Result<(), NodeError> {
        let mut state = self.load()?;
        self.retry_damaged()?;
        let cursor = data_encoding::HEXLOWER.decode(state.cursor.as_bytes()).unwrap_or_default();
        // The pass's start on this process's clock (the saved one may be from before a restart).
        let elapsed = Duration::from_millis(now_ms().saturating_sub(state.started_ms));
        let started = Instant::now().checked_sub(elapsed).unwrap_or_else(Instant::now);
        let mut saved_at = Instant::now();
        let mut last_retry = Instant::now();
        let mut blocks = 0u64;
        tracing::debug!(resume = !cursor.is_empty(), total = state.total, "scrub pass");
        for key in self.node.repo().store().keys_after(&cursor) {
            if self.stopped() {
                return self.save(&state);
            }
            let key = key?;
            let weight = match self.node.check_key(&key) {
                Ok(size) => {
                    self.stats.checked_bytes.fetch_add(size, Ordering::Relaxed);
                    size + BLOCK_WEIGHT
                }
                Err(bad) if bad.confirmed => {
                    self.repair(&key, bad.cid, &bad.reason)?;
                    BLOCK_WEIGHT
                }
                Err(bad) => {
                    self.record_unreadable(&key, bad.cid, &bad.reason)?;
                    BLOCK_WEIGHT
                }
            };
            self.stats.checked_blocks.fetch_add(1, Ordering::Relaxed);
            blocks += 1;
            state.done += weight;
            state.cursor = data_encoding::HEXLOWER.encode(&key);
            if saved_at.elapsed() >= SAVE_EVERY {
                self.save(&state)?;
                saved_at = Instant::now();
            }
            if last_retry.elapsed() >= RETRY_EVERY {
                self.retry_damaged()?;
                last_retry = Instant::now();
            }
            // On pace: the share of the interval spent matches the share of the repo checked.
            let share = state.done.min(state.total) as f64 / state.total.max(1) as f64;
            if !self.sleep_until(started + self.interval.mul_f64(share)) {
                return self.save(&state);
            }
        }
        self.stats.last_pass_blocks.store(blocks, Ordering::Relaxed);
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        let end = now_ms();
        self.stats.last_pass_end.store(end / 1000, Ordering::Relaxed);
        tracing::info!(took = ?Duration::from_millis(end.saturating_sub(state.started_ms)), "scrub pass complete");
        // The next pass starts one interval after this one did; damaged blocks are retried
        // while it waits.
        let next = started + self.interval;
        let store = self.node.repo().store();
        let stats = store.stats()?;
        let next_ms = state.started_ms + self.interval.as_millis() as u64;
        self.save(&PassState {
            started_ms: next_ms.max(end),
            total: stats.bytes + stats.blocks * BLOCK_WEIGHT,
            done: 0,
            cursor: String::new(),
        })?;
        loop {
            let wake = next.min(Instant::now() + RETRY_EVERY);
            if !self.sleep_until(wake) {
                return Ok(());
            }
            if Instant::now() >= next {
                return Ok(());
            }
            self.retry_damaged()?;
        }
    }

    /// A block whose bytes do not match its hash (read twice): deleted, then fetched again
    /// if a peer has it, else recorded with the links its bytes still decode to.
    fn repair(&self, key: &[u8], cid: Cid, reason: &str) -> Result<(), NodeError> {
        tracing::error!(%cid, reason, "scrub: damaged block found");
        self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
        let links = self
            .node
            .repo()
            .store()
            .get(&cid)
            .ok()
            .flatten()
            .and_then(|data| cairn_merkle::PbNode::decode(&data).ok())
            .map(|n| n.links.into_iter().map(|l| l.cid).collect::<Vec<_>>());
        self.node.repo().store().delete_keys(&[key.to_vec()])?;
        if self.fetch(cid) {
            return Ok(());
        }
        tracing::error!(%cid, "scrub: no peer has the damaged block; it stays missing until one does (cairn repo verify lists it)");
        self.record(key, Damaged { cid, error: reason.to_owned(), found_ms: now_ms(), links, unreadable: false })
    }

    /// A block that could not be read or checked even after retries: kept as it is (the
    /// fault may pass) and recorded, so that verify reports it and later passes look again.
    fn record_unreadable(&self, key: &[u8], cid: Cid, reason: &str) -> Result<(), NodeError> {
        tracing::error!(%cid, reason, "scrub: block unreadable; kept, and tried again later");
        self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
        self.record(key, Damaged { cid, error: reason.to_owned(), found_ms: now_ms(), links: None, unreadable: true })
    }

    fn record(&self, key: &[u8], d: Damaged) -> Result<(), NodeError> {
        let record = serde_json::to_vec(&d).unwrap_or_default();
        let k = damaged_key(key);
        self.node.repo().store().update_meta(&[(k.as_bytes(), &record)], &[])?;
        self.stats.unrepaired.store(damaged(&self.node)?.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Fetches `cid` from peers (verified and stored on arrival); whether it came.
    fn fetch(&self, cid: Cid) -> bool {
        let Some((net, timeout)) = &self.net else { return false };
        match net.fetch_blocking(cid, *timeout) {
            Ok(_) => {
                tracing::info!(%cid, "scrub: damaged block repaired from a peer");
                self.stats.repaired.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::debug!(%cid, error = %e, "scrub: repair fetch failed");
                false
            }
        }
    }

    /// Tries to fetch every recorded damaged block again.
    fn retry_damaged(&self) -> Result<(), NodeError> {
        let list = damaged(&self.node)?;
        let mut left = list.len() as u64;
        for d in &list {
            if self.stopped() {
                break;
            }
            let store = self.node.repo().store();
            let key = block_key(&d.cid);
            let back = if d.unreadable {
                // Still stored: sound again, or now known to be corrupt (then repaired).
                match self.node.check_key(&key) {
                    Ok(_) => true,
                    Err(bad) if bad.confirmed => {
                        self.repair(&key, bad.cid, &bad.reason)?;
                        store.has(&d.cid)?
                    }
                    Err(_) => false,
                }
            } else {
                store.has(&d.cid)? || self.fetch(d.cid)
            };
            if back {
                let k = damaged_key(&block_key(&d.cid));
                store.update_meta(&[], &[k.as_bytes()])?;
                left -= 1;
            }
        }
        self.stats.unrepaired.store(left, Ordering::Relaxed);
        Ok(())
    }
}

/// A running scrub; stopping it waits for its thread (the position is saved first).
#[derive(Debug)]
pub struct ScrubHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScrubHandle {
    /// Stops the scrub and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ScrubHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;
    use cairn_merkle::hash::{CidFormat, RAW};

    #[test]
    fn a_pass_checks_every_block_on_pace_and_records_what_it_cannot_repair() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("r"), Profile::Test).unwrap());
        let mut cids = Vec::new();
        for i in 0..20u32 {
            let data = bytes::Bytes::from(vec![i as u8; 10_000]);
            cids.push(node.block_put(data, RAW, CidFormat::default()).unwrap());
        }
        // The repo starts with a block of its own (the empty directory), so count what is there.
        let held = node.repo().store().stats().unwrap();
        let scrub = Scrubber::new(node.clone(), Duration::from_millis(1500), None);
        let stats = scrub.stats();
        let started = Instant::now();
        let handle = scrub.spawn().unwrap();
        while stats.passes.load(Ordering::Relaxed) == 0 {
            assert!(started.elapsed() < Duration::from_secs(20), "no pass completed");
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = started.elapsed();
        handle.stop();
        assert!(took >= Duration::from_millis(1300), "a pass is paced over the interval, took {took:?}");
        // Passes follow each other without a gap (each takes the interval), so the next one
        // may have begun: count the completed one.
        assert_eq!(stats.last_pass_blocks.load(Ordering::Relaxed), held.blocks);
        assert!(stats.checked_bytes.load(Ordering::Relaxed) >= held.bytes);
        assert_eq!(stats.corrupt.load(Ordering::Relaxed), 0);

        // No network: a damaged block is removed, recorded and reported by verify.
        let scrub = Scrubber::new(node.clone(), Duration::from_millis(100), None);
        scrub.repair(&block_key(&cids[3]), cids[3], "bytes do not match the hash").unwrap();
        assert!(is_damaged(&node, &cids[3]).unwrap());
        assert!(!node.repo().store().has(&cids[3]).unwrap());
        let bad = node.verify(&mut |_| {}).unwrap();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].reason.contains("removed by the scrub"), "{bad:?}");
        assert_eq!(scrub.stats().unrepaired.load(Ordering::Relaxed), 1);
        // Once the block is back (from anywhere), the record goes.
        node.block_put(bytes::Bytes::from(vec![3u8; 10_000]), RAW, CidFormat::default()).unwrap();
        scrub.retry_damaged().unwrap();
        assert!(!is_damaged(&node, &cids[3]).unwrap());
        assert!(node.verify(&mut |_| {}).unwrap().is_empty());
    }

    #[test]
    fn passing_read_faults_and_a_single_bad_read_condemn_nothing() {
        use crate::node::examine;
        use crate::store::StoreError;
        let data = bytes::Bytes::from_static(b"sound bytes");
        let cid = CidFormat::default().cid(RAW, &data);
        let mut pauses = 0;
        let mut pause = |_| pauses += 1;
        // EIO twice, then the bytes: sound.
        let mut n = 0;
        let mut flaky = || {
            n += 1;
            if n < 3 {
                Err(StoreError::Db("IO error: Input/output error".into()))
            } else {
                Ok(Some(data.clone()))
            }
        };
        assert_eq!(examine(cid, &mut flaky, &mut pause), Ok(Some(data.len() as u64)));
        assert_eq!(pauses, 2);
        // Never readable: reported, not confirmed, so nothing deletes it.
        let mut broken = || Err(StoreError::Db("Too many open files".into()));
        let bad = examine(cid, &mut broken, &mut |_| {}).unwrap_err();
        assert!(!bad.confirmed && bad.reason.contains("unreadable"), "{bad:?}");
        // One bad read (a bit flipped in memory on the way), then the right bytes: sound.
        let mut first = true;
        let mut once = || {
            let out = if first { bytes::Bytes::from_static(b"sound bytez") } else { data.clone() };
            first = false;
            Ok(Some(out))
        };
        assert!(examine(cid, &mut once, &mut |_| {}).is_ok());
        // Wrong twice: confirmed; so is the database's own checksum failing twice.
        let mut wrong = || Ok(Some(bytes::Bytes::from_static(b"rotten")));
        assert!(examine(cid, &mut wrong, &mut |_| {}).unwrap_err().confirmed);
        let mut crc = || Err(StoreError::Checksum("Corruption: blob file checksum mismatch".into()));
        assert!(examine(cid, &mut crc, &mut |_| {}).unwrap_err().confirmed);
        // Gone since it was listed (a collection ran): nothing to say.
        assert_eq!(examine(cid, &mut || Ok(None), &mut |_| {}), Ok(None));
    }

    #[test]
    fn an_unreadable_block_is_kept_and_cleared_once_it_reads_again() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("r"), Profile::Test).unwrap());
        let cid = node.block_put(bytes::Bytes::from(vec![9u8; 100]), RAW, CidFormat::default()).unwrap();
        let scrub = Scrubber::new(node.clone(), Duration::from_millis(100), None);
        scrub.record_unreadable(&block_key(&cid), cid, "unreadable after 3 tries: EIO").unwrap();
        assert!(node.repo().store().has(&cid).unwrap(), "an unreadable block was deleted");
        assert!(is_damaged(&node, &cid).unwrap());
        scrub.retry_damaged().unwrap();
        assert!(!is_damaged(&node, &cid).unwrap());
        assert!(node.repo().store().has(&cid).unwrap());
    }

    /// A CIDv0 file of three levels: root, two dag-pb inner nodes, dag-pb leaves.
    fn deep_file(node: &Node) -> (Cid, Vec<Cid>) {
        let mut opts = crate::add::AddOptions::default();
        opts.import.max_links = 2;
        opts.import.chunker = "size-1024".parse().unwrap();
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let root = node.add_reader(&data[..], &opts, true).unwrap().cid;
        let inner = cairn_merkle::links::links(&root, &node.block_get(&root).unwrap()).unwrap();
        (root, inner)
    }

    #[test]
    fn gc_walks_past_a_removed_block_through_the_links_it_still_had() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("r"), Profile::Test).unwrap());
        let (root, inner) = deep_file(&node);
        let below = cairn_merkle::links::links(&inner[0], &node.block_get(&inner[0]).unwrap()).unwrap();
        let garbage = node.block_put(bytes::Bytes::from_static(b"unpinned"), RAW, CidFormat::default()).unwrap();
        // The scrub finds inner[0] rotten and no peer has it: removed, recorded with its links.
        let scrub = Scrubber::new(node.clone(), Duration::from_millis(100), None);
        scrub.repair(&block_key(&inner[0]), inner[0], "bytes do not match the hash").unwrap();
        assert!(!node.repo().store().has(&inner[0]).unwrap());
        // gc runs (it failed on every run before), removes the garbage and keeps the blocks
        // below the removed one, which its repair will need.
        let report = node.gc().unwrap();
        assert!(report.holes.is_empty(), "{report:?}");
        assert_eq!(report.removed_blocks, 1);
        assert!(!node.repo().store().has(&garbage).unwrap());
        for c in below.iter().chain([&root, &inner[1]]) {
            assert!(node.repo().store().has(c).unwrap(), "gc removed {c}");
        }
    }

    #[test]
    fn gc_removes_nothing_while_a_pinned_dag_has_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("r"), Profile::Test).unwrap());
        let (_, inner) = deep_file(&node);
        let below = cairn_merkle::links::links(&inner[0], &node.block_get(&inner[0]).unwrap()).unwrap();
        let garbage = node.block_put(bytes::Bytes::from_static(b"unpinned"), RAW, CidFormat::default()).unwrap();
        // Lost with no record of its links (removed by hand, or its bytes did not decode).
        node.repo().store().delete_keys(&[block_key(&inner[0])]).unwrap();
        let report = node.gc().unwrap();
        assert_eq!(report.holes, vec![inner[0]]);
        assert_eq!(report.removed_blocks, 0);
        for c in below.iter().chain([&garbage]) {
            assert!(node.repo().store().has(c).unwrap(), "gc removed {c} past a hole");
        }
        // A missing raw block has no links to lose: no hole.
        let raw = CidFormat { version: 1, hash: cairn_merkle::hash::HashAlg::Sha2_256 };
        let leaf = node.block_put(bytes::Bytes::from_static(b"leaf"), RAW, raw).unwrap();
        node.pin_add(&crate::IpfsPath { root: leaf, rest: String::new() }, true, None).unwrap();
        node.repo().store().delete_keys(&[block_key(&leaf)]).unwrap();
        let holes = node.gc().unwrap().holes;
        assert_eq!(holes, vec![inner[0]]);
    }

    #[test]
    fn a_stopped_pass_resumes_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("r"), Profile::Test).unwrap());
        for i in 0..10u32 {
            node.block_put(bytes::Bytes::from(vec![i as u8; 1000]), RAW, CidFormat::default()).unwrap();
        }
        let held = node.repo().store().stats().unwrap().blocks;
        // A 10 s interval: stopped after about a second, a few blocks are done.
        let scrub = Scrubber::new(node.clone(), Duration::from_secs(10), None);
        let stats = scrub.stats();
        let handle = scrub.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        handle.stop();
        let first = stats.checked_blocks.load(Ordering::Relaxed);
        assert!((1..held).contains(&first), "checked {first}");
        let state: PassState =
            serde_json::from_slice(&node.repo().store().get_meta(STATE_KEY).unwrap().unwrap()).unwrap();
        assert!(!state.cursor.is_empty());
        // Resumed, with a pass start more than an interval ago: the rest is due at once.
        let mut old = state.clone();
        old.started_ms -= 20_000;
        node.repo().store().put_meta(STATE_KEY, &serde_json::to_vec(&old).unwrap()).unwrap();
        let scrub = Scrubber::new(node.clone(), Duration::from_secs(10), None);
        let stats = scrub.stats();
        let handle = scrub.spawn().unwrap();
        let started = Instant::now();
        while stats.passes.load(Ordering::Relaxed) == 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "the resumed pass did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        handle.stop();
        assert_eq!(stats.last_pass_blocks.load(Ordering::Relaxed) + first, held, "each block once");
    }
}
