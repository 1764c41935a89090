//! Delegated routers (`Routing.DelegatedRouters`): other nodes' Routing V1 HTTP APIs, asked
//! for providers beside the DHTs.
//!
//! A provider lookup ([`crate::net::Network::find_providers`], or one a fetch starts when no
//! connected peer has a block) also sends `GET <base>/routing/v1/providers/<cid>` to every
//! router, asking for NDJSON or JSON and for records of Bitswap peers or of unknown
//! protocols. The peers named are added to the lookup's answer, their addresses kept for
//! [`crate::net::Network::peer_addrs`], and a fetch's lookup dials them at those addresses.
//! What they send is verified as every block from a peer is: a router only says who to ask.
//!
//! A record may name a provider without its addresses (a DHT record whose peer the router has
//! not seen lately): the router is then asked `GET <base>/routing/v1/peers/<id>` for them, for
//! at most [`MAX_FOLLOW_UPS`] such records an answer. A record of an HTTP provider
//! (`transport-ipfs-gateway-http`, addresses like `/ip4/.../tcp/.../http`) is taken too: its
//! HTTP addresses go to the origin ([`crate::net::origin`]), which asks it for blocks.
//!
//! Bounds: [`MAX_ROUTERS`] routers, each answer at most [`MAX_BODY`] bytes and
//! [`MAX_PROVIDERS`] records of at most [`crate::net::MAX_PEER_ADDRS`] addresses, each router's
//! requests (follow-ups included) cut at [`REQUEST_TIMEOUT`]. A router that fails, times out
//! or answers nonsense adds nothing; the lookup goes on with the DHTs.

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use cairn_merkle::Cid;
use http_body_util::{BodyExt as _, Empty, Limited};
use serde_json::Value;

use super::{Multiaddr, PeerId, MAX_PEER_ADDRS};

/// Routers a node may list.
pub const MAX_ROUTERS: usize = 16;
/// The largest answer read from a router.
pub const MAX_BODY: usize = 1 << 20;
/// Provider records taken from one answer.
pub const MAX_PROVIDERS: usize = 100;
/// How long one router may take to answer whole, its follow-ups included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Records without addresses followed up with `/routing/v1/peers/<id>`, per answer.
pub const MAX_FOLLOW_UPS: usize = 8;

/// The query every providers request carries: Bitswap peers, HTTP providers (trustless
/// gateways), and peers whose protocols the router does not know (DHT records), which may
/// speak Bitswap.
const FILTER: &str = "filter-protocols=unknown,transport-bitswap,transport-ipfs-gateway-http";

/// The routers of one node.
#[derive(Debug)]
pub struct Routers {
    bases: Vec<String>,
    client: super::http_client::HttpClient,
}

/// Why a router URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouterError {
    /// Not `http[s]://host[:port][/path]`.
    #[error("{0:?} is not a router URL like https://host or http://host:port")]
    NotHttp(String),
    /// More than [`MAX_ROUTERS`].
    #[error("{0} routers listed; at most {MAX_ROUTERS}")]
    TooMany(usize),
}

/// A provider a router named.
pub type Named = (PeerId, Vec<Multiaddr>);

impl Routers {
    /// The routers at `urls` (base URLs; a trailing `/` and `/routing/v1` are allowed), or
    /// `None` when there are none.
    pub fn new(urls: &[String]) -> Result<Option<Routers>, RouterError> {
        Routers::with_client(urls, super::http_client::client())
    }

    /// [`Routers::new`] asking through `client` (one that trusts a test's own authority).
    pub fn with_client(
        urls: &[String],
        client: super::http_client::HttpClient,
    ) -> Result<Option<Routers>, RouterError> {
        let bases = bases(urls)?;
        if bases.is_empty() {
            return Ok(None);
        }
        Ok(Some(Routers { bases, client }))
    }

    /// The providers of `cid` the routers name, each once, at most [`MAX_PROVIDERS`] in all.
    pub async fn providers(&self, cid: Cid) -> Vec<Named> {
        let asks = self.bases.iter().map(|b| self.ask(b, cid));
        let mut all: Vec<Named> = Vec::new();
        for found in futures::future::join_all(asks).await {
            for (peer, addrs) in found {
                if all.len() >= MAX_PROVIDERS {
                    break;
                }
                match all.iter_mut().find(|(p, _)| *p == peer) {
                    Some((_, known)) => {
                        for a in addrs {
                            if known.len() < MAX_PEER_ADDRS && !known.contains(&a) {
                                known.push(a);
                            }
                        }
                    }
                    None => all.push((peer, addrs)),
                }
            }
        }
        all
    }

    /// One router's answer for `cid`, each record without addresses followed up with the
    /// router's `/peers`; nothing when it fails.
    async fn ask(&self, base: &str, cid: Cid) -> Vec<Named> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let url = format!("{base}/routing/v1/providers/{}?{FILTER}", v1(cid));
        let mut found = self.records(&url, "Providers", deadline).await;
        let bare: Vec<PeerId> =
            found.iter().filter(|(_, addrs)| addrs.is_empty()).map(|(p, _)| *p).take(MAX_FOLLOW_UPS).collect();
        let follow_ups = bare.iter().map(|peer| async move {
            let url = format!("{base}/routing/v1/peers/{peer}");
            self.records(&url, "Peers", deadline).await.into_iter().find(|(p, addrs)| p == peer && !addrs.is_empty())
        });
        for (peer, addrs) in futures::future::join_all(follow_ups).await.into_iter().flatten() {
            if let Some(known) = found.iter_mut().find(|(p, _)| *p == peer) {
                known.1 = addrs;
            }
        }
        found
    }

    /// The records at `url` (an answer keyed `key` in JSON, or NDJSON), by `deadline`;
    /// nothing when the router fails or has none.
    async fn records(&self, url: &str, key: &str, deadline: tokio::time::Instant) -> Vec<Named> {
        let req = match hyper::Request::get(url)
            .header(hyper::header::ACCEPT, "application/x-ndjson, application/json")
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("router request {url}: {e}");
                return Vec::new();
            }
        };
        let answer = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            if status == hyper::StatusCode::NOT_FOUND {
                return Ok(Vec::new());
            }
            if status != hyper::StatusCode::OK {
                return Err(format!("status {status}"));
            }
            let ndjson = resp
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-ndjson"));
            let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|e| e.to_string())?;
            Ok(parse_records(&body.to_bytes(), ndjson, key))
        };
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::debug!("router {url}: {e}");
                Vec::new()
            }
            Err(_) => {
                tracing::debug!("router {url}: no answer within {REQUEST_TIMEOUT:?}");
                Vec::new()
            }
        }
    }
}

/// The bases of `urls` ([`base`]), or why the list is refused (the config's check).
pub fn bases(urls: &[String]) -> Result<Vec<String>, RouterError> {
    if urls.len() > MAX_ROUTERS {
        return Err(RouterError::TooMany(urls.len()));
    }
    urls.iter().map(|u| base(u)).collect()
}

/// `url` as a base to append `/routing/v1/...` to.
fn base(url: &str) -> Result<String, RouterError> {
    let uri: Option<hyper::Uri> = url.parse().ok();
    let web = |u: &hyper::Uri| matches!(u.scheme_str(), Some("http" | "https"));
    if uri.as_ref().is_none_or(|u| !web(u) || u.host().is_none() || u.query().is_some()) {
        return Err(RouterError::NotHttp(url.to_owned()));
    }
    let trimmed = url.trim_end_matches('/');
    Ok(trimmed.strip_suffix("/routing/v1").unwrap_or(trimmed).to_owned())
}

/// `cid` as routers like it: CIDv1 in base32.
fn v1(cid: Cid) -> String {
    if cid.version() == cid::Version::V0 {
        Cid::new_v1(cid.codec(), *cid.hash()).to_string()
    } else {
        cid.to_string()
    }
}

/// The providers in a router's answer: `{"Providers": [...]}`, or one record a line
/// ([`parse_records`]).
pub fn parse_providers(body: &[u8], ndjson: bool) -> Vec<Named> {
    parse_records(body, ndjson, "Providers")
}

/// The peers in an answer: `{key: [...]}` (`Providers`, or `Peers` for `/peers`), or one
/// record a line. Records of the `peer` schema (and the older `bitswap` one) with a valid ID
/// are taken, with their valid addresses; a record whose protocols are listed and include
/// neither Bitswap nor the trustless gateway is skipped, since this node fetches over those
/// only. At most [`MAX_PROVIDERS`].
pub fn parse_records(body: &[u8], ndjson: bool, key: &str) -> Vec<Named> {
    let records: Vec<Value> = if ndjson {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .take(MAX_PROVIDERS)
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(mut o)) => match o.remove(key) {
                Some(Value::Array(list)) => list.into_iter().take(MAX_PROVIDERS).collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    };
    records.iter().filter_map(record).collect()
}

/// One record, if it names a peer this node could fetch from.
fn record(v: &Value) -> Option<Named> {
    let schema = v.get("Schema")?.as_str()?;
    let usable = match schema {
        "peer" => match v.get("Protocols").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                list.iter().any(|p| matches!(p.as_str(), Some("transport-bitswap" | "transport-ipfs-gateway-http")))
            }
            _ => true,
        },
        "bitswap" => v.get("Protocol").and_then(Value::as_str).is_none_or(|p| p == "transport-bitswap"),
        _ => false,
    };
    if !usable {
        return None;
    }
    let id = PeerId::from_str(v.get("ID")?.as_str()?).ok()?;
    let addrs = v
        .get("Addrs")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .filter_map(|a| Multiaddr::from_str(a).ok())
                .take(MAX_PEER_ADDRS)
                .collect()
        })
        .unwrap_or_default();
    Some((id, addrs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_urls_must_be_http_or_https_bases() {
        assert_eq!(base("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(base("http://127.0.0.1:8080/routing/v1").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(base("http://router.local/prefix").unwrap(), "http://router.local/prefix");
        assert_eq!(base("https://delegated-ipfs.dev/routing/v1").unwrap(), "https://delegated-ipfs.dev");
        for bad in ["auto", "ftp://x", "http://", "http://h/?q=1"] {
            assert!(base(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..=MAX_ROUTERS).map(|i| format!("http://127.0.0.1:{}", 1000 + i)).collect();
        assert_eq!(Routers::new(&many).unwrap_err(), RouterError::TooMany(MAX_ROUTERS + 1));
        assert!(Routers::new(&[]).unwrap().is_none());
    }

    #[test]
    fn json_and_ndjson_answers_give_bitswap_capable_peers() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let json = format!(
            r#"{{"Providers": [
                {{"Schema": "peer", "ID": "{a}", "Addrs": ["/ip4/127.0.0.1/tcp/4001", "not an addr"], "Protocols": ["transport-bitswap"]}},
                {{"Schema": "peer", "ID": "{b}"}},
                {{"Schema": "peer", "ID": "{c}", "Protocols": ["transport-graphsync-filecoinv1"]}},
                {{"Schema": "peer", "ID": "not a peer"}},
                {{"Schema": "future-thing", "ID": "{a}"}}
            ]}}"#
        );
        let found = parse_providers(json.as_bytes(), false);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0], (a, vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()]));
        assert_eq!(found[1], (b, vec![]), "no protocols listed: may speak Bitswap");
        let ndjson = format!(
            "{{\"Schema\":\"peer\",\"ID\":\"{a}\",\"Addrs\":[]}}\n\n{{garbage\n{{\"Schema\":\"bitswap\",\"Protocol\":\"transport-bitswap\",\"ID\":\"{b}\"}}\n"
        );
        let found = parse_providers(ndjson.as_bytes(), true);
        assert_eq!(found.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![a, b]);
        assert!(parse_providers(b"[1,2,3]", false).is_empty());
        // An HTTP provider is taken: the origin asks it.
        let http = format!(
            r#"{{"Providers": [{{"Schema": "peer", "ID": "{c}", "Addrs": ["/ip4/127.0.0.1/tcp/8080/http"], "Protocols": ["transport-ipfs-gateway-http"]}}]}}"#
        );
        assert_eq!(
            parse_providers(http.as_bytes(), false),
            vec![(c, vec!["/ip4/127.0.0.1/tcp/8080/http".parse().unwrap()])]
        );
        // `/peers` answers are keyed `Peers`.
        let peers =
            format!(r#"{{"Peers": [{{"Schema": "peer", "ID": "{a}", "Addrs": ["/ip4/127.0.0.1/tcp/4001"]}}]}}"#);
        assert_eq!(parse_records(peers.as_bytes(), false, "Peers").len(), 1);
        assert!(parse_records(peers.as_bytes(), false, "Providers").is_empty());
        assert!(parse_providers(b"{\"Providers\": null}", false).is_empty());
    }

    #[test]
    fn answers_are_capped() {
        let line = |_| format!("{{\"Schema\":\"peer\",\"ID\":\"{}\"}}\n", PeerId::random());
        let many: String = (0..MAX_PROVIDERS + 50).map(line).collect();
        assert_eq!(parse_providers(many.as_bytes(), true).len(), MAX_PROVIDERS);
        let addrs: Vec<String> =
            (0..MAX_PEER_ADDRS + 10).map(|i| format!("\"/ip4/127.0.0.1/tcp/{}\"", 1000 + i)).collect();
        let one = format!("{{\"Schema\":\"peer\",\"ID\":\"{}\",\"Addrs\":[{}]}}", PeerId::random(), addrs.join(","));
        assert_eq!(parse_providers(one.as_bytes(), true)[0].1.len(), MAX_PEER_ADDRS);
    }

    #[test]
    fn cids_go_to_routers_as_v1() {
        let v0: Cid = "QmW3UhhJKZgyw5Jv6ivWRufMKYaLmeSsAduv3RspnYrAVG".parse().unwrap();
        assert!(v1(v0).starts_with("bafy"), "{}", v1(v0));
    }

    /// A router on loopback that names `bare` providers without addresses and answers
    /// `/peers/<id>` with one address each; counts the `/peers` requests.
    async fn router(bare: Vec<PeerId>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        serve_router(bare, None).await
    }

    /// [`router`], over TLS with `tls` when given (its base is then `https://`).
    async fn serve_router(
        bare: Vec<PeerId>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
        trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
        impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = asked.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let mut conn: Box<dyn Conn> = match &tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => Box::new(stream),
                        Err(_) => continue,
                    },
                    None => Box::new(tcp),
                };
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let body = if let Some(id) = path.strip_prefix("/routing/v1/peers/") {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    format!(r#"{{"Peers":[{{"Schema":"peer","ID":"{id}","Addrs":["/ip4/127.0.0.1/tcp/4001"]}}]}}"#)
                } else {
                    let records: Vec<String> =
                        bare.iter().map(|p| format!(r#"{{"Schema":"peer","ID":"{p}","Addrs":[]}}"#)).collect();
                    format!(r#"{{"Providers":[{}]}}"#, records.join(","))
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        (base, asked)
    }

    /// A router is asked over HTTPS, its certificate checked against the roots: one the
    /// client trusts answers; the same router is refused by a client that does not trust it.
    #[tokio::test]
    async fn routers_are_asked_over_https() {
        let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = ca.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ca.key_pair.serialize_der().into());
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
        let cid: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse().unwrap();
        let one = PeerId::random();
        let (base, _) = serve_router(vec![one], Some(acceptor)).await;
        assert!(base.starts_with("https://"));
        let trusting = Routers::with_client(std::slice::from_ref(&base), crate::net::http_client::with_roots(&[cert]));
        let found = trusting.unwrap().unwrap().providers(cid).await;
        assert_eq!(found, vec![(one, vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()])]);
        let doubting = Routers::with_client(&[base], crate::net::http_client::with_roots(&[])).unwrap().unwrap();
        assert!(doubting.providers(cid).await.is_empty(), "a certificate no root vouches for was taken");
    }

    /// A provider named without addresses is looked up with the router's `/peers`, for at
    /// most [`MAX_FOLLOW_UPS`] records of an answer.
    #[tokio::test]
    async fn providers_without_addresses_are_followed_up() {
        let cid: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse().unwrap();
        let one = PeerId::random();
        let (base, asked) = router(vec![one]).await;
        let routers = Routers::new(&[base]).unwrap().unwrap();
        let found = routers.providers(cid).await;
        assert_eq!(found, vec![(one, vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()])]);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);

        let many: Vec<PeerId> = (0..MAX_FOLLOW_UPS + 5).map(|_| PeerId::random()).collect();
        let (base, asked) = router(many.clone()).await;
        let found = Routers::new(&[base]).unwrap().unwrap().providers(cid).await;
        assert_eq!(found.len(), many.len(), "every provider is named");
        assert_eq!(found.iter().filter(|(_, a)| !a.is_empty()).count(), MAX_FOLLOW_UPS);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), MAX_FOLLOW_UPS);
    }
}
