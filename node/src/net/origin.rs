//! Trustless HTTP gateways as extra block sources: the publisher's origin, next to the peers.
//!
//! One job past 700 lines (a third of them tests): when to ask the gateways, and asking them,
//! raw blocks and entity CARs alike, share the burst, stall and backoff state below.
//!
//! A node configured with `Origins.Gateways` (base URLs of trustless gateways, another Cairn's
//! included) asks them for blocks as `GET <base>/ipfs/<cid>?format=raw` with
//! `Accept: application/vnd.ipld.raw`. What comes back is verified against the CID exactly as
//! a block from a peer is, then stored through the same path, so the rest of the node cannot
//! tell the sources apart.
//!
//! When the origin is asked ([`Origin::delay`]):
//! - **fast start**: the first `Origins.FastStart` blocks of a burst of fetches (a burst ends
//!   after [`BURST_GAP`] without one) are asked of the origin at once, alongside the peers,
//!   unless a peer says it has the block within a quarter of a second of the last peer
//!   being told of the want, and at most a second in all ([`crate::net::Network::fetch`]).
//!   A node with no peers, or whose peers lack the block, starts from the origin; a crowd
//!   whose peers already hold the file leaves the origin (often the publisher's own uplink)
//!   alone;
//! - **peers first**: later blocks wait for the peers until they stall, that is until no peer
//!   has sent any block bytes for the stall timeout ([`Origin::stall_left`]), and only
//!   then is the origin asked as well. While peers keep delivering, even slowly (a crowd
//!   sharing one publisher), the origin is left alone, up to [`PATIENCE`] stall timeouts for
//!   one block; when peers stall or fail, the origin carries the fetch.
//! - **read-ahead** ([`crate::net::Network::fetch_ahead`]): a block fetched ahead of a reader
//!   is asked of the origin only when, after the stall timeout, every peer has answered that
//!   it lacks the block; once the reader waits on it, it is a later block as above.
//! - **backoff**: each origin request in a row that a peer makes needless (the block came
//!   from the peer first) doubles the stall timeout, up to 16 times ([`Origin::stall`]); the
//!   first request the origin wins restores it.
//!
//! With `Origins.Format = "car"`, the fast start of a file read is one request instead of one
//! per block: when a reader starts on a file at some offset, the node lacks the first block it
//! needs and no peer has delivered block bytes within `Origins.StallTimeout`, the origin is
//! asked for that stretch of the file as a CAR
//! (`GET <base>/ipfs/<file>?format=car&dag-scope=entity&entity-bytes=FROM:TO`, `FastStart`
//! chunks of 256 KiB), and its blocks are taken as they stream in ([`Origin::get_range`]).
//! Each is verified against its CID, and each must belong to the file: the first is the
//! file's root, every later one a link of a block before it (the CAR's depth-first order). A
//! CAR that breaks this is cut off and counted as a failure; the reader's own fetches then
//! go on as without it.
//!
//! Gateways are tried in order; one that fails is skipped for the next block. The counters
//! ([`OriginStats`]) show the origin's share on the metrics page.
//!
//! **HTTP providers.** A delegated router may name a provider by an HTTP address
//! (`/ip4/.../tcp/.../http`, a `transport-ipfs-gateway-http` record): a trustless gateway that
//! has the block. Such providers are learned ([`Origin::learn`], the [`MAX_LEARNED`] latest)
//! and asked after the configured gateways, by the same rules and with the same checks, so a
//! node with routers but no `Origins.Gateways` fetches from them too. HTTPS providers
//! (`/tls/http`, `/https`) are asked over TLS against the system's roots
//! ([`super::http_client`]).

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes};
use cairn_merkle::car::CarReader;
use cairn_merkle::{Block, Cid};
use http_body_util::{BodyExt as _, Empty, Limited};

pub use crate::settings::OriginFormat;

/// A burst of fetches ends after this long without one.
pub const BURST_GAP: Duration = Duration::from_secs(5);
/// The largest block accepted from an origin.
const MAX_BLOCK: usize = 2 << 20;
/// A block a reader waits on is left to peers that keep delivering other blocks for at most
/// this many stall timeouts; then the origin is asked even so.
pub const PATIENCE: u32 = 10;
/// The stall timeout doubles at most this many times while peers keep beating the origin.
pub const MAX_BACKOFF: u32 = 4;
/// How long one origin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The bytes of a file asked for as a CAR per block of the fast start (Kubo's chunk size).
pub const RANGE_PER_BLOCK: u64 = 256 << 10;
/// HTTP providers kept ([`Origin::learn`]): the latest, the oldest forgotten first.
pub const MAX_LEARNED: usize = 8;

/// What the origins delivered.
#[derive(Debug, Default)]
pub struct OriginStats {
    /// Blocks taken from an origin (verified).
    pub blocks: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Requests that failed (unreachable, not 200, a block that does not match its CID).
    pub failures: AtomicU64,
    /// Blocks asked of an origin for a burst's fast start (no peer said HAVE in time).
    pub asked_fast_start: AtomicU64,
    /// Blocks asked because the peers stalled (no block bytes for `Origins.StallTimeout`).
    pub asked_stalled: AtomicU64,
    /// Blocks asked after [`PATIENCE`] stall timeouts waiting on peers that deliver others.
    pub asked_patience: AtomicU64,
    /// Blocks fetched ahead of a reader, asked because no peer has them.
    pub asked_ahead: AtomicU64,
    /// Requests given up because a peer delivered the block first.
    pub abandoned: AtomicU64,
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
    /// Raw blocks only, or a file read's fast start as a CAR.
    pub format: OriginFormat,
}

impl Default for OriginConfig {
    /// No gateway, and the config's defaults (`Origins` in a new config).
    fn default() -> Self {
        OriginConfig { gateways: Vec::new(), fast_start: 4, stall: Duration::from_secs(1), format: OriginFormat::Raw }
    }
}

/// The HTTP origins of one node.
#[derive(Debug)]
pub struct Origin {
    config: OriginConfig,
    client: super::http_client::HttpClient,
    /// (last fetch, fetches in this burst).
    burst: Mutex<(Option<Instant>, u64)>,
    /// The gateway to try first (the last one that worked).
    preferred: AtomicU64,
    /// When block bytes last arrived from a peer.
    peers_last: Mutex<Option<Instant>>,
    /// CARs being fetched now ([`Origin::get_range`]).
    cars: tokio::sync::watch::Sender<u32>,
    /// Blocks being fetched one by one now ([`Origin::claim`]).
    asked: Mutex<HashSet<Cid>>,
    /// Requests in a row that a peer made needless ([`Origin::stall`]).
    lost: AtomicU32,
    /// HTTP providers a router named, oldest first ([`Origin::learn`]).
    learned: Mutex<std::collections::VecDeque<String>>,
    /// Counts the providers learned, for fetches waiting for one ([`Origin::learned_changes`]).
    learned_count: tokio::sync::watch::Sender<u64>,
    /// The counters.
    pub stats: OriginStats,
}

/// What went wrong with an HTTP origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// A gateway in the config is not an `http://` or `https://` URL.
    #[error("Origins.Gateways: {0:?} is not an http:// or https:// URL")]
    NotHttp(String),
    /// The request could not be built or sent.
    #[error("{url}: {source}")]
    Request {
        /// The URL asked.
        url: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The gateway answered with another status than 200.
    #[error("{url}: {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// Its answer.
        status: hyper::StatusCode,
    },
    /// No full answer within [`REQUEST_TIMEOUT`].
    #[error("{url}: not done in {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The URL asked.
        url: String,
    },
    /// The body could not be read, or ran past what the request can take.
    #[error("{url}: reading the answer: {source}")]
    Body {
        /// The URL asked.
        url: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The block is not the one asked for.
    #[error("{url}: {source}")]
    Block {
        /// The URL asked.
        url: String,
        /// Why (boxed to keep results small).
        source: Box<cairn_merkle::block::BlockError>,
    },
    /// The CAR is not the file's entity CAR.
    #[error("{url}: {source}")]
    Car {
        /// The URL asked.
        url: String,
        /// Why (boxed to keep results small).
        source: Box<CarProblem>,
    },
    /// Every gateway failed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    All(Vec<OriginError>),
}

/// What is wrong with an entity CAR from an origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarProblem {
    /// It is not a well-formed CAR.
    #[error("the CAR: {0}")]
    Malformed(#[from] cairn_merkle::car::CarError),
    /// Its roots do not name the file.
    #[error("the CAR's roots {0:?} do not name {1}")]
    Roots(Vec<Cid>, Box<Cid>),
    /// It holds a block that no block before it links to.
    #[error("the CAR holds {0}, which no block before it links to")]
    Unlinked(Box<Cid>),
    /// A block's links cannot be read.
    #[error("the CAR's block {0}: {1}")]
    Links(Box<Cid>, cairn_merkle::links::LinksError),
    /// It runs past what the range can take.
    #[error("the CAR runs past {0} bytes")]
    TooLong(u64),
    /// The task reading it failed.
    #[error("the CAR reader failed: {0}")]
    Reader(String),
}

impl Origin {
    /// Origins from `config`; `None` when it names no gateway. Each URL must be `http://` or
    /// `https://`.
    pub fn new(config: OriginConfig) -> Result<Option<Origin>, OriginError> {
        if config.gateways.is_empty() {
            return Ok(None);
        }
        Origin::with_providers(config).map(Some)
    }

    /// Origins from `config`, which may name no gateway: HTTP providers learned later
    /// ([`Origin::learn`]) are asked then. Each URL must be `http://` or `https://`.
    pub fn with_providers(config: OriginConfig) -> Result<Origin, OriginError> {
        Origin::with_client(config, super::http_client::client())
    }

    /// [`Origin::with_providers`] asking through `client` (one that trusts a test's own
    /// authority).
    pub fn with_client(config: OriginConfig, client: super::http_client::HttpClient) -> Result<Origin, OriginError> {
        for g in &config.gateways {
            let uri: Option<hyper::Uri> = g.parse().ok();
            let web = |u: &hyper::Uri| matches!(u.scheme_str(), Some("http" | "https"));
            if uri.as_ref().is_none_or(|u| !web(u) || u.host().is_none()) {
                return Err(OriginError::NotHttp(g.clone()));
            }
        }
        Ok(Origin {
            config,
            client,
            burst: Mutex::new((None, 0)),
            preferred: AtomicU64::new(0),
            peers_last: Mutex::new(None),
            cars: tokio::sync::watch::Sender::new(0),
            asked: Mutex::new(HashSet::new()),
            lost: AtomicU32::new(0),
            learned: Mutex::new(std::collections::VecDeque::new()),
            learned_count: tokio::sync::watch::Sender::new(0),
            stats: OriginStats::default(),
        })
    }

    /// Keeps the HTTP provider at `addr` (`/ip4|ip6|dns*/HOST/tcp/PORT/http`, or HTTPS) to ask after the
    /// configured gateways; returns whether the address is one this node can ask (HTTP or
    /// HTTPS, [`http_base`]). The [`MAX_LEARNED`] latest are kept; a known one becomes the latest.
    pub fn learn(&self, addr: &libp2p::Multiaddr) -> bool {
        let Some(base) = http_base(addr) else { return false };
        if self.config.gateways.contains(&base) {
            return true;
        }
        let mut learned = self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        learned.retain(|b| *b != base);
        if learned.len() >= MAX_LEARNED {
            learned.pop_front();
        }
        tracing::debug!("learned HTTP provider {base}");
        learned.push_back(base);
        drop(learned);
        self.learned_count.send_modify(|n| *n += 1);
        true
    }

    /// Changes each time a provider is learned: a fetch with nothing to ask yet waits on it.
    pub fn learned_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.learned_count.subscribe()
    }

    /// Whether `Origins.Gateways` names any gateway.
    pub fn has_gateways(&self) -> bool {
        !self.config.gateways.is_empty()
    }

    /// Whether there is anything to ask: a configured gateway or a learned provider.
    pub fn has_sources(&self) -> bool {
        !self.config.gateways.is_empty()
            || !self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }

    /// The gateways to ask, configured first, then the learned providers, newest first.
    fn bases(&self) -> Vec<String> {
        let learned = self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.config.gateways.iter().cloned().chain(learned.iter().rev().cloned()).collect()
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
            self.stall()
        }
    }

    /// Whether a file read of `want` bytes starting now should take its fast start as one
    /// CAR ([`Origin::get_range`]), and how many bytes of the file to ask for: under
    /// `Origins.Format = "car"`, what is left of the burst's fast start ([`RANGE_PER_BLOCK`]
    /// a block), no more than the read needs. That much of the fast start is then spent, so
    /// the reader's fetches of the same blocks leave them to the CAR (and the peers).
    pub fn take_fast_start(&self, want: u64) -> Option<u64> {
        if self.config.format != OriginFormat::Car || want == 0 {
            return None;
        }
        let now = Instant::now();
        let mut b = self.burst.lock().ok()?;
        if b.0.is_none_or(|t| now.saturating_duration_since(t) > BURST_GAP) {
            b.1 = 0;
        }
        let blocks = self.config.fast_start.saturating_sub(b.1).min(want.div_ceil(RANGE_PER_BLOCK));
        if blocks == 0 {
            return None;
        }
        *b = (Some(now), b.1 + blocks);
        Some(blocks * RANGE_PER_BLOCK)
    }

    /// The stall timeout now: `Origins.StallTimeout`, doubled for each origin request in a row
    /// that a peer made needless by delivering first, up to `2^`[`MAX_BACKOFF`] times. While
    /// the peers keep beating the origin (a crowd whose origin is the publisher's own busy
    /// uplink), asking it sooner only adds to its load; once it wins again, the timeout is
    /// back to the configured one.
    pub fn stall(&self) -> Duration {
        self.config.stall * (1 << self.lost.load(Ordering::Relaxed).min(MAX_BACKOFF))
    }

    /// A request was given up: a peer delivered the block first.
    pub fn lost_to_peers(&self) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// A request brought the block before any peer did.
    pub fn won(&self) {
        self.lost.store(0, Ordering::Relaxed);
    }

    /// Block bytes arrived from a peer just now (a block still on its way counts).
    pub fn peers_delivered(&self) {
        if let Ok(mut t) = self.peers_last.lock() {
            *t = Some(Instant::now());
        }
    }

    /// How much longer the peers get before they count as stalled: the stall timeout
    /// ([`Origin::stall`]) after block bytes last arrived from a peer, and nothing when none ever did or they
    /// stalled.
    pub fn stall_left(&self) -> Duration {
        let last = self.peers_last.lock().ok().and_then(|t| *t);
        last.map_or(Duration::ZERO, |t| self.stall().saturating_sub(t.elapsed()))
    }

    /// The block `cid` from the first gateway that has it, verified.
    pub async fn get(&self, cid: Cid) -> Result<Block, OriginError> {
        let bases = self.bases();
        let n = bases.len();
        let first = self.preferred.load(Ordering::Relaxed) as usize % n.max(1);
        let mut errors = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            match tokio::time::timeout(REQUEST_TIMEOUT, self.get_from(&bases[at], cid)).await {
                Ok(Ok(block)) => {
                    self.preferred.store(at as u64, Ordering::Relaxed);
                    self.stats.blocks.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes.fetch_add(block.data().len() as u64, Ordering::Relaxed);
                    return Ok(block);
                }
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(OriginError::Timeout { url: raw_url(&bases[at], cid) }),
            }
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        Err(OriginError::All(errors))
    }

    /// Bytes `from .. from + len` of the file `file` as a CAR from the preferred gateway,
    /// each block verified and handed to `deliver` (on a blocking thread) as soon as it has
    /// streamed in. Returns how many blocks came; a CAR that is malformed, holds a block that
    /// does not match its CID or does not belong to the file, or runs past the size such a
    /// range can take, is an error (the blocks before it were delivered).
    pub async fn get_range(
        &self,
        ticket: CarTicket,
        file: Cid,
        from: u64,
        len: u64,
        deliver: impl FnMut(Block) + Send + 'static,
    ) -> Result<u64, OriginError> {
        let bases = self.bases();
        if bases.is_empty() {
            drop(ticket);
            return Err(OriginError::All(Vec::new()));
        }
        let at = self.preferred.load(Ordering::Relaxed) as usize % bases.len();
        let base = bases[at].trim_end_matches('/');
        let to = from + len.max(1) - 1;
        let url = format!("{base}/ipfs/{file}?format=car&dag-scope=entity&entity-bytes={from}:{to}");
        let got = match tokio::time::timeout(REQUEST_TIMEOUT, self.car_from(&url, file, len, deliver)).await {
            Ok(r) => r,
            Err(_) => Err(OriginError::Timeout { url }),
        };
        drop(ticket);
        match &got {
            Ok((blocks, bytes)) => {
                self.stats.blocks.fetch_add(*blocks, Ordering::Relaxed);
                self.stats.bytes.fetch_add(*bytes, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        got.map(|(blocks, _)| blocks)
    }

    /// Counts a CAR as being fetched from now until the ticket is dropped (at the end of
    /// [`Origin::get_range`]), so that [`Origin::cars_settled`] waits for it.
    pub fn car_ticket(self: &std::sync::Arc<Self>) -> CarTicket {
        self.cars.send_modify(|n| *n += 1);
        CarTicket(self.clone())
    }

    /// Claims the fetch of `cid` from the origin: `None` when another fetch of it is on its
    /// way (a reader and the read-ahead can both come to ask for the same block), whose
    /// delivery answers every waiter. The claim ends when the value is dropped.
    pub fn claim(self: &std::sync::Arc<Self>, cid: Cid) -> Option<Claim> {
        let mut asked = self.asked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        asked.insert(cid).then(|| Claim(self.clone(), cid))
    }

    /// Returns once no CAR is being fetched ([`Origin::get_range`]): a block fetch that would
    /// ask the origin waits for them first, as they may hold its block.
    pub async fn cars_settled(&self) {
        let mut cars = self.cars.subscribe();
        let _ = cars.wait_for(|&n| n == 0).await;
    }

    async fn car_from(
        &self,
        url: &str,
        file: Cid,
        len: u64,
        mut deliver: impl FnMut(Block) + Send + 'static,
    ) -> Result<(u64, u64), OriginError> {
        let resp = self.ask(url, "application/vnd.ipld.car; version=1; order=dfs; dups=n").await?;
        // The leaves of the range, one more at each end when it is not aligned, the nodes
        // above them, and CAR framing.
        let limit = len + 2 * MAX_BLOCK as u64 + (1 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let counted = std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let seen = counted.clone();
        let parse = tokio::task::spawn_blocking(move || {
            take_entity_car(file, FrameReader { rx, frame: Bytes::new() }, |block| {
                seen.0.fetch_add(1, Ordering::Relaxed);
                seen.1.fetch_add(block.data().len() as u64, Ordering::Relaxed);
                deliver(block);
            })
        });
        let mut body = resp.into_body();
        let mut streamed = 0u64;
        let fed = loop {
            match body.frame().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(OriginError::Body { url: url.to_owned(), source: Box::new(e) }),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    streamed += data.len() as u64;
                    if streamed > limit {
                        break Err(OriginError::Car {
                            url: url.to_owned(),
                            source: Box::new(CarProblem::TooLong(limit)),
                        });
                    }
                    if tx.send(data).await.is_err() {
                        break Ok(()); // the parser stopped: its error says why
                    }
                }
            }
        };
        drop(tx);
        let car_error = |e| OriginError::Car { url: url.to_owned(), source: Box::new(e) };
        let parsed = parse.await.map_err(|e| car_error(CarProblem::Reader(e.to_string())))?;
        let counts = (counted.0.load(Ordering::Relaxed), counted.1.load(Ordering::Relaxed));
        parsed.map_err(car_error)?;
        fed.map(|()| counts)
    }

    /// Sends a GET for `url` accepting `accept`; the response, if its status is 200.
    async fn ask(
        &self,
        url: &str,
        accept: &'static str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, OriginError> {
        let request_error =
            |e: Box<dyn std::error::Error + Send + Sync>| OriginError::Request { url: url.to_owned(), source: e };
        let req = hyper::Request::get(url)
            .header(hyper::header::ACCEPT, accept)
            .body(Empty::<Bytes>::new())
            .map_err(|e| request_error(Box::new(e)))?;
        let resp = self.client.request(req).await.map_err(|e| request_error(Box::new(e)))?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(OriginError::Status { url: url.to_owned(), status: resp.status() });
        }
        Ok(resp)
    }

    async fn get_from(&self, base: &str, cid: Cid) -> Result<Block, OriginError> {
        let url = raw_url(base, cid);
        let resp = self.ask(&url, "application/vnd.ipld.raw").await?;
        let body = match Limited::new(resp.into_body(), MAX_BLOCK).collect().await {
            Ok(b) => b.to_bytes(),
            Err(source) => return Err(OriginError::Body { url, source }),
        };
        Block::verified(cid, body).map_err(|e| OriginError::Block { url, source: Box::new(e) })
    }
}

/// Whether `addr` is an HTTP(S) address (`.../http`, `.../tls/http`, `.../https`): an HTTP
/// provider's, which libp2p cannot dial and [`Origin::learn`] takes.
pub fn is_http(addr: &libp2p::Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::Http | libp2p::multiaddr::Protocol::Https))
}

/// The base URL of an HTTP provider's address: `http://HOST:PORT` for
/// `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT/http`, `https://HOST:PORT` for `.../tls/http` or
/// `.../https` (a trailing `/p2p/<id>` allowed; `tls/sni/NAME/http` names the host); `None`
/// for anything else.
pub fn http_base(addr: &libp2p::Multiaddr) -> Option<String> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter().peekable();
    let mut host = match parts.next()? {
        Protocol::Ip4(ip) => ip.to_string(),
        Protocol::Ip6(ip) => format!("[{ip}]"),
        Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => h.to_string(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else { return None };
    let scheme = match parts.next()? {
        Protocol::Http => "http",
        Protocol::Https => "https",
        Protocol::Tls => {
            if let Some(Protocol::Sni(name)) = parts.peek() {
                host = name.to_string();
                parts.next();
            }
            let Protocol::Http = parts.next()? else { return None };
            "https"
        }
        _ => return None,
    };
    match parts.next() {
        None | Some(Protocol::P2p(_)) if parts.next().is_none() => Some(format!("{scheme}://{host}:{port}")),
        _ => None,
    }
}

/// The URL of block `cid` at the gateway `base`.
fn raw_url(base: &str, cid: Cid) -> String {
    format!("{}/ipfs/{cid}?format=raw", base.trim_end_matches('/'))
}

/// A CAR counted as being fetched ([`Origin::car_ticket`]).
#[derive(Debug)]
pub struct CarTicket(std::sync::Arc<Origin>);

/// A block fetch from the origin under way ([`Origin::claim`]).
#[derive(Debug)]
pub struct Claim(std::sync::Arc<Origin>, Cid);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.asked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.1);
    }
}

impl Drop for CarTicket {
    fn drop(&mut self) {
        self.0.cars.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A blocking reader over the frames of a response body.
struct FrameReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    frame: Bytes,
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.frame.is_empty() {
            match self.rx.blocking_recv() {
                Some(f) => self.frame = f,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.frame.len());
        buf[..n].copy_from_slice(&self.frame[..n]);
        self.frame.advance(n);
        Ok(n)
    }
}

/// Reads an entity CAR for `file` from `r`, handing each block to `deliver` once it is
/// verified against its CID and known to belong to the file: the first must be the file's
/// root, and every later one a link of a block before it (the depth-first order trustless
/// gateways send). A block sent twice is skipped. Stops at the first block that breaks this.
fn take_entity_car(file: Cid, r: impl Read, mut deliver: impl FnMut(Block)) -> Result<(), CarProblem> {
    let mut car = CarReader::new(BufReader::with_capacity(256 << 10, r))?;
    if !car.roots().contains(&file) {
        return Err(CarProblem::Roots(car.roots().to_vec(), Box::new(file)));
    }
    let key = |c: &Cid| c.hash().to_bytes();
    let mut expected: HashSet<Vec<u8>> = HashSet::from([key(&file)]);
    let mut taken: HashSet<Vec<u8>> = HashSet::new();
    while let Some(block) = car.next_block()? {
        let k = key(block.cid());
        if taken.contains(&k) {
            continue;
        }
        if !expected.remove(&k) {
            return Err(CarProblem::Unlinked(Box::new(*block.cid())));
        }
        let links = cairn_merkle::links::links(block.cid(), block.data())
            .map_err(|e| CarProblem::Links(Box::new(*block.cid()), e))?;
        expected.extend(links.iter().map(key));
        taken.insert(k);
        deliver(block);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(fast_start: u64) -> Origin {
        let config = OriginConfig {
            gateways: vec!["http://127.0.0.1:1".into()],
            fast_start,
            stall: Duration::from_millis(700),
            format: OriginFormat::Car,
        };
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
    fn an_origin_that_peers_keep_beating_is_asked_later_until_it_wins() {
        let o = origin(0);
        let base = Duration::from_millis(700);
        assert_eq!(o.stall(), base);
        o.lost_to_peers();
        o.lost_to_peers();
        assert_eq!(o.stall(), base * 4);
        for _ in 0..10 {
            o.lost_to_peers();
        }
        assert_eq!(o.stall(), base * (1 << MAX_BACKOFF), "the backoff is bounded");
        assert_eq!(o.stats.abandoned.load(Ordering::Relaxed), 12);
        o.peers_delivered();
        assert!(o.stall_left() > base, "peers get the longer timeout too");
        o.won();
        assert_eq!(o.stall(), base);
    }

    #[test]
    fn a_burst_starts_at_the_origin_then_leaves_it_to_the_peers() {
        let o = origin(3);
        let delays: Vec<Duration> = (0..5).map(|_| o.delay()).collect();
        assert_eq!(delays[..3], [Duration::ZERO; 3]);
        assert_eq!(delays[3..], [Duration::from_millis(700); 2]);
    }

    #[test]
    fn a_file_read_takes_the_fast_start_as_one_car_once_per_burst() {
        let o = origin(4);
        assert_eq!(o.delay(), Duration::ZERO, "the reader's fetch of the root");
        assert_eq!(o.take_fast_start(512), Some(RANGE_PER_BLOCK), "a short read takes one block's worth");
        assert_eq!(o.take_fast_start(10 << 20), Some(2 * RANGE_PER_BLOCK), "the rest of the fast start");
        assert_eq!(o.take_fast_start(10 << 20), None, "the burst's fast start is spent");
        assert_eq!(o.delay(), Duration::from_millis(700), "the reader's own fetches leave it to the CAR");
        let raw = Origin::new(OriginConfig { format: OriginFormat::Raw, ..o.config.clone() }).unwrap().unwrap();
        assert_eq!(raw.take_fast_start(10 << 20), None);
        assert_eq!(raw.delay(), Duration::ZERO);
    }

    /// A 5-leaf file of 1 KiB chunks, its blocks in a map, and its CAR (root first).
    fn file_car() -> (Cid, cairn_merkle::MemoryBlocks, Vec<Block>) {
        use cairn_merkle::chunker::ChunkerSpec;
        use cairn_merkle::importer::{import_bytes, ImportOptions};
        let data: Vec<u8> = (0..5 * 1024u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut blocks = cairn_merkle::MemoryBlocks::new();
        let opts = ImportOptions { chunker: ChunkerSpec::Size(1024), ..Default::default() };
        let root = import_bytes(&data, &opts, &mut blocks).unwrap().cid;
        let car = cairn_merkle::car::write_dag(&blocks, &root, Vec::new()).unwrap();
        let mut r = CarReader::new(&car[..]).unwrap();
        let order = std::iter::from_fn(|| r.next_block().unwrap()).collect();
        (root, blocks, order)
    }

    fn car_of(roots: &[Cid], blocks: &[&Block]) -> Vec<u8> {
        let mut w = cairn_merkle::car::CarWriter::new(Vec::new(), roots).unwrap();
        for b in blocks {
            w.write_block(b).unwrap();
        }
        w.finish().unwrap()
    }

    fn take(file: Cid, car: &[u8]) -> (Result<(), String>, Vec<Cid>) {
        let mut got = Vec::new();
        let r = take_entity_car(file, car, |b| got.push(*b.cid())).map_err(|e| e.to_string());
        (r, got)
    }

    #[test]
    fn an_entity_car_gives_the_files_blocks_in_order_and_nothing_else() {
        let (root, _, blocks) = file_car();
        assert_eq!(blocks.len(), 6);
        let all: Vec<&Block> = blocks.iter().collect();
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        // The whole file, and a stretch of it (root and leaves 2..4), each block once.
        assert_eq!(take(root, &car_of(&[root], &all)), (Ok(()), cids.clone()));
        let part = [all[0], all[2], all[3], all[2]];
        assert_eq!(take(root, &car_of(&[root], &part)), (Ok(()), vec![cids[0], cids[2], cids[3]]));

        // A block no earlier block links to ends it, after what came before.
        let text = b"not part of the file";
        let stranger = cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, text);
        let stranger = Block::verified(stranger, &text[..]).unwrap();
        let (r, got) = take(root, &car_of(&[root], &[all[0], all[1], &stranger, all[2]]));
        assert!(r.unwrap_err().contains("no block before it links to"));
        assert_eq!(got, cids[..2]);
        // A leaf before its root, a CAR for another root, and garbage.
        let (r, got) = take(root, &car_of(&[root], &[all[1], all[0]]));
        assert!(r.is_err() && got.is_empty());
        assert!(take(root, &car_of(&[cids[1]], &[all[1]])).0.unwrap_err().contains("do not name"));
        assert!(take(root, b"\x05hello").0.is_err());
        // A block whose bytes do not match its CID.
        let mut car = car_of(&[root], &[all[0], all[1]]);
        let last = car.len() - 1;
        car[last] ^= 1;
        let (r, got) = take(root, &car);
        assert!(r.is_err(), "a corrupt block was taken");
        assert_eq!(got, cids[..1]);
    }

    #[test]
    fn only_http_urls_are_taken() {
        let cfg = |g: &[&str]| OriginConfig {
            gateways: g.iter().map(|g| g.to_string()).collect(),
            fast_start: 1,
            stall: Duration::ZERO,
            format: OriginFormat::Raw,
        };
        assert!(Origin::new(cfg(&["ftp://x"])).is_err());
        assert!(Origin::new(cfg(&["not a url"])).is_err());
        assert!(Origin::new(cfg(&[])).unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unreachable_origin_is_an_error_and_counted() {
        let o = origin(1);
        let cid = cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, b"x");
        assert!(o.get(cid).await.is_err());
        assert_eq!(o.stats.failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn http_providers_are_http_or_https_addresses() {
        let base = |a: &str| http_base(&a.parse().unwrap());
        assert_eq!(base("/ip4/127.0.0.1/tcp/8080/http").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(base("/ip6/::1/tcp/80/http").as_deref(), Some("http://[::1]:80"));
        assert_eq!(base("/dns4/gw.example/tcp/8080/http").as_deref(), Some("http://gw.example:8080"));
        let peer = libp2p::PeerId::random();
        assert_eq!(base(&format!("/ip4/127.0.0.1/tcp/1/http/p2p/{peer}")).as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(base("/ip4/127.0.0.1/tcp/443/tls/http").as_deref(), Some("https://127.0.0.1:443"));
        assert_eq!(base("/dns4/gw.example/tcp/443/https").as_deref(), Some("https://gw.example:443"));
        assert_eq!(base("/ip4/192.0.2.1/tcp/443/tls/sni/gw.example/http").as_deref(), Some("https://gw.example:443"));
        for not in [
            "/ip4/127.0.0.1/tcp/443/tls",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip4/127.0.0.1/tcp/80/http/p2p-circuit",
        ] {
            assert_eq!(base(not), None, "{not}");
        }
    }

    /// The learned providers are bounded: the latest [`MAX_LEARNED`], asked newest first
    /// after the configured gateways, and an origin with neither has nothing to ask.
    #[test]
    fn learned_providers_are_the_latest_few() {
        let o = Origin::with_providers(OriginConfig::default()).unwrap();
        assert!(!o.has_sources());
        let changes = o.learned_changes();
        assert!(!o.learn(&"/ip4/127.0.0.1/tcp/4001".parse().unwrap()), "not an HTTP address");
        assert!(!o.has_sources());
        for port in 0..MAX_LEARNED as u16 + 3 {
            assert!(o.learn(&format!("/ip4/127.0.0.1/tcp/{}/http", 9000 + port).parse().unwrap()));
        }
        assert!(o.has_sources());
        assert!(changes.has_changed().unwrap());
        let bases = o.bases();
        assert_eq!(bases.len(), MAX_LEARNED);
        assert_eq!(bases[0], format!("http://127.0.0.1:{}", 9000 + MAX_LEARNED + 2));
        // A known one comes back to the front, not twice.
        o.learn(&"/ip4/127.0.0.1/tcp/9005/http".parse().unwrap());
        assert_eq!(o.bases()[0], "http://127.0.0.1:9005");
        assert_eq!(o.bases().len(), MAX_LEARNED);
        let configured = OriginConfig { gateways: vec!["http://127.0.0.1:1".into()], ..OriginConfig::default() };
        let o = Origin::with_providers(configured).unwrap();
        o.learn(&"/ip4/127.0.0.1/tcp/2/http".parse().unwrap());
        assert_eq!(o.bases(), vec!["http://127.0.0.1:1".to_owned(), "http://127.0.0.1:2".to_owned()]);
    }
}
