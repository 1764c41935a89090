//! Results: one JSON entry per scenario run, and the plots drawn from them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;

use super::client::Reading;
use super::hostile::Status;
use super::scenario::{Mode, Scenario};

/// What a node is in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Holds the file from the start (index 0 is the publisher, the origin).
    Seed,
    /// Reads the file.
    Leecher,
    /// Neither holds nor reads it.
    Idle,
    /// Sends garbage for every block asked of it.
    Corrupt,
    /// Floods its peers with wants.
    Flood,
}

impl Role {
    /// Whether the node is a Cairn daemon.
    pub fn is_cairn(self) -> bool {
        !self.is_hostile()
    }

    /// Whether the node misbehaves.
    pub fn is_hostile(self) -> bool {
        matches!(self, Role::Corrupt | Role::Flood)
    }
}

/// One node's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// Its index (and address, `10.99.x.y` with `x.y` = index + 2).
    pub index: usize,
    /// What it was.
    pub role: Role,
    /// Seconds to the first byte, for a reader.
    pub ttfb_s: Option<f64>,
    /// Seconds to the whole file, for a reader that got it.
    pub complete_s: Option<f64>,
    /// Why its read failed.
    pub error: Option<String>,
    /// Stream readers: startup delay.
    pub startup_s: Option<f64>,
    /// Stream readers: rebuffer events.
    pub rebuffers: u32,
    /// Stream readers: seconds stalled.
    pub stalled_s: f64,
    /// Block bytes it sent to peers (Bitswap).
    pub uploaded_bytes: u64,
    /// Block bytes it received from peers (Bitswap).
    pub downloaded_bytes: u64,
    /// Block bytes it received from the HTTP origin.
    pub origin_bytes: u64,
    /// Blocks it received twice.
    pub duplicate_blocks: u64,
    /// Blocks it received from peers.
    pub received_blocks: u64,
    /// Bytes it sent on the wire (everything: blocks, wants, headers, TLS-like framing).
    pub wire_up_bytes: u64,
    /// Bytes it received on the wire.
    pub wire_down_bytes: u64,
    /// CPU seconds.
    pub cpu_s: f64,
    /// Peak resident memory.
    pub rss_peak_bytes: u64,
    /// Killed mid-transfer and not back.
    pub left: bool,
    /// Killed mid-transfer and started again.
    pub rejoined: bool,
    /// For a hostile node: what it did and how it was treated.
    pub hostile: Option<Status>,
    /// Its Bitswap counters (`cairn_bitswap_*` metrics, the prefix left out): how it chose
    /// whom to ask, for reading a run closely.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bitswap: std::collections::BTreeMap<String, f64>,
    /// Its HTTP origin counters (`cairn_origin_*`, the prefix left out): what it asked of the
    /// origin and why, and how many requests a peer made needless.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub origin: std::collections::BTreeMap<String, f64>,
}

impl NodeResult {
    /// Assembles a node's numbers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        role: Role,
        reading: Option<Reading>,
        metrics: &HashMap<String, f64>,
        usage: (f64, u64),
        wire: (u64, u64),
        left: bool,
        rejoined: bool,
        hostile: Option<Status>,
    ) -> NodeResult {
        let m = |k: &str| metrics.get(k).copied().unwrap_or(0.0) as u64;
        let r = reading.unwrap_or_default();
        NodeResult {
            index,
            role,
            ttfb_s: r.ttfb_s,
            complete_s: r.complete_s,
            error: if role == Role::Leecher && !left {
                r.error.or_else(|| r.complete_s.is_none().then(|| "no reading".into()))
            } else {
                None
            },
            startup_s: r.startup_s,
            rebuffers: r.rebuffers,
            stalled_s: r.stalled_s,
            uploaded_bytes: m("cairn_bitswap_sent_bytes"),
            downloaded_bytes: m("cairn_bitswap_received_bytes"),
            origin_bytes: m("cairn_origin_bytes"),
            duplicate_blocks: m("cairn_bitswap_duplicate_blocks"),
            received_blocks: m("cairn_bitswap_blocks_received"),
            wire_up_bytes: wire.0,
            wire_down_bytes: wire.1,
            cpu_s: usage.0,
            rss_peak_bytes: usage.1,
            left,
            rejoined,
            hostile,
            bitswap: metrics
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("cairn_bitswap_")?.to_owned(), *v)))
                .collect(),
            origin: metrics
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("cairn_origin_")?.to_owned(), *v)))
                .collect(),
        }
    }

    /// A reader that should have finished and did not.
    pub fn failed(&self) -> bool {
        self.role == Role::Leecher && !self.left && self.complete_s.is_none()
    }
}

/// One scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The scenario's name.
    pub scenario: String,
    /// Its series, for the scaling plot.
    pub series: Option<String>,
    /// `peers`, `origin-only` or `kubo`.
    pub mode: &'static str,
    /// Every node of the run (seeds, readers, idle and hostile nodes).
    pub nodes: usize,
    /// Readers.
    pub leechers: usize,
    /// The file's size.
    pub file_bytes: u64,
    /// Its CID.
    pub cid: String,
    /// 1 − origin bytes / total bytes delivered to readers.
    pub offload: f64,
    /// Bytes the publisher delivered (its Bitswap uploads and its gateway's answers). In a
    /// Kubo run, what it sent on the wire.
    pub origin_bytes: u64,
    /// Bytes delivered to readers from every source (duplicates included). In a Kubo run,
    /// what the readers received on the wire.
    pub total_bytes: u64,
    /// The same share from the wire, in every mode (so Cairn and Kubo runs compare like with
    /// like): 1 − what the publisher sent / what the readers received, framing and protocol
    /// chatter included.
    pub wire_offload: f64,
    /// What the readers received on the wire, over the bytes of the file times the readers
    /// that got it: 1.0 is no waste.
    pub wire_overhead: Option<f64>,
    /// Time to first byte across readers that got one.
    pub ttfb_p50_s: Option<f64>,
    /// 95th percentile of the same.
    pub ttfb_p95_s: Option<f64>,
    /// Time to the whole file across readers that completed.
    pub complete_p50_s: Option<f64>,
    /// 95th percentile of the same.
    pub complete_p95_s: Option<f64>,
    /// The slowest reader that completed.
    pub complete_max_s: Option<f64>,
    /// Readers that did not complete (those that left for good are not counted).
    pub failed_nodes: usize,
    /// Blocks received twice / blocks received, over every node (Kubo's from `bitswap/stat`).
    pub duplicate_ratio: f64,
    /// Stream runs: startup delay P50 and worst.
    pub startup_p50_s: Option<f64>,
    /// The worst startup delay.
    pub startup_max_s: Option<f64>,
    /// Stream runs: rebuffer events per hour of playback, over all readers.
    pub rebuffers_per_hour: Option<f64>,
    /// Hostile runs: honest-node connections to hostile nodes left at the end.
    pub hostile_connections_at_end: usize,
    /// Seconds to start every node.
    pub node_start_s: f64,
    /// Seconds from the first reader's start to the last reader's end.
    pub read_wall_s: f64,
    /// Seconds for the whole run, setup included.
    pub run_s: f64,
    /// CPU seconds per node, P50 and max.
    pub cpu_p50_s: f64,
    /// The most CPU one node used.
    pub cpu_max_s: f64,
    /// Peak resident memory per node, P50 and max.
    pub rss_p50_bytes: u64,
    /// The largest peak resident memory.
    pub rss_max_bytes: u64,
    /// The scenario as run.
    pub link_upload_mbit: f64,
    /// The readers' download cap.
    pub link_download_mbit: f64,
    /// Every node.
    pub per_node: Vec<NodeResult>,
}

/// The nearest-rank percentile `p` (0–100) of `v`.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s.get(rank - 1).copied()
}

impl RunResult {
    /// Sums up the nodes of a run of `s`.
    pub fn new(
        s: &Scenario,
        cid: &str,
        per_node: Vec<NodeResult>,
        node_start_s: f64,
        read_wall_s: f64,
        run_s: f64,
        hostile_connections_at_end: usize,
    ) -> RunResult {
        let readers: Vec<&NodeResult> = per_node.iter().filter(|n| n.role == Role::Leecher).collect();
        let ttfb: Vec<f64> = readers.iter().filter_map(|n| n.ttfb_s).collect();
        let done: Vec<f64> = readers.iter().filter_map(|n| n.complete_s).collect();
        let startup: Vec<f64> = readers.iter().filter_map(|n| n.startup_s).collect();
        let publisher_wire = per_node.first().map_or(0, |n| n.wire_up_bytes);
        let readers_wire: u64 = readers.iter().map(|n| n.wire_down_bytes).sum();
        let (origin_bytes, total_bytes) = match s.mode {
            Mode::OriginOnly => {
                let all: u64 = readers.iter().map(|n| n.wire_down_bytes.min(s.file_bytes())).sum();
                let got: u64 = readers.iter().filter(|n| n.complete_s.is_some()).count() as u64 * s.file_bytes();
                (got.max(all), got.max(all))
            }
            Mode::Peers => {
                let publisher = per_node.first().map_or(0, |n| n.uploaded_bytes);
                let from_origin: u64 = readers.iter().map(|n| n.origin_bytes).sum();
                let total: u64 = readers.iter().map(|n| n.downloaded_bytes + n.origin_bytes).sum();
                (publisher + from_origin, total)
            }
            Mode::Kubo => (publisher_wire, readers_wire),
        };
        let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { 1.0 - part as f64 / whole as f64 };
        let offload = share(origin_bytes, total_bytes);
        let got = readers.iter().filter(|n| n.complete_s.is_some()).count() as u64 * s.file_bytes();
        let wire_overhead = (got > 0).then(|| readers_wire as f64 / got as f64);
        let dups: u64 = per_node.iter().map(|n| n.duplicate_blocks).sum();
        let received: u64 = per_node.iter().map(|n| n.received_blocks).sum();
        let rebuffers_per_hour = s.stream.map(|st| {
            let played_h: f64 = readers
                .iter()
                .filter(|n| n.startup_s.is_some())
                .map(|_| s.file_bytes() as f64 / (st.bitrate_mbit * 1e6 / 8.0) / 3600.0)
                .sum();
            let events: u32 = readers.iter().map(|n| n.rebuffers).sum();
            if played_h > 0.0 {
                f64::from(events) / played_h
            } else {
                0.0
            }
        });
        let cairns: Vec<&NodeResult> = per_node.iter().filter(|n| n.role.is_cairn() && n.cpu_s > 0.0).collect();
        let cpu: Vec<f64> = cairns.iter().map(|n| n.cpu_s).collect();
        let rss: Vec<f64> = cairns.iter().map(|n| n.rss_peak_bytes as f64).collect();
        RunResult {
            scenario: s.name.clone(),
            series: s.series.clone(),
            mode: match s.mode {
                Mode::Peers => "peers",
                Mode::OriginOnly => "origin-only",
                Mode::Kubo => "kubo",
            },
            nodes: s.node_count(),
            leechers: s.leechers,
            file_bytes: s.file_bytes(),
            cid: cid.to_owned(),
            offload,
            origin_bytes,
            total_bytes,
            wire_offload: share(publisher_wire, readers_wire),
            wire_overhead,
            ttfb_p50_s: percentile(&ttfb, 50.0),
            ttfb_p95_s: percentile(&ttfb, 95.0),
            complete_p50_s: percentile(&done, 50.0),
            complete_p95_s: percentile(&done, 95.0),
            complete_max_s: percentile(&done, 100.0),
            failed_nodes: per_node.iter().filter(|n| n.failed()).count(),
            duplicate_ratio: if received == 0 { 0.0 } else { dups as f64 / received as f64 },
            startup_p50_s: percentile(&startup, 50.0),
            startup_max_s: percentile(&startup, 100.0),
            rebuffers_per_hour,
            hostile_connections_at_end,
            node_start_s,
            read_wall_s,
            run_s,
            cpu_p50_s: percentile(&cpu, 50.0).unwrap_or(0.0),
            cpu_max_s: percentile(&cpu, 100.0).unwrap_or(0.0),
            rss_p50_bytes: percentile(&rss, 50.0).unwrap_or(0.0) as u64,
            rss_max_bytes: percentile(&rss, 100.0).unwrap_or(0.0) as u64,
            link_upload_mbit: s.link.upload_mbit,
            link_download_mbit: s.link.download_mbit,
            per_node,
        }
    }

    /// One line for the progress output.
    pub fn summary(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        let mut line = format!(
            "{}: {} readers, complete p50 {} s p95 {} s max {} s, ttfb p50 {} s, offload {:.1}% (wire {:.1}%), dup {:.1}%, failed {}",
            self.scenario,
            self.leechers,
            f(self.complete_p50_s),
            f(self.complete_p95_s),
            f(self.complete_max_s),
            f(self.ttfb_p50_s),
            self.offload * 100.0,
            self.wire_offload * 100.0,
            self.duplicate_ratio * 100.0,
            self.failed_nodes
        );
        if let Some(r) = self.rebuffers_per_hour {
            line += &format!(", startup max {} s, rebuffers/h {r:.1}", f(self.startup_max_s));
        }
        if self.per_node.iter().any(|n| n.role.is_hostile()) {
            line += &format!(", hostile connections left {}", self.hostile_connections_at_end);
        }
        line
    }
}

/// Writes `results.json` and the plots.
pub fn write(out: &Path, results: &[RunResult]) -> anyhow::Result<()> {
    std::fs::write(out.join("results.json"), serde_json::to_vec_pretty(results)?)
        .with_context(|| format!("writing {}", out.join("results.json").display()))?;
    plot(out, &serde_json::to_value(results)?)
}

/// Draws the plots of a results list (what `results.json` holds, or several merged):
/// `scaling.svg` and one `<scenario>-completion.svg` per run.
pub fn plot(out: &Path, results: &serde_json::Value) -> anyhow::Result<()> {
    let runs = results.as_array().context("results must be a list of runs")?;
    let mut points = Vec::new();
    for r in runs {
        let name = r["scenario"].as_str().context("a run without a scenario name")?;
        let readers = r["leechers"].as_u64().unwrap_or(0);
        if let (Some(series), Some(t)) = (r["series"].as_str(), r["complete_max_s"].as_f64()) {
            points.push((series.to_owned(), readers as f64, t));
        }
        let done: Vec<f64> = r["per_node"]
            .as_array()
            .map(|n| n.iter().filter_map(|n| n["complete_s"].as_f64()).collect())
            .unwrap_or_default();
        plot_completions(&out.join(format!("{name}-completion.svg")), name, readers, done)?;
    }
    plot_scaling(&out.join("scaling.svg"), points)
}

const COLORS: [RGBColor; 6] = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];

/// Slowest completion against the number of readers, one line per series.
fn plot_scaling(path: &Path, points: Vec<(String, f64, f64)>) -> anyhow::Result<()> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (name, n, t) in points {
        series.entry(name).or_default().push((n, t));
    }
    if series.is_empty() {
        return Ok(());
    }
    let max_x = series.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let max_y = series.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Time for every reader to complete, by number of readers", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x * 1.05, 0.0..max_y * 1.1)
        .map_err(plot_err)?;
    chart.configure_mesh().x_desc("readers (N)").y_desc("slowest completion (s)").draw().map_err(plot_err)?;
    for (k, (name, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(plot_err)?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The share of readers done against time.
fn plot_completions(path: &Path, name: &str, readers: u64, mut done: Vec<f64>) -> anyhow::Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    done.sort_by(f64::total_cmp);
    let readers = readers.max(1) as f64;
    let max_x = done.last().copied().unwrap_or(1.0).max(0.1);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{name}: readers done over time"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x * 1.05, 0.0..1.05)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the readers started")
        .y_desc("share of readers done")
        .draw()
        .map_err(plot_err)?;
    let mut pts = vec![(0.0, 0.0)];
    for (k, t) in done.iter().enumerate() {
        pts.push((*t, k as f64 / readers));
        pts.push((*t, (k + 1) as f64 / readers));
    }
    chart.draw_series(LineSeries::new(pts, BLUE.stroke_width(2))).map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e:?}")
}
