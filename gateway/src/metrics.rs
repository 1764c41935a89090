//! Prometheus metrics for operators: `GET /debug/metrics/prometheus` on the RPC API (where
//! Kubo serves its own), in the OpenMetrics text format (`prometheus-client` encodes it).
//!
//! Two kinds of values:
//! - read when the page is asked for: Bitswap and DHT counters from the network, the repo's
//!   block count and size, the pin count, the process's resident memory, the scrub's
//!   counters and the pin requests by status;
//! - counted as they happen, in [`GatewayMetrics`]: gateway requests by status, their latency
//!   (a histogram), and the file bytes and blocks the gateway read to answer them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::net::Network;
use cairn_node::{BlockStore, Node};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's status, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

/// What the gateway counts as it serves. Shared by the gateway (which records) and the API
/// (which renders).
#[derive(Debug)]
pub struct GatewayMetrics {
    registry: Registry,
    requests: Family<StatusLabel, Counter>,
    latency: Histogram,
    file_bytes: Counter,
    file_blocks: Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<StatusLabel, Counter>::default();
        // 1 ms to about 33 s, doubling.
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let file_bytes = Counter::default();
        let file_blocks = Counter::default();
        registry.register("cairn_gateway_requests", "Gateway requests answered, by status.", requests.clone());
        registry.register(
            "cairn_gateway_response_seconds",
            "Time from a gateway request to its response head.",
            latency.clone(),
        );
        registry.register("cairn_gateway_file_bytes", "File bytes sent by the gateway.", file_bytes.clone());
        registry.register(
            "cairn_gateway_file_blocks_read",
            "Blocks read to send file bytes (a range reads only the blocks it covers).",
            file_blocks.clone(),
        );
        GatewayMetrics { registry, requests, latency, file_bytes, file_blocks }
    }
}

impl GatewayMetrics {
    /// Records an answered request.
    pub fn request(&self, status: u16, took: Duration) {
        self.requests.get_or_create(&StatusLabel { status }).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Records file bytes sent and the blocks read for them.
    pub fn file_read(&self, bytes: u64, blocks: u64) {
        self.file_bytes.inc_by(bytes);
        self.file_blocks.inc_by(blocks);
    }
}

/// A registry of values read now.
struct Snapshot(Registry);

impl Snapshot {
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        self.0.register(name, help, c);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        self.0.register(name, help, g);
    }
}

/// The process's resident memory in bytes (Linux), if it can be read.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The daemon's services whose counters the page shows, those that run.
#[derive(Debug, Default, Clone)]
pub struct Services {
    /// The gateway's counters.
    pub gateway: Option<Arc<GatewayMetrics>>,
    /// The background scrub's counters.
    pub scrub: Option<Arc<cairn_node::scrub::ScrubStats>>,
    /// The Pinning Service API's requests.
    pub pinning: Option<Arc<cairn_node::pinning::PinService>>,
    /// The follower's counters.
    pub follow: Option<Arc<cairn_node::follow::FollowStats>>,
}

/// A counter's value now.
fn get(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn scrub_metrics(s: &mut Snapshot, st: &cairn_node::scrub::ScrubStats) {
    s.counter("cairn_scrub_checked_blocks", "Blocks the scrub re-read and re-hashed.", get(&st.checked_blocks));
    s.counter("cairn_scrub_checked_bytes", "Bytes the scrub re-read and re-hashed.", get(&st.checked_bytes));
    s.counter("cairn_scrub_corrupt_blocks", "Damaged blocks the scrub found.", get(&st.corrupt));
    s.counter("cairn_scrub_repaired_blocks", "Damaged blocks fetched again from peers.", get(&st.repaired));
    s.gauge("cairn_scrub_unrepaired_blocks", "Damaged blocks no peer has supplied yet.", get(&st.unrepaired));
    s.counter("cairn_scrub_passes", "Scrub passes completed.", get(&st.passes));
    s.gauge(
        "cairn_scrub_last_pass_end_timestamp_seconds",
        "When the last scrub pass completed (Unix time; 0: none yet).",
        get(&st.last_pass_end),
    );
}

/// The content type of [`render`]'s page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics page.
pub async fn render(node: &Node, net: Option<&Network>, services: &Services) -> String {
    let mut s = Snapshot(Registry::default());
    if let Some(net) = net {
        if let Ok(b) = net.stats().await {
            s.counter("cairn_bitswap_blocks_received", "Wanted blocks received from peers.", b.blocks_received);
            s.counter("cairn_bitswap_received_bytes", "Bytes of wanted blocks received.", b.bytes_received);
            s.counter("cairn_bitswap_duplicate_blocks", "Blocks received twice or unasked.", b.duplicate_blocks);
            s.counter("cairn_bitswap_blocks_sent", "Blocks sent to peers.", b.blocks_sent);
            s.counter("cairn_bitswap_sent_bytes", "Bytes of blocks sent to peers.", b.bytes_sent);
            s.counter(
                "cairn_bitswap_asks_single_source",
                "Want-blocks sent when one peer had the block.",
                b.asks_single_source,
            );
            s.counter("cairn_bitswap_asks_with_choice", "Want-blocks sent with a choice of peers.", b.asks_with_choice);
            s.counter(
                "cairn_bitswap_asks_direct",
                "Want-blocks sent at once to a peer that recently delivered.",
                b.asks_direct,
            );
            s.counter("cairn_bitswap_wants_moved", "Want-blocks moved off a backlogged peer.", b.wants_moved);
            s.counter(
                "cairn_bitswap_wants_widened",
                "Wants told to every peer because none of the first ones asked had the block.",
                b.wants_widened,
            );
            s.gauge("cairn_bitswap_wants", "Blocks this node wants now.", b.wants);
            s.gauge("cairn_bitswap_ledger_wants", "Peers' wants held in ledgers.", b.ledger_wants);
            s.gauge("cairn_bitswap_banned_peers", "Peers banned now for misbehaving.", b.banned_peers);
        }
        s.gauge("cairn_bitswap_sessions", "DAG fetches running now.", net.active_sessions());
        if let Some(o) = net.origin_stats() {
            s.counter("cairn_origin_blocks", "Blocks taken from HTTP origins (verified).", get(&o.blocks));
            s.counter("cairn_origin_bytes", "Bytes of blocks taken from HTTP origins.", get(&o.bytes));
            s.counter("cairn_origin_failures", "HTTP origin requests that failed.", get(&o.failures));
            for (name, help, value) in [
                (
                    "cairn_origin_asked_fast_start",
                    "Blocks asked of HTTP origins for a fast start (no peer said HAVE in time).",
                    &o.asked_fast_start,
                ),
                (
                    "cairn_origin_asked_stalled",
                    "Blocks asked of HTTP origins because the peers stalled.",
                    &o.asked_stalled,
                ),
                (
                    "cairn_origin_asked_patience",
                    "Blocks asked of HTTP origins after waiting too long on peers that deliver others.",
                    &o.asked_patience,
                ),
                (
                    "cairn_origin_asked_ahead",
                    "Blocks fetched ahead, asked of HTTP origins because every peer lacks them.",
                    &o.asked_ahead,
                ),
                (
                    "cairn_origin_abandoned",
                    "HTTP origin requests given up because a peer delivered the block first.",
                    &o.abandoned,
                ),
            ] {
                s.counter(name, help, get(value));
            }
        }
        if let Ok(peers) = net.peers().await {
            s.gauge("cairn_swarm_peers", "Connected peers.", peers.len() as u64);
        }
        if let Ok(d) = net.dht_stats().await {
            let tables = Family::<Vec<(String, String)>, Gauge>::default();
            tables.get_or_create(&vec![("dht".into(), "wan".into())]).set(d.wan_peers as i64);
            tables.get_or_create(&vec![("dht".into(), "lan".into())]).set(d.lan_peers as i64);
            s.0.register("cairn_dht_routing_table_peers", "Peers in each DHT's routing table.", tables);
            s.counter("cairn_dht_provided", "Keys announced to at least one peer.", d.provide.provided);
            s.counter("cairn_dht_provide_failed", "Announcements no peer took.", d.provide.failed);
            s.gauge("cairn_dht_provide_queued", "Keys waiting to be announced.", d.provide.queued as u64);
            s.counter("cairn_dht_lookups", "Provider lookups started.", d.lookups);
        }
        if let Some(l) = cairn_node::services::reprovide::last_sweep_of(node.repo().path()) {
            s.gauge(
                "cairn_reprovide_last_sweep_end_timestamp_seconds",
                "When the last reprovide sweep ended.",
                l.ended,
            );
            s.gauge(
                "cairn_reprovide_last_sweep_keys",
                "Keys the last sweep announced to at least one peer.",
                l.provided,
            );
            s.gauge("cairn_reprovide_last_sweep_failed_keys", "Keys of the last sweep that no peer took.", l.failed);
            s.gauge("cairn_reprovide_last_sweep_lookups", "Region lookups the last sweep made.", l.lookups);
            let took = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            took.set(l.seconds);
            s.0.register("cairn_reprovide_last_sweep_duration_seconds", "How long the last sweep took.", took);
        }
    }
    if let Ok(st) = node.repo().store().stats() {
        s.gauge("cairn_repo_blocks", "Blocks in the repo.", st.blocks);
        s.gauge("cairn_repo_block_bytes", "Bytes of block data in the repo.", st.bytes);
    }
    if let Ok(pins) = node.pins() {
        s.gauge("cairn_repo_pins", "Pins (recursive and direct).", pins.len() as u64);
    }
    if let Some(st) = &services.scrub {
        scrub_metrics(&mut s, st);
    }
    if let Some(f) = &services.follow {
        s.counter("cairn_follow_mirrored_manifests", "Followed publishers' manifests mirrored.", get(&f.mirrored));
        s.counter(
            "cairn_follow_over_quota_manifests",
            "Followed manifests skipped for Follow.Quota.",
            get(&f.over_quota),
        );
        s.counter("cairn_follow_refused_announcements", "Manifest announcements refused.", get(&f.refused));
        s.counter("cairn_follow_failed_mirrors", "Mirrors that failed, tried again later.", get(&f.failed));
    }
    if let Some(Ok(counts)) = services.pinning.as_ref().map(|p| p.counts()) {
        let family = Family::<Vec<(String, String)>, Gauge>::default();
        for (status, n) in counts {
            family.get_or_create(&vec![("status".into(), status.into())]).set(n as i64);
        }
        s.0.register("cairn_pinning_requests", "Pinning Service API requests, by status.", family);
    }
    if let Some(rss) = resident_bytes() {
        s.gauge("cairn_process_resident_memory_bytes", "Resident memory of the process.", rss);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode_registry(&mut out, &s.0);
    if let Some(g) = &services.gateway {
        let _ = encode_registry(&mut out, &g.registry);
    }
    let _ = encode_eof(&mut out);
    out
}
