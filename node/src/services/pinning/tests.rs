//! The pinning service's tests: specs, the requests' store and the worker over real nodes.

use super::*;
use crate::store::BlockStore;

fn spec(cid: &str, name: Option<&str>) -> PinSpec {
    PinSpec { cid: cid.into(), name: name.map(Into::into), origins: vec![], meta: BTreeMap::new() }
}

#[test]
fn timestamps_round_trip_at_millisecond_precision() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    assert_eq!(parse_rfc3339("2026-11-18T11:06:40.123Z").unwrap(), 1_795_000_000_123);
    assert_eq!(parse_rfc3339("2026-11-18T12:06:40.1239+01:00").unwrap(), 1_795_000_000_123);
    assert!(parse_rfc3339("yesterday").is_err());
}

#[test]
fn specs_are_checked() {
    let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    assert!(spec(cid, Some("ok")).check().is_ok());
    assert!(spec("nope", None).check().is_err());
    assert!(spec(cid, Some(&"x".repeat(256))).check().is_err());
    let mut s = spec(cid, None);
    s.origins = vec!["not a multiaddr".into()];
    assert!(s.check().is_err());
    let peer = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    s.origins = vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"); MAX_ORIGINS + 1];
    assert!(s.check().is_err());
    s.origins = vec![
        format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"),
        format!("/dns4/example.org/udp/4001/quic-v1/p2p/{peer}"),
        format!("/ip6/::1/tcp/4001/p2p/{peer}"),
    ];
    assert!(s.check().is_ok());
    // Only peers' addresses, named by their peer ID: nothing else is dialed.
    for bad in [
        "/ip4/127.0.0.1/tcp/4001".to_owned(),
        format!("/ip4/127.0.0.1/tcp/80/http/p2p/{peer}"),
        format!("/unix/tmp%2Fsock/p2p/{peer}"),
        format!("/ip4/1.2.3.4/tcp/1/p2p/{peer}/p2p-circuit/p2p/{peer}"),
        format!("/p2p/{peer}"),
    ] {
        s.origins = vec![bad.clone()];
        assert!(s.check().is_err(), "{bad}");
    }
}

fn service(max_requests: usize, per_minute: u32) -> (tempfile::TempDir, Arc<Node>, Arc<PinService>) {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::init(&dir.path().join("r"), crate::config::Profile::Test).unwrap());
    let settings = Settings {
        concurrency: 1,
        max_attempts: 1,
        retry_delay: Duration::ZERO,
        block_timeout: Duration::from_secs(1),
        max_requests,
        max_bytes: None,
        per_minute,
    };
    let svc = PinService::open(node.clone(), settings).unwrap();
    (dir, node, svc)
}

#[test]
fn accounts_get_request_quotas_and_rate_limits() {
    let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let (_dir, _node, svc) = service(2, 1000);
    svc.add("a", spec(cid, None)).unwrap();
    svc.add("a", spec(cid, None)).unwrap();
    assert!(matches!(svc.add("a", spec(cid, None)), Err(PinError::Quota(_))));
    svc.add("b", spec(cid, None)).expect("another account has its own quota");
    let (_dir, _node, svc) = service(100, 3);
    let first = svc.add("a", spec(cid, None)).unwrap();
    let second = svc.replace("a", &first.id, spec(cid, Some("n"))).unwrap();
    svc.remove("a", &second.id).unwrap();
    assert!(matches!(svc.add("a", spec(cid, None)), Err(PinError::RateLimited(3))));
    svc.add("b", spec(cid, None)).expect("another account has its own rate");
}

/// Each owner's pin is its own: the operator's `pin rm` leaves an account's pin, an
/// account's removed request leaves the operator's, and the blocks stay while any pin
/// holds them.
#[test]
fn no_owner_removes_another_owners_pin() {
    let (_dir, node, svc) = service(100, 1000);
    let cid = node.add_reader(&b"kept by two owners"[..], &crate::add::AddOptions::default(), false).unwrap().cid;
    let path = IpfsPath { root: cid, rest: String::new() };
    let account = PinOwner::Service("a".into());
    node.pin_add(&path, true, None).unwrap();
    node.pin_add_as(account.clone(), &path, true, Some(PIN_NAME.into())).unwrap();
    // The operator unpins: the account's pin holds the block through a collection.
    node.pin_rm(&path).unwrap();
    node.gc().unwrap();
    assert!(node.repo().store().has(&cid).unwrap());
    assert!(node.pin_of_owner(&cid, &account).unwrap().is_some());
    // The operator cannot take the account's pin, and is told whose it is.
    let err = node.pin_rm(&path).unwrap_err();
    assert!(matches!(err, NodeError::PinnedByOther(..)), "{err}");
    assert!(err.to_string().contains("account \"a\""), "{err}");
    // The account's request goes: its pin goes, the operator's (made again) stays.
    node.pin_add(&path, true, None).unwrap();
    let mut r = svc.add("a", spec(&cid.to_string(), None)).unwrap();
    r.status = Status::Pinned;
    svc.lock().unwrap().requests.insert(r.id.clone(), r.clone());
    svc.remove("a", &r.id).unwrap();
    assert!(node.pin_of_owner(&cid, &account).unwrap().is_none());
    assert!(node.pin_of(&cid).unwrap().is_some());
    // Another account removing its request of the same CID touches neither.
    let other = svc.add("b", spec(&cid.to_string(), None)).unwrap();
    svc.remove("b", &other.id).unwrap();
    assert!(node.pin_of(&cid).unwrap().is_some());
}

#[test]
fn queries_filter_by_every_field() {
    let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse::<Cid>().unwrap();
    let v0ish = Cid::new_v1(0x70, *cid.hash());
    let mut r = PinRequest {
        id: "a".into(),
        owner: "o".into(),
        status: Status::Queued,
        created_ms: 1000,
        pin: spec(&cid.to_string(), Some("Holiday Photos")),
        attempts: 0,
        info: BTreeMap::new(),
        retry_at_ms: 0,
    };
    r.pin.meta.insert("app".into(), "x".into());
    let all = vec![Status::Queued, Status::Pinning, Status::Pinned, Status::Failed];
    let q = Query { statuses: all.clone(), ..Query::default() };
    assert!(q.matches(&r));
    assert!(!Query::default().matches(&r), "by default only pinned requests are listed");
    assert!(Query { cids: vec![v0ish], ..q.clone() }.matches(&r), "CIDs compare by multihash");
    let named = |n: &str, m| Query { name: Some((n.into(), m)), ..q.clone() };
    assert!(named("Holiday Photos", NameMatch::Exact).matches(&r));
    assert!(!named("holiday photos", NameMatch::Exact).matches(&r));
    assert!(named("holiday photos", NameMatch::IExact).matches(&r));
    assert!(named("day Ph", NameMatch::Partial).matches(&r));
    assert!(!named("DAY PH", NameMatch::Partial).matches(&r));
    assert!(named("DAY PH", NameMatch::IPartial).matches(&r));
    assert!(Query { before: Some(1001), after: Some(999), ..q.clone() }.matches(&r));
    assert!(!Query { before: Some(1000), ..q.clone() }.matches(&r));
    assert!(!Query { after: Some(1000), ..q.clone() }.matches(&r));
    let meta = |k: &str, v: &str| Query { meta: [(k.to_owned(), v.to_owned())].into(), ..q.clone() };
    assert!(meta("app", "x").matches(&r));
    assert!(!meta("app", "y").matches(&r));
    r.status = Status::Failed;
    assert!(!Query { statuses: vec![Status::Pinned, Status::Queued], ..q }.matches(&r));
}
