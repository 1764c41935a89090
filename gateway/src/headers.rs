//! The headers content responses carry: caching (ETag, `Cache-Control`, 304s), the
//! `X-Ipfs-*` headers, and `Content-Disposition`.

use cairn_node::merkle::Cid;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use crate::body::{self, Body};
use crate::path::ContentPath;

/// Content behind a CID never changes.
const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// What RFC 8187 lets stand unencoded in `filename*`.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="x"` with an ASCII fallback and the UTF-8 name (RFC 6266).
pub(crate) fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR);
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Headers every content response carries.
pub(crate) fn common_headers(content: &ContentPath, roots: &[Cid], etag: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, value(etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert("x-ipfs-path", value(&content.to_url_path(content.trailing_slash)));
    let roots: Vec<String> = roots.iter().map(Cid::to_string).collect();
    h.insert("x-ipfs-roots", value(&roots.join(",")));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    // The type sent is the one meant: no browser may run a file as script or style on a guess.
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h
}

/// Headers of raw, CAR and tar responses, which a browser must download, not render: named
/// `filename` when the request's `?filename=` says so, else `default_name` (a CID and an
/// extension).
pub(crate) fn download_headers(h: &mut HeaderMap, default_name: &str, filename: Option<&str>) {
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let disposition = match filename {
        Some(name) => content_disposition("attachment", name),
        None => format!("attachment; filename=\"{default_name}\""),
    };
    h.insert(header::CONTENT_DISPOSITION, value(&disposition));
}

/// A 304 when `If-None-Match` names `etag` (or is `*`); weak and strong tags match alike.
pub(crate) fn not_modified(req: &HeaderMap, etag: &str, headers: &HeaderMap) -> Option<Response<Body>> {
    let inm = req.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = bare(etag);
    if !inm.split(',').any(|t| t.trim() == "*" || bare(t) == ours) {
        return None;
    }
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [header::ETAG, header::CACHE_CONTROL, header::VARY] {
        if let Some(v) = headers.get(&name) {
            resp.headers_mut().insert(name, v.clone());
        }
    }
    for name in ["x-ipfs-path", "x-ipfs-roots"] {
        if let Some(v) = headers.get(name) {
            resp.headers_mut().insert(name, v.clone());
        }
    }
    Some(resp)
}

/// A header value; bytes a header cannot carry are replaced.
pub(crate) fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_weak_and_strong() {
        let mut req = HeaderMap::new();
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\", W/\"bafy\""));
        assert!(not_modified(&req, "\"bafy\"", &HeaderMap::new()).is_some());
        assert!(not_modified(&req, "\"other\"", &HeaderMap::new()).is_none());
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&req, "\"x\"", &HeaderMap::new()).is_some());
    }

    #[test]
    fn disposition_names_are_safe() {
        assert_eq!(
            content_disposition("attachment", "a \"b\".txt"),
            "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
        );
        assert!(content_disposition("inline", "ü\r\n.txt").starts_with("inline; filename=\"___.txt\""));
    }
}
