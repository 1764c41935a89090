//! Which form of the content a request asks for: `?format=` (which wins) or `Accept`, and
//! for CARs the `dag-scope` and `entity-bytes` parameters.

use hyper::header::{self, HeaderMap};
use hyper::StatusCode;

use crate::content::{DagScope, EntityBytes};
use crate::error::HttpError;
use crate::handler::param;

/// What the client asked for. Public only for the fuzz targets in `fuzz/`
/// ([`crate::fuzzing`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Files, directory listings: the deserialized view.
    Plain,
    /// One block, verbatim.
    Raw,
    /// A CAR of the DAG; `dups` asks for a block each time the walk reaches it (`dups=y`).
    Car { scope: DagScope, bytes: Option<EntityBytes>, dups: bool },
    /// A tar archive of the file or tree.
    Tar,
    /// The block as it is, when its codec is this one (else 406: gateways do not convert
    /// between codecs, IPIP-524).
    Codec(Codec),
}

/// The codecs whose blocks the path gateway serves as they are, each with its media type.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    DagJson,
    DagCbor,
    Json,
    Cbor,
}

impl Codec {
    /// Every one, for lookups.
    const ALL: [Codec; 4] = [Codec::DagJson, Codec::DagCbor, Codec::Json, Codec::Cbor];

    /// The codec's `?format=` name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::DagJson => "dag-json",
            Codec::DagCbor => "dag-cbor",
            Codec::Json => "json",
            Codec::Cbor => "cbor",
        }
    }

    /// The media type its blocks are served as, and `Accept` asks for.
    pub fn media_type(self) -> &'static str {
        match self {
            Codec::DagJson => "application/vnd.ipld.dag-json",
            Codec::DagCbor => "application/vnd.ipld.dag-cbor",
            Codec::Json => "application/json",
            Codec::Cbor => "application/cbor",
        }
    }

    /// The multicodec a CID must have for its block to be served as this.
    pub fn multicodec(self) -> u64 {
        use cairn_node::merkle::hash;
        match self {
            Codec::DagJson => hash::DAG_JSON,
            Codec::DagCbor => hash::DAG_CBOR,
            Codec::Json => 0x0200,
            Codec::Cbor => 0x51,
        }
    }

    /// The codec of a CID's multicodec, when it is one of these.
    pub fn of(multicodec: u64) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.multicodec() == multicodec)
    }

    /// Whether a block of `multicodec` is served as this as it is: its own codec, and, as
    /// DAG-JSON is JSON and DAG-CBOR is CBOR, the DAG codecs for the plain ones (as Kubo does).
    pub fn serves(self, multicodec: u64) -> bool {
        use cairn_node::merkle::hash;
        multicodec == self.multicodec()
            || (self == Codec::Json && multicodec == hash::DAG_JSON)
            || (self == Codec::Cbor && multicodec == hash::DAG_CBOR)
    }

    /// Whether a browser may show it (JSON) rather than download it (CBOR).
    pub fn is_text(self) -> bool {
        matches!(self, Codec::DagJson | Codec::Json)
    }
}

/// Picks the response format from `?format=` (which wins) or `Accept`. Public only for the
/// fuzz targets in `fuzz/` ([`crate::fuzzing`]).
#[doc(hidden)]
pub fn negotiate(headers: &HeaderMap, query: &[(String, String)]) -> Result<Format, HttpError> {
    let bad = |m: String| HttpError::new(StatusCode::BAD_REQUEST, m);
    let mut want = match param(query, "format") {
        Some("raw") => Some("raw"),
        Some("car") => Some("car"),
        Some("tar") => Some("tar"),
        Some(name) if Codec::ALL.iter().any(|c| c.name() == name) => Some(name),
        Some("") | None => None,
        Some(other) => {
            return Err(bad(format!(
            "unsupported format {other:?}: this gateway serves format=raw, car, tar, dag-json, dag-cbor, json and cbor"
        )))
        }
    };
    let mut car_params: Vec<(String, String)> = Vec::new();
    // `?format=` names the response type; when it says `car`, a CAR item in `Accept` still
    // gives its parameters (IPIP-523).
    if want.is_none() || want == Some("car") {
        let named = want;
        if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
            for item in accept.split(',') {
                let mut parts = item.split(';').map(str::trim);
                let essence = parts.next().unwrap_or_default().to_ascii_lowercase();
                let params: Vec<(String, String)> = parts
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_owned()))
                    .collect();
                if named.is_some() {
                    if essence == "application/vnd.ipld.car" {
                        car_params = params;
                        break;
                    }
                    continue;
                }
                match essence.as_str() {
                    "application/vnd.ipld.raw" => {
                        want = Some("raw");
                        break;
                    }
                    "application/vnd.ipld.car" => {
                        want = Some("car");
                        car_params = params;
                        break;
                    }
                    "application/x-tar" => {
                        want = Some("tar");
                        break;
                    }
                    other => {
                        if let Some(c) = Codec::ALL.iter().find(|c| c.media_type() == other) {
                            want = Some(c.name());
                            break;
                        }
                    }
                }
            }
        }
    }
    match want {
        Some("raw") => Ok(Format::Raw),
        Some("tar") => Ok(Format::Tar),
        Some("car") => {
            // URL parameters override the Accept header's.
            for (url_key, key) in [("car-version", "version"), ("car-order", "order"), ("car-dups", "dups")] {
                if let Some(v) = param(query, url_key) {
                    car_params.retain(|(k, _)| k != key);
                    car_params.push((key.to_owned(), v.to_owned()));
                }
            }
            let mut dups = false;
            for (k, v) in &car_params {
                let ok = match k.as_str() {
                    "version" => v == "1",
                    "order" => v == "dfs" || v == "unk",
                    "dups" => {
                        dups = v == "y";
                        v == "n" || v == "y"
                    }
                    _ => true,
                };
                if !ok {
                    return Err(HttpError::new(
                        StatusCode::NOT_ACCEPTABLE,
                        format!("unsupported CAR parameter {k}={v}: this gateway sends version=1, order=dfs, dups=n or dups=y"),
                    ));
                }
            }
            let scope = match param(query, "dag-scope") {
                None | Some("all") => DagScope::All,
                Some("entity") => DagScope::Entity,
                Some("block") => DagScope::Block,
                Some(other) => return Err(bad(format!("invalid dag-scope {other:?}: use block, entity or all"))),
            };
            let bytes = match param(query, "entity-bytes") {
                None => None,
                Some(spec) => Some(parse_entity_bytes(spec).ok_or_else(|| {
                    bad(format!("invalid entity-bytes {spec:?}: use from:to with integers, `to` may be `*`"))
                })?),
            };
            Ok(Format::Car { scope, bytes, dups })
        }
        Some(name) => Ok(Codec::ALL.into_iter().find(|c| c.name() == name).map_or(Format::Plain, Format::Codec)),
        None => Ok(Format::Plain),
    }
}

/// Whether `Accept` lists `text/html` (a browser): a DAG-JSON or DAG-CBOR block is then shown
/// as a page rather than sent as it is.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|item| item.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("text/html"))
    })
}

fn parse_entity_bytes(spec: &str) -> Option<EntityBytes> {
    let (from, to) = spec.split_once(':')?;
    let from: i64 = from.parse().ok()?;
    let to = if to == "*" { None } else { Some(to.parse::<i64>().ok()?) };
    if let Some(t) = to {
        // Both ends from the same side must be in order.
        if t < from && (from >= 0) == (t >= 0) {
            return None;
        }
    }
    Some(EntityBytes { from, to })
}

/// A short, stable tag for the CAR's shape, part of its ETag.
pub(crate) fn car_variant(scope: DagScope, bytes: Option<EntityBytes>, dups: bool) -> String {
    let scope = match scope {
        DagScope::Block => "block",
        DagScope::Entity => "entity",
        DagScope::All => "all",
    };
    let dups = if dups { "y" } else { "n" };
    match bytes {
        None => format!("dfs.{dups}.{scope}"),
        Some(b) => format!("dfs.{dups}.{scope}.{}_{}", b.from, b.to.map_or_else(|| "*".to_owned(), |t| t.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn entity_bytes_parse() {
        assert_eq!(parse_entity_bytes("0:*"), Some(EntityBytes { from: 0, to: None }));
        assert_eq!(parse_entity_bytes("-100:-1"), Some(EntityBytes { from: -100, to: Some(-1) }));
        assert_eq!(parse_entity_bytes("10:20"), Some(EntityBytes { from: 10, to: Some(20) }));
        for bad in ["", "1", "a:b", "20:10", "-1:-5", "1:*x", "*:1"] {
            assert_eq!(parse_entity_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn negotiation() {
        let mut h = HeaderMap::new();
        let q = |s: &str| form_urlencoded::parse(s.as_bytes()).into_owned().collect::<Vec<_>>();
        assert_eq!(negotiate(&h, &q("")).unwrap(), Format::Plain);
        assert_eq!(negotiate(&h, &q("format=raw")).unwrap(), Format::Raw);
        assert_eq!(
            negotiate(&h, &q("format=car&dag-scope=entity&entity-bytes=0:99")).unwrap(),
            Format::Car { scope: DagScope::Entity, bytes: Some(EntityBytes { from: 0, to: Some(99) }), dups: false }
        );
        assert_eq!(negotiate(&h, &q("format=tar")).unwrap(), Format::Tar);
        assert_eq!(negotiate(&h, &q("format=zip")).unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(negotiate(&h, &q("format=car&dag-scope=x")).unwrap_err().status, StatusCode::BAD_REQUEST);
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html, application/vnd.ipld.car; version=1; dups=y"));
        let all_dups = Format::Car { scope: DagScope::All, bytes: None, dups: true };
        assert_eq!(negotiate(&h, &q("")).unwrap(), all_dups);
        // With ?format=car, the parameters of Accept's CAR item still count (IPIP-523)...
        assert_eq!(negotiate(&h, &q("format=car")).unwrap(), all_dups);
        // ...and the URL's own win over them.
        assert_eq!(
            negotiate(&h, &q("format=car&car-dups=n")).unwrap(),
            Format::Car { scope: DagScope::All, bytes: None, dups: false }
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.ipld.car; version=1; dups=maybe"));
        assert_eq!(negotiate(&h, &q("")).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(negotiate(&h, &q("format=car")).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.ipld.car; version=2"));
        assert_eq!(negotiate(&h, &q("")).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.ipld.raw"));
        assert_eq!(negotiate(&h, &q("")).unwrap(), Format::Raw);
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html, application/x-tar"));
        assert_eq!(negotiate(&h, &q("")).unwrap(), Format::Tar);
        // The URL's format wins over Accept.
        assert_eq!(negotiate(&h, &q("format=raw")).unwrap(), Format::Raw);
        assert_eq!(negotiate(&h, &q("format=dag-json")).unwrap(), Format::Codec(Codec::DagJson));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/cbor;q=0.9, application/json"));
        assert_eq!(negotiate(&h, &q("")).unwrap(), Format::Codec(Codec::Cbor));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.ipld.dag-cbor"));
        assert_eq!(negotiate(&h, &q("")).unwrap(), Format::Codec(Codec::DagCbor));
        assert!(!wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert_eq!(negotiate(&h, &q("")).unwrap(), Format::Plain);
        assert!(wants_html(&h));
        for c in Codec::ALL {
            assert_eq!(Codec::of(c.multicodec()), Some(c));
        }
    }
}
