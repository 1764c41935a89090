//! Pin requests of the IPFS Pinning Service API, and the worker that fulfils them.
//!
//! A request names a CID (with an optional name, origins and metadata) and belongs to the
//! account whose token made it; an account sees only its own requests. Requests are kept in
//! the repo's metadata (one durable record each, under `pinsvc/`) and in memory for queries.
//!
//! [`PinService::run`] fetches queued requests in the background, at most
//! `PinningService.Concurrency` at once: it dials the request's origins, fetches the whole
//! DAG with Bitswap (hinted providers, then the DHT), pins it recursively, and announces it.
//! A try that fails is retried after `PinningService.RetryDelay`, doubling each time, until
//! `PinningService.MaxAttempts` tries have failed; the request is then `failed`, with the
//! last error in its `info`. A request that was `pinning` when the daemon stopped is queued
//! again when it starts.
//!
//! This file holds the types; `requests.rs` the requests' store (add, replace, remove, list),
//! `worker.rs` the worker that fetches them.
//!
//! The repo pin a request makes belongs to its account ([`PinOwner::Service`]) and is named
//! [`PIN_NAME`]. Removing or replacing the account's last request for a CID removes that pin,
//! and never another owner's (the operator's, another account's, a followed publisher's).
//!
//! Accounts are bounded: `PinningService.MaxRequests` requests each, `MaxBytes` of pinned
//! DAGs each (checked once the DAG is fetched, before it is pinned), and
//! `RequestsPerMinute` changes each. Origins must be peers' addresses with a peer ID
//! ([`PinSpec::check`]), at most [`MAX_ORIGINS`], dialed one at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_merkle::Cid;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::net::session::Order;
use crate::net::{Network, SharedStore};
use crate::node::{IpfsPath, Node, NodeError};
use crate::online::NodeStore;
use crate::store::{PinMode, PinOwner};

/// The name of repo pins made for pin requests.
pub const PIN_NAME: &str = "pinning-service";
/// The metadata key prefix of stored requests.
const PREFIX: &str = "pinsvc/";
/// The longest name accepted, in characters (the spec's limit).
pub const MAX_NAME_CHARS: usize = 255;
/// The key of a pinned request's `info` holding the bytes of its DAG (counted against
/// `PinningService.MaxBytes`).
pub const SIZE_INFO: &str = "dag-bytes";
/// The most origins accepted on one request.
pub const MAX_ORIGINS: usize = 20;
/// The most metadata entries accepted on one request.
pub const MAX_META: usize = 100;
/// The longest metadata key or value accepted, in bytes.
pub const MAX_META_BYTES: usize = 4096;
/// Blocks requested at once while a DAG is fetched.
const FETCH_WINDOW: usize = 32;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a worker (or for its next try).
    Queued,
    /// Being fetched.
    Pinning,
    /// Held and pinned.
    Pinned,
    /// Given up on.
    Failed,
}

impl Status {
    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Pinning => "pinning",
            Status::Pinned => "pinned",
            Status::Failed => "failed",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = PinError;
    fn from_str(s: &str) -> Result<Status, PinError> {
        match s {
            "queued" => Ok(Status::Queued),
            "pinning" => Ok(Status::Pinning),
            "pinned" => Ok(Status::Pinned),
            "failed" => Ok(Status::Failed),
            other => Err(PinError::Bad(format!("unknown status {other:?} (use queued, pinning, pinned or failed)"))),
        }
    }
}

/// What a client asks to have pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinSpec {
    /// The CID, as the client wrote it.
    pub cid: String,
    /// An optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Multiaddrs of peers that hold the content.
    #[serde(default)]
    pub origins: Vec<String>,
    /// The client's own metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl PinSpec {
    /// Checks the spec against the limits; returns the parsed CID and origins.
    pub fn check(&self) -> Result<(Cid, Vec<Multiaddr>), PinError> {
        let cid = self.cid.parse::<Cid>().map_err(|e| PinError::Bad(format!("invalid CID {:?}: {e}", self.cid)))?;
        if let Some(n) = &self.name {
            if n.chars().count() > MAX_NAME_CHARS {
                return Err(PinError::Bad(format!("name is longer than {MAX_NAME_CHARS} characters")));
            }
        }
        if self.origins.len() > MAX_ORIGINS {
            return Err(PinError::Bad(format!("{} origins (at most {MAX_ORIGINS})", self.origins.len())));
        }
        let origins = self.origins.iter().map(|o| check_origin(o)).collect::<Result<Vec<_>, _>>()?;
        if self.meta.len() > MAX_META
            || self.meta.iter().any(|(k, v)| k.len() > MAX_META_BYTES || v.len() > MAX_META_BYTES)
        {
            return Err(PinError::Bad(format!(
                "meta holds at most {MAX_META} entries of at most {MAX_META_BYTES} bytes each"
            )));
        }
        Ok((cid, origins))
    }
}

/// An origin as the service dials it: a libp2p address of one peer, named by its peer ID
/// (`/ip4/.../tcp/.../p2p/<id>`, `/dns4/.../udp/.../quic-v1/p2p/<id>`). Anything else (an
/// address without a peer ID, HTTP, a Unix socket, a relay circuit) is refused: an account may
/// point the node at peers, not make it dial whatever it names.
fn check_origin(o: &str) -> Result<Multiaddr, PinError> {
    use libp2p::multiaddr::Protocol;
    let bad = |why: &str| PinError::Bad(format!("origin {o:?} {why}"));
    let addr = o.parse::<Multiaddr>().map_err(|e| bad(&format!("is not a multiaddr: {e}")))?;
    let parts: Vec<Protocol<'_>> = addr.iter().collect();
    let ok = match parts.as_slice() {
        [host, Protocol::Tcp(_), Protocol::P2p(_)] | [host, Protocol::Udp(_), Protocol::QuicV1, Protocol::P2p(_)] => {
            matches!(
                host,
                Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)
            )
        }
        _ => false,
    };
    if !ok {
        return Err(bad("is not a peer's address (/ip4|ip6|dns/HOST/tcp/PORT or /udp/PORT/quic-v1, then /p2p/PEERID)"));
    }
    Ok(addr)
}

/// A stored pin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinRequest {
    /// Its ID.
    pub id: String,
    /// The account that made it.
    pub owner: String,
    /// Where it stands.
    pub status: Status,
    /// When it was made, in milliseconds since the Unix epoch (unique within the repo, so
    /// that `before`/`after` pages never skip a request).
    pub created_ms: u64,
    /// What was asked.
    pub pin: PinSpec,
    /// Tries so far.
    #[serde(default)]
    pub attempts: u32,
    /// Facts for the client: the last error.
    #[serde(default)]
    pub info: BTreeMap<String, String>,
    /// When the next try may start, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub retry_at_ms: u64,
}

impl PinRequest {
    /// The requested CID (checked when the request was made).
    pub fn cid(&self) -> Option<Cid> {
        self.pin.cid.parse().ok()
    }

    /// The `info` a client sees: the stored facts and the tries so far.
    pub fn status_info(&self) -> BTreeMap<String, String> {
        let mut info = self.info.clone();
        if self.attempts > 0 {
            info.insert("attempts".into(), self.attempts.to_string());
        }
        info
    }

    /// `created` as RFC 3339, UTC, with milliseconds.
    pub fn created(&self) -> String {
        rfc3339(self.created_ms)
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // Built by hand from the parts, so the width of the fraction is always three digits.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch (rounded down).
pub fn parse_rfc3339(s: &str) -> Result<i128, PinError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| PinError::Bad(format!("{s:?} is not an RFC 3339 timestamp: {e}")))?;
    Ok(t.unix_timestamp_nanos().div_euclid(1_000_000))
}

/// How a name filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameMatch {
    /// The same string.
    #[default]
    Exact,
    /// The same string, ignoring case.
    IExact,
    /// A substring.
    Partial,
    /// A substring, ignoring case.
    IPartial,
}

impl std::str::FromStr for NameMatch {
    type Err = PinError;
    fn from_str(s: &str) -> Result<NameMatch, PinError> {
        match s {
            "exact" => Ok(NameMatch::Exact),
            "iexact" => Ok(NameMatch::IExact),
            "partial" => Ok(NameMatch::Partial),
            "ipartial" => Ok(NameMatch::IPartial),
            other => Err(PinError::Bad(format!("unknown match {other:?} (use exact, iexact, partial or ipartial)"))),
        }
    }
}

/// A listing's filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only these CIDs (compared by multihash, so CIDv0 and CIDv1 of a DAG match).
    pub cids: Vec<Cid>,
    /// Only requests whose name matches.
    pub name: Option<(String, NameMatch)>,
    /// Only these statuses.
    pub statuses: Vec<Status>,
    /// Only requests made before this (milliseconds since the epoch).
    pub before: Option<i128>,
    /// Only requests made after this.
    pub after: Option<i128>,
    /// At most this many results.
    pub limit: usize,
    /// Only requests whose metadata holds all of these entries.
    pub meta: BTreeMap<String, String>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            cids: Vec::new(),
            name: None,
            statuses: vec![Status::Pinned],
            before: None,
            after: None,
            limit: 10,
            meta: BTreeMap::new(),
        }
    }
}

impl Query {
    fn matches(&self, r: &PinRequest) -> bool {
        if !self.statuses.contains(&r.status) {
            return false;
        }
        if !self.cids.is_empty() && !r.cid().is_some_and(|c| self.cids.iter().any(|q| q.hash() == c.hash())) {
            return false;
        }
        if let Some((want, how)) = &self.name {
            let Some(name) = &r.pin.name else { return false };
            let ok = match how {
                NameMatch::Exact => name == want,
                NameMatch::IExact => name.to_lowercase() == want.to_lowercase(),
                NameMatch::Partial => name.contains(want.as_str()),
                NameMatch::IPartial => name.to_lowercase().contains(&want.to_lowercase()),
            };
            if !ok {
                return false;
            }
        }
        let created = i128::from(r.created_ms);
        if self.before.is_some_and(|b| created >= b) || self.after.is_some_and(|a| created <= a) {
            return false;
        }
        self.meta.iter().all(|(k, v)| r.pin.meta.get(k) == Some(v))
    }
}

/// Why a pin request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The request is malformed.
    #[error("{0}")]
    Bad(String),
    /// No such request (for this account).
    #[error("no pin request {0:?}")]
    NotFound(String),
    /// The account holds as much as it may.
    #[error("{0}")]
    Quota(String),
    /// The account made too many changes in the last minute.
    #[error("more than {0} changes a minute (PinningService.RequestsPerMinute); try again shortly")]
    RateLimited(u32),
    /// The repo failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The DAG could not be fetched (boxed to keep results small).
    #[error(transparent)]
    Fetch(Box<crate::net::session::DagError>),
    /// The task pinning it was lost (it panicked).
    #[error("the pin task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<crate::net::session::DagError> for PinError {
    fn from(e: crate::net::session::DagError) -> Self {
        PinError::Fetch(Box::new(e))
    }
}

/// How the worker behaves (`PinningService` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Requests fetched at once.
    pub concurrency: usize,
    /// Tries before a request fails.
    pub max_attempts: u32,
    /// The first retry's wait.
    pub retry_delay: Duration,
    /// How long each block may take to arrive.
    pub block_timeout: Duration,
    /// Requests one account may hold.
    pub max_requests: usize,
    /// Bytes of pinned DAGs one account may hold (`None`: no quota).
    pub max_bytes: Option<u64>,
    /// Changes (add, replace, remove) one account may make per minute.
    pub per_minute: u32,
}

impl Settings {
    /// The settings in `node`'s config.
    pub fn from_config(config: &crate::Config) -> Result<Settings, crate::config::ConfigError> {
        let c = &config.pinning_service;
        let typed = crate::settings::Settings::from_config(config)?;
        Ok(Settings {
            concurrency: c.concurrency.max(1) as usize,
            max_attempts: c.max_attempts.max(1),
            retry_delay: typed.pin_retry_delay,
            block_timeout: typed.retrieval_timeout,
            max_requests: usize::try_from(c.max_requests.max(1)).unwrap_or(usize::MAX),
            max_bytes: typed.pin_max_bytes,
            per_minute: c.requests_per_minute.max(1),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    requests: HashMap<String, PinRequest>,
    /// Requests being fetched now.
    running: HashSet<String>,
    /// The last `created_ms` handed out.
    last_created: u64,
    /// Each account's changes in the current minute: when it began, how many.
    changes: HashMap<String, (Instant, u32)>,
}

impl State {
    /// `owner`'s request `id` (another account's is not found).
    fn owned(&self, owner: &str, id: &str) -> Result<PinRequest, PinError> {
        self.requests.get(id).filter(|r| r.owner == owner).cloned().ok_or_else(|| PinError::NotFound(id.to_owned()))
    }
}

/// The pin requests and their worker.
#[derive(Debug)]
pub struct PinService {
    node: Arc<Node>,
    settings: Settings,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn key(id: &str) -> Vec<u8> {
    format!("{PREFIX}{id}").into_bytes()
}

fn encode(r: &PinRequest) -> Vec<u8> {
    // A struct of strings, numbers and maps always serialises.
    serde_json::to_vec(r).unwrap_or_default()
}

mod requests;
mod worker;

#[cfg(test)]
mod tests;
