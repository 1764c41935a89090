//! The Pinning Service's untrusted inputs: the listing query string, the JSON `Pin` body,
//! and RFC 3339 timestamps. Nothing panics; an accepted query keeps its limits (at most ten
//! CIDs, a `limit` from 1 to 1000, a name of at most 255 characters, some status) and,
//! written back as a query string, parses to the same filters; an accepted `Pin` keeps its
//! limits, names peers by `/p2p/` addresses only, and survives a JSON round trip; timestamps
//! the service prints parse back to the same millisecond.
//!
//! The first input byte picks the input: 0 the query, 1 the body, 2 a timestamp text, 3 a
//! millisecond count to print.
#![no_main]

use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::Input;
use cairn_gateway::fuzzing::parse_listing_query;
use cairn_node::net::Protocol;
use cairn_node::pinning::{parse_rfc3339, rfc3339, NameMatch, PinSpec, Query, MAX_NAME_CHARS, MAX_ORIGINS};
use libfuzzer_sys::fuzz_target;

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const LAST_MS: u64 = 253_402_300_799_999;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let with = |mode: u8, body: &str| [&[mode][..], body.as_bytes()].concat();
    let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    vec![
        seed(
            "query",
            with(0, &format!("cid={cid}&name=Pho&match=ipartial&status=queued,failed&limit=5&before=2026-01-01T00:00:00Z&meta=%7B%22a%22%3A%22b%22%7D")),
        ),
        seed("query-eleven-cids", with(0, &format!("cid={}", [cid; 11].join(",")))),
        seed("query-bad", with(0, "limit=0&status=done&match=fuzzy&after=yesterday")),
        seed(
            "pin",
            with(1, &format!(r#"{{"cid":"{cid}","name":"x","origins":["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"],"meta":{{"k":"v"}}}}"#)),
        ),
        seed("pin-bad-origin", with(1, &format!(r#"{{"cid":"{cid}","origins":["/unix/tmp%2Fsock"]}}"#))),
        seed("time", with(2, "2026-01-01T00:00:00.123+02:00")),
        seed("time-leap", with(2, "1990-12-31T23:59:60Z")),
        seed("ms", [&[3u8][..], &1_767_225_600_123u64.to_le_bytes()].concat()),
    ]
}

fn match_name(m: NameMatch) -> &'static str {
    match m {
        NameMatch::Exact => "exact",
        NameMatch::IExact => "iexact",
        NameMatch::Partial => "partial",
        NameMatch::IPartial => "ipartial",
    }
}

/// `ms` as RFC 3339 text the parser gives back exactly, when there is such text.
fn time_text(ms: i128) -> Option<String> {
    u64::try_from(ms).ok().filter(|&m| m <= LAST_MS).map(rfc3339)
}

/// The query string that asks for `q`, and `q` as far as a query string can say it.
fn query_string(q: &Query) -> (String, Query) {
    let mut said = q.clone();
    let mut s = form_urlencoded::Serializer::new(String::new());
    if !q.cids.is_empty() {
        s.append_pair("cid", &q.cids.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
    }
    if let Some((name, how)) = &q.name {
        s.append_pair("name", name).append_pair("match", match_name(*how));
    }
    s.append_pair("status", &q.statuses.iter().map(|st| st.as_str()).collect::<Vec<_>>().join(","));
    for (key, value, slot) in [("before", q.before, &mut said.before), ("after", q.after, &mut said.after)] {
        match value.and_then(time_text) {
            Some(t) => {
                s.append_pair(key, &t);
            }
            None => *slot = None,
        }
    }
    s.append_pair("limit", &q.limit.to_string());
    if !q.meta.is_empty() {
        s.append_pair("meta", &serde_json::to_string(&q.meta).expect("a map of strings"));
    }
    (s.finish(), said)
}

fn check_query(raw: &[u8]) {
    let raw = String::from_utf8_lossy(raw);
    let Ok(q) = parse_listing_query(&raw) else {
        return;
    };
    assert!(q.cids.len() <= 10 && (1..=1000).contains(&q.limit) && !q.statuses.is_empty(), "{q:?}");
    assert!(q.name.as_ref().is_none_or(|(n, _)| n.chars().count() <= MAX_NAME_CHARS));
    let (text, said) = query_string(&q);
    assert_eq!(parse_listing_query(&text).ok().as_ref(), Some(&said), "{text:?} from {raw:?}");
}

fn check_pin(body: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<PinSpec>(body) else {
        return;
    };
    let again: PinSpec = serde_json::from_slice(&serde_json::to_vec(&spec).expect("serializes")).expect("parses");
    assert_eq!(again, spec);
    let Ok((cid, origins)) = spec.check() else {
        return;
    };
    assert_eq!(cid.to_string().parse::<cairn_merkle::Cid>().ok(), Some(cid));
    assert!(origins.len() <= MAX_ORIGINS);
    for o in &origins {
        assert!(matches!(o.iter().last(), Some(Protocol::P2p(_))), "origin {o} names no peer");
    }
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    match input.u8() % 4 {
        0 => check_query(input.rest()),
        1 => check_pin(input.rest()),
        2 => {
            if let Ok(ms) = parse_rfc3339(&String::from_utf8_lossy(input.rest())) {
                if let Some(text) = time_text(ms) {
                    assert_eq!(parse_rfc3339(&text).ok(), Some(ms), "{text}");
                }
            }
        }
        _ => {
            let ms = input.u64() % (LAST_MS + 1);
            assert_eq!(parse_rfc3339(&rfc3339(ms)).ok(), Some(i128::from(ms)));
        }
    }
});
