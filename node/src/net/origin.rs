//! Trustless HTTP gateways as extra block sources: the publisher's origin, next to the peers.
//!
//! A node configured with `Origins.Gateways` (base URLs of trustless gateways, another Cairn's
//! included) asks them for blocks as `GET <base>/ipfs/<cid>?format=raw` with
//! `Accept: application/vnd.ipld.raw`. What comes back is verified against the CID exactly as
//! a block from a peer is, then stored through the same path, so the rest of the node cannot
//! tell the sources apart.
//!
//! When the origin is asked ([`Origin::delay`]):
//! - **fast start**: the first `Origins.FastStart` blocks of a burst of fetches (a burst ends
//!   after [`BURST_GAP`] without one) are asked of the origin at once, alongside the peers;
//! - **peers first**: later blocks wait for the peers until they stall, that is until no peer
//!   has sent any block bytes for `Origins.StallTimeout` ([`Origin::stall_left`]), and only
//!   then is the origin asked as well. While peers keep delivering, even slowly (a crowd
//!   sharing one publisher), the origin is left alone, up to [`PATIENCE`] stall timeouts for
//!   one block; when peers stall or fail, the origin carries the fetch.
//! - **read-ahead** ([`crate::net::Network::fetch_ahead`]): a block fetched ahead of a reader
//!   is asked of the origin only when no peer has it after `Origins.StallTimeout`; once the
//!   reader waits on it, it is a later block as above.
//!
//! Gateways are tried in order; one that fails is skipped for the next block. The counters
//! ([`OriginStats`]) show the origin's share on the metrics page.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_merkle::{Block, Cid};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A burst of fetches ends after this long without one.
pub const BURST_GAP: Duration = Duration::from_secs(5);
/// The largest block accepted from an origin.
const MAX_BLOCK: usize = 2 << 20;
/// A block a reader waits on is left to peers that keep delivering other blocks for at most
/// this many stall timeouts; then the origin is asked even so.
pub const PATIENCE: u32 = 10;
/// How long one origin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the origins delivered.
#[derive(Debug, Default)]
pub struct OriginStats {
    /// Blocks taken from an origin (verified).
    pub blocks: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Requests that failed (unreachable, not 200, a block that does not match its CID).
    pub failures: AtomicU64,
}

/// How the origins are used (`Origins` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// Base URLs of trustless gateways, tried in order.
    pub gateways: Vec<String>,
    /// Blocks per burst taken from the origin at once.
    pub fast_start: u64,
    /// How long peers get before the origin is asked too.
    pub stall: Duration,
}

/// The HTTP origins of one node.
#[derive(Debug)]
pub struct Origin {
    config: OriginConfig,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// (last fetch, fetches in this burst).
    burst: Mutex<(Option<Instant>, u64)>,
    /// The gateway to try first (the last one that worked).
    preferred: AtomicU64,
    /// When block bytes last arrived from a peer.
    peers_last: Mutex<Option<Instant>>,
    /// The counters.
    pub stats: OriginStats,
}

impl Origin {
    /// Origins from `config`; `None` when it names no gateway. Each URL must be `http://`.
    pub fn new(config: OriginConfig) -> Result<Option<Origin>, String> {
        if config.gateways.is_empty() {
            return Ok(None);
        }
        for g in &config.gateways {
            let uri: hyper::Uri = g.parse().map_err(|e| format!("Origins.Gateways: {g:?} is not a URL: {e}"))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(format!("Origins.Gateways: {g:?} is not an http:// URL"));
            }
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Some(Origin {
            config,
            client,
            burst: Mutex::new((None, 0)),
            preferred: AtomicU64::new(0),
            peers_last: Mutex::new(None),
            stats: OriginStats::default(),
        }))
    }

    /// How long a new fetch should leave to the peers before the origin is asked: nothing
    /// during a burst's fast start, `Origins.StallTimeout` after it.
    pub fn delay(&self) -> Duration {
        let now = Instant::now();
        let Ok(mut b) = self.burst.lock() else { return self.config.stall };
        if b.0.is_none_or(|t| now.saturating_duration_since(t) > BURST_GAP) {
            b.1 = 0;
        }
        b.0 = Some(now);
        b.1 += 1;
        if b.1 <= self.config.fast_start {
            Duration::ZERO
        } else {
            self.config.stall
        }
    }

    /// `Origins.StallTimeout`.
    pub fn stall(&self) -> Duration {
        self.config.stall
    }

    /// Block bytes arrived from a peer just now (a block still on its way counts).
    pub fn peers_delivered(&self) {
        if let Ok(mut t) = self.peers_last.lock() {
            *t = Some(Instant::now());
        }
    }

    /// How much longer the peers get before they count as stalled: `Origins.StallTimeout`
    /// after block bytes last arrived from a peer, and nothing when none ever did or they
    /// stalled.
    pub fn stall_left(&self) -> Duration {
        let last = self.peers_last.lock().ok().and_then(|t| *t);
        last.map_or(Duration::ZERO, |t| self.config.stall.saturating_sub(t.elapsed()))
    }

    /// The block `cid` from the first gateway that has it, verified.
    pub async fn get(&self, cid: Cid) -> Result<Block, String> {
        let n = self.config.gateways.len();
        let first = self.preferred.load(Ordering::Relaxed) as usize % n;
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            match tokio::time::timeout(REQUEST_TIMEOUT, self.get_from(&self.config.gateways[at], cid)).await {
                Ok(Ok(block)) => {
                    self.preferred.store(at as u64, Ordering::Relaxed);
                    self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes.fetch_add(block.data().len() as u64, Ordering::Relaxed);
                    return Ok(block);
                }
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(format!("{}: no answer in {REQUEST_TIMEOUT:?}", self.config.gateways[at])),
            }
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        Err(errors.join("; "))
    }

    async fn get_from(&self, base: &str, cid: Cid) -> Result<Block, String> {
        let url = format!("{}/ipfs/{cid}?format=raw", base.trim_end_matches('/'));
        let req = hyper::Request::get(&url)
            .header(hyper::header::ACCEPT, "application/vnd.ipld.raw")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let resp = self.client.request(req).await.map_err(|e| format!("{url}: {e}"))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(format!("{url}: {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_BLOCK)
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the block: {e}"))?
            .to_bytes();
        Block::verified(cid, body).map_err(|e| format!("{url}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(fast_start: u64) -> Origin {
        let config =
            OriginConfig { gateways: vec!["http://127.0.0.1:1".into()], fast_start, stall: Duration::from_millis(700) };
        Origin::new(config).unwrap().unwrap()
    }

    #[test]
    fn peers_that_keep_delivering_are_not_stalled() {
        let o = origin(0);
        assert_eq!(o.stall_left(), Duration::ZERO, "peers that never delivered give no reason to wait");
        o.peers_delivered();
        let left = o.stall_left();
        assert!(left > Duration::from_millis(600) && left <= Duration::from_millis(700), "{left:?}");
        std::thread::sleep(Duration::from_millis(750));
        assert_eq!(o.stall_left(), Duration::ZERO, "no block for the stall timeout: stalled");
    }

    #[test]
    fn a_burst_starts_at_the_origin_then_leaves_it_to_the_peers() {
        let o = origin(3);
        let delays: Vec<Duration> = (0..5).map(|_| o.delay()).collect();
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3..], [Duration::from_millis(700); 2]);
    }

    #[test]
    fn only_http_urls_are_taken() {
        let cfg = |g: &str| OriginConfig { gateways: vec![g.into()], fast_start: 1, stall: Duration::ZERO };
        assert!(Origin::new(cfg("ftp://x")).is_err());
        assert!(Origin::new(cfg("not a url")).is_err());
        assert!(Origin::new(OriginConfig { gateways: vec![], fast_start: 1, stall: Duration::ZERO })
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn an_unreachable_origin_is_an_error_and_counted() {
        let o = origin(1);
        let cid = cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, b"x");
        assert!(o.get(cid).await.is_err());
        assert_eq!(o.stats.failures.load(Ordering::Relaxed), 1);
    }
}
