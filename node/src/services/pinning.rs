//! Pin requests of the IPFS Pinning Service API, and the worker that fulfils them.
//!
//! Over 700 lines until the requests' store and the worker get a file each.
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

/// Pins an older version made for the service under the operator (named [`PIN_NAME`]) become
/// the pins of the accounts whose pinned requests name them; then the operator's go. Once
/// per repo, marked in the metadata.
fn adopt_legacy_pins(node: &Node, state: &State) -> Result<(), PinError> {
    const DONE: &[u8] = b"pins/service-owners-adopted";
    if node.repo().store().get_meta(DONE).map_err(NodeError::from)?.is_some() {
        return Ok(());
    }
    let legacy: Vec<_> = node
        .pins()?
        .into_iter()
        .filter(|p| p.owner == PinOwner::Operator && p.name.as_deref() == Some(PIN_NAME))
        .collect();
    for pin in legacy {
        let path = IpfsPath { root: pin.cid, rest: String::new() };
        let owners: HashSet<&str> = state
            .requests
            .values()
            .filter(|r| r.status == Status::Pinned && r.cid().is_some_and(|c| c.hash() == pin.cid.hash()))
            .map(|r| r.owner.as_str())
            .collect();
        for owner in owners {
            node.pin_add_as(PinOwner::Service(owner.to_owned()), &path, true, Some(PIN_NAME.to_owned()))?;
        }
        node.pin_rm(&path)?;
    }
    node.repo().store().put_meta(DONE, b"1").map_err(NodeError::from)?;
    Ok(())
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

impl PinService {
    /// Loads the stored requests of `node`'s repo. Requests that were being fetched when the
    /// node stopped are queued again.
    pub fn open(node: Arc<Node>, settings: Settings) -> Result<Arc<PinService>, PinError> {
        let mut state = State::default();
        let stored: Vec<PinRequest> =
            node.repo().store().meta_records(PREFIX, "pin requests").map_err(NodeError::from)?;
        for mut r in stored {
            if r.status == Status::Pinning {
                r.status = Status::Queued;
            }
            state.last_created = state.last_created.max(r.created_ms);
            state.requests.insert(r.id.clone(), r);
        }
        adopt_legacy_pins(&node, &state)?;
        Ok(Arc::new(PinService { node, settings, state: Mutex::new(state), wake: tokio::sync::Notify::new() }))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, PinError> {
        self.state.lock().map_err(|_| PinError::Node(NodeError::Poisoned))
    }

    fn save(&self, put: &[&PinRequest], delete: &[&str]) -> Result<(), PinError> {
        let keys: Vec<(Vec<u8>, Vec<u8>)> = put.iter().map(|r| (key(&r.id), encode(r))).collect();
        let puts: Vec<(&[u8], &[u8])> = keys.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let deletes: Vec<Vec<u8>> = delete.iter().map(|id| key(id)).collect();
        let deletes: Vec<&[u8]> = deletes.iter().map(Vec::as_slice).collect();
        self.node.repo().store().update_meta(&puts, &deletes).map_err(NodeError::from)?;
        Ok(())
    }

    fn new_request(state: &mut State, owner: &str, pin: PinSpec) -> PinRequest {
        let created_ms = now_ms().max(state.last_created + 1);
        state.last_created = created_ms;
        PinRequest {
            id: uuid::Uuid::new_v4().to_string(),
            owner: owner.to_owned(),
            status: Status::Queued,
            created_ms,
            pin,
            attempts: 0,
            info: BTreeMap::new(),
            retry_at_ms: 0,
        }
    }

    /// Queues a new request for `owner`.
    pub fn add(&self, owner: &str, pin: PinSpec) -> Result<PinRequest, PinError> {
        pin.check()?;
        let mut state = self.lock()?;
        self.count_change(&mut state, owner)?;
        let held = state.requests.values().filter(|r| r.owner == owner).count();
        if held >= self.settings.max_requests {
            return Err(PinError::Quota(format!(
                "the account holds {held} pin requests, its most (PinningService.MaxRequests)"
            )));
        }
        let r = Self::new_request(&mut state, owner, pin);
        self.save(&[&r], &[])?;
        state.requests.insert(r.id.clone(), r.clone());
        drop(state);
        self.wake.notify_one();
        Ok(r)
    }

    /// `owner`'s request `id`.
    pub fn get(&self, owner: &str, id: &str) -> Result<PinRequest, PinError> {
        self.lock()?.owned(owner, id)
    }

    /// Replaces `owner`'s request `id` by a new one for `pin` (a new ID). The old request's
    /// pin goes when no request needs it any more.
    pub fn replace(&self, owner: &str, id: &str, pin: PinSpec) -> Result<PinRequest, PinError> {
        pin.check()?;
        let mut state = self.lock()?;
        self.count_change(&mut state, owner)?;
        let old = state.owned(owner, id)?;
        let mut r = Self::new_request(&mut state, owner, pin);
        // The same CID again: already held, so the new request carries the old one's status.
        if old.pin.cid == r.pin.cid && old.status == Status::Pinned {
            r.status = Status::Pinned;
            r.info = old.info.clone();
        }
        self.save(&[&r], &[id])?;
        state.requests.remove(id);
        state.requests.insert(r.id.clone(), r.clone());
        self.release(&state, &old)?;
        drop(state);
        self.wake.notify_one();
        Ok(r)
    }

    /// Removes `owner`'s request `id`, and its pin when no request needs it any more.
    pub fn remove(&self, owner: &str, id: &str) -> Result<(), PinError> {
        let mut state = self.lock()?;
        self.count_change(&mut state, owner)?;
        let old = state.owned(owner, id)?;
        self.save(&[], &[id])?;
        state.requests.remove(id);
        self.release(&state, &old)
    }

    /// Counts one change of `owner`'s, refused past [`Settings::per_minute`] in a minute.
    fn count_change(&self, state: &mut State, owner: &str) -> Result<(), PinError> {
        let now = Instant::now();
        if state.changes.len() > 4 * self.settings.per_minute as usize + 1024 {
            state.changes.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let (start, n) = state.changes.entry(owner.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *n = 0;
        }
        if *n >= self.settings.per_minute {
            return Err(PinError::RateLimited(self.settings.per_minute));
        }
        *n += 1;
        Ok(())
    }

    /// Bytes of the DAGs `owner`'s pinned requests hold, as recorded when each was pinned,
    /// leaving out `except`.
    fn held_bytes(&self, owner: &str, except: &str) -> Result<u64, PinError> {
        let state = self.lock()?;
        let mut seen = HashSet::new();
        Ok(state
            .requests
            .values()
            .filter(|r| r.owner == owner && r.id != except && r.status == Status::Pinned)
            .filter(|r| seen.insert(r.pin.cid.clone()))
            .filter_map(|r| r.info.get(SIZE_INFO).and_then(|s| s.parse::<u64>().ok()))
            .sum())
    }

    /// Removes the account's repo pin `gone` made, unless another request of the same account
    /// still needs its CID. Pins of other owners (the operator, other accounts, followed
    /// publishers) are theirs: they are never touched.
    fn release(&self, state: &State, gone: &PinRequest) -> Result<(), PinError> {
        let Some(cid) = gone.cid() else { return Ok(()) };
        let same = |r: &&PinRequest| r.owner == gone.owner && r.cid().is_some_and(|c| c.hash() == cid.hash());
        if state.requests.values().any(|r| same(&r)) {
            return Ok(());
        }
        let owner = PinOwner::Service(gone.owner.clone());
        for pin in self.node.pins_of(&cid)?.into_iter().filter(|p| p.owner == owner) {
            self.node.pin_rm_as(&owner, &IpfsPath { root: pin.cid, rest: String::new() })?;
        }
        Ok(())
    }

    /// `owner`'s requests that match `q`: how many match, and the newest `q.limit` of them.
    pub fn list(&self, owner: &str, q: &Query) -> Result<(usize, Vec<PinRequest>), PinError> {
        let state = self.lock()?;
        let mut hits: Vec<&PinRequest> = state.requests.values().filter(|r| r.owner == owner && q.matches(r)).collect();
        hits.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then_with(|| b.id.cmp(&a.id)));
        Ok((hits.len(), hits.into_iter().take(q.limit).cloned().collect()))
    }

    /// Counts of requests by status, over every account.
    pub fn counts(&self) -> Result<BTreeMap<&'static str, u64>, PinError> {
        let state = self.lock()?;
        let mut out: BTreeMap<&'static str, u64> =
            [Status::Queued, Status::Pinning, Status::Pinned, Status::Failed].map(|s| (s.as_str(), 0)).into();
        for r in state.requests.values() {
            *out.entry(r.status.as_str()).or_default() += 1;
        }
        Ok(out)
    }

    /// Takes the queued requests that are due, up to the free worker slots, and marks them
    /// `pinning`. Returns them, and the time until the next one is due (if any waits).
    fn take_due(&self) -> Result<(Vec<PinRequest>, Option<Duration>), PinError> {
        let mut state = self.lock()?;
        let now = now_ms();
        let free = self.settings.concurrency.saturating_sub(state.running.len());
        let mut queued: Vec<&PinRequest> = state.requests.values().filter(|r| r.status == Status::Queued).collect();
        queued.sort_by_key(|r| (r.retry_at_ms, r.created_ms));
        let next_wait = queued.iter().find(|r| r.retry_at_ms > now).map(|r| Duration::from_millis(r.retry_at_ms - now));
        let due: Vec<String> =
            queued.iter().filter(|r| r.retry_at_ms <= now).take(free).map(|r| r.id.clone()).collect();
        let mut taken = Vec::new();
        for id in due {
            if let Some(r) = state.requests.get_mut(&id) {
                r.status = Status::Pinning;
                r.attempts += 1;
                taken.push(r.clone());
            }
        }
        self.save(&taken.iter().collect::<Vec<_>>(), &[])?;
        state.running.extend(taken.iter().map(|r| r.id.clone()));
        Ok((taken, next_wait))
    }

    /// Records how a try of request `id` ended.
    fn finish(&self, id: &str, outcome: Result<u64, PinError>) -> Result<(), PinError> {
        let mut state = self.lock()?;
        state.running.remove(id);
        let Some(mut r) = state.requests.get(id).cloned() else {
            // Removed while it was fetched: `after_finish` releases its pin.
            return Ok(());
        };
        match outcome {
            Ok(dag_bytes) => {
                r.status = Status::Pinned;
                r.info.remove("error");
                r.info.insert(SIZE_INFO.into(), dag_bytes.to_string());
            }
            Err(e) if r.attempts >= self.settings.max_attempts => {
                tracing::warn!(request = %r.id, cid = %r.pin.cid, error = %e, "pin request failed");
                r.status = Status::Failed;
                r.info.insert("error".into(), e.to_string());
            }
            Err(e) => {
                let wait = self.settings.retry_delay.saturating_mul(1 << (r.attempts - 1).min(16));
                tracing::info!(request = %r.id, cid = %r.pin.cid, error = %e, retry_in = ?wait, "pin request will be retried");
                r.status = Status::Queued;
                r.retry_at_ms = now_ms() + wait.as_millis() as u64;
                r.info.insert("error".into(), e.to_string());
            }
        }
        self.save(&[&r], &[])?;
        state.requests.insert(r.id.clone(), r);
        Ok(())
    }

    /// Fetches and pins queued requests until the runtime stops.
    pub async fn run(self: Arc<Self>, net: Network) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let next = match self.take_due() {
                Ok((due, next)) => {
                    for r in due {
                        let (service, net) = (self.clone(), net.clone());
                        tasks.spawn(async move {
                            let outcome = service.fulfil(&net, &r).await;
                            if let Err(e) = service.finish(&r.id, outcome) {
                                tracing::error!(request = %r.id, error = %e, "cannot record a pin request's outcome");
                            }
                            if let Err(e) = service.after_finish(&r) {
                                tracing::error!(request = %r.id, error = %e, "cannot release a removed request's pin");
                            }
                        });
                    }
                    next
                }
                Err(e) => {
                    tracing::error!(error = %e, "pin requests");
                    Some(Duration::from_secs(5))
                }
            };
            let sleep = tokio::time::sleep(next.unwrap_or(Duration::from_secs(3600)));
            tokio::select! {
                () = self.wake.notified() => {}
                Some(_) = tasks.join_next() => {}
                () = sleep => {}
            }
        }
    }

    /// After a try: a request removed while it ran leaves no pin behind.
    fn after_finish(&self, r: &PinRequest) -> Result<(), PinError> {
        let state = self.lock()?;
        if state.requests.contains_key(&r.id) {
            return Ok(());
        }
        self.release(&state, r)
    }

    /// One try: dial the origins, fetch the DAG, pin it, announce it.
    async fn fulfil(&self, net: &Network, r: &PinRequest) -> Result<u64, PinError> {
        let (cid, origins) = r.pin.check()?;
        let started = Instant::now();
        for addr in origins {
            // An origin that cannot be dialed is no reason to give up: others may have it.
            if let Err(e) = tokio::time::timeout(Duration::from_secs(10), net.connect(addr.clone())).await {
                tracing::debug!(%addr, error = %e, "origin not reached in time");
            }
        }
        let store: SharedStore = Arc::new(NodeStore(self.node.clone()));
        let fetched = net.fetch_dag(&store, cid, Order::File, FETCH_WINDOW, self.settings.block_timeout).await?;
        let (node, account) = (self.node.clone(), r.owner.clone());
        let quota = match self.settings.max_bytes {
            Some(max) => Some((max, self.held_bytes(&r.owner, &r.id)?)),
            None => None,
        };
        let (size, dag_bytes) = tokio::task::spawn_blocking(move || -> Result<(u64, u64), NodeError> {
            let path = IpfsPath { root: cid, rest: String::new() };
            let owner = PinOwner::Service(account);
            if let Some((max, held)) = quota {
                // The DAG is here (fetched above); its size decides, before any pin is made.
                let size = node.dag_size(&cid)?;
                if held.saturating_add(size) > max {
                    return Err(NodeError::Quota(format!(
                        "the DAG holds {size} bytes and the account {held} of its {max} (PinningService.MaxBytes)"
                    )));
                }
            }
            match node.pin_of_owner(&cid, &owner)? {
                Some(p) if p.mode == PinMode::Recursive => {}
                _ => {
                    node.pin_add_as(owner, &path, true, Some(PIN_NAME.to_owned()))?;
                }
            }
            Ok((node.stat_path(&path).map(|s| s.size).unwrap_or(0), node.dag_size(&cid)?))
        })
        .await??;
        tracing::info!(request = %r.id, %cid, blocks = fetched.blocks, fetched = fetched.fetched, elapsed = ?started.elapsed(), "pinned for the pinning service");
        net.provide_later(vec![cid]).await;
        net.announce_root(cid, size).await;
        Ok(dag_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BlockStore;

    fn spec(cid: &str, name: Option<&str>) -> PinSpec {
        PinSpec { cid: cid.into(), name: name.map(Into::into), origins: vec![], meta: BTreeMap::new() }
    }

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.123Z").unwrap(), 1_795_000_000_123);
        assert_eq!(parse_rfc3339("2026-11-18T12:06:40.1239+01:00").unwrap(), 1_795_000_000_123);
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn specs_are_checked() {
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        assert!(spec(cid, Some("ok")).check().is_ok());
        assert!(spec("nope", None).check().is_err());
        assert!(spec(cid, Some(&"x".repeat(256))).check().is_err());
        let mut s = spec(cid, None);
        s.origins = vec!["not a multiaddr".into()];
        assert!(s.check().is_err());
        let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        s.origins = vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"); MAX_ORIGINS + 1];
        assert!(s.check().is_err());
        s.origins = vec![
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"),
            format!("/dns4/example.org/udp/4001/quic-v1/p2p/{peer}"),
            format!("/ip6/::1/tcp/4001/p2p/{peer}"),
        ];
        assert!(s.check().is_ok());
        // Only peers' addresses, named by their peer ID: nothing else is dialed.
        for bad in [
            "/ip4/127.0.0.1/tcp/4001".to_owned(),
            format!("/ip4/127.0.0.1/tcp/80/http/p2p/{peer}"),
            format!("/unix/tmp%2Fsock/p2p/{peer}"),
            format!("/ip4/1.2.3.4/tcp/1/p2p/{peer}/p2p-circuit/p2p/{peer}"),
            format!("/p2p/{peer}"),
        ] {
            s.origins = vec![bad.clone()];
            assert!(s.check().is_err(), "{bad}");
        }
    }

    fn service(max_requests: usize, per_minute: u32) -> (tempfile::TempDir, Arc<Node>, Arc<PinService>) {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("r"), crate::config::Profile::Test).unwrap());
        let settings = Settings {
            concurrency: 1,
            max_attempts: 1,
            retry_delay: Duration::ZERO,
            block_timeout: Duration::from_secs(1),
            max_requests,
            max_bytes: None,
            per_minute,
        };
        let svc = PinService::open(node.clone(), settings).unwrap();
        (dir, node, svc)
    }

    #[test]
    fn accounts_get_request_quotas_and_rate_limits() {
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        let (_dir, _node, svc) = service(2, 1000);
        svc.add("a", spec(cid, None)).unwrap();
        svc.add("a", spec(cid, None)).unwrap();
        assert!(matches!(svc.add("a", spec(cid, None)), Err(PinError::Quota(_))));
        svc.add("b", spec(cid, None)).expect("another account has its own quota");
        let (_dir, _node, svc) = service(100, 3);
        let first = svc.add("a", spec(cid, None)).unwrap();
        let second = svc.replace("a", &first.id, spec(cid, Some("n"))).unwrap();
        svc.remove("a", &second.id).unwrap();
        assert!(matches!(svc.add("a", spec(cid, None)), Err(PinError::RateLimited(3))));
        svc.add("b", spec(cid, None)).expect("another account has its own rate");
    }

    /// Each owner's pin is its own: the operator's `pin rm` leaves an account's pin, an
    /// account's removed request leaves the operator's, and the blocks stay while any pin
    /// holds them.
    #[test]
    fn no_owner_removes_another_owners_pin() {
        let (_dir, node, svc) = service(100, 1000);
        let cid = node.add_reader(&b"kept by two owners"[..], &crate::add::AddOptions::default(), false).unwrap().cid;
        let path = IpfsPath { root: cid, rest: String::new() };
        let account = PinOwner::Service("a".into());
        node.pin_add(&path, true, None).unwrap();
        node.pin_add_as(account.clone(), &path, true, Some(PIN_NAME.into())).unwrap();
        // The operator unpins: the account's pin holds the block through a collection.
        node.pin_rm(&path).unwrap();
        node.gc().unwrap();
        assert!(node.repo().store().has(&cid).unwrap());
        assert!(node.pin_of_owner(&cid, &account).unwrap().is_some());
        // The operator cannot take the account's pin, and is told whose it is.
        let err = node.pin_rm(&path).unwrap_err();
        assert!(matches!(err, NodeError::PinnedByOther(..)), "{err}");
        assert!(err.to_string().contains("account \"a\""), "{err}");
        // The account's request goes: its pin goes, the operator's (made again) stays.
        node.pin_add(&path, true, None).unwrap();
        let mut r = svc.add("a", spec(&cid.to_string(), None)).unwrap();
        r.status = Status::Pinned;
        svc.lock().unwrap().requests.insert(r.id.clone(), r.clone());
        svc.remove("a", &r.id).unwrap();
        assert!(node.pin_of_owner(&cid, &account).unwrap().is_none());
        assert!(node.pin_of(&cid).unwrap().is_some());
        // Another account removing its request of the same CID touches neither.
        let other = svc.add("b", spec(&cid.to_string(), None)).unwrap();
        svc.remove("b", &other.id).unwrap();
        assert!(node.pin_of(&cid).unwrap().is_some());
    }

    #[test]
    fn queries_filter_by_every_field() {
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse::<Cid>().unwrap();
        let v0ish = Cid::new_v1(0x70, *cid.hash());
        let mut r = PinRequest {
            id: "a".into(),
            owner: "o".into(),
            status: Status::Queued,
            created_ms: 1000,
            pin: spec(&cid.to_string(), Some("Holiday Photos")),
            attempts: 0,
            info: BTreeMap::new(),
            retry_at_ms: 0,
        };
        r.pin.meta.insert("app".into(), "x".into());
        let all = vec![Status::Queued, Status::Pinning, Status::Pinned, Status::Failed];
        let q = Query { statuses: all.clone(), ..Query::default() };
        assert!(q.matches(&r));
        assert!(!Query::default().matches(&r), "by default only pinned requests are listed");
        assert!(Query { cids: vec![v0ish], ..q.clone() }.matches(&r), "CIDs compare by multihash");
        let named = |n: &str, m| Query { name: Some((n.into(), m)), ..q.clone() };
        assert!(named("Holiday Photos", NameMatch::Exact).matches(&r));
        assert!(!named("holiday photos", NameMatch::Exact).matches(&r));
        assert!(named("holiday photos", NameMatch::IExact).matches(&r));
        assert!(named("day Ph", NameMatch::Partial).matches(&r));
        assert!(!named("DAY PH", NameMatch::Partial).matches(&r));
        assert!(named("DAY PH", NameMatch::IPartial).matches(&r));
        assert!(Query { before: Some(1001), after: Some(999), ..q.clone() }.matches(&r));
        assert!(!Query { before: Some(1000), ..q.clone() }.matches(&r));
        assert!(!Query { after: Some(1000), ..q.clone() }.matches(&r));
        let meta = |k: &str, v: &str| Query { meta: [(k.to_owned(), v.to_owned())].into(), ..q.clone() };
        assert!(meta("app", "x").matches(&r));
        assert!(!meta("app", "y").matches(&r));
        r.status = Status::Failed;
        assert!(!Query { statuses: vec![Status::Pinned, Status::Queued], ..q }.matches(&r));
    }
}
