//! Delegated routing on the gateway's port: the Routing V1 HTTP API (IPIP-337), answered from
//! this node's store and its DHTs.
//!
//! - `GET /routing/v1/providers/{cid}`: this node, when its store holds the block, then the
//!   providers a DHT lookup finds, each with the addresses this node knows for it.
//! - `GET /routing/v1/peers/{peer-id}`: where a peer listens, from identify and the routing
//!   tables, else from a DHT lookup of the peer's ID.
//! - `GET /routing/v1/dht/closest/peers/{key}` (IPIP-476): the DHT peers closest to a CID or
//!   peer ID, closest first; 404 when the DHTs know nobody.
//!
//! Answers are JSON, or NDJSON when the client's `Accept` asks for `application/x-ndjson`
//! (IPIP-410); `filter-addrs` and `filter-protocols` apply (IPIP-484). An empty answer is a
//! 200 with no records (IPIP-513), except closest peers, whose spec asks for 404. Every
//! answer allows any origin (the spec's CORS rule): the endpoints only read.
//!
//! Bounds: at most [`MAX_RECORDS`] records an answer, [`MAX_LOOKUPS`] DHT lookups running for
//! the API at once (more requests get 429 with `Retry-After`), each lookup cut at
//! [`LOOKUP_TIMEOUT`], and filters of at most [`MAX_FILTERS`] names of at most
//! [`MAX_FILTER_NAME`] bytes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::merkle::Cid;
use cairn_node::net::origin::is_http;
use cairn_node::net::{Multiaddr, Network, PeerId};
use cairn_node::store::BlockStore;
use cairn_node::Node;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::body::{self, Body};
use crate::handler::text;

/// Where the API lives on the gateway's port.
pub(crate) const PREFIX: &str = "/routing/v1/";

/// Records in one answer, JSON or NDJSON (the spec's limit for JSON).
pub const MAX_RECORDS: usize = 100;

/// DHT lookups the API runs at once; a request that would start one more gets 429.
pub const MAX_LOOKUPS: usize = 16;

/// How long one DHT lookup may run for the API.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Names in one `filter-addrs` or `filter-protocols`.
pub const MAX_FILTERS: usize = 32;

/// The longest name in a filter (the spec's limit for protocol names).
pub const MAX_FILTER_NAME: usize = 63;

/// The closest peers answered, as a DHT bucket holds.
const CLOSEST: usize = 20;

/// `max-age` of an answer with records, and of one without (seconds).
const MAX_AGE_FOUND: u64 = 300;
const MAX_AGE_EMPTY: u64 = 15;
/// How long a cached answer may still serve while being refreshed, or when the server
/// fails: the DHT's provider record lifetime.
const MAX_STALE: u64 = 172_800;

/// The Bitswap transfer protocol's name in routing records.
const BITSWAP: &str = "transport-bitswap";

/// What the routing API needs: the network, and the permits that bound its lookups.
#[derive(Debug, Clone)]
pub struct RoutingApi {
    net: Network,
    lookups: Arc<Semaphore>,
}

impl RoutingApi {
    /// The API over `net`.
    pub fn new(net: Network) -> RoutingApi {
        RoutingApi::with_lookups(net, MAX_LOOKUPS)
    }

    /// [`RoutingApi::new`] with `lookups` DHT lookups at once instead of [`MAX_LOOKUPS`].
    pub fn with_lookups(net: Network, lookups: usize) -> RoutingApi {
        RoutingApi { net, lookups: Arc::new(Semaphore::new(lookups)) }
    }
}

/// One peer record (the spec's `peer` schema).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: PeerId,
    addrs: Vec<Multiaddr>,
    protocols: Vec<String>,
}

impl Record {
    fn json(&self) -> Value {
        json!({
            "Schema": "peer",
            "ID": self.id.to_string(),
            "Addrs": self.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "Protocols": self.protocols,
        })
    }
}

/// How the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Json,
    Ndjson,
}

/// The filters of a request (IPIP-484), lower-cased.
#[derive(Debug, Default, PartialEq, Eq)]
struct Filters {
    /// `filter-addrs`: `None` when absent.
    addrs: Option<Vec<String>>,
    /// `filter-protocols`: `None` when absent.
    protocols: Option<Vec<String>>,
}

/// Answers a request whose path begins with [`PREFIX`] (`rest` is what follows it).
pub(crate) async fn handle(api: &RoutingApi, node: &Node, req: &Request<()>, rest: &str) -> Response<Body> {
    let mut resp = match *req.method() {
        Method::GET | Method::HEAD => answer(api, node, req, rest).await,
        Method::OPTIONS => Response::new(body::empty()),
        _ => text(StatusCode::NOT_IMPLEMENTED, "the routing API here serves GET, HEAD and OPTIONS"),
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, OPTIONS"));
    resp
}

async fn answer(api: &RoutingApi, node: &Node, req: &Request<()>, rest: &str) -> Response<Body> {
    let form = match form(req.headers()) {
        Ok(f) => f,
        Err(why) => return text(StatusCode::BAD_REQUEST, &why),
    };
    let filters = match filters(req.uri().query().unwrap_or("")) {
        Ok(f) => f,
        Err(why) => return text(StatusCode::BAD_REQUEST, &why),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (key, records, empty_status) = match parts.as_slice() {
        ["providers", cid] => {
            let Ok(cid) = Cid::from_str(cid) else {
                return text(StatusCode::BAD_REQUEST, &format!("not a CID: {cid:?}"));
            };
            let Some(_permit) = permit(api) else { return busy() };
            ("Providers", providers(api, node, cid).await, StatusCode::OK)
        }
        ["peers", id] => {
            let Some(id) = peer_id(id) else {
                return text(StatusCode::BAD_REQUEST, &format!("not a peer ID: {id:?}"));
            };
            let Some(_permit) = permit(api) else { return busy() };
            ("Peers", peer(api, id).await, StatusCode::OK)
        }
        ["dht", "closest", "peers", key] => {
            let Some(key) = dht_key(key) else {
                return text(StatusCode::BAD_REQUEST, &format!("not a CID or peer ID: {key:?}"));
            };
            let Some(_permit) = permit(api) else { return busy() };
            ("Peers", closest(api, key).await, StatusCode::NOT_FOUND)
        }
        ["ipns", _] => {
            return text(StatusCode::NOT_IMPLEMENTED, "this node does not resolve or keep IPNS records yet");
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "unknown routing path: /routing/v1/providers/{cid}, /routing/v1/peers/{peer-id} and \
                 /routing/v1/dht/closest/peers/{key} are served",
            );
        }
    };
    let records: Vec<Record> = records.into_iter().filter_map(|r| filters.apply(r)).take(MAX_RECORDS).collect();
    if records.is_empty() && empty_status == StatusCode::NOT_FOUND {
        let mut r = text(StatusCode::NOT_FOUND, "no DHT peer is known near that key");
        cache_headers(r.headers_mut(), false);
        return r;
    }
    write(key, &records, form)
}

/// A permit to run a lookup, if one is free.
fn permit(api: &RoutingApi) -> Option<tokio::sync::OwnedSemaphorePermit> {
    api.lookups.clone().try_acquire_owned().ok()
}

fn busy() -> Response<Body> {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, "too many routing lookups running; try again shortly");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// The answer's form from `Accept`: NDJSON only when asked for, JSON when nothing (or
/// anything JSON) is; why not when neither can be given.
fn form(headers: &HeaderMap) -> Result<Form, String> {
    let mut any = false;
    let mut json = false;
    for v in headers.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            any = true;
            let media = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            match media.as_str() {
                "application/x-ndjson" => return Ok(Form::Ndjson),
                "application/json" | "application/*" | "*/*" | "" => json = true,
                _ => {}
            }
        }
    }
    if json || !any {
        Ok(Form::Json)
    } else {
        Err("the routing API answers application/json or application/x-ndjson".into())
    }
}

/// The filters in a query string, or why they are refused.
fn filters(query: &str) -> Result<Filters, String> {
    let mut f = Filters::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "filter-addrs" => &mut f.addrs,
            "filter-protocols" => &mut f.protocols,
            _ => continue,
        };
        let names: Vec<String> =
            v.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect();
        if names.len() > MAX_FILTERS || names.iter().any(|n| n.len() > MAX_FILTER_NAME + 1) {
            return Err(format!("{k}: at most {MAX_FILTERS} names of at most {MAX_FILTER_NAME} bytes"));
        }
        slot.get_or_insert_with(Vec::new).extend(names);
    }
    Ok(f)
}

impl Filters {
    /// The record as the filters leave it, or `None` when they drop it.
    fn apply(&self, mut r: Record) -> Option<Record> {
        if let Some(wanted) = &self.protocols {
            let known = r.protocols.iter().any(|p| wanted.contains(&p.to_ascii_lowercase()));
            let unknown = r.protocols.is_empty() && wanted.iter().any(|w| w == "unknown");
            if !known && !unknown {
                return None;
            }
        }
        if let Some(names) = &self.addrs {
            if r.addrs.is_empty() {
                return names.iter().any(|n| n == "unknown").then_some(r);
            }
            let (neg, pos): (Vec<&str>, Vec<&str>) =
                names.iter().filter(|n| n.as_str() != "unknown").map(String::as_str).partition(|n| n.starts_with('!'));
            let neg: Vec<&str> = neg.iter().map(|n| &n[1..]).collect();
            r.addrs.retain(|a| {
                let tags: Vec<&str> = a.iter().map(|p| p.tag()).collect();
                let has = |n: &str| tags.iter().any(|t| t.eq_ignore_ascii_case(n));
                neg.iter().all(|n| !has(n)) && (pos.is_empty() || pos.iter().any(|n| has(n)))
            });
            if r.addrs.is_empty() {
                return None;
            }
        }
        Some(r)
    }
}

/// A peer ID as the spec writes it: base58 multihash, or a CIDv1 with the `libp2p-key` codec.
fn peer_id(text: &str) -> Option<PeerId> {
    if let Ok(id) = PeerId::from_str(text) {
        return Some(id);
    }
    let cid = Cid::from_str(text).ok()?;
    (cid.codec() == LIBP2P_KEY).then(|| PeerId::from_bytes(&cid.hash().to_bytes()).ok()).flatten()
}

/// The multicodec of a peer ID written as a CID.
const LIBP2P_KEY: u64 = 0x72;

/// A DHT key from a CID (its multihash) or a peer ID (its bytes).
fn dht_key(text: &str) -> Option<Vec<u8>> {
    if let Some(id) = peer_id(text) {
        return Some(id.to_bytes());
    }
    Cid::from_str(text).ok().map(|c| c.hash().to_bytes())
}

/// This node's own records: where peers reach it over libp2p, and that it speaks Bitswap
/// there; and, when it announces an HTTP address (its trustless gateway, through
/// `Addresses.Announce` or `AppendAnnounce`, such as `/dns4/example.com/tcp/443/tls/http`),
/// a second record, of an HTTP provider there.
async fn own_records(net: &Network) -> Vec<Record> {
    let mut addrs = net.external_addrs().await.unwrap_or_default();
    if addrs.is_empty() {
        addrs = net.listen_addrs().iter().map(without_peer).collect();
    }
    addrs.retain(|a| !is_unspecified(a));
    addrs.dedup();
    let (http, libp2p): (Vec<Multiaddr>, Vec<Multiaddr>) = addrs.into_iter().partition(is_http);
    let mut records = vec![Record { id: net.peer_id(), addrs: libp2p, protocols: vec![BITSWAP.into()] }];
    if !http.is_empty() {
        records.push(Record { id: net.peer_id(), addrs: http, protocols: vec![GATEWAY_HTTP.into()] });
    }
    records
}

/// The protocol of an HTTP provider: a trustless gateway (IPIP-484's name).
const GATEWAY_HTTP: &str = "transport-ipfs-gateway-http";

/// `addr` without a trailing `/p2p/<id>`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter().filter(|p| !matches!(p, cairn_node::net::Protocol::P2p(_))).collect()
}

/// Whether `addr` is a wildcard (`0.0.0.0`, `::`), which no one can dial.
fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        cairn_node::net::Protocol::Ip4(ip) => ip.is_unspecified(),
        cairn_node::net::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

async fn providers(api: &RoutingApi, node: &Node, cid: Cid) -> Vec<Record> {
    let mut records = Vec::new();
    if node.repo().store().has(&cid).unwrap_or(false) {
        records.extend(own_records(&api.net).await);
    }
    // The DHTs only: a router that asked its own routers could be asked back in a circle.
    let found = api.net.find_dht_providers(cid, MAX_RECORDS, LOOKUP_TIMEOUT).await.unwrap_or_default();
    records.extend(with_addrs(&api.net, found).await);
    records
}

/// Records for `peers`, with the addresses this node knows (none for a peer it knows none of:
/// the client then looks the peer up).
async fn with_addrs(net: &Network, peers: Vec<PeerId>) -> Vec<Record> {
    let mut addrs = net.peer_addrs(peers.clone()).await.unwrap_or_default();
    peers
        .into_iter()
        .map(|id| Record { id, addrs: addrs.remove(&id).unwrap_or_default(), protocols: Vec::new() })
        .collect()
}

async fn peer(api: &RoutingApi, id: PeerId) -> Vec<Record> {
    if id == api.net.peer_id() {
        return own_records(&api.net).await;
    }
    if let Some(addrs) = api.net.peer_addrs(vec![id]).await.unwrap_or_default().remove(&id) {
        return vec![Record { id, addrs, protocols: Vec::new() }];
    }
    // A lookup of the peer's own ID meets the peer, or peers that know its addresses.
    closest_all(&api.net, id.to_bytes())
        .await
        .into_iter()
        .filter(|(p, addrs)| *p == id && !addrs.is_empty())
        .map(|(id, addrs)| Record { id, addrs, protocols: Vec::new() })
        .collect()
}

/// The peers closest to `key` over every DHT with peers, closest first, with their addresses.
async fn closest_all(net: &Network, key: Vec<u8>) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let mut all: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    for dht in net.live_dhts().await.unwrap_or_default() {
        let Ok(Ok(c)) = tokio::time::timeout(LOOKUP_TIMEOUT, net.find_closest(dht, key.clone())).await else {
            continue;
        };
        let mut addrs = c.addrs;
        for p in c.peers {
            if !all.iter().any(|(q, _)| *q == p) {
                all.push((p, addrs.remove(&p).unwrap_or_default()));
            }
        }
    }
    all.sort_by_key(|(p, _)| cairn_node::net::dht::distance(&key, p));
    all.truncate(CLOSEST);
    all
}

async fn closest(api: &RoutingApi, key: Vec<u8>) -> Vec<Record> {
    let found = closest_all(&api.net, key).await;
    let missing: Vec<PeerId> = found.iter().filter(|(_, a)| a.is_empty()).map(|(p, _)| *p).collect();
    let mut known =
        if missing.is_empty() { HashMap::new() } else { api.net.peer_addrs(missing).await.unwrap_or_default() };
    found
        .into_iter()
        .map(|(id, addrs)| {
            let addrs = if addrs.is_empty() { known.remove(&id).unwrap_or_default() } else { addrs };
            Record { id, addrs, protocols: Vec::new() }
        })
        .collect()
}

/// The answer: `{"<key>": [records]}` in JSON, or one record per line in NDJSON.
fn write(key: &str, records: &[Record], form: Form) -> Response<Body> {
    let (bytes, content_type) = match form {
        Form::Json => {
            let mut answer = serde_json::Map::new();
            answer.insert(key.to_owned(), records.iter().map(Record::json).collect());
            (serde_json::to_vec(&answer).unwrap_or_default(), "application/json")
        }
        Form::Ndjson => {
            let mut out = Vec::new();
            for r in records {
                out.extend_from_slice(r.json().to_string().as_bytes());
                out.push(b'\n');
            }
            (out, "application/x-ndjson")
        }
    };
    let mut resp = Response::new(body::full(bytes));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    cache_headers(h, !records.is_empty());
    resp
}

/// `Cache-Control`, `Last-Modified` and `Vary` of an answer.
fn cache_headers(h: &mut HeaderMap, found: bool) {
    let age = if found { MAX_AGE_FOUND } else { MAX_AGE_EMPTY };
    let cache = format!("public, max-age={age}, stale-while-revalidate={MAX_STALE}, stale-if-error={MAX_STALE}");
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Some(v) = http_date(time::OffsetDateTime::now_utc()).and_then(|d| HeaderValue::from_str(&d).ok()) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
}

/// An HTTP-date (RFC 9110, section 5.6.7), such as `Mon, 07 Dec 2026 12:00:00 GMT`.
fn http_date(t: time::OffsetDateTime) -> Option<String> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let s = t.format(&time::format_description::well_known::Rfc2822).ok()?;
    Some(s.strip_suffix(" +0000")?.to_owned() + " GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(addrs: &[&str], protocols: &[&str]) -> Record {
        Record {
            id: PeerId::random(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            protocols: protocols.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn filtered(query: &str, r: &Record) -> Option<Vec<String>> {
        let f = filters(query).unwrap_or_else(|_| panic!("{query} refused"));
        f.apply(r.clone()).map(|r| r.addrs.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn address_filters_keep_positive_matches_and_drop_negative_ones() {
        let r = record(&["/ip4/1.2.3.4/tcp/4001", "/ip4/1.2.3.4/udp/4001/quic-v1", "/ip6/::1/tcp/4001"], &[]);
        assert_eq!(filtered("", &r).unwrap().len(), 3, "no filter: unchanged");
        assert_eq!(filtered("filter-addrs=quic-v1", &r).unwrap(), vec!["/ip4/1.2.3.4/udp/4001/quic-v1"]);
        assert_eq!(filtered("filter-addrs=!ip6,!QUIC-V1", &r).unwrap(), vec!["/ip4/1.2.3.4/tcp/4001"]);
        assert_eq!(filtered("filter-addrs=tcp,!ip6", &r).unwrap(), vec!["/ip4/1.2.3.4/tcp/4001"]);
        assert_eq!(filtered("filter-addrs=webrtc-direct", &r), None, "nothing left: the record goes");
        let bare = record(&[], &[]);
        assert_eq!(filtered("filter-addrs=tcp", &bare), None);
        assert_eq!(filtered("filter-addrs=tcp%2Cunknown", &bare), Some(vec![]), "unknown keeps address-less peers");
    }

    #[test]
    fn protocol_filters_keep_records_whole() {
        let bitswap = record(&["/ip4/1.2.3.4/tcp/1"], &["transport-bitswap", "transport-ipfs-gateway-http"]);
        let unknown = record(&["/ip4/1.2.3.4/tcp/1"], &[]);
        let q = "filter-protocols=unknown,transport-bitswap";
        let kept = filters(q).unwrap().apply(bitswap.clone()).unwrap();
        assert_eq!(kept.protocols.len(), 2, "every protocol of a passing record stays");
        assert!(filters(q).unwrap().apply(unknown.clone()).is_some());
        assert!(filters("filter-protocols=transport-bitswap").unwrap().apply(unknown).is_none());
        assert!(filters("filter-protocols=transport-graphsync-filecoinv1").unwrap().apply(bitswap).is_none());
    }

    #[test]
    fn oversized_filters_are_refused() {
        let many = vec!["tcp"; MAX_FILTERS + 1].join(",");
        assert!(filters(&format!("filter-addrs={many}")).is_err());
        let long = "x".repeat(MAX_FILTER_NAME + 2);
        assert!(filters(&format!("filter-protocols={long}")).is_err());
        assert!(filters(&format!("filter-protocols={}", "x".repeat(MAX_FILTER_NAME))).is_ok());
    }

    #[test]
    fn accept_chooses_ndjson_only_when_asked() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            form(&h).ok()
        };
        assert_eq!(form(&HeaderMap::new()).ok(), Some(Form::Json));
        assert_eq!(with("application/x-ndjson"), Some(Form::Ndjson));
        assert_eq!(with("application/json, application/x-ndjson;q=0.9"), Some(Form::Ndjson));
        assert_eq!(with("*/*"), Some(Form::Json));
        assert_eq!(with("text/html"), None);
    }

    #[test]
    fn peer_ids_parse_as_base58_or_libp2p_key_cids() {
        let id = PeerId::random();
        assert_eq!(peer_id(&id.to_string()), Some(id));
        let mh = cid::multihash::Multihash::<64>::from_bytes(&id.to_bytes()).unwrap();
        let as_cid = Cid::new_v1(LIBP2P_KEY, mh);
        assert_eq!(peer_id(&as_cid.to_string()), Some(id));
        let other = Cid::new_v1(0x55, mh);
        assert_eq!(peer_id(&other.to_string()), None, "a raw CID is not a peer ID");
        assert_eq!(dht_key(&other.to_string()), Some(id.to_bytes()), "but it is a DHT key");
        assert_eq!(peer_id("not-a-peer"), None);
    }

    #[test]
    fn dates_are_http_dates() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_796_644_800).unwrap();
        assert_eq!(http_date(t).unwrap(), "Mon, 07 Dec 2026 12:00:00 GMT");
    }
}
