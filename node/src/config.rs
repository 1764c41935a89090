//! The repo's JSON config, with Kubo's key names where Kubo has them.
//!
//! Over 700 lines: one serde struct per section of the file, each with its defaults; the
//! values are typed and checked in `settings.rs`.
//!
//! The file is read into a [`Config`], and edited as JSON by dotted key (`Addresses.API`)
//! for `cairn config`, so that unknown keys survive a round trip. Every edit is checked by
//! parsing the result back into a [`Config`] and typing every value
//! ([`crate::settings::set_key`]) before it is written. This module imports nothing of the
//! crate: the settings, the network and the services read it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Why a config could not be read or changed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The JSON does not have the expected shape.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// A key path names nothing.
    #[error("config key {0:?} not found")]
    NoSuchKey(String),
    /// A key path is empty or has an empty component.
    #[error("bad config key {0:?}")]
    BadKey(String),
}

/// Network addresses, as multiaddrs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Addresses {
    /// Swarm listen addresses.
    pub swarm: Vec<String>,
    /// RPC API listen address.
    #[serde(rename = "API")]
    pub api: String,
    /// Gateway listen address.
    pub gateway: String,
    /// The addresses told to other peers instead of the listen addresses (none: the listen
    /// addresses are told).
    #[serde(default)]
    pub announce: Vec<String>,
    /// Addresses told to other peers as well as the listen (or announced) ones.
    #[serde(default)]
    pub append_announce: Vec<String>,
    /// Pinning Service API listen address (served only when `PinningService.Tokens` has a
    /// token).
    #[serde(default = "default_pinning_address")]
    pub pinning_service: String,
}

fn default_pinning_address() -> String {
    "/ip4/127.0.0.1/tcp/5003".into()
}

/// Storage limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Datastore {
    /// The most the repo may hold, e.g. `"10GB"`.
    pub storage_max: String,
    /// With `cairn daemon --enable-gc`: how often the repo's size is checked against the
    /// watermark, such as `1h`.
    #[serde(default = "default_gc_period", rename = "GCPeriod")]
    pub gc_period: String,
    /// With `--enable-gc`: the percentage of `StorageMax` past which a collection runs.
    #[serde(default = "default_gc_watermark", rename = "StorageGCWatermark")]
    pub storage_gc_watermark: u64,
}

fn default_gc_period() -> String {
    "1h".into()
}

fn default_gc_watermark() -> u64 {
    90
}

/// mDNS discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mdns {
    /// Off unless turned on.
    pub enabled: bool,
}

/// Local discovery settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// mDNS.
    #[serde(rename = "MDNS")]
    pub mdns: Mdns,
}

/// Swarm settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    /// UPnP / NAT-PMP port mapping stays off unless this is false.
    pub disable_nat_port_map: bool,
    /// Connection limits.
    #[serde(default)]
    pub conn_mgr: ConnMgr,
    /// Bandwidth caps.
    #[serde(default)]
    pub rate_limit: RateLimit,
}

/// Bandwidth caps for Bitswap, as sizes per second (`"2MB"`, `"512KiB"`); empty: no cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RateLimit {
    /// Block bytes sent to peers per second.
    #[serde(default)]
    pub upload: String,
    /// Block bytes fetched from peers per second.
    #[serde(default)]
    pub download: String,
    /// Block bytes sent to peers in any 24 hours, for metered links (empty: no budget).
    #[serde(default)]
    pub upload_budget: String,
}

/// Bitswap, Kubo's key names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Bitswap {
    /// Whether blocks are served to peers at all (false: fetch only, never give).
    pub server_enabled: bool,
}

impl Default for Bitswap {
    fn default() -> Self {
        Bitswap { server_enabled: true }
    }
}

/// Connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnMgr {
    /// Most connections at once, in and out.
    pub high_water: u32,
    /// Most inbound connections from one IPv4 address (twice as many from one IPv6 /56);
    /// loopback is not limited. A Cairn key.
    #[serde(default = "default_max_per_ip", rename = "MaxPerIP")]
    pub max_per_ip: u32,
}

/// Inbound connections from one IPv4 address at once (twice as many from one IPv6 /56),
/// unless `Swarm.ConnMgr.MaxPerIP` says otherwise.
pub const DEFAULT_PER_IP: u32 = 8;

fn default_max_per_ip() -> u32 {
    DEFAULT_PER_IP
}

impl Default for ConnMgr {
    fn default() -> Self {
        ConnMgr { high_water: 900, max_per_ip: default_max_per_ip() }
    }
}

/// The RPC API's access control and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Api {
    /// Named secrets that open the API. With any set, every request must carry one
    /// (`Authorization: Bearer <token>` for `bearer:<token>`, HTTP basic for
    /// `basic:<user>:<password>`), and an API on a non-loopback address requires them.
    #[serde(default)]
    pub authorizations: std::collections::BTreeMap<String, Authorization>,
    /// Headers added to every answer, as in Kubo. `Access-Control-Allow-Origin` here is also
    /// the list of web origins allowed to call the API (none by default: a request that
    /// carries any other `Origin` gets 403). `*` allows every origin.
    #[serde(default, rename = "HTTPHeaders")]
    pub http_headers: std::collections::BTreeMap<String, Vec<String>>,
    /// Host names the API answers to besides IP literals and `localhost` (DNS rebinding: a
    /// request whose `Host` names anything else gets 403).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The most bytes one `add`, `dag/import` or `block/put` body may carry, e.g. `256GB`.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: String,
    /// The most parts (files, directories, blocks) one upload may carry.
    #[serde(default = "default_max_upload_entries")]
    pub max_upload_entries: u64,
}

fn default_max_upload_bytes() -> String {
    "256GB".into()
}

fn default_max_upload_entries() -> u64 {
    1_000_000
}

impl Default for Api {
    fn default() -> Self {
        Api {
            authorizations: std::collections::BTreeMap::new(),
            http_headers: std::collections::BTreeMap::new(),
            allowed_hosts: Vec::new(),
            max_upload_bytes: default_max_upload_bytes(),
            max_upload_entries: default_max_upload_entries(),
        }
    }
}

/// One secret and what it opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Authorization {
    /// `bearer:<token>` or `basic:<user>:<password>`.
    pub auth_secret: String,
    /// Path prefixes it may use, such as `/api/v0` (all) or `/api/v0/cat`.
    #[serde(default)]
    pub allowed_paths: Vec<String>,
}

/// Content routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Routing {
    /// `auto` or `dht` (a DHT server once reachable, a client until then), `dhtserver`,
    /// `dhtclient`, or `none` (no DHT). The LAN DHT is a server unless this is `dhtclient` or
    /// `none`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// Base URLs of delegated routers (Routing V1 HTTP APIs, such as another node's gateway)
    /// asked for providers beside the DHTs. Empty by default: a node asks no one it was not
    /// told to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegated_routers: Vec<String>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing { kind: "auto".into(), delegated_routers: Vec::new() }
    }
}

/// Announcing content on the DHT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reprovider {
    /// What is announced: `roots` (the roots of pins and adds), `pinned` (every block of
    /// every pin), or `all` (every block held).
    pub strategy: String,
    /// How often every announcement is renewed, such as `22h`; `0` turns renewal off.
    pub interval: String,
}

impl Default for Reprovider {
    fn default() -> Self {
        Reprovider { strategy: "roots".into(), interval: "22h".into() }
    }
}

/// The HTTP gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Gateway {
    /// How long a read waits for a block the repo lacks, from peers, before giving up: the
    /// gateway then answers 504, and `cat`/`get` through the daemon fail. Such as `30s` or
    /// `2m`.
    pub retrieval_timeout: String,
    /// Requests served at once; more get 429 with `Retry-After`.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: u64,
    /// The longest one request may take, its body included, such as `1h`.
    #[serde(default = "default_max_request_duration")]
    pub max_request_duration: String,
    /// Whether the gateway's port also serves the delegated routing API
    /// (`/routing/v1/providers`, `/peers`, `/dht/closest/peers`), answered from the store and
    /// the DHTs. On by default, as in Kubo.
    #[serde(rename = "ExposeRoutingAPI", default = "default_expose_routing_api")]
    pub expose_routing_api: bool,
    /// Serve only what the repo holds: a block it lacks is a 404, never fetched from peers.
    #[serde(default)]
    pub no_fetch: bool,
    /// Whether the gateway serves files, listings, tar archives and codec blocks as well as
    /// the verifiable forms (`?format=raw`, `?format=car`). Off, it is a trustless gateway
    /// only, and the rest is a 406. On by default; a host in `PublicGateways` may say
    /// otherwise for itself.
    #[serde(default = "default_true")]
    pub deserialized_responses: bool,
    /// Host names the gateway is reached by, each with what it serves, as in Kubo:
    /// `{"example.com": {"Paths": ["/ipfs"], "UseSubdomains": true}}`. `localhost` is one by
    /// default (subdomains, `/ipfs` and `/ipns`); naming it with `null` removes it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub public_gateways: std::collections::BTreeMap<String, Option<PublicGateway>>,
    /// Keys this version does not know, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One of `Gateway.PublicGateways`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct PublicGateway {
    /// The namespaces served on the host: `/ipfs` and, once names exist, `/ipns`. Empty:
    /// none (Kubo's meaning).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Whether content is served from `{cid}.ipfs.{host}` (each root its own web origin),
    /// with path requests on the host redirected there.
    #[serde(default)]
    pub use_subdomains: bool,
    /// Overrides `Gateway.DeserializedResponses` for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deserialized_responses: Option<bool>,
    /// Keys this version does not know (`InlineDNSLink`, `NoDNSLink` until names exist),
    /// kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_true() -> bool {
    true
}

fn default_max_concurrent_requests() -> u64 {
    4096
}

fn default_expose_routing_api() -> bool {
    true
}

fn default_max_request_duration() -> String {
    "1h".into()
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            retrieval_timeout: "30s".into(),
            max_concurrent_requests: default_max_concurrent_requests(),
            max_request_duration: default_max_request_duration(),
            expose_routing_api: default_expose_routing_api(),
            no_fetch: false,
            deserialized_responses: true,
            public_gateways: std::collections::BTreeMap::new(),
            extra: Map::new(),
        }
    }
}

/// Signed manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestConfig {
    /// The keyring: publishers whose signatures are trusted, peer ID to a name for people.
    #[serde(default)]
    pub trusted: std::collections::BTreeMap<String, String>,
    /// Gossipsub topics this node's manifests are announced on, besides the hints topic.
    #[serde(default)]
    pub announce_topics: Vec<String>,
    /// How often the newest manifest this node signed is announced again (`0`: never).
    #[serde(default = "default_announce_interval")]
    pub announce_interval: String,
}

fn default_announce_interval() -> String {
    "10m".into()
}

impl Default for ManifestConfig {
    fn default() -> Self {
        ManifestConfig {
            trusted: std::collections::BTreeMap::new(),
            announce_topics: Vec::new(),
            announce_interval: default_announce_interval(),
        }
    }
}

/// The Pinning Service API (`/pins`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PinningService {
    /// Bearer tokens, by account name. Each account sees only its own pin requests. Empty:
    /// the service is off.
    pub tokens: std::collections::BTreeMap<String, String>,
    /// Pin requests fetched at the same time.
    pub concurrency: u32,
    /// Tries before a pin request is marked failed.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles after each failed try.
    pub retry_delay: String,
    /// Pin requests one account may hold at once.
    pub max_requests: u64,
    /// Bytes of pinned DAGs one account may hold, such as `100GB` (`0`: no quota of its
    /// own, only `Datastore.StorageMax`).
    pub max_bytes: String,
    /// Requests that change an account's pins (add, replace, remove) per minute.
    pub requests_per_minute: u32,
}

impl Default for PinningService {
    fn default() -> Self {
        PinningService {
            tokens: std::collections::BTreeMap::new(),
            concurrency: 4,
            max_attempts: 5,
            retry_delay: "30s".into(),
            max_requests: 10_000,
            max_bytes: "0".into(),
            requests_per_minute: 600,
        }
    }
}

/// Trustless HTTP gateways as extra block sources (peer-assisted delivery with an origin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Origins {
    /// Base URLs (`http://host:port`) of trustless gateways, tried in order. Empty: peers only.
    pub gateways: Vec<String>,
    /// Blocks of each burst of fetches asked of the origin at once, for a fast start.
    pub fast_start: u64,
    /// How long peers get to deliver a later block before the origin is asked too.
    pub stall_timeout: String,
    /// `raw`: one request per block; `car`: a file read's fast start as one CAR of that
    /// stretch of the file (`entity-bytes`).
    pub format: String,
}

impl Default for Origins {
    fn default() -> Self {
        Origins { gateways: Vec::new(), fast_start: 4, stall_timeout: "1s".into(), format: "raw".into() }
    }
}

/// The background scrub, which re-reads and re-hashes every stored block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Scrub {
    /// Every block is checked once per interval, paced evenly over it (`0`: no scrub).
    pub interval: String,
}

impl Default for Scrub {
    fn default() -> Self {
        Scrub { interval: "30d".into() }
    }
}

/// Following publishers (the publishers themselves are kept in the repo: `cairn follow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Follow {
    /// The most all followed collections together may hold, e.g. `500GB` (`0`: no limit
    /// but `Datastore.StorageMax`).
    pub quota: String,
}

impl Default for Follow {
    fn default() -> Self {
        Follow { quota: "0".into() }
    }
}

/// Kubo's `Import.*` keys: how `add` (the command line and the RPC API) builds DAGs when its
/// flags do not say. Every key is optional, `null` (or missing) meaning Kubo 0.43's default;
/// `cairn init --profile unixfs-v1-2025` (or `unixfs-v0-2015`) sets them all, as Kubo's does.
/// The values are checked, with Kubo's messages, in `import_settings.rs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Import {
    /// 0 or 1.
    pub cid_version: Option<i64>,
    /// Leaves as raw blocks (with CIDv1 they are, unless this says `false`).
    #[serde(rename = "UnixFSRawLeaves")]
    pub unixfs_raw_leaves: Option<bool>,
    /// `size-N`, `rabin-MIN-AVG-MAX` or `buzhash`.
    #[serde(rename = "UnixFSChunker")]
    pub unixfs_chunker: Option<String>,
    /// A multihash name: `sha2-256` or `blake3` here.
    pub hash_function: Option<String>,
    /// Most links in one file node (174 by default).
    #[serde(rename = "UnixFSFileMaxLinks")]
    pub unixfs_file_max_links: Option<i64>,
    /// Most links in one plain directory; more make it a HAMT (0: no limit).
    #[serde(rename = "UnixFSDirectoryMaxLinks")]
    pub unixfs_directory_max_links: Option<i64>,
    /// The fanout of HAMT directories (256).
    #[serde(rename = "UnixFSHAMTDirectoryMaxFanout")]
    pub unixfs_hamt_directory_max_fanout: Option<i64>,
    /// The estimated size past which a directory becomes a HAMT: a number of bytes or a size
    /// such as `"256KiB"`.
    #[serde(rename = "UnixFSHAMTDirectorySizeThreshold")]
    pub unixfs_hamt_directory_size_threshold: Option<Value>,
    /// `links` (names and CIDs), `block` (the dag-pb block) or `disabled`.
    #[serde(rename = "UnixFSHAMTDirectorySizeEstimation")]
    pub unixfs_hamt_directory_size_estimation: Option<String>,
    /// `balanced` or `trickle`.
    #[serde(rename = "UnixFSDAGLayout")]
    pub unixfs_dag_layout: Option<String>,
    /// `links-first`, the dag-pb spec's order (Kubo's `data-first` is not written by Cairn).
    #[serde(rename = "UnixFSPBNodeFieldOrder")]
    pub unixfs_pb_node_field_order: Option<String>,
    /// Cairn's: `true` shards a directory whose estimate *equals* the threshold too, as Kubo
    /// 0.39 and earlier did (`>=`); only to reproduce the CIDs they made.
    #[serde(rename = "UnixFSHAMTShardAtThreshold")]
    pub unixfs_hamt_shard_at_threshold: Option<bool>,
    /// Keys this version does not use (such as Kubo's `BatchMaxNodes`), kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Parses a duration such as `500ms`, `90s`, `30m`, `22h`, `7d` or `0` (none). `key` names
/// the setting in the error.
pub fn parse_duration(key: &str, s: &str) -> Result<Option<std::time::Duration>, ConfigError> {
    let bad = || ConfigError::Invalid(format!("{key} {s:?} is not a duration like 500ms, 30s, 10m, 22h or 0"));
    let t = s.trim();
    if t == "0" || t.is_empty() {
        return Ok(None);
    }
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(bad()),
    }
    .ok_or_else(bad)?;
    Ok((ms > 0).then(|| std::time::Duration::from_millis(ms)))
}

/// The node's identity (the private key is kept in its own file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The peer ID derived from the key.
    #[serde(rename = "PeerID")]
    pub peer_id: String,
}

/// The typed view of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    /// Identity.
    pub identity: Identity,
    /// Listen addresses.
    pub addresses: Addresses,
    /// Peers dialled at start. Empty by default: joining a public network is an opt-in.
    pub bootstrap: Vec<String>,
    /// Storage.
    pub datastore: Datastore,
    /// Discovery.
    pub discovery: Discovery,
    /// Swarm.
    pub swarm: Swarm,
    /// Content routing.
    #[serde(default)]
    pub routing: Routing,
    /// Announcing content.
    #[serde(default)]
    pub reprovider: Reprovider,
    /// The RPC API's access control.
    #[serde(default, rename = "API")]
    pub api: Api,
    /// The HTTP gateway.
    #[serde(default)]
    pub gateway: Gateway,
    /// Signed manifests: the trusted publishers.
    #[serde(default)]
    pub manifest: ManifestConfig,
    /// The Pinning Service API.
    #[serde(default)]
    pub pinning_service: PinningService,
    /// The background scrub.
    #[serde(default)]
    pub scrub: Scrub,
    /// Followed publishers.
    #[serde(default)]
    pub follow: Follow,
    /// HTTP origins.
    #[serde(default)]
    pub origins: Origins,
    /// Bitswap serving.
    #[serde(default)]
    pub bitswap: Bitswap,
    /// How `add` builds DAGs.
    #[serde(default)]
    pub import: Import,
    /// Keys this version does not know, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The socket address of a TCP multiaddr (`/ip4/127.0.0.1/tcp/8080`, `/ip6/::1/tcp/0`), as
/// the gateway and API addresses are written.
pub fn tcp_socket_addr(multiaddr: &str) -> Result<std::net::SocketAddr, ConfigError> {
    let bad = || ConfigError::Invalid(format!("{multiaddr:?} is not a TCP address like /ip4/127.0.0.1/tcp/8080"));
    let parts: Vec<&str> = multiaddr.split('/').collect();
    let ["", proto, host, "tcp", port] = parts.as_slice() else { return Err(bad()) };
    let ip: std::net::IpAddr = match *proto {
        "ip4" => host.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?.into(),
        "ip6" => host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?.into(),
        _ => return Err(bad()),
    };
    Ok(std::net::SocketAddr::new(ip, port.parse().map_err(|_| bad())?))
}

/// The multiaddr of a TCP socket address.
pub fn tcp_multiaddr(addr: std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(a) => format!("/ip4/{}/tcp/{}", a.ip(), a.port()),
        std::net::SocketAddr::V6(a) => format!("/ip6/{}/tcp/{}", a.ip(), a.port()),
    }
}

/// Parses sizes as Kubo writes them (`10GB`, `512MiB`, `1000`): SI units are powers of
/// 1000, IEC units (`KiB`...) powers of 1024.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return None,
    };
    Some((num * mult as f64) as u64)
}

/// A size setting where `0` (or nothing) means no limit; `key` names it in the error.
pub fn optional_size(key: &str, s: &str) -> Result<Option<u64>, ConfigError> {
    let v = s.trim();
    if v == "0" || v.is_empty() {
        return Ok(None);
    }
    parse_size(v).map(Some).ok_or_else(|| ConfigError::Invalid(format!("{key} {v:?} is not a size like 10GB or 0")))
}

/// Named starting points for `cairn init --profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Loopback addresses on the default ports.
    Default,
    /// Loopback only, port 0 everywhere, no bootstrap peers: for tests.
    Test,
}

impl std::str::FromStr for Profile {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "default" => Ok(Profile::Default),
            "test" => Ok(Profile::Test),
            other => Err(ConfigError::Invalid(format!("unknown profile {other:?} (use default or test)"))),
        }
    }
}

impl Config {
    /// `Scrub.Interval` (`None`: no scrub).
    pub fn scrub_interval(&self) -> Result<Option<std::time::Duration>, ConfigError> {
        parse_duration("Scrub.Interval", &self.scrub.interval)
    }

    /// `Datastore.StorageMax` in bytes (`0` or empty: no limit).
    pub fn storage_max(&self) -> Result<Option<u64>, ConfigError> {
        optional_size("Datastore.StorageMax", &self.datastore.storage_max)
    }

    /// `API.MaxUploadBytes` in bytes.
    pub fn api_max_upload_bytes(&self) -> Result<u64, ConfigError> {
        let v = self.api.max_upload_bytes.trim();
        parse_size(v)
            .filter(|n| *n > 0)
            .ok_or_else(|| ConfigError::Invalid(format!("API.MaxUploadBytes {v:?} is not a size like 256GB or 64MiB")))
    }

    /// `Follow.Quota` in bytes (`None`: no quota of its own).
    pub fn follow_quota(&self) -> Result<Option<u64>, ConfigError> {
        optional_size("Follow.Quota", &self.follow.quota)
    }

    /// A new config for `peer_id` under `profile`. Every address is loopback.
    pub fn new(peer_id: String, profile: Profile) -> Self {
        let port = |p: u16| if profile == Profile::Test { 0 } else { p };
        Config {
            identity: Identity { peer_id },
            addresses: Addresses {
                swarm: vec![
                    format!("/ip4/127.0.0.1/tcp/{}", port(4001)),
                    format!("/ip4/127.0.0.1/udp/{}/quic-v1", port(4001)),
                ],
                api: format!("/ip4/127.0.0.1/tcp/{}", port(5001)),
                gateway: format!("/ip4/127.0.0.1/tcp/{}", port(8080)),
                announce: Vec::new(),
                append_announce: Vec::new(),
                pinning_service: format!("/ip4/127.0.0.1/tcp/{}", port(5003)),
            },
            bootstrap: Vec::new(),
            datastore: Datastore {
                storage_max: "10GB".into(),
                gc_period: default_gc_period(),
                storage_gc_watermark: default_gc_watermark(),
            },
            discovery: Discovery { mdns: Mdns { enabled: false } },
            swarm: Swarm { disable_nat_port_map: true, conn_mgr: ConnMgr::default(), rate_limit: RateLimit::default() },
            routing: Routing::default(),
            reprovider: Reprovider::default(),
            api: Api::default(),
            gateway: Gateway::default(),
            manifest: ManifestConfig::default(),
            pinning_service: PinningService::default(),
            scrub: Scrub::default(),
            follow: Follow::default(),
            origins: Origins::default(),
            bitswap: Bitswap::default(),
            import: Import::default(),
            extra: Map::new(),
        }
    }

    /// Parses a config file's text.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The config as pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings, bools and maps always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The value at a dotted key such as `Addresses.Swarm`.
    pub fn get_key(&self, key: &str) -> Result<Value, ConfigError> {
        let mut v = serde_json::to_value(self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for part in split_key(key)? {
            v = v.get_mut(part).map(Value::take).ok_or_else(|| ConfigError::NoSuchKey(key.to_owned()))?;
        }
        Ok(v)
    }

    /// Sets the value at a dotted key, creating intermediate objects, and checks that the
    /// result still has the config's shape (types; the values themselves are checked by
    /// [`crate::settings::set_key`], which `cairn config` calls).
    pub fn set_key(&self, key: &str, value: Value) -> Result<Config, ConfigError> {
        let mut root = serde_json::to_value(self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let parts = split_key(key)?;
        let (last, parents) = parts.split_last().ok_or_else(|| ConfigError::BadKey(key.to_owned()))?;
        let mut cur = &mut root;
        for p in parents {
            let obj = cur.as_object_mut().ok_or_else(|| ConfigError::BadKey(key.to_owned()))?;
            cur = obj.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        }
        cur.as_object_mut().ok_or_else(|| ConfigError::BadKey(key.to_owned()))?.insert(last.to_string(), value);
        serde_json::from_value(root).map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))
    }
}

fn split_key(key: &str) -> Result<Vec<&str>, ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::BadKey(key.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_kubo() {
        assert_eq!(parse_size("10GB"), Some(10_000_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1.5kB"), Some(1500));
        assert_eq!(parse_size("42"), Some(42));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn tcp_multiaddrs_parse() {
        let a = tcp_socket_addr("/ip4/127.0.0.1/tcp/8080").unwrap();
        assert_eq!(a, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(tcp_multiaddr(a), "/ip4/127.0.0.1/tcp/8080");
        assert_eq!(tcp_socket_addr("/ip6/::1/tcp/0").unwrap(), "[::1]:0".parse().unwrap());
        for bad in ["", "/ip4/127.0.0.1/udp/1", "/ip4/localhost/tcp/1", "/ip4/1.2.3.4/tcp/99999", "/dns/x/tcp/1"] {
            assert!(tcp_socket_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_use_kubo_names_and_edits_are_checked() {
        let c = Config::new("12D3KooWtest".into(), Profile::Test);
        assert_eq!(c.get_key("Addresses.API").unwrap(), Value::String("/ip4/127.0.0.1/tcp/0".into()));
        assert_eq!(c.get_key("Bootstrap").unwrap(), serde_json::json!([]));
        assert_eq!(c.get_key("Discovery.MDNS.Enabled").unwrap(), Value::Bool(false));
        let c2 = c.set_key("Addresses.Gateway", Value::String("/ip4/127.0.0.1/tcp/9999".into())).unwrap();
        assert_eq!(c2.addresses.gateway, "/ip4/127.0.0.1/tcp/9999");
        // A wrong type is refused, and unknown keys are kept.
        assert!(c.set_key("Bootstrap", Value::Bool(true)).is_err());
        let c3 = c.set_key("Experimental.Thing", Value::Bool(true)).unwrap();
        assert_eq!(Config::from_json(&c3.to_json()).unwrap().get_key("Experimental.Thing").unwrap(), Value::Bool(true));
        assert!(matches!(c.get_key("Nope.Key"), Err(ConfigError::NoSuchKey(_))));
        assert!(matches!(c.get_key("a..b"), Err(ConfigError::BadKey(_))));
    }
}
