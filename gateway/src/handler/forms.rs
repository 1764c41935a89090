//! The answers other than files and listings: tar archives, blocks of the codecs served as
//! they are (and a page about them for browsers), a site's `_redirects`, and the
//! protocol-handler and service-worker answers on the path gateway.

use super::*;

impl Handler {
    /// The file or tree as a tar archive, its top entry named by its CID. Names in the DAG
    /// that are not single safe path components (`..`, `/`, empty) end the archive with an
    /// error rather than write an entry that could land outside the directory it is
    /// unpacked in. A tar stopped at a block being fetched goes on from where it stopped.
    pub(super) async fn tar(&self, req: &Request<()>, content: &ContentPath, filename: Option<&str>) -> Response<Body> {
        let resolved = match self.resolve(content).await {
            Ok(r) => r,
            Err(f) => return failure(&f),
        };
        if resolved.stat.is_none() {
            return failure(&HttpError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!("{} is not UnixFS, so it has no tar form; ask for ?format=raw or ?format=car", resolved.cid),
            ));
        }
        let cid = resolved.cid;
        let etag = format!("W/\"{cid}.x-tar\"");
        let mut headers = common_headers(content, &resolved.roots, &etag);
        if let Some(resp) = not_modified(req.headers(), &etag, &headers) {
            return resp;
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
        download_headers(&mut headers, &format!("{cid}.tar"), filename);
        let mut at = cairn_node::read::Tar::new(&cid, &cid.to_string());
        self.streamed(req, StatusCode::OK, headers, None, "tar response", move |node, tx| {
            let source = crate::wait::Paced::new(node.source_nowait(), tx);
            cairn_node::read::write_tar(&source, &mut at, &mut tx.writer(), &mut |_| {}).map_err(HttpError::node)
        })
    }

    /// A path the site's DAG lacks, answered as its `_redirects` file says (see
    /// [`crate::redirects`]); `not_found` when it has no such file or no rule matches.
    pub(super) async fn redirected(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        query: &[(String, String)],
        not_found: HttpError,
    ) -> Response<Body> {
        let root = content.root;
        let file = self
            .blocking(move |node| {
                let source = node.source_nowait();
                let cid = match exporter::resolve(&source, &root, "_redirects") {
                    Ok(cid) => cid,
                    Err(exporter::ExportError::NoSuchLink { .. } | exporter::ExportError::NotADirectory(_)) => {
                        return Ok(None)
                    }
                    Err(e) => return Err(e.into()),
                };
                let stat = exporter::stat(&source, &cid)?;
                if stat.kind != NodeKind::File {
                    return Ok(None);
                }
                if stat.size > crate::redirects::MAX_BYTES {
                    return Err(HttpError::internal(format!(
                        "this site's _redirects file is {} bytes; at most {} are read",
                        stat.size,
                        crate::redirects::MAX_BYTES
                    )));
                }
                let mut text = Vec::with_capacity(stat.size as usize);
                for seg in exporter::FileSegments::new(&source, &cid, 0, None)? {
                    text.extend_from_slice(&seg?);
                }
                Ok(Some(text))
            })
            .await;
        let text = match file {
            Ok(Some(text)) => text,
            Ok(None) => return failure(&not_found),
            Err(f) => return failure(&f),
        };
        let rules = std::str::from_utf8(&text)
            .map_err(|_| "this site's _redirects file is not UTF-8 text".to_owned())
            .and_then(crate::redirects::parse);
        let rules = match rules {
            Ok(r) => r,
            Err(why) => return failure(&HttpError::internal(why)),
        };
        match crate::redirects::evaluate(&rules, req.uri().path(), req.uri().query()) {
            None => failure(&not_found),
            Some(Err(why)) => failure(&HttpError::internal(why)),
            Some(Ok(crate::redirects::Action::Redirect { location, status })) => {
                let mut r = redirect(&location);
                *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
                r
            }
            Some(Ok(crate::redirects::Action::Serve { to, status })) => {
                let to_path = to.split(['?', '#']).next().unwrap_or_default();
                let target = path::decode_segments(to_path).and_then(|(segments, trailing_slash)| {
                    ContentPath { root: content.root, root_text: content.root_text.clone(), segments, trailing_slash }
                        .within_limit()
                });
                let target = match target {
                    Ok(t) => t,
                    Err(e) => return failure(&HttpError::internal(format!("_redirects names {to:?}: {e}"))),
                };
                // Served once: a rule's target is never itself redirected.
                let mut resp = Box::pin(self.plain_content(req, &target, query, true, None, false)).await;
                if resp.status() == StatusCode::OK {
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                }
                resp
            }
        }
    }

    /// `?format=dag-json|dag-cbor|json|cbor` (or the `Accept` types): the block as it is when
    /// its codec is the one asked for, else 406 (IPIP-524: no conversion between codecs).
    /// One exception, as the path gateway spec asks: a UnixFS file asked for as JSON is
    /// served as the file, since people keep JSON documents as files.
    pub(super) async fn codec(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        codec: Codec,
        query: &[(String, String)],
        on_subdomain: bool,
    ) -> Response<Body> {
        let resolved = match self.resolve(content).await {
            Ok(r) => r,
            Err(f) => return failure(&f),
        };
        if codec.serves(resolved.cid.codec()) {
            return self.block_as_is(req, content, &resolved, codec, query).await;
        }
        // JSON or CBOR asked of UnixFS (`Accept: application/json, text/plain, */*` is many
        // clients' default): the content as it is, with its own type; JSON files are
        // sniffed as `application/json`.
        if matches!(codec, Codec::Json | Codec::Cbor) && resolved.stat.is_some() {
            return self.plain(req, content, query, on_subdomain).await;
        }
        let actual = match (Codec::of(resolved.cid.codec()), resolved.cid.codec()) {
            (Some(c), _) => c.name().to_owned(),
            (None, cairn_node::merkle::hash::DAG_PB) => "dag-pb".to_owned(),
            (None, cairn_node::merkle::hash::RAW) => "raw".to_owned(),
            (None, other) => format!("codec 0x{other:x}"),
        };
        failure(&HttpError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "{} is {actual}, not {}: this gateway does not convert between codecs (IPIP-524); ask for \
                 ?format=raw for the block as it is",
                resolved.cid,
                codec.name()
            ),
        ))
    }

    /// A DAG-JSON, DAG-CBOR, JSON or CBOR block as it is, with its codec's type: shown
    /// inline when it is JSON, downloaded when it is CBOR or when `?download=true`.
    pub(super) async fn block_as_is(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        resolved: &Resolved,
        codec: Codec,
        query: &[(String, String)],
    ) -> Response<Body> {
        let cid = resolved.cid;
        let etag = format!("\"{cid}.{}\"", codec.name());
        let (mut headers, data) = match self.whole_block(req, content, resolved, &etag).await {
            Ok(b) => b,
            Err(answer) => return *answer,
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(codec.media_type()));
        let inline = codec.is_text() && param(query, "download") != Some("true");
        let kind = if inline { "inline" } else { "attachment" };
        let disposition = match param(query, "filename") {
            Some(name) => content_disposition(kind, name),
            None => format!("{kind}; filename=\"{cid}.{}\"", if codec.is_text() { "json" } else { "cbor" }),
        };
        headers.insert(header::CONTENT_DISPOSITION, value(&disposition));
        with_body(headers, data)
    }

    /// A page about a DAG-JSON or DAG-CBOR block, for a browser: its CID, codec and size,
    /// the blocks it links to, links to it in every form it has, and for DAG-JSON the
    /// document itself.
    pub(super) async fn block_page(
        &self,
        req: &Request<()>,
        content: &ContentPath,
        resolved: &Resolved,
        codec: Codec,
    ) -> Response<Body> {
        let cid = resolved.cid;
        let etag = format!("\"DagIndex-{LISTING_VERSION}_CID-{cid}\"");
        let (mut headers, data) = match self.whole_block(req, content, resolved, &etag).await {
            Ok(b) => b,
            Err(answer) => return *answer,
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=604800, stale-while-revalidate=2678400"),
        );
        let display = format!("/ipfs/{}{}", content.root_text, decoded_rest(content));
        with_body(headers, listing::block_page(display.trim_end_matches('/'), &cid, codec.name(), &data).into())
    }
}

/// `/ipfs/?uri=ipfs://{cid}/path` (what a browser's registered protocol handler sends): a 301
/// to `/ipfs/{cid}/path`; a `uri` of another scheme is a 400.
pub(super) fn protocol_handler(req: &Request<()>) -> Option<Response<Body>> {
    if !matches!(req.uri().path(), "/ipfs/" | "/ipns/" | "/ipfs" | "/ipns") {
        return None;
    }
    let uri = param(&query(req), "uri")?.to_owned();
    let bad = |why: &str| Some(text(StatusCode::BAD_REQUEST, why));
    let Ok(parsed) = uri.parse::<hyper::Uri>() else {
        return bad("the uri query parameter is not a URI");
    };
    let scheme = parsed.scheme_str().unwrap_or_default();
    let (Some(root), true) = (parsed.authority(), matches!(scheme, "ipfs" | "ipns")) else {
        return bad("the uri query parameter must be ipfs://{cid}/... or ipns://{name}/...");
    };
    let path = parsed.path_and_query().map_or("", |p| p.as_str());
    let path = if path == "/" { "" } else { path };
    Some(redirect(&format!("/{scheme}/{root}{path}")))
}

/// A service worker registered at a namespace root (`/ipfs/{cid}`) would control every
/// root on the origin: a 400, as other gateways answer.
pub(super) fn service_worker_at_a_root(req: &Request<()>) -> Option<Response<Body>> {
    let script = req.headers().get("service-worker").is_some_and(|v| v.as_bytes() == b"script");
    let path = req.uri().path();
    let at_root = ["/ipfs/", "/ipns/"]
        .iter()
        .any(|ns| path.strip_prefix(ns).is_some_and(|rest| !rest.is_empty() && !rest.contains('/')));
    (script && at_root)
        .then(|| text(StatusCode::BAD_REQUEST, "navigator.serviceWorker: registration is not allowed for this scope"))
}
