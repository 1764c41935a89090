//! Scenario files: what `cairn-testnet run` sets up and measures.
//!
//! A file (TOML, or JSON when it ends in `.json`) holds a list of `[[scenario]]` tables; see
//! `testnet/scenarios/` and `docs/testnet.md` for every field.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The scenarios, run in order.
    pub scenario: Vec<Scenario>,
}

impl ScenarioFile {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<ScenarioFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ScenarioFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).with_context(|| format!("{} is not a scenario file", path.display()))?
        } else {
            toml::from_str(&text).with_context(|| format!("{} is not a scenario file", path.display()))?
        };
        if file.scenario.is_empty() {
            bail!("{} holds no [[scenario]]", path.display());
        }
        for s in &file.scenario {
            s.check().with_context(|| format!("scenario {:?}", s.name))?;
        }
        Ok(file)
    }
}

/// How the readers get the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Each reader reads through its own Cairn node, which fetches from peers (and from the
    /// publisher's gateway as an HTTP origin when `origin` is set).
    #[default]
    Peers,
    /// Each reader fetches the file straight from the publisher's gateway over HTTP; the
    /// readers share nothing.
    OriginOnly,
    /// The reference: every node is a Kubo 0.43.1 daemon (`ipfs daemon` in the node's
    /// namespace) instead of Cairn. The publisher adds the file with Kubo's default add; each
    /// reader reads it through its own Kubo's gateway, which fetches it over Bitswap from its
    /// peers (Kubo has no HTTP origin).
    Kubo,
}

/// Who dials whom when the nodes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Every node dials every node started before it.
    #[default]
    Mesh,
    /// Every node dials `degree` earlier nodes (the first node being always one of them);
    /// content is then found through the DHT.
    Sparse,
}

/// A node's link to the bridge, shaped with `tc`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Upload cap in Mbit/s (0: none).
    #[serde(default)]
    pub upload_mbit: f64,
    /// Download cap in Mbit/s (0: none).
    #[serde(default)]
    pub download_mbit: f64,
    /// One-way delay added to what the node sends (needs the kernel's `sch_netem`).
    #[serde(default)]
    pub latency_ms: f64,
    /// Share of the node's outgoing packets dropped, in percent (needs `sch_netem`).
    #[serde(default)]
    pub loss_pct: f64,
}

impl Link {
    /// Whether the link needs `netem` (delay or loss).
    pub fn needs_netem(&self) -> bool {
        self.latency_ms > 0.0 || self.loss_pct > 0.0
    }
}

/// A reader that plays the file as a stream at a fixed bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// The media bitrate in Mbit/s.
    pub bitrate_mbit: f64,
    /// Media buffered before playback starts (and after a rebuffer), in seconds.
    #[serde(default = "default_startup_buffer")]
    pub startup_buffer_s: f64,
    /// The most media a player holds ahead of the playback position, in seconds.
    #[serde(default = "default_max_buffer")]
    pub max_buffer_s: f64,
}

fn default_startup_buffer() -> f64 {
    1.0
}

fn default_max_buffer() -> f64 {
    30.0
}

/// Peers joining and leaving while the readers read.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Readers killed (SIGKILL, mid-transfer) at `at_s`.
    pub leave: usize,
    /// Of those, how many come back (same repo, what they had kept) `rejoin_after_s` later
    /// and read again.
    #[serde(default)]
    pub rejoin: usize,
    /// Seconds after the readers start.
    pub at_s: f64,
    /// Seconds between leaving and rejoining.
    #[serde(default = "default_rejoin_after")]
    pub rejoin_after_s: f64,
    /// Fresh readers that start at `at_s` (they are counted in `leechers`).
    #[serde(default)]
    pub join: usize,
}

fn default_rejoin_after() -> f64 {
    2.0
}

/// Misbehaving nodes: peers of every reader.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hostile {
    /// Nodes that claim every block and send garbage for it.
    #[serde(default)]
    pub corrupt: usize,
    /// Nodes that flood every peer with wants for blocks that do not exist.
    #[serde(default)]
    pub flood: usize,
}

/// One scenario run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name in the results.
    pub name: String,
    /// Runs of one series are drawn as one line against their reader count.
    #[serde(default)]
    pub series: Option<String>,
    /// How the readers get the file.
    #[serde(default)]
    pub mode: Mode,
    /// Nodes that hold the file from the start; the first is the publisher, whose gateway is
    /// the origin.
    #[serde(default = "one")]
    pub seeds: usize,
    /// Nodes that read the file.
    pub leechers: usize,
    /// Nodes that neither hold nor read it (they carry the DHT).
    #[serde(default)]
    pub idle: usize,
    /// The file's size in MiB (fractions allowed).
    pub file_mib: f64,
    /// Whether the readers' nodes use the publisher's gateway as an HTTP origin.
    #[serde(default)]
    pub origin: bool,
    /// How the readers ask the origin (`Origins.Format`: `raw` or `car`); the node's default
    /// when absent.
    #[serde(default)]
    pub origin_format: Option<String>,
    /// Every node's link.
    pub link: Link,
    /// The seeds' link, when it differs.
    #[serde(default)]
    pub seed_link: Option<Link>,
    /// Who dials whom.
    #[serde(default)]
    pub topology: Topology,
    /// For [`Topology::Sparse`]: how many earlier nodes each node dials.
    #[serde(default = "default_degree")]
    pub degree: usize,
    /// Readers start within this many milliseconds of each other (evenly spread).
    #[serde(default)]
    pub start_spread_ms: u64,
    /// Readers play the file as a stream instead of reading it as fast as they can.
    #[serde(default)]
    pub stream: Option<Stream>,
    /// Readers leaving and joining mid-transfer.
    #[serde(default)]
    pub churn: Option<Churn>,
    /// Misbehaving nodes.
    #[serde(default)]
    pub hostile: Option<Hostile>,
    /// A reader that has not finished after this many seconds has failed.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
}

fn one() -> usize {
    1
}

fn default_degree() -> usize {
    3
}

fn default_timeout() -> f64 {
    600.0
}

impl Scenario {
    /// The file's size in bytes.
    pub fn file_bytes(&self) -> u64 {
        (self.file_mib * 1024.0 * 1024.0).round() as u64
    }

    /// The hostile node counts (zero when there are none).
    pub fn hostile(&self) -> Hostile {
        self.hostile.unwrap_or_default()
    }

    /// Every node of the run: seeds, readers, idle nodes, hostile nodes.
    pub fn node_count(&self) -> usize {
        let h = self.hostile();
        self.seeds + self.leechers + self.idle + h.corrupt + h.flood
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.seeds == 0 {
            bail!("needs at least one seed (the publisher)");
        }
        if self.leechers == 0 {
            bail!("needs at least one leecher");
        }
        if self.file_mib.is_nan() || self.file_mib <= 0.0 {
            bail!("file_mib must be more than 0");
        }
        if self.node_count() > 4000 {
            bail!("{} nodes: the bridge's /16 and this harness stop at 4000", self.node_count());
        }
        if self.mode == Mode::OriginOnly && (self.churn.is_some() || self.hostile.is_some()) {
            bail!("an origin-only run has no peers to churn or to be hostile");
        }
        if self.mode == Mode::Kubo
            && (self.origin || self.stream.is_some() || self.churn.is_some() || self.hostile.is_some())
        {
            bail!(
                "a Kubo run has no HTTP origin, stream, churn or hostile nodes (only seeds, leechers and idle nodes)"
            );
        }
        if let Some(c) = self.churn {
            if c.leave + c.join > self.leechers || c.rejoin > c.leave {
                bail!("churn: leave + join must be at most leechers, and rejoin at most leave");
            }
        }
        if let Some(s) = self.stream {
            if s.bitrate_mbit.is_nan() || s.bitrate_mbit <= 0.0 {
                bail!("stream.bitrate_mbit must be more than 0");
            }
        }
        if self.timeout_s.is_nan() || self.timeout_s <= 0.0 {
            bail!("timeout_s must be more than 0");
        }
        Ok(())
    }
}
