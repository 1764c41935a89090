//! Who may drive the RPC API: no web page, no rebound host name, and, when
//! `API.Authorizations` holds secrets, only their holders, each on its own paths.
//!
//! A browser sends what a page asks of the API with the page's `Origin` (and, in current
//! browsers, `Sec-Fetch-Site`), and a page that rebinds its own host name to 127.0.0.1 still
//! sends its own name as `Host`. So:
//! - a request whose `Origin` (or, lacking one, `Referer`) is a web origin not listed in
//!   `API.HTTPHeaders["Access-Control-Allow-Origin"]` gets 403, and so does one marked
//!   `Sec-Fetch-Site: cross-site` or `same-site` from an origin not listed;
//! - a request whose `Host` is not an IP literal, `localhost` or a name in `API.AllowedHosts`
//!   gets 403;
//! - a preflight (`OPTIONS`) from a listed origin is answered with the CORS headers, and
//!   every answer to a listed origin names it in `Access-Control-Allow-Origin`.
//!
//! Clients that are not browsers (the CLI, Kubo's clients, curl) send neither `Origin` nor
//! `Sec-Fetch-*` and are let through to the secrets check.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::HttpError;
use crate::body::{self, Body};

/// The API's access rules, read once from the config.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    /// Web origins allowed to call (lowercase, no trailing slash).
    origins: Vec<String>,
    /// `*` was listed: every origin may call.
    any_origin: bool,
    /// Host names besides IP literals and `localhost` (lowercase).
    hosts: Vec<String>,
    /// `API.Authorizations`: (secret as `bearer:<token>` or `basic:<user>:<password>`,
    /// allowed path prefixes); empty: no secret needed.
    secrets: Vec<(String, Vec<String>)>,
    /// `API.HTTPHeaders` other than the CORS origin list, added to every answer.
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// A secret as the API compares it: `bearer:<token>` or `basic:<user>:<password>`. Kubo's
/// forms are taken: a secret with no known prefix is a bearer token, and a `basic:` value
/// without a colon is base64 of `user:password`.
fn normalize_secret(s: &str) -> String {
    if let Some(token) = s.strip_prefix("bearer:") {
        return format!("bearer:{token}");
    }
    if let Some(rest) = s.strip_prefix("basic:") {
        if !rest.contains(':') {
            if let Some(pair) =
                data_encoding::BASE64.decode(rest.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok())
            {
                return format!("basic:{pair}");
            }
        }
        return format!("basic:{rest}");
    }
    format!("bearer:{s}")
}

/// The origin (`scheme://host[:port]`, lowercase) of a URL such as a `Referer`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!scheme.is_empty() && !authority.is_empty()).then(|| format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// The host of a `Host` header, without its port (brackets kept off an IPv6 literal).
fn host_name(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        // Without its closing bracket it is no literal, and no name either.
        return v6.find(']').map_or(host, |end| &v6[..end]);
    }
    host.rsplit_once(':').map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
}

impl Guard {
    /// The rules of `api`.
    pub(crate) fn new(api: &cairn_node::config::Api) -> Guard {
        let mut g = Guard::default();
        for (name, values) in &api.http_headers {
            if name.eq_ignore_ascii_case("access-control-allow-origin") {
                for v in values {
                    let v = v.trim().trim_end_matches('/').to_ascii_lowercase();
                    if v == "*" {
                        g.any_origin = true;
                    } else if !v.is_empty() {
                        g.origins.push(v);
                    }
                }
                continue;
            }
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                tracing::warn!(header = %name, "API.HTTPHeaders: not a header name, left out");
                continue;
            };
            for v in values {
                match HeaderValue::from_str(v) {
                    Ok(v) => g.headers.push((name.clone(), v)),
                    Err(_) => {
                        tracing::warn!(header = %name, "API.HTTPHeaders: a value is not a header value, left out")
                    }
                }
            }
        }
        g.hosts = api.allowed_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        g.secrets =
            api.authorizations.values().map(|a| (normalize_secret(&a.auth_secret), a.allowed_paths.clone())).collect();
        g
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin)
    }

    /// The web origin a request comes from, if a browser sent it: its `Origin`, or the
    /// origin of its `Referer`. `Some("null")` for an opaque origin.
    fn web_origin(headers: &HeaderMap) -> Option<String> {
        let text = |h| headers.get(h).map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Some(o) = text(header::ORIGIN) {
            return Some(o.trim().trim_end_matches('/').to_ascii_lowercase());
        }
        text(header::REFERER).map(|r| origin_of(r.trim()).unwrap_or_else(|| "null".into()))
    }

    /// Refuses a request a web page or a rebound host name sent; returns the allowed web
    /// origin to name in the answer, if any.
    pub(crate) fn check_web(&self, headers: &HeaderMap) -> Result<Option<String>, HttpError> {
        if let Some(host) = headers.get(header::HOST) {
            let host = String::from_utf8_lossy(host.as_bytes()).trim().to_ascii_lowercase();
            let name = host_name(&host);
            let ok =
                name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || self.hosts.iter().any(|h| h == name);
            if !ok {
                return Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    format!("the API does not answer to host {name:?} (add it to API.AllowedHosts)"),
                ));
            }
        }
        let origin = Self::web_origin(headers);
        if let Some(o) = &origin {
            if !self.origin_allowed(o) {
                return Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "requests from web origin {o:?} are refused \
                         (API.HTTPHeaders.Access-Control-Allow-Origin lists the allowed ones)"
                    ),
                ));
            }
        }
        let site = headers.get("sec-fetch-site").map(|v| v.as_bytes().to_ascii_lowercase());
        if matches!(site.as_deref(), Some(b"cross-site" | b"same-site")) && origin.is_none() {
            return Err(HttpError::new(StatusCode::FORBIDDEN, "cross-site requests are refused"));
        }
        Ok(origin)
    }

    /// Whether the request carries a secret that opens its path (always, without secrets).
    pub(crate) fn authorized<B>(&self, req: &Request<B>) -> bool {
        if self.secrets.is_empty() {
            return true;
        }
        let Some(given) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let given = given.trim();
        let secret = match given.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => format!("bearer:{}", token.trim()),
            Some((scheme, b64)) if scheme.eq_ignore_ascii_case("basic") => {
                match data_encoding::BASE64.decode(b64.trim().as_bytes()).ok().and_then(|b| String::from_utf8(b).ok()) {
                    Some(pair) => format!("basic:{pair}"),
                    None => return false,
                }
            }
            _ => return false,
        };
        let path = req.uri().path();
        // Every secret is compared, so the time taken says nothing of which matched.
        let mut ok = false;
        for (s, allowed) in &self.secrets {
            let opens = allowed.iter().any(|prefix| {
                let prefix = prefix.trim_end_matches('/');
                path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
            });
            ok |= super::same_secret(s, &secret) & opens;
        }
        ok
    }

    /// The answer to a CORS preflight from an allowed origin.
    pub(crate) fn preflight(&self, origin: Option<&str>) -> Response<Body> {
        let mut r = Response::new(body::empty());
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, X-Requested-With, Range, User-Agent"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        self.decorate(&mut r, origin);
        r
    }

    /// Adds the configured headers, and names an allowed web origin.
    pub(crate) fn decorate(&self, r: &mut Response<Body>, origin: Option<&str>) {
        let h = r.headers_mut();
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        for (name, value) in &self.headers {
            h.append(name.clone(), value.clone());
        }
        if let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.append(header::VARY, HeaderValue::from_static("Origin"));
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("X-Stream-Output, X-Chunked-Output, X-Content-Length"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(origins: &[&str], hosts: &[&str]) -> Guard {
        let mut api = cairn_node::config::Api::default();
        api.http_headers
            .insert("Access-Control-Allow-Origin".into(), origins.iter().map(|s| (*s).to_owned()).collect());
        api.allowed_hosts = hosts.iter().map(|s| (*s).to_owned()).collect();
        Guard::new(&api)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_must_be_ip_literals_localhost_or_configured() {
        let g = guard(&[], &["node.example"]);
        for ok in ["127.0.0.1:5001", "localhost:5001", "LOCALHOST", "[::1]:5001", "10.0.0.2", "node.example:80"] {
            assert!(g.check_web(&headers(&[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in ["evil.example:5001", "localhost.evil.example", "127.0.0.1.nip.io", "[::1", "localhost."] {
            let e = g.check_web(&headers(&[("host", bad)])).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{bad}");
        }
        // No Host at all (HTTP/1.0 from a script) is no browser.
        assert!(g.check_web(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn web_origins_need_listing() {
        let none = guard(&[], &[]);
        for h in [
            headers(&[("origin", "http://evil.example")]),
            headers(&[("origin", "null")]),
            headers(&[("origin", "http://localhost:5001")]),
            headers(&[("referer", "http://evil.example/page")]),
            headers(&[("referer", "garbage")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ] {
            assert_eq!(none.check_web(&h).unwrap_err().status, StatusCode::FORBIDDEN, "{h:?}");
        }
        assert!(none.check_web(&headers(&[("sec-fetch-site", "none")])).is_ok());
        let listed = guard(&["http://app.example:3000/"], &[]);
        let h = headers(&[("origin", "http://APP.example:3000"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(listed.check_web(&h).unwrap().as_deref(), Some("http://app.example:3000"));
        assert!(listed.check_web(&headers(&[("origin", "http://app.example:3001")])).is_err());
        let any = guard(&["*"], &[]);
        assert!(any.check_web(&headers(&[("origin", "http://whatever.example")])).is_ok());
    }

    #[test]
    fn secrets_take_kubo_forms_and_open_only_their_paths() {
        let mut api = cairn_node::config::Api::default();
        let auth = |s: &str, p: &[&str]| cairn_node::config::Authorization {
            auth_secret: s.into(),
            allowed_paths: p.iter().map(|s| (*s).to_owned()).collect(),
        };
        api.authorizations.insert("a".into(), auth("bearer:tok", &["/api/v0/cat"]));
        api.authorizations.insert("b".into(), auth("plain", &["/api/v0"]));
        api.authorizations.insert("c".into(), auth("basic:u:p", &["/api/v0/id"]));
        api.authorizations
            .insert("d".into(), auth(&format!("basic:{}", data_encoding::BASE64.encode(b"v:q")), &["/api/v0/id"]));
        let g = Guard::new(&api);
        let req = |path: &str, auth: &str| {
            let mut r = Request::builder().uri(path);
            if !auth.is_empty() {
                r = r.header("authorization", auth);
            }
            r.body(()).unwrap()
        };
        let basic = |pair: &str| format!("Basic {}", data_encoding::BASE64.encode(pair.as_bytes()));
        assert!(g.authorized(&req("/api/v0/cat", "Bearer tok")));
        assert!(!g.authorized(&req("/api/v0/catx", "Bearer tok")));
        assert!(!g.authorized(&req("/api/v0/add", "Bearer tok")));
        assert!(g.authorized(&req("/api/v0/add", "bearer plain")));
        assert!(g.authorized(&req("/api/v0/id", &basic("u:p"))));
        assert!(g.authorized(&req("/api/v0/id", &basic("v:q"))));
        assert!(!g.authorized(&req("/api/v0/cat", &basic("u:p"))));
        assert!(!g.authorized(&req("/api/v0/id", &basic("u:x"))));
        assert!(!g.authorized(&req("/api/v0/id", "")));
        assert!(!g.authorized(&req("/api/v0/id", "Bearer ")));
        assert!(Guard::new(&cairn_node::config::Api::default()).authorized(&req("/api/v0/add", "")));
    }
}
