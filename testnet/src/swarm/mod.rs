//! `cairn-testnet run`: swarms of real `cairn daemon` processes, each in a network namespace
//! of its own behind shaped links ([`topology`]), running the scenarios of a file
//! ([`scenario`]) and measuring what the readers saw ([`client`]) and what every node did
//! ([`report`]).
//!
//! One run of a scenario:
//! 1. makes a repo per node, adds the file to the seeds' repos, and writes each config
//!    (addresses on the bridge, who to dial, the publisher's gateway as HTTP origin);
//! 2. starts the nodes one after another, each dialing those before it;
//! 3. starts the readers (each a thread inside its node's namespace, reading the file through
//!    that node's gateway, or straight from the publisher's in an origin-only run), with
//!    churn applied on schedule;
//! 4. collects every node's metrics, wire bytes, CPU time and peak memory, stops the nodes and
//!    writes one entry of `results.json`.

pub mod client;
pub mod hostile;
pub mod kubo;
pub mod report;
pub mod scenario;
pub mod topology;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use client::{Expected, Reading};
use report::{NodeResult, Role, RunResult};
use scenario::{Link, Mode, Scenario, Topology};
use topology::{node_ip, NetNode};

/// The ports every node uses inside its own namespace.
const SWARM_PORT: u16 = 4001;
const API_PORT: u16 = 5001;
const GATEWAY_PORT: u16 = 8080;

/// Set by Ctrl-C: the run stops, cleans up and reports what it has.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// What `cairn-testnet run` was given.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `cairn` binary.
    pub cairn: PathBuf,
    /// This program (started again as `hostile` for misbehaving nodes).
    pub harness: PathBuf,
    /// Where the results, plots and the logs of failed nodes (every node with `keep_logs`) go.
    pub out: PathBuf,
    /// Where repos live while a scenario runs (removed after it).
    pub work: PathBuf,
    /// Whether every node's log is kept, not only those of failed nodes.
    pub keep_logs: bool,
}

/// The test file: [`crate::data::random_bytes`] for a seed of the scenario's own.
#[derive(Debug)]
pub struct TestFile {
    data: Vec<u8>,
}

impl TestFile {
    /// `len` bytes from `seed`.
    pub fn new(len: u64, seed: u64) -> TestFile {
        TestFile { data: crate::data::random_bytes(len as usize, seed) }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl Expected for TestFile {
    fn matches(&self, offset: u64, got: &[u8]) -> bool {
        let at = offset as usize;
        self.data.get(at..at + got.len()) == Some(got)
    }
}

/// A node of a run, started or not.
#[derive(Debug)]
struct Member {
    index: usize,
    role: Role,
    repo: PathBuf,
    peer_id: String,
    link: Link,
    proc: Option<NetNode>,
    /// CPU seconds and peak RSS of earlier lives (a node that left and rejoined).
    past: (f64, u64),
    wire_past: (u64, u64),
}

impl Member {
    fn addr(&self) -> String {
        format!("/ip4/{}/tcp/{SWARM_PORT}/p2p/{}", node_ip(self.index), self.peer_id)
    }
}

/// Runs `cairn` with `args` on `repo` and returns its standard output.
fn cairn(opts: &Options, repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(&opts.cairn).arg("--repo").arg(repo).args(args).output().context("running cairn")?;
    if !out.status.success() {
        bail!("cairn {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Edits a repo's config file in place.
fn configure(repo: &Path, edit: impl FnOnce(&mut Value)) -> anyhow::Result<String> {
    let path = repo.join("config");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    edit(&mut cfg);
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
    Ok(cfg["Identity"]["PeerID"].as_str().unwrap_or_default().to_owned())
}

/// Runs one scenario and returns its results.
pub fn run_scenario(s: &Scenario, opts: &Options) -> anyhow::Result<RunResult> {
    let work = tempfile::Builder::new().prefix(&format!("tn-{}-", s.name)).tempdir_in(&opts.work)?;
    let started = Instant::now();
    let seed = s.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let file = Arc::new(TestFile::new(s.file_bytes(), seed));
    let file_path = work.path().join("file.bin");
    std::fs::write(&file_path, file.bytes())?;

    // Roles in index order: seeds, readers, idle nodes, then hostile ones.
    let hostile = s.hostile();
    let mut roles = vec![Role::Seed; s.seeds];
    roles.extend(std::iter::repeat_n(Role::Leecher, s.leechers));
    roles.extend(std::iter::repeat_n(Role::Idle, s.idle));
    roles.extend(std::iter::repeat_n(Role::Corrupt, hostile.corrupt));
    roles.extend(std::iter::repeat_n(Role::Flood, hostile.flood));
    let origin_url = format!("http://{}:{GATEWAY_PORT}", node_ip(0));
    let peers_mode = s.mode == Mode::Peers;
    let kubo_mode = s.mode == Mode::Kubo;
    if kubo_mode {
        if let Some(why) = crate::reference::kubo_bin_missing() {
            bail!("a Kubo run needs the Kubo reference: {why}");
        }
    }
    let mut members = Vec::new();
    let mut cid = String::new();
    for (index, role) in roles.iter().enumerate() {
        let repo = work.path().join(format!("node{index}"));
        let link = if *role == Role::Seed { s.seed_link.unwrap_or(s.link) } else { s.link };
        let mut peer_id = String::new();
        // Readers of an origin-only run, hostile nodes and a Kubo run's nodes run no Cairn node.
        let is_cairn = role.is_cairn() && !kubo_mode && (peers_mode || *role == Role::Seed);
        if kubo_mode {
            let publisher = (*role == Role::Seed).then_some(file_path.as_path());
            let wait = Duration::from_secs_f64(s.timeout_s.ceil());
            let (id, added) = kubo::prepare(index, &repo, publisher, wait)
                .with_context(|| format!("making node {index}'s Kubo repo"))?;
            peer_id = id;
            if let Some(added) = added {
                cid = added;
            }
        } else if is_cairn {
            cairn(opts, &repo, &["init", "--profile", "test"])?;
            peer_id = configure(&repo, |c| {
                c["Addresses"]["Swarm"] = json!([format!("/ip4/{}/tcp/{SWARM_PORT}", node_ip(index))]);
                c["Addresses"]["API"] = json!(format!("/ip4/127.0.0.1/tcp/{API_PORT}"));
                c["Addresses"]["Gateway"] = json!(format!("/ip4/0.0.0.0/tcp/{GATEWAY_PORT}"));
                c["Gateway"]["RetrievalTimeout"] = json!(format!("{}s", s.timeout_s.ceil() as u64));
                c["Scrub"]["Interval"] = json!("0");
                if s.origin && *role == Role::Leecher {
                    c["Origins"]["Gateways"] = json!([origin_url]);
                    if let Some(format) = &s.origin_format {
                        c["Origins"]["Format"] = json!(format);
                    }
                }
            })?;
            if *role == Role::Seed {
                cid = cairn(opts, &repo, &["add", "-Q", file_path.to_str().unwrap_or_default()])?;
            }
        } else {
            std::fs::create_dir_all(&repo)?;
        }
        members.push(Member { index, role: *role, repo, peer_id, link, proc: None, past: (0.0, 0), wire_past: (0, 0) });
    }

    // Churn: `join` readers start late (the last ones), `leave` others leave mid-way.
    let churn = s.churn;
    let readers: Vec<usize> = members.iter().filter(|m| m.role == Role::Leecher).map(|m| m.index).collect();
    let joining = churn.map_or(0, |c| c.join).min(readers.len());
    let late: Vec<usize> = readers[readers.len() - joining..].to_vec();
    let leaving: Vec<usize> = readers[..churn.map_or(0, |c| c.leave)].to_vec();

    // Start every node except the late ones, each dialing those before it.
    let start_all = Instant::now();
    for i in 0..members.len() {
        if late.contains(&i) || INTERRUPTED.load(Ordering::Relaxed) {
            continue;
        }
        start_member(&mut members, i, s, opts, work.path())?;
    }
    let node_start_s = start_all.elapsed().as_secs_f64();
    if peers_mode {
        settle(&members, Duration::from_secs(15));
    }

    // The readers.
    let deadline_after = Duration::from_secs_f64(s.timeout_s);
    let mut handles: HashMap<usize, std::thread::JoinHandle<Reading>> = HashMap::new();
    let spread = Duration::from_millis(s.start_spread_ms);
    let on_time: Vec<usize> = readers.iter().copied().filter(|r| !late.contains(r)).collect();
    let t0 = Instant::now();
    for (k, &i) in on_time.iter().enumerate() {
        let delay =
            if on_time.len() > 1 { spread.mul_f64(k as f64 / (on_time.len() - 1) as f64) } else { Duration::ZERO };
        handles.insert(i, spawn_reader(&members[i], s, &cid, &file, t0 + delay, deadline_after)?);
    }
    let mut left: Vec<usize> = Vec::new();
    let mut rejoined: Vec<usize> = Vec::new();
    if let Some(c) = churn {
        sleep_until(t0 + Duration::from_secs_f64(c.at_s));
        for &i in &leaving {
            retire(&mut members[i]);
            left.push(i);
        }
        for &i in &late {
            start_member(&mut members, i, s, opts, work.path())?;
            handles.insert(i, spawn_reader(&members[i], s, &cid, &file, Instant::now(), deadline_after)?);
        }
        sleep_until(t0 + Duration::from_secs_f64(c.at_s + c.rejoin_after_s));
        for &i in leaving.iter().take(c.rejoin) {
            // The reading of its first life ends with the kill.
            if let Some(h) = handles.remove(&i) {
                let _ = h.join();
            }
            start_member(&mut members, i, s, opts, work.path())?;
            handles.insert(i, spawn_reader(&members[i], s, &cid, &file, Instant::now(), deadline_after)?);
            rejoined.push(i);
        }
    }
    let mut readings: HashMap<usize, Reading> = HashMap::new();
    for (i, h) in handles {
        let r =
            h.join().unwrap_or_else(|_| Reading { error: Some("the reader panicked".into()), ..Default::default() });
        readings.insert(i, r);
    }
    let read_wall_s = t0.elapsed().as_secs_f64();

    // What every node did.
    let mut nodes = Vec::new();
    for m in &mut members {
        let metrics = match (&m.proc, m.role.is_cairn() && !m.peer_id.is_empty()) {
            (Some(p), true) if kubo_mode => kubo::metrics(p.pid()),
            (Some(p), true) => node_metrics(p.pid()),
            _ => HashMap::new(),
        };
        let hostile_status = if m.role.is_hostile() { hostile::read_status(&m.repo) } else { None };
        let (cpu, rss) = m.proc.as_ref().map_or((0.0, 0), NetNode::usage);
        let (wup, wdown) = m.proc.as_ref().map_or((0, 0), NetNode::wire_bytes);
        let reading = readings.remove(&m.index);
        nodes.push(NodeResult::new(
            m.index,
            m.role,
            reading,
            &metrics,
            (cpu + m.past.0, rss.max(m.past.1)),
            (wup + m.wire_past.0, wdown + m.wire_past.1),
            left.contains(&m.index) && !rejoined.contains(&m.index),
            rejoined.contains(&m.index),
            hostile_status,
        ));
    }
    // Honest nodes still connected to a hostile one at the end.
    let hostile_ids: Vec<String> = members.iter().filter(|m| m.role.is_hostile()).map(|m| m.peer_id.clone()).collect();
    let still_connected = if hostile_ids.is_empty() { 0 } else { count_hostile_connections(&members, &hostile_ids) };
    let mut kept_logs = Vec::new();
    for n in &nodes {
        if n.failed() || opts.keep_logs {
            kept_logs.push(members[n.index].repo.join("daemon.log"));
        }
    }
    for m in &mut members {
        if let Some(p) = m.proc.as_mut() {
            p.stop(Duration::from_secs(5));
        }
    }
    let logs_dir = opts.out.join("logs").join(&s.name);
    for log in kept_logs {
        if log.exists() {
            std::fs::create_dir_all(&logs_dir)?;
            let name =
                log.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            std::fs::copy(&log, logs_dir.join(format!("{name}.log")))?;
        }
    }
    Ok(RunResult::new(s, &cid, nodes, node_start_s, read_wall_s, started.elapsed().as_secs_f64(), still_connected))
}

fn sleep_until(t: Instant) {
    while Instant::now() < t && !INTERRUPTED.load(Ordering::Relaxed) {
        std::thread::sleep((t - Instant::now()).min(Duration::from_millis(100)));
    }
}

/// Kills a node mid-transfer (SIGKILL), keeping what it had used.
fn retire(m: &mut Member) {
    if let Some(mut p) = m.proc.take() {
        let (cpu, rss) = p.usage();
        let (up, down) = p.wire_bytes();
        p.kill();
        m.past = (m.past.0 + cpu, m.past.1.max(rss));
        m.wire_past = (m.wire_past.0 + up, m.wire_past.1 + down);
    }
}

/// Starts member `i` (which dials the running members before it, or some of them) and
/// waits until it serves.
fn start_member(members: &mut [Member], i: usize, s: &Scenario, opts: &Options, work: &Path) -> anyhow::Result<()> {
    let running: Vec<&Member> =
        members.iter().filter(|m| m.proc.is_some() && !m.peer_id.is_empty() && m.role.is_cairn()).collect();
    let dial: Vec<String> = match s.topology {
        Topology::Mesh => running.iter().map(|m| m.addr()).collect(),
        Topology::Sparse => {
            // The first node, and `degree - 1` others picked by a hash of the index.
            let mut picks: Vec<String> = running.iter().take(1).map(|m| m.addr()).collect();
            let others: Vec<&&Member> = running.iter().skip(1).collect();
            for k in 0..s.degree.saturating_sub(1).min(others.len()) {
                let at = (i.wrapping_mul(2_654_435_761).wrapping_add(k * 40_503)) % others.len();
                let a = others[at].addr();
                if !picks.contains(&a) {
                    picks.push(a);
                }
            }
            picks
        }
    };
    let m = &mut members[i];
    let log = m.repo.join("daemon.log");
    if s.mode == Mode::Kubo {
        let mut node = NetNode::spawn(i, &m.link, &kubo::program(&m.repo), &log, work, false)?;
        kubo::wait_ready(&mut node, &log)?;
        kubo::connect(node.pid(), &dial).with_context(|| format!("node {i}'s Kubo dialing the others"))?;
        m.proc = Some(node);
        return Ok(());
    }
    let program: Vec<String> = if m.role.is_hostile() {
        let mode = if m.role == Role::Corrupt { "corrupt" } else { "flood" };
        let mut p = vec![opts.harness.display().to_string(), "hostile".into(), "--mode".into(), mode.into()];
        p.extend(["--status".into(), m.repo.join("hostile.json").display().to_string()]);
        p.extend(["--listen".into(), format!("/ip4/{}/tcp/{SWARM_PORT}", node_ip(m.index))]);
        for a in &dial {
            p.extend(["--peer".into(), a.clone()]);
        }
        p
    } else if !m.peer_id.is_empty() {
        configure(&m.repo, |c| c["Bootstrap"] = json!(dial))?;
        // A node killed earlier left its address files behind; the new ones say it is up.
        for stale in ["api", "gateway"] {
            let _ = std::fs::remove_file(m.repo.join(stale));
        }
        vec![opts.cairn.display().to_string(), "--repo".into(), m.repo.display().to_string(), "daemon".into()]
    } else {
        // A reader of an origin-only run: the namespace only.
        vec!["sleep".into(), "infinity".into()]
    };
    let node = NetNode::spawn(i, &m.link, &program, &log, work, false)?;
    m.proc = Some(node);
    if m.role.is_hostile() {
        m.peer_id = hostile::wait_for_peer_id(&m.repo.join("hostile.json"), Duration::from_secs(20))?;
    } else if !m.peer_id.is_empty() {
        // The daemon writes both files once it listens; readers use the gateway.
        let (api, gateway) = (m.repo.join("api"), m.repo.join("gateway"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !api.exists() || !gateway.exists() {
            if let Some(p) = m.proc.as_mut() {
                if let Some(status) = p.child.try_wait()? {
                    bail!("node {i} exited at start ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
            if Instant::now() > deadline {
                bail!("node {i} did not start in 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Waits until every running Cairn node has at least one peer (or `limit` has passed).
fn settle(members: &[Member], limit: Duration) {
    let deadline = Instant::now() + limit;
    let cairns: Vec<&Member> =
        members.iter().filter(|m| m.proc.is_some() && m.role.is_cairn() && !m.peer_id.is_empty()).collect();
    for m in &cairns {
        let want = 1.0_f64.min((cairns.len() - 1) as f64);
        while Instant::now() < deadline {
            let got =
                node_metrics(m.proc.as_ref().map_or(0, NetNode::pid)).get("cairn_swarm_peers").copied().unwrap_or(0.0);
            if got >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts a reader thread in `m`'s namespace that begins at `at`.
fn spawn_reader(
    m: &Member,
    s: &Scenario,
    cid: &str,
    file: &Arc<TestFile>,
    at: Instant,
    timeout: Duration,
) -> anyhow::Result<std::thread::JoinHandle<Reading>> {
    let pid = m.proc.as_ref().map(NetNode::pid).context("the reader's node is not running")?;
    let addr: SocketAddr = match s.mode {
        // A Kubo run's readers read from their own Kubo's gateway, as Cairn's from Cairn's.
        Mode::Peers | Mode::Kubo => SocketAddr::from(([127, 0, 0, 1], GATEWAY_PORT)),
        Mode::OriginOnly => SocketAddr::from((node_ip(0), GATEWAY_PORT)),
    };
    let (cid, file, stream, len) = (cid.to_owned(), file.clone(), s.stream, s.file_bytes());
    Ok(std::thread::Builder::new().name(format!("reader-{}", m.index)).spawn(move || {
        if let Err(e) = topology::enter_netns_of(pid) {
            return Reading { error: Some(format!("{e:#}")), ..Default::default() };
        }
        sleep_until(at);
        client::read_file(addr, &cid, len, file.as_ref(), stream, Instant::now() + timeout)
    })?)
}

/// The Prometheus page of the node whose process is `pid`, as name → value (label-less
/// lines only), fetched from inside its namespace.
fn node_metrics(pid: u32) -> HashMap<String, f64> {
    let text = api_call(pid, "GET", "/debug/metrics/prometheus");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.trim_end_matches("_total").to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `POST /api/v0/swarm/peers` on each Cairn node: how many hostile peers it still has.
fn count_hostile_connections(members: &[Member], hostile: &[String]) -> usize {
    let mut n = 0;
    for m in members.iter().filter(|m| m.role.is_cairn() && !m.role.is_hostile()) {
        let Some(pid) = m.proc.as_ref().map(NetNode::pid) else { continue };
        let page = api_call(pid, "POST", "/api/v0/swarm/peers");
        n += hostile.iter().filter(|h| page.contains(h.as_str())).count();
    }
    n
}

/// A request to the API of the node whose process is `pid`, from a thread inside its
/// namespace; the body, or nothing when the node did not answer.
fn api_call(pid: u32, method: &'static str, path: &'static str) -> String {
    netns_call(pid, API_PORT, method, path.into()).map(|(_, body)| body).unwrap_or_default()
}

/// A request to `127.0.0.1:port` inside the namespace of the process `pid`, from a thread that
/// enters it; the status and body, or nothing when nothing answered within the timeouts.
fn netns_call(pid: u32, port: u16, method: &'static str, path: String) -> Option<(u16, String)> {
    std::thread::spawn(move || {
        topology::enter_netns_of(pid).ok()?;
        http_status(SocketAddr::from(([127, 0, 0, 1], port)), method, &path)
    })
    .join()
    .ok()
    .flatten()
}

/// A minimal HTTP/1.1 request with `Connection: close`: the response's status and body. A
/// chunked body (as Kubo's RPC API sends) is decoded.
fn http_status(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    Some((status, if chunked { dechunk(body)? } else { body.to_owned() }))
}

/// The payload of a chunked HTTP/1.1 body (chunk extensions and trailers ignored); `None`
/// when it is cut short or malformed.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// Runs every scenario of `file` (those named in `only`, when given) and writes
/// `results.json` and the plots into `opts.out`.
pub fn run_file(file: &scenario::ScenarioFile, only: &[String], opts: &Options) -> anyhow::Result<Vec<RunResult>> {
    // The bridge and every node address must live in the namespace `run` made for itself.
    anyhow::ensure!(crate::netns::is_inside(), "run_file must run inside the harness's own network namespace");
    std::fs::create_dir_all(&opts.out)?;
    std::fs::create_dir_all(&opts.work)?;
    topology::make_bridge().context("making the bridge (needs CAP_NET_ADMIN in the harness's namespace)")?;
    let netem = topology::has_netem();
    let mut results = Vec::new();
    for s in &file.scenario {
        if !only.is_empty() && !only.contains(&s.name) {
            continue;
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        if !netem && (s.link.needs_netem() || s.seed_link.is_some_and(|l| l.needs_netem())) {
            bail!(
                "scenario {:?} sets latency or loss, which needs the kernel's sch_netem qdisc; this kernel has none \
                 (`tc qdisc add ... netem` fails)",
                s.name
            );
        }
        tracing_line(&format!("scenario {} ({} nodes, {:.1} MiB)", s.name, s.node_count(), s.file_mib));
        let r = run_scenario(s, opts).with_context(|| format!("scenario {}", s.name))?;
        tracing_line(&r.summary());
        results.push(r);
        report::write(&opts.out, &results)?;
    }
    Ok(results)
}

/// Progress goes to standard error.
#[allow(clippy::print_stderr)]
fn tracing_line(line: &str) {
    eprintln!("cairn-testnet: {line}");
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn a_chunked_body_is_joined_and_a_cut_one_refused() {
        let body = "6\r\n{\"Data\r\nA;ext=1\r\nSent\": 42}\r\n0\r\n\r\n";
        assert_eq!(dechunk(body).as_deref(), Some("{\"DataSent\": 42}"));
        assert_eq!(dechunk("7\r\n{\"Data\"\r\n").as_deref(), None);
        assert_eq!(dechunk("zz\r\nabc\r\n0\r\n\r\n"), None);
    }
}
