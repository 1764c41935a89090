//! From a request to a response: routing, and the answers (raw, CAR, files, listings), with
//! their ranges. Which form is asked for is `negotiate.rs`; the headers are `headers.rs`;
//! tar archives, codec blocks, `_redirects` and the protocol-handler answers are `forms.rs`.
//! It stays one file past 700 lines because it is one job, a request's way to its answer:
//! the file, listing and CAR answers share its resolve, wait and streaming steps.

use std::sync::Arc;

use cairn_node::merkle::car::CarWriter;
use cairn_node::merkle::exporter::{self, NodeKind};
use cairn_node::merkle::{Cid, SourceError};
use cairn_node::Node;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::content::{self, CarRest, CarTail, DagScope, EntityBytes, Resolved};
use crate::error::HttpError;
use crate::headers::{common_headers, content_disposition, download_headers, not_modified, value};
use crate::negotiate::{car_variant, negotiate, wants_html, Codec, Format};
use crate::path::{self, ContentPath, PathError};
use crate::range::{self, RangeRequest};
use crate::subdomain::{self, Host};
use crate::{listing, mime, GatewayConfig};

mod forms;

use forms::{protocol_handler, service_worker_at_a_root};

/// Bumped when the listing page changes, so that cached listings are not reused.
const LISTING_VERSION: &str = "cairn-1";

/// The shared state behind every request.
#[derive(Debug)]
pub struct Handler {
    pub(crate) node: Arc<Node>,
    pub(crate) config: GatewayConfig,
    /// One permit per request in flight ([`GatewayConfig::max_concurrent_requests`]).
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// The public gateways' hosts that have subdomains.
    subdomain_hosts: Vec<String>,
}

/// A response with a short text body.
pub fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(body::full(format!("{message}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

fn failure(f: &HttpError) -> Response<Body> {
    text(f.status, &f.message)
}

fn path_failure(e: &PathError) -> Response<Body> {
    let status = match e {
        PathError::TooLong => StatusCode::URI_TOO_LONG,
        PathError::Bad(_) => StatusCode::BAD_REQUEST,
    };
    text(status, &e.to_string())
}

fn redirect(location: &str) -> Response<Body> {
    let mut resp = text(StatusCode::MOVED_PERMANENTLY, &format!("moved to {location}"));
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A 301 to the request's path with a trailing `/`, its query kept.
fn slash_redirect(req: &Request<()>, content: &ContentPath, on_subdomain: bool) -> Response<Body> {
    let base = if on_subdomain { content.rest_url_path() } else { content.to_url_path(false) };
    let mut location = format!("{}/", base.trim_end_matches('/'));
    if let Some(q) = req.uri().query() {
        location.push('?');
        location.push_str(q);
    }
    redirect(&location)
}

/// A request's query parameters, decoded.
fn query(req: &Request<()>) -> Vec<(String, String)> {
    req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The first value of `key` among a request's query parameters.
pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

impl Handler {
    /// The handler of a gateway serving `node` as `config` says, `slots` permits at once.
    pub(crate) fn new(node: Arc<Node>, config: GatewayConfig, slots: Arc<tokio::sync::Semaphore>) -> Self {
        let subdomain_hosts =
            config.public_gateways.iter().filter(|g| g.use_subdomains).map(|g| g.host.clone()).collect();
        Handler { node, config, slots, subdomain_hosts }
    }

    /// The public gateway a request's host is, or is a subdomain of.
    fn public_gateway(&self, req: &Request<()>) -> Option<&crate::PublicGateway> {
        let name = subdomain::host_name(req)?;
        self.config.public_gateways.iter().find(|g| {
            name == g.host
                || (g.use_subdomains && ["ipfs", "ipns"].iter().any(|ns| name.ends_with(&format!(".{ns}.{}", g.host))))
        })
    }

    /// Fetches a block a read stopped at, unless the gateway serves only what the repo holds
    /// (`Gateway.NoFetch`): then the block is not found.
    fn fetch<E: crate::wait::Stop>(&self) -> impl FnMut(Cid) -> crate::wait::Fetch<E> + Send + 'static {
        let mut one = crate::wait::one_block(&self.node);
        let no_fetch = self.config.no_fetch;
        move |cid| {
            if no_fetch {
                Box::pin(std::future::ready(Err(E::unfetched(SourceError::NotFound(cid)))))
            } else {
                one(cid)
            }
        }
    }

    /// Answers one request within the gateway's limits: a request beyond
    /// [`GatewayConfig::max_concurrent_requests`] gets 429, and one that outlasts
    /// [`GatewayConfig::max_request_duration`] a 504 (or, once its body has begun, the end
    /// of the connection).
    pub async fn limited(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.config.metrics.request(StatusCode::TOO_MANY_REQUESTS.as_u16(), std::time::Duration::ZERO);
            let mut r = text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests in flight (Gateway.MaxConcurrentRequests); try again shortly",
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return r;
        };
        let limit = self.config.max_request_duration;
        let deadline = tokio::time::Instant::now() + limit;
        match tokio::time::timeout_at(deadline, self.handle(req)).await {
            Ok(resp) => resp.map(|b| body::limited(b, permit, deadline)),
            Err(_) => text(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("the request took longer than Gateway.MaxRequestDuration ({limit:?})"),
            ),
        }
    }

    /// Answers one request. Never fails: every problem becomes a status and a short body.
    pub async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        // GET and HEAD carry no body worth reading; what is kept is `Send + Sync`.
        let started = std::time::Instant::now();
        let (parts, _body) = req.into_parts();
        let req = Request::from_parts(parts, ());
        let method = req.method().clone();
        let routing = self.config.routing.as_ref().and_then(|api| {
            let rest = req.uri().path().strip_prefix(crate::routing::PREFIX)?;
            let on_subdomain = matches!(subdomain::host_of(&req, &self.subdomain_hosts), Host::Subdomain { .. });
            (!on_subdomain && req.uri().path().len() <= path::MAX_PATH_BYTES).then_some((api, rest))
        });
        let mut resp = match method {
            _ if routing.is_some() => {
                let (api, rest) = routing.expect("checked");
                crate::routing::handle(api, &self.node, &req, rest).await
            }
            Method::GET | Method::HEAD => cors(self.get(&req).await),
            Method::OPTIONS => {
                let mut r = Response::new(body::empty());
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
                cors(r)
            }
            _ => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "the gateway serves GET and HEAD only");
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
                r
            }
        };
        if method == Method::HEAD {
            *resp.body_mut() = body::empty();
        }
        tracing::debug!(method = %method, uri = %req.uri(), status = resp.status().as_u16(), "gateway request");
        self.config.metrics.request(resp.status().as_u16(), started.elapsed());
        resp
    }

    async fn get(self: &Arc<Self>, req: &Request<()>) -> Response<Body> {
        let raw_path = req.uri().path();
        if raw_path.len() > path::MAX_PATH_BYTES {
            return path_failure(&PathError::TooLong);
        }
        let host = subdomain::host_of(req, &self.subdomain_hosts);
        if !matches!(host, Host::Subdomain { .. }) {
            if let Some(resp) = protocol_handler(req).or_else(|| service_worker_at_a_root(req)) {
                return resp;
            }
        }
        let public = self.public_gateway(req);
        // A public gateway serves only the namespaces it names.
        let namespace = match &host {
            Host::Subdomain { .. } => Some("/ipfs"),
            _ => ["/ipfs", "/ipns"].into_iter().find(|ns| raw_path == *ns || raw_path.starts_with(&format!("{ns}/"))),
        };
        if let (Some(g), Some(ns)) = (public, namespace) {
            if !g.serves(ns) {
                return text(
                    StatusCode::NOT_FOUND,
                    &format!("{} does not serve {ns} (its Paths in Gateway.PublicGateways)", g.host),
                );
            }
        }
        let deserialized = public.map_or(self.config.deserialized_responses, |g| g.deserialized_responses);
        // A path request on a host with subdomains moves to the root's own origin; only the
        // root's syntax matters for that.
        if let (Host::SubdomainParent { host, port }, Some(rest)) = (&host, raw_path.strip_prefix("/ipfs/")) {
            return match path::parse_ipfs_path_with(rest, path::parse_root_syntax) {
                Ok(content) => match subdomain::redirect_url(req, host, *port, &content) {
                    Ok(url) => redirect(&url),
                    Err(f) => failure(&f),
                },
                Err(e) => path_failure(&e),
            };
        }
        let content = match &host {
            Host::Subdomain { label, .. } => match subdomain::parse_label(label) {
                Ok((root, root_text)) => path::decode_segments(raw_path).and_then(|(segments, trailing_slash)| {
                    ContentPath { root_text, root, segments, trailing_slash }.within_limit()
                }),
                Err(e) => Err(e),
            },
            Host::Plain | Host::SubdomainParent { .. } => {
                if let Some(rest) = raw_path.strip_prefix("/ipfs/") {
                    path::parse_ipfs_path(rest)
                } else if raw_path == "/ipfs" {
                    Err(PathError::Bad("missing CID after /ipfs/".into()))
                } else if raw_path.starts_with("/ipns/") || raw_path == "/ipns" {
                    return text(
                        StatusCode::NOT_IMPLEMENTED,
                        "this gateway serves /ipfs/ paths only; IPNS is not supported",
                    );
                } else {
                    return text(StatusCode::NOT_FOUND, "not found: the gateway serves /ipfs/{cid}[/path]");
                }
            }
        };
        let content = match content {
            Ok(c) => c,
            Err(e) => return path_failure(&e),
        };
        let query = query(req);
        let format = match negotiate(req.headers(), &query) {
            Ok(f) => f,
            Err(f) => return failure(&f),
        };
        // A client that wants nothing fetched for it learns whether the node holds the root.
        if only_if_cached(req.headers()) && !self.node.holds(&content.root) {
            return text(
                StatusCode::PRECONDITION_FAILED,
                &format!(
                    "{} is not in this node's store (the request said Cache-Control: only-if-cached)",
                    content.root
                ),
            );
        }
        if !deserialized && !matches!(format, Format::Raw | Format::Car { .. }) {
            return text(
                StatusCode::NOT_ACCEPTABLE,
                "this gateway serves only verifiable responses (Gateway.DeserializedResponses is off): ask for \
                 ?format=raw or ?format=car, or Accept: application/vnd.ipld.raw or application/vnd.ipld.car",
            );
        }
        // A root the store lacks is waited for here, on the runtime: a thousand requests for
        // blocks nobody has then hold no blocking thread, and local reads go on being served.
        let fetched = if self.config.no_fetch { Ok(()) } else { self.node.ensure_local(&content.root).await };
        if let Err(e) = fetched {
            return failure(&HttpError::from(cairn_node::merkle::exporter::ExportError::Source(e)));
        }
        let on_subdomain = matches!(host, Host::Subdomain { .. });
        if only_if_cached(req.headers()) && !self.config.no_fetch {
            // Nothing under the root is fetched either: the request is answered by a handler
            // that serves only what the repo holds, as `Gateway.NoFetch` does, and a block
            // the store lacks ends it as a missing block would.
            let local = Handler {
                node: self.node.clone(),
                config: GatewayConfig { no_fetch: true, ..self.config.clone() },
                slots: self.slots.clone(),
                subdomain_hosts: self.subdomain_hosts.clone(),
            };
            return local.answer(req, &content, format, &query, on_subdomain).await;
        }
        self.answer(req, &content, format, &query, on_subdomain).await
    }

    /// The response in `format` for `content`, whose root the store holds (or may fetch).
    async fn answer(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        format: Format,
        query: &[(String, String)],
        on_subdomain: bool,
    ) -> Response<Body> {
        let filename = param(query, "filename");
        match format {
            Format::Raw => self.raw(req, content, filename).await,
            Format::Car { scope, bytes, dups } => self.car(req, content, scope, bytes, dups, filename).await,
            Format::Tar => self.tar(req, content, filename).await,
            Format::Codec(codec) => self.codec(req, content, codec, query, on_subdomain).await,
            Format::Plain => self.plain(req, content, query, on_subdomain).await,
        }
    }

    /// Runs blocking work on the node. Work reads through [`Node::source_nowait`]: when it
    /// stops at a block being fetched, the block is awaited here, on the runtime, and the work
    /// runs again (so it must not mind running twice). A thousand requests waiting for blocks
    /// nobody has hold no blocking thread, and local reads go on being served.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnMut(&Node) -> Result<T, HttpError> + Send + 'static,
    ) -> Result<T, HttpError> {
        crate::wait::until_fetched(&self.node, None, self.fetch(), work).await
    }

    /// A response whose body a blocking `produce` streams (nothing for `HEAD`). A failure
    /// after the head has gone out aborts the body, so the client sees a cut transfer.
    ///
    /// `produce` reads through [`Node::source_nowait`]. When it stops at a block being
    /// fetched, the block is awaited on the runtime (holding no thread) and `produce` is
    /// called again, to go on: from where it stopped if it kept its place, or from the start
    /// after [`body::ChunkSender::replay`], which drops what the client already has.
    fn streamed(
        &self,
        req: &Request<()>,
        status: StatusCode,
        headers: HeaderMap,
        len: Option<u64>,
        what: &'static str,
        produce: impl FnMut(&Node, &body::ChunkSender) -> Result<(), HttpError> + Send + 'static,
    ) -> Response<Body> {
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        if req.method() == Method::HEAD || len == Some(0) {
            return resp;
        }
        *resp.body_mut() = crate::wait::streamed(&self.node, len, what, self.fetch(), produce);
        resp
    }

    async fn resolve(&self, content: &ContentPath) -> Result<Resolved, HttpError> {
        let (root, segments) = (content.root, content.segments.clone());
        self.blocking(move |node| content::resolve(&node.source_nowait(), &root, &segments)).await
    }

    async fn raw(&self, req: &Request<()>, content: &ContentPath, filename: Option<&str>) -> Response<Body> {
        let resolved = match self.resolve(content).await {
            Ok(r) => r,
            Err(f) => return failure(&f),
        };
        let cid = resolved.cid;
        let (mut headers, data) = match self.whole_block(req, content, &resolved, &format!("\"{cid}.raw\"")).await {
            Ok(b) => b,
            Err(answer) => return *answer,
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.ipld.raw"));
        download_headers(&mut headers, &format!("{cid}.bin"), filename);
        with_body(headers, data)
    }

    /// The headers of an answer that is one whole block (the terminal's), tagged `etag`, and
    /// the block; or the answer already made: a 304, or why the block cannot be read.
    async fn whole_block(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        resolved: &Resolved,
        etag: &str,
    ) -> Result<(HeaderMap, bytes::Bytes), Box<Response<Body>>> {
        let headers = common_headers(content, &resolved.roots, etag);
        if let Some(resp) = not_modified(req.headers(), etag, &headers) {
            return Err(Box::new(resp));
        }
        let cid = resolved.cid;
        match self.blocking(move |node| content::block_of(&node.source_nowait(), &cid)).await {
            Ok(data) => Ok((headers, data)),
            Err(f) => Err(Box::new(failure(&f))),
        }
    }

    async fn car(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        scope: DagScope,
        bytes: Option<EntityBytes>,
        dups: bool,
        filename: Option<&str>,
    ) -> Response<Body> {
        // Resolve first, so that a bad path is a 404 rather than a truncated CAR.
        let resolved = match self.resolve(content).await {
            Ok(r) => r,
            Err(f) => return failure(&f),
        };
        // A range of a file's blocks is sent without repeats, and the type says so (a
        // trustless gateway answers with the parameters it used).
        let dups = dups && !(scope == DagScope::Entity && bytes.is_some());
        let etag = format!("W/\"{}.car.{}\"", resolved.cid, car_variant(scope, bytes, dups));
        let mut headers = common_headers(content, &resolved.roots, &etag);
        if let Some(resp) = not_modified(req.headers(), &etag, &headers) {
            return resp;
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if dups {
                "application/vnd.ipld.car; version=1; order=dfs; dups=y"
            } else {
                "application/vnd.ipld.car; version=1; order=dfs; dups=n"
            }),
        );
        download_headers(&mut headers, &format!("{}.car", resolved.cid), filename);
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
        let (root, segments, terminal) = (content.root, content.segments.clone(), resolved.cid);
        // Up to the terminal's blocks the CAR is written again from the start after a stop;
        // their writing goes on from where it stopped.
        let mut rest: Option<(CarWriter<body::ChunkWriter>, CarTail)> = None;
        self.streamed(req, StatusCode::OK, headers, None, "CAR response", move |node, tx| {
            // Reads also stop for a slow client, between blocks, letting the thread go.
            let source = crate::wait::Paced::new(node.source_nowait(), tx);
            let (mut car, mut tail) = match rest.take() {
                Some(r) => r,
                None => {
                    tx.replay();
                    match content::start_car(&source, &terminal, &root, &segments, scope, bytes, dups, tx.writer())? {
                        CarRest::Done(_) => return Ok(()),
                        CarRest::Rest(rest) => *rest,
                    }
                }
            };
            if let Err(e) = tail.write(&source, &mut car) {
                rest = Some((car, tail));
                return Err(e);
            }
            car.finish()?;
            Ok(())
        })
    }

    async fn plain(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        query: &[(String, String)],
        on_subdomain: bool,
    ) -> Response<Body> {
        // A signed manifest stands for the DAG it names: its content is served under the
        // manifest's path, with who signed it in a header and on listings.
        let (signed, inner) = self.manifest_view(content).await;
        let content = inner.as_ref().unwrap_or(content);
        let mut resp = self
            .plain_content(req, content, query, on_subdomain, signed.as_ref().map(|s| s.text.clone()), on_subdomain)
            .await;
        if let Some(s) = signed {
            resp.headers_mut().insert("X-Cairn-Signed-By", value(&s.header));
        }
        resp
    }

    /// When `content`'s root is a manifest: who signed it, and the path under its root.
    async fn manifest_view(&self, content: &ContentPath) -> (Option<SignedBy>, Option<ContentPath>) {
        let root = content.root;
        if root.codec() != cairn_node::merkle::hash::DAG_JSON {
            return (None, None);
        }
        let view = self
            .blocking(move |node| {
                let data = content::block_of(&node.source_nowait(), &root)?;
                let Ok(m) = cairn_node::manifest::decode(&root, &data) else { return Ok(None) };
                let valid = cairn_node::manifest::check_signature(&m) == cairn_node::manifest::Signature::Valid;
                let trusted = node.repo().config().manifest.trusted.get(&m.publisher).cloned();
                Ok(Some((m, valid, trusted)))
            })
            .await;
        let Ok(Some((m, valid, trusted))) = view else { return (None, None) };
        let header = format!(
            "{}; signature={}; trusted={}",
            m.publisher,
            if valid { "valid" } else { "invalid" },
            trusted.as_ref().map_or_else(|| "no".to_owned(), |n| format!("{n:?}"))
        );
        let text = match (valid, &trusted) {
            (false, _) => format!("Manifest {root}: the signature claiming {} does NOT hold", m.publisher),
            (true, Some(name)) => format!("Signed by {} (trusted: {name}) in manifest {root}", m.publisher),
            (true, None) => format!("Signed by {} (not a trusted publisher) in manifest {root}", m.publisher),
        };
        let inner = ContentPath { root: m.root, ..content.clone() };
        (Some(SignedBy { header, text }), Some(inner))
    }

    /// The deserialized answer for `content`. With `redirects`, a path the DAG lacks is
    /// looked up in the site's `_redirects` file (on an origin of its own, a subdomain).
    async fn plain_content(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        query: &[(String, String)],
        on_subdomain: bool,
        signed: Option<String>,
        redirects: bool,
    ) -> Response<Body> {
        let mut resolved = match self.resolve(content).await {
            Ok(r) => r,
            // A path the DAG lacks, not a block the node lacks (a missing block is not a
            // page the site left out).
            Err(f)
                if redirects
                    && f.status == StatusCode::NOT_FOUND
                    && !f.block_missing
                    && !content.segments.is_empty() =>
            {
                return self.redirected(req, content, query, f).await;
            }
            Err(f) => return failure(&f),
        };
        resolved.signed = signed;
        let Some(stat) = resolved.stat.clone() else {
            // DAG-JSON, DAG-CBOR, JSON and CBOR blocks are served as they are (or, to a
            // browser, as a page about the block).
            let download = param(query, "download") == Some("true");
            return match Codec::of(resolved.cid.codec()) {
                Some(codec @ (Codec::DagJson | Codec::DagCbor)) if wants_html(req.headers()) && !download => {
                    // The page is at the path with a trailing `/`, as a directory's listing is.
                    if !content.trailing_slash {
                        return slash_redirect(req, content, on_subdomain);
                    }
                    self.block_page(req, content, &resolved, codec).await
                }
                Some(codec) => self.block_as_is(req, content, &resolved, codec, query).await,
                None => failure(&HttpError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    format!("{} is not UnixFS; ask for it with ?format=raw or ?format=car", resolved.cid),
                )),
            };
        };
        match stat.kind {
            NodeKind::Directory | NodeKind::HamtDirectory => {
                if !content.trailing_slash {
                    return slash_redirect(req, content, on_subdomain);
                }
                self.directory(req, content, &resolved, on_subdomain).await
            }
            NodeKind::File => {
                let name =
                    param(query, "filename").map(str::to_owned).or_else(|| content.last_name().map(str::to_owned));
                let download = param(query, "download") == Some("true");
                let etag = format!("\"{}\"", resolved.cid);
                self.file(req, content, &resolved, &etag, resolved.cid, stat.size, name, download).await
            }
            NodeKind::Symlink => {
                let target = stat.target.unwrap_or_default();
                let etag = format!("\"{}\"", resolved.cid);
                let mut headers = common_headers(content, &resolved.roots, &etag);
                if let Some(resp) = not_modified(req.headers(), &etag, &headers) {
                    return resp;
                }
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("inode/symlink"));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(target.len()));
                let mut resp = Response::new(body::full(target));
                *resp.headers_mut() = headers;
                resp
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn file(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        resolved: &Resolved,
        etag: &str,
        cid: Cid,
        size: u64,
        name: Option<String>,
        download: bool,
    ) -> Response<Body> {
        let mut headers = common_headers(content, &resolved.roots, etag);
        if let Some(resp) = not_modified(req.headers(), etag, &headers) {
            return resp;
        }
        let (status, start, len) = match range::parse(req.headers().get(header::RANGE), size) {
            RangeRequest::Whole => (StatusCode::OK, 0, size),
            RangeRequest::Part { start, end } => {
                headers.insert(header::CONTENT_RANGE, value(&format!("bytes {start}-{}/{size}", end - 1)));
                (StatusCode::PARTIAL_CONTENT, start, end - start)
            }
            RangeRequest::Unsatisfiable(why) => {
                let mut resp = text(StatusCode::RANGE_NOT_SATISFIABLE, &why);
                resp.headers_mut().insert(header::CONTENT_RANGE, value(&format!("bytes */{size}")));
                resp.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                return resp;
            }
        };
        // The type: from the name's extension, else from the first bytes (read while the
        // body's first blocks are fetched).
        let content_type = match name.as_deref().and_then(mime::by_extension) {
            Some(t) => t,
            None => {
                let body = (req.method() != Method::HEAD).then_some((start, len));
                match self
                    .blocking(move |node| content::file_head(&node.source_nowait(), &cid, mime::SNIFF_LEN as u64, body))
                    .await
                {
                    Ok(head) => mime::sniff(&head),
                    Err(f) => return failure(&f),
                }
            }
        };
        headers.insert(header::CONTENT_TYPE, value(&content_type));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(name) = &name {
            if download || param_present(req, "filename") {
                let kind = if download { "attachment" } else { "inline" };
                headers.insert(header::CONTENT_DISPOSITION, value(&content_disposition(kind, name)));
            }
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        let metrics = self.config.metrics.clone();
        // After a stop at a block being fetched, or for a slow client, the read goes on from
        // the byte it stopped at.
        let (mut sent, mut reads) = (0u64, 0u64);
        self.streamed(req, status, headers, Some(len), "file response", move |node, tx| {
            let source = content::Counting::new(crate::wait::Paced::new(node.source_nowait(), tx));
            let result = (|| -> Result<(), HttpError> {
                for seg in exporter::FileSegments::new(&source, &cid, start + sent, Some(len - sent))? {
                    let seg = seg?;
                    let n = seg.len() as u64;
                    tx.send(seg).map_err(|e| HttpError::new(StatusCode::OK, e.to_string()))?;
                    sent += n;
                }
                Ok(())
            })();
            reads += source.reads();
            if matches!(result, Err(HttpError { pending: Some(_), .. })) {
                return result;
            }
            metrics.file_read(sent, reads);
            // `sent` falls short of `len` when the client left (a player dropping a read-ahead).
            tracing::debug!(%cid, start, len, sent, blocks_read = reads, "file bytes served");
            result
        })
    }

    async fn directory(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        resolved: &Resolved,
        on_subdomain: bool,
    ) -> Response<Body> {
        let dir = resolved.cid;
        // index.html, when the directory has one, is the page.
        let index = self
            .blocking(move |node| match exporter::resolve(&node.source_nowait(), &dir, "index.html") {
                Ok(cid) => match exporter::stat(&node.source_nowait(), &cid) {
                    Ok(s) => Ok(Some(s).filter(|s| s.kind == NodeKind::File)),
                    Err(e) => match HttpError::from(e) {
                        f @ HttpError { pending: Some(_), .. } => Err(f),
                        _ => Ok(None),
                    },
                },
                Err(exporter::ExportError::NoSuchLink { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            })
            .await;
        match index {
            Ok(Some(stat)) => {
                // The page's ETag is the directory's CID, and X-Ipfs-Roots ends at the directory.
                let etag = format!("\"{dir}\"");
                return self
                    .file(req, content, resolved, &etag, stat.cid, stat.size, Some("index.html".into()), false)
                    .await;
            }
            Ok(None) => {}
            Err(f) => return failure(&f),
        }
        let etag = format!("\"DirIndex-{LISTING_VERSION}_CID-{dir}\"");
        let mut headers = common_headers(content, &resolved.roots, &etag);
        if let Some(resp) = not_modified(req.headers(), &etag, &headers) {
            return resp;
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        // The page changes between versions of Cairn, so it is not immutable.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=604800, stale-while-revalidate=2678400"),
        );
        let display = format!("/ipfs/{}{}", content.root_text, decoded_rest(content));
        let parent = !content.segments.is_empty();
        let signed = resolved.signed.clone();
        let mut page = ListingPage {
            dir,
            display,
            parent,
            on_subdomain,
            signed,
            head_sent: false,
            entries: None,
            rows: String::new(),
            count: 0,
        };
        self.streamed(req, StatusCode::OK, headers, None, "listing", move |node, tx| page.write(node, tx))
    }
}

fn decoded_rest(content: &ContentPath) -> String {
    let mut out = String::new();
    for s in &content.segments {
        out.push('/');
        out.push_str(s);
    }
    out.push('/');
    out
}

/// Who signed a manifest: the `X-Cairn-Signed-By` value and the listing's line.
#[derive(Debug)]
struct SignedBy {
    header: String,
    text: String,
}

/// Rows go out in batches of this many.
const LISTING_BATCH: usize = 256;

/// A directory's listing page being written, and where it is: kept between the runs of
/// its producer.
struct ListingPage {
    dir: Cid,
    /// The directory's path, as the page shows it.
    display: String,
    /// Whether the page links a parent directory.
    parent: bool,
    on_subdomain: bool,
    /// Who signed the manifest the directory came through, for the page to say.
    signed: Option<String>,
    head_sent: bool,
    entries: Option<exporter::DirCursor>,
    /// Rows not sent yet, and rows so far.
    rows: String,
    count: u64,
}

impl ListingPage {
    /// Writes the page from where it is. A page that stops at a shard being fetched, or
    /// because its client is slower than it, keeps its place and goes on from there when
    /// written again.
    fn write(&mut self, node: &Node, tx: &body::ChunkSender) -> Result<(), HttpError> {
        let send = |s: String| tx.send(s.into()).map_err(|e| HttpError::new(StatusCode::OK, e.to_string()));
        if !self.head_sent {
            send(listing::head(&self.display, &self.dir.to_string(), self.parent, self.signed.as_deref()))?;
            self.head_sent = true;
        }
        let source = crate::wait::Paced::new(node.source_nowait(), tx);
        let entries = match &mut self.entries {
            Some(entries) => entries,
            none => none.insert(exporter::DirCursor::open(&source, &self.dir)?),
        };
        while let Some(item) = entries.next(&source) {
            let item = item?;
            let cid = item.cid.to_string();
            let href =
                (!self.on_subdomain).then(|| format!("/ipfs/{cid}?filename={}", path::encode_segment(&item.name)));
            listing::row(&mut self.rows, &item.name, item.tsize, &cid, href.as_deref());
            self.count += 1;
            if self.count.is_multiple_of(LISTING_BATCH as u64) {
                send(std::mem::take(&mut self.rows))?;
                if tx.paused() {
                    // A slow client: let the thread go (as at a block being fetched, one
                    // the node holds) until it has taken what is set aside.
                    return Err(exporter::ExportError::Source(SourceError::Pending(self.dir)).into());
                }
            }
        }
        let mut rows = std::mem::take(&mut self.rows);
        rows.push_str(&listing::foot(self.count));
        send(rows)
    }
}

/// A whole answer of `data` with `headers`, its length among them.
fn with_body(mut headers: HeaderMap, data: bytes::Bytes) -> Response<Body> {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
    let mut resp = Response::new(body::full(data));
    *resp.headers_mut() = headers;
    resp
}

/// Whether the request's `Cache-Control` says `only-if-cached` (RFC 9111 §5.2.1.7).
fn only_if_cached(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("only-if-cached")))
}

/// Content is public and the gateway only reads, so any web page may read it, ranges
/// included, and see the headers that say what it read (the path gateway spec's CORS).
/// Preflights (`OPTIONS`) get the same answer.
fn cors(mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Range, User-Agent, X-Requested-With"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(
            "Content-Range, Content-Length, X-Ipfs-Path, X-Ipfs-Roots, X-Chunked-Output, X-Stream-Output",
        ),
    );
    resp
}

fn param_present(req: &Request<()>, key: &str) -> bool {
    param(&query(req), key).is_some()
}
