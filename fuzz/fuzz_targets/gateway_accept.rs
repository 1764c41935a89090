//! The gateway's response-format negotiation: `?format=`, the `Accept` header with its CAR
//! parameters, `dag-scope` and `entity-bytes`. It never panics; `?format=` wins over
//! `Accept`; no format asked for means the plain view; refusals are 400 or 406; and an
//! accepted `entity-bytes` selects an in-bounds range of a file of any size.
//!
//! Input: the `Accept` value, a newline, then the query string.
#![no_main]

use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::Input;
use cairn_gateway::fuzzing::{negotiate, Format};
use hyper::header::{HeaderMap, HeaderValue, ACCEPT};
use hyper::StatusCode;
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let s = |accept: &str, query: &str| format!("{accept}\n{query}").into_bytes();
    vec![
        seed("plain", s("text/html,*/*;q=0.8", "")),
        seed("raw", s("application/vnd.ipld.raw", "")),
        seed("car-params", s("application/vnd.ipld.car; version=1; order=dfs; dups=n", "dag-scope=entity")),
        seed("car-bad-dups", s("text/html, application/vnd.ipld.car; version=1; dups=y", "")),
        seed("format-car", s("", "format=car&dag-scope=entity&entity-bytes=0:99")),
        seed("entity-negative", s("", "format=car&entity-bytes=-100:-1&car-order=unk")),
        seed("format-tar", s("", "format=tar")),
        seed("url-overrides", s("application/vnd.ipld.car; order=zzz", "car-order=dfs")),
    ]
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    let accept = input.until(b'\n');
    let query: Vec<(String, String)> = form_urlencoded::parse(input.rest()).into_owned().collect();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(accept) {
        headers.insert(ACCEPT, v);
    }
    let format = query.iter().find(|(k, _)| k == "format").map(|(_, v)| v.as_str());
    let result = negotiate(&headers, &query);
    assert_eq!(negotiate(&headers, &query), result, "negotiation is a function of the request");
    assert_eq!(
        negotiate(&HeaderMap::new(), &[]).expect("an empty request is fine"),
        Format::Plain,
        "no format asked for: the plain view"
    );
    match &result {
        Err(f) => assert!(f.status == StatusCode::BAD_REQUEST || f.status == StatusCode::NOT_ACCEPTABLE, "{f:?}"),
        Ok(Format::Raw) => assert!(format.is_none_or(|f| f == "raw" || f.is_empty())),
        Ok(Format::Car { bytes, .. }) => {
            assert!(format.is_none_or(|f| f == "car" || f.is_empty()));
            if let Some(b) = bytes {
                for size in [0, 1, 100, 1 << 40, u64::MAX] {
                    let (start, end) = b.clamp(size);
                    assert!(start <= end && end <= size, "{b:?} selects {start}..{end} of {size}");
                }
            }
        }
        Ok(Format::Tar) => assert!(format.is_none_or(|f| f == "tar" || f.is_empty())),
        Ok(Format::Codec(c)) => assert!(format.is_none_or(|f| f == c.name() || f.is_empty())),
        Ok(Format::Plain) => assert!(format.is_none_or(str::is_empty)),
    }
    match format {
        Some("raw") => assert_eq!(result, Ok(Format::Raw)),
        Some("car") => assert!(matches!(result, Ok(Format::Car { .. }) | Err(_))),
        Some("tar") => assert_eq!(result, Ok(Format::Tar)),
        Some(name @ ("dag-json" | "dag-cbor" | "json" | "cbor")) => {
            assert!(matches!(result, Ok(Format::Codec(c)) if c.name() == name))
        }
        Some("") | None => {}
        Some(_) => assert_eq!(result.map_err(|f| f.status), Err(StatusCode::BAD_REQUEST)),
    }
});
