//! The delegated routing API on the gateway's port (`/routing/v1/`), on a node that is online
//! with no peers: its own records, empty answers, the forms, the filters, the errors and the
//! bound on lookups.

use cairn_gateway::routing::RoutingApi;
use cairn_gateway::GatewayConfig;
use cairn_node::add::AddOptions;
use hyper::StatusCode;
use serde_json::Value;

use crate::{online, Gateway};

async fn routing_gateway(lookups: usize) -> (Gateway, String) {
    let mut id = String::new();
    let gw = Gateway::start_configured(async |node| {
        let net = online(node, std::time::Duration::from_secs(10)).await;
        id = net.peer_id().to_string();
        GatewayConfig { routing: Some(RoutingApi::with_lookups(net, lookups)), ..GatewayConfig::default() }
    })
    .await;
    (gw, id)
}

fn json(r: &crate::Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_names_itself_for_what_it_holds() {
    let (gw, id) = routing_gateway(16).await;
    let cid = gw.add_bytes(b"routed", &AddOptions::default());
    let r = gw.get(&format!("/routing/v1/providers/{cid}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("access-control-allow-origin"), "*");
    assert_eq!(r.header("vary"), "Accept");
    assert!(r.header("cache-control").starts_with("public, max-age=300,"), "{}", r.header("cache-control"));
    assert!(r.header("last-modified").ends_with(" GMT"));
    let v = json(&r);
    let p = &v["Providers"][0];
    assert_eq!((p["Schema"].as_str(), p["ID"].as_str()), (Some("peer"), Some(id.as_str())), "{v}");
    assert_eq!(p["Protocols"], serde_json::json!(["transport-bitswap"]));
    let addrs: Vec<&str> = p["Addrs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(!addrs.is_empty() && addrs.iter().all(|a| a.starts_with("/ip4/127.0.0.1/tcp/")), "{addrs:?}");
    assert!(addrs.iter().all(|a| !a.contains("/p2p/")), "{addrs:?}");

    // NDJSON only when asked for; one record a line.
    let r = gw.request("GET", &format!("/routing/v1/providers/{cid}"), &[("Accept", "application/x-ndjson")]).await;
    assert_eq!(r.header("content-type"), "application/x-ndjson");
    let lines: Vec<Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["ID"], id.as_str());

    // The same record under /peers, by base58 ID.
    let r = gw.get(&format!("/routing/v1/peers/{id}")).await;
    assert_eq!(json(&r)["Peers"][0]["ID"], id.as_str());

    // Filters: no QUIC address to give, so the record goes; a Bitswap filter keeps it.
    let r = gw.get(&format!("/routing/v1/providers/{cid}?filter-addrs=quic-v1")).await;
    assert_eq!(json(&r)["Providers"], serde_json::json!([]));
    let r = gw.get(&format!("/routing/v1/providers/{cid}?filter-protocols=transport-bitswap")).await;
    assert_eq!(json(&r)["Providers"][0]["ID"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_nobody_is_known_for_is_an_empty_answer_or_a_404() {
    let (gw, _) = routing_gateway(16).await;
    let missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let r = gw.get(&format!("/routing/v1/providers/{missing}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(json(&r), serde_json::json!({"Providers": []}));
    assert!(r.header("cache-control").starts_with("public, max-age=15,"));
    let stranger = cairn_node::net::PeerId::random();
    let r = gw.get(&format!("/routing/v1/peers/{stranger}")).await;
    assert_eq!(json(&r), serde_json::json!({"Peers": []}));
    // No DHT peer at all: closest peers has nothing to say, which its spec makes a 404.
    let r = gw.get(&format!("/routing/v1/dht/closest/peers/{missing}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_preflights_get_cors() {
    let (gw, _) = routing_gateway(16).await;
    for (path, status) in [
        ("/routing/v1/providers/not-a-cid", StatusCode::BAD_REQUEST),
        ("/routing/v1/peers/bafkqaaa", StatusCode::BAD_REQUEST),
        ("/routing/v1/nonsense/x", StatusCode::BAD_REQUEST),
        (
            "/routing/v1/ipns/k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8",
            StatusCode::NOT_IMPLEMENTED,
        ),
    ] {
        let r = gw.get(path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    let filters = vec!["tcp"; cairn_gateway::routing::MAX_FILTERS + 1].join(",");
    let r = gw.get(&format!("/routing/v1/providers/bafkqaaa?filter-addrs={filters}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = gw.request("GET", "/routing/v1/providers/bafkqaaa", &[("Accept", "text/html")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = gw.request("PUT", "/routing/v1/providers/bafkqaaa", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    let r = gw.request("OPTIONS", "/routing/v1/providers/bafkqaaa", &[("Origin", "https://example.org")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("access-control-allow-origin"), "*");
    assert_eq!(r.header("access-control-allow-methods"), "GET, OPTIONS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_beyond_the_bound_get_429() {
    let (gw, _) = routing_gateway(0).await;
    let r = gw.get("/routing/v1/providers/bafkqaaa").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.header("retry-after"), "5");
    // A request that starts no lookup is still answered.
    let r = gw.get("/routing/v1/providers/not-a-cid").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_api_the_paths_are_not_found() {
    let gw = Gateway::start().await;
    let r = gw.get("/routing/v1/providers/bafkqaaa").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

/// A node that announces an HTTP address (its trustless gateway) names itself twice: over
/// libp2p for Bitswap, and there as an HTTP provider; the protocol filter picks either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_gateway_is_an_http_provider_record() {
    let gateway_addr = "/dns4/gateway.example/tcp/443/tls/http";
    let gw = Gateway::start_configured(async |node| {
        let mut cfg = cairn_node::net::NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
        cfg.append_announce = vec![gateway_addr.parse().unwrap()];
        let timeout = std::time::Duration::from_secs(10);
        let net = cairn_node::online::start_reading(node, cfg, timeout).await.unwrap().0;
        GatewayConfig { routing: Some(RoutingApi::with_lookups(net, 16)), ..GatewayConfig::default() }
    })
    .await;
    let cid = gw.add_bytes(b"over http too", &AddOptions::default());
    let v = json(&gw.get(&format!("/routing/v1/providers/{cid}")).await);
    let records = v["Providers"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{v}");
    assert_eq!(records[0]["Protocols"], serde_json::json!(["transport-bitswap"]));
    assert!(!records[0]["Addrs"].to_string().contains("/http"), "{v}");
    assert_eq!(records[1]["Protocols"], serde_json::json!(["transport-ipfs-gateway-http"]));
    assert_eq!(records[1]["Addrs"], serde_json::json!([gateway_addr]));
    assert_eq!(records[0]["ID"], records[1]["ID"]);
    let r = gw.get(&format!("/routing/v1/providers/{cid}?filter-protocols=transport-ipfs-gateway-http")).await;
    assert_eq!(json(&r)["Providers"].as_array().unwrap().len(), 1);
}
