//! The subdomain gateway: `{cid}.ipfs.{host}` gives every root its own web origin, so that
//! one site's scripts cannot read another's cookies or storage.
//!
//! The host names that have subdomains come from the config (`localhost` by default). A
//! path request on such a host (`http://localhost:8080/ipfs/{cid}/a?x`) is redirected to
//! `http://{cidv1}.ipfs.localhost:8080/a?x`. The label is the CIDv1 in base32, or in base36
//! when base32 is longer than the 63 characters a DNS label may hold.

use cairn_node::merkle::Cid;
use cid::multibase::Base;
use hyper::{Request, StatusCode};

use crate::error::HttpError;
use crate::path::{ContentPath, PathError};

/// The longest DNS label.
const MAX_LABEL: usize = 63;

/// Which kind of host a request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An address or name without subdomains (`127.0.0.1`): the path gateway.
    Plain,
    /// A host that has subdomains, asked for a path: redirect to the subdomain.
    SubdomainParent {
        /// The host name.
        host: String,
        /// The port, if the request named one.
        port: Option<u16>,
    },
    /// `{label}.ipfs.{host}`.
    Subdomain {
        /// The CID's label.
        label: String,
    },
}

/// Classifies the request's host (`Host`, or the URI's authority in HTTP/2).
pub fn host_of<B>(req: &Request<B>, subdomain_hosts: &[String]) -> Host {
    let Some(authority) = authority(req) else { return Host::Plain };
    let (name, port) = split_port(&authority);
    for gw in subdomain_hosts {
        if name == *gw {
            return Host::SubdomainParent { host: name.to_owned(), port };
        }
        if let Some(label) = name.strip_suffix(gw.as_str()).and_then(|p| p.strip_suffix(".ipfs.")) {
            return Host::Subdomain { label: label.to_owned() };
        }
    }
    Host::Plain
}

/// The host (and port) the request was sent to, lowercase.
fn authority<B>(req: &Request<B>) -> Option<String> {
    // A reverse proxy in front names the public host in X-Forwarded-Host.
    let authority = req
        .headers()
        .get("x-forwarded-host")
        .or_else(|| req.headers().get(hyper::header::HOST))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))?;
    Some(authority.to_ascii_lowercase())
}

/// The host name the request was sent to, lowercase, without its port.
pub fn host_name<B>(req: &Request<B>) -> Option<String> {
    let authority = authority(req)?;
    Some(split_port(&authority).0.to_owned())
}

fn split_port(authority: &str) -> (&str, Option<u16>) {
    if authority.starts_with('[') {
        // An IPv6 literal never has subdomains.
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((name, port)) => match port.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

/// The root named by a subdomain label, and its text.
pub fn parse_label(label: &str) -> Result<(Cid, String), PathError> {
    if label.is_empty() || label.contains('.') {
        return Err(PathError::Bad(format!("{label:?} is not a CID subdomain: expected {{cid}}.ipfs.{{host}}")));
    }
    let cid = crate::path::parse_root(label)?;
    if cid.version() == cid::Version::V0 {
        return Err(PathError::Bad(format!(
            "{label:?} is a CIDv0, which host names cannot hold (they are case-insensitive); use its CIDv1"
        )));
    }
    Ok((cid, label.to_owned()))
}

/// The DNS label for `cid`: CIDv1 in base32, else base36.
pub fn label_for(cid: &Cid) -> Result<String, HttpError> {
    let v1 = if cid.version() == cid::Version::V0 { Cid::new_v1(cid.codec(), *cid.hash()) } else { *cid };
    for base in [Base::Base32Lower, Base::Base36Lower] {
        let text = v1.to_string_of_base(base).map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        if text.len() <= MAX_LABEL {
            return Ok(text);
        }
    }
    Err(HttpError::new(
        StatusCode::BAD_REQUEST,
        format!(
            "CID incompatible with DNS label length limit of {MAX_LABEL}: {cid}; use the path gateway on an IP address"
        ),
    ))
}

/// Where a path request on `host` moves to.
pub fn redirect_url<B>(
    req: &Request<B>,
    host: &str,
    port: Option<u16>,
    content: &ContentPath,
) -> Result<String, HttpError> {
    let scheme = match req.headers().get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    let label = label_for(&content.root)?;
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let mut url = format!("{scheme}://{label}.ipfs.{host}{port}{}", content.rest_url_path());
    if let Some(q) = req.uri().query() {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str) -> Request<()> {
        Request::builder().uri("/ipfs/x").header("host", host).body(()).unwrap()
    }

    #[test]
    fn hosts_classify() {
        let hosts = vec!["localhost".to_owned()];
        assert_eq!(host_of(&req("127.0.0.1:8080"), &hosts), Host::Plain);
        assert_eq!(
            host_of(&req("LocalHost:8080"), &hosts),
            Host::SubdomainParent { host: "localhost".into(), port: Some(8080) }
        );
        assert_eq!(host_of(&req("bafyx.ipfs.localhost:8080"), &hosts), Host::Subdomain { label: "bafyx".into() });
        assert_eq!(host_of(&req("a.b.ipfs.localhost"), &hosts), Host::Subdomain { label: "a.b".into() });
        assert_eq!(host_of(&req("[::1]:8080"), &hosts), Host::Plain);
        assert_eq!(host_of(&req("evil-localhost"), &hosts), Host::Plain);
    }

    #[test]
    fn labels_are_cidv1_base32() {
        let v0: Cid = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn".parse().unwrap();
        let label = label_for(&v0).unwrap();
        assert_eq!(label, "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354");
        let (cid, _) = parse_label(&label).unwrap();
        assert_eq!(cid.hash(), v0.hash());
        assert!(parse_label("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").is_err());
        assert!(parse_label("a.b").is_err());
        assert!(parse_label("notacid").is_err());
    }
}
