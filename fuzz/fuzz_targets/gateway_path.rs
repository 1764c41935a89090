//! The gateway's request paths and subdomain hosts: `/ipfs/{cid}/{path}` parsing never
//! panics, refuses over-long and over-deep paths, yields only names a directory could hold
//! (no `.`, `..`, `/`, `\` or NUL), and the URL path it builds back parses to the same
//! content path; a `Host` header classifies without panicking, and a CID's subdomain label
//! fits a DNS label and names the same content.
//!
//! Input: the raw path after `/ipfs/`, then optionally a newline and a `Host` header value.
#![no_main]

use cairn_fuzz::seeds::{seed, write_if_asked};
use cairn_fuzz::Input;
use cairn_gateway::fuzzing::{
    decode_segments, host_of, label_for, parse_ipfs_path, parse_label, parse_root_syntax, Host, PathError,
    MAX_PATH_BYTES, MAX_SEGMENTS,
};
use libfuzzer_sys::fuzz_target;

const CID: &str = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";
const V0: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";

fn seeds() -> Vec<(String, Vec<u8>)> {
    vec![
        seed("plain", format!("{CID}/a%20b/%C3%BCn%C3%AF/")),
        seed("v0", format!("{V0}/index.html")),
        seed("traversal", format!("{CID}/x/%2e%2e/y")),
        seed("encoded-slash", format!("{CID}/a%2Fb")),
        seed("deep", format!("{CID}/{}", "a/".repeat(300))),
        seed("identity", "bafkqaaa/x"),
        seed("subdomain", format!("{CID}\n{CID}.ipfs.localhost:8080")),
        seed("parent-host", format!("{CID}/a\nLocalHost:8080")),
        seed("ipv6-host", format!("{CID}\n[::1]:8080")),
    ]
}

/// Checks what a segment may be once decoded.
fn check_name(name: &str) {
    assert!(!name.is_empty() && name != "." && name != "..", "segment {name:?}");
    assert!(!name.contains(['/', '\\', '\0']), "segment {name:?}");
}

fuzz_target!(init: write_if_asked(seeds), |data: &[u8]| {
    let mut input = Input::new(data);
    let raw = String::from_utf8_lossy(input.until(b'\n')).into_owned();
    let host = input.rest();

    match decode_segments(&raw) {
        Ok((segments, _)) => {
            assert!(raw.len() <= MAX_PATH_BYTES && segments.len() <= MAX_SEGMENTS);
            segments.iter().for_each(|s| check_name(s));
        }
        Err(PathError::TooLong) => assert!(raw.len() > MAX_PATH_BYTES),
        Err(PathError::Bad(_)) => {}
    }
    let _ = parse_root_syntax(&raw);
    if let Ok(p) = parse_ipfs_path(&raw) {
        assert!(raw.len() <= MAX_PATH_BYTES && p.segments.len() <= MAX_SEGMENTS);
        p.segments.iter().for_each(|s| check_name(s));
        for slash in [p.trailing_slash, !p.trailing_slash] {
            let url = p.to_url_path(slash);
            let rebuilt = url.strip_prefix("/ipfs/").expect("built under /ipfs/");
            // Names that came unencoded (raw UTF-8, `{`, `"`...) grow when encoded, up to
            // threefold: a path is accepted only when its encoded form is within the limit.
            assert!(url.len() <= MAX_PATH_BYTES, "{url:?} from {raw:?} is past the limit");
            let back = parse_ipfs_path(rebuilt);
            let back = back.unwrap_or_else(|e| panic!("{url:?} built from {raw:?} does not parse: {e}"));
            assert_eq!((&back.root, &back.segments), (&p.root, &p.segments), "{url:?} from {raw:?}");
            assert_eq!(back.trailing_slash, slash, "{url:?} from {raw:?}");
        }
        let rest_path = p.rest_url_path();
        if rest_path.len() <= MAX_PATH_BYTES {
            let (rest, _) = decode_segments(&rest_path).expect("our own path decodes");
            assert_eq!(rest, p.segments);
        }
        if let Ok(label) = label_for(&p.root) {
            assert!(label.len() <= 63 && !label.contains('.'), "label {label:?}");
            let (cid, _) = parse_label(&label).expect("our own label parses");
            assert_eq!(cid.hash(), p.root.hash());
        }
    }

    let hosts = vec!["localhost".to_owned(), "gw.example".to_owned()];
    let Ok(req) = hyper::Request::builder().uri("/").header(hyper::header::HOST, host).body(()) else {
        return;
    };
    match host_of(&req, &hosts) {
        Host::Plain => {}
        Host::SubdomainParent { host, .. } => assert!(hosts.contains(&host)),
        Host::Subdomain { label } => {
            if let Ok((cid, text)) = parse_label(&label) {
                assert_eq!(text, label);
                let ours = label_for(&cid).expect("a CID that parsed from a label has one");
                assert_eq!(parse_label(&ours).expect("our own label parses").0.hash(), cid.hash());
            }
        }
    }
});
