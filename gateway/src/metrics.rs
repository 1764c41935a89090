//! Prometheus metrics for operators: `GET /debug/metrics/prometheus` on the RPC API (where
//! Kubo serves its own), in the text exposition format.
//!
//! Every value is read when the page is asked for: Bitswap and DHT counters from the network,
//! the repo's block count and size from the store, the pin count, and the process's resident
//! memory.

use std::fmt::Write as _;

use cairn_node::net::Network;
use cairn_node::{BlockStore, Node};

/// One metric's help, type and value lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// The process's resident memory in bytes (Linux), if it can be read.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The metrics page.
pub async fn render(node: &Node, net: Option<&Network>) -> String {
    let mut out = String::new();
    if let Some(net) = net {
        if let Ok(s) = net.stats().await {
            let c = "counter";
            metric(
                &mut out,
                "cairn_bitswap_blocks_received_total",
                c,
                "Wanted blocks received from peers.",
                &[("", s.blocks_received)],
            );
            metric(
                &mut out,
                "cairn_bitswap_received_bytes_total",
                c,
                "Bytes of wanted blocks received.",
                &[("", s.bytes_received)],
            );
            metric(
                &mut out,
                "cairn_bitswap_duplicate_blocks_total",
                c,
                "Blocks received twice or unasked.",
                &[("", s.duplicate_blocks)],
            );
            metric(&mut out, "cairn_bitswap_blocks_sent_total", c, "Blocks sent to peers.", &[("", s.blocks_sent)]);
            metric(
                &mut out,
                "cairn_bitswap_sent_bytes_total",
                c,
                "Bytes of blocks sent to peers.",
                &[("", s.bytes_sent)],
            );
            metric(
                &mut out,
                "cairn_bitswap_ledger_wants",
                "gauge",
                "Peers' wants held in ledgers.",
                &[("", s.ledger_wants)],
            );
        }
        if let Ok(peers) = net.peers().await {
            metric(&mut out, "cairn_swarm_peers", "gauge", "Connected peers.", &[("", peers.len() as u64)]);
        }
        if let Ok(d) = net.dht_stats().await {
            let tables = [("dht=\"wan\"", d.wan_peers as u64), ("dht=\"lan\"", d.lan_peers as u64)];
            metric(&mut out, "cairn_dht_routing_table_peers", "gauge", "Peers in each DHT's routing table.", &tables);
            metric(
                &mut out,
                "cairn_dht_provided_total",
                "counter",
                "Keys announced to at least one peer.",
                &[("", d.provide.provided)],
            );
            metric(
                &mut out,
                "cairn_dht_provide_failed_total",
                "counter",
                "Announcements no peer took.",
                &[("", d.provide.failed)],
            );
            metric(
                &mut out,
                "cairn_dht_provide_queued",
                "gauge",
                "Keys waiting to be announced.",
                &[("", d.provide.queued as u64)],
            );
            metric(&mut out, "cairn_dht_lookups_total", "counter", "Provider lookups started.", &[("", d.lookups)]);
        }
    }
    if let Ok(s) = node.repo().store().stats() {
        metric(&mut out, "cairn_repo_blocks", "gauge", "Blocks in the repo.", &[("", s.blocks)]);
        metric(&mut out, "cairn_repo_block_bytes", "gauge", "Bytes of block data in the repo.", &[("", s.bytes)]);
    }
    if let Ok(pins) = node.pins() {
        metric(&mut out, "cairn_repo_pins", "gauge", "Pins (recursive and direct).", &[("", pins.len() as u64)]);
    }
    if let Some(rss) = resident_bytes() {
        metric(
            &mut out,
            "cairn_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            &[("", rss)],
        );
    }
    out
}
