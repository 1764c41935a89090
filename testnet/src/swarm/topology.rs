//! The emulated network: one bridge, and one network namespace per node joined to it by a
//! veth pair whose two ends are shaped with `tc`.
//!
//! The whole harness runs in a network namespace of its own ([`crate::netns`]), which holds
//! the bridge. Each node process starts through `setpriv --pdeathsig KILL unshare -n`, so it
//! sits in a fresh namespace that dies with it, and it dies with the harness (even one killed
//! with SIGKILL). Nothing outside the harness's namespace can be reached: the bridge has no
//! uplink and no route leads anywhere else.
//!
//! - Node `i` is `10.99.x.y/16` (`x.y` = `i + 2`); the harness is `10.99.0.1` on the bridge.
//! - What a node sends leaves through its `eth0`, whose qdisc caps its upload (and adds delay
//!   and loss, with `sch_netem`). What it receives leaves the bridge through the veth's other
//!   end, `tn<i>`, whose qdisc caps its download.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::scenario::Link;

/// The bridge every node's veth joins.
pub const BRIDGE: &str = "cairnbr0";

/// The harness's address on the bridge.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

/// Node `i`'s address.
pub fn node_ip(i: usize) -> Ipv4Addr {
    let n = i + 2;
    Ipv4Addr::new(10, 99, (n >> 8) as u8, (n & 0xff) as u8)
}

/// Runs `ip`/`tc` style commands, failing with their error output.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Makes the bridge (once per harness run).
pub fn make_bridge() -> anyhow::Result<()> {
    run("ip", &["link", "set", "lo", "up"])?;
    run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
    run("ip", &["addr", "add", &format!("{HOST_IP}/16"), "dev", BRIDGE])?;
    run("ip", &["link", "set", BRIDGE, "up"])
}

/// Makes room in the kernel's neighbour (ARP) tables for `nodes` nodes that all talk to each
/// other. The tables are shared by every network namespace, and their hard limit
/// (`gc_thresh3`, 1024 by default) is reached at about 32 nodes in a full mesh; past it the
/// kernel stops resolving addresses ("neighbor table overflow") and new nodes cannot reach
/// anyone. Call it before leaving the host's namespace: only there are the limits writable.
/// Returns a note for the operator when the limit stays too low.
pub fn make_neighbour_room(nodes: usize) -> Option<String> {
    let need = (nodes * nodes + 4 * nodes + 256) as u64;
    let mut short = Vec::new();
    for table in ["ipv4", "ipv6"] {
        let base = format!("/proc/sys/net/{table}/neigh/default");
        let read =
            |k: &str| std::fs::read_to_string(format!("{base}/{k}")).ok().and_then(|v| v.trim().parse::<u64>().ok());
        let Some(hard) = read("gc_thresh3") else { continue };
        if hard >= need {
            continue;
        }
        let ok =
            [("gc_thresh1", need / 4), ("gc_thresh2", need / 2), ("gc_thresh3", need)].iter().rev().all(|(k, v)| {
                read(k).is_some_and(|cur| cur >= *v) || std::fs::write(format!("{base}/{k}"), v.to_string()).is_ok()
            });
        if !ok {
            short.push(format!("{base}/gc_thresh3 is {hard}, {nodes} nodes need {need}"));
        }
    }
    (!short.is_empty()).then(|| {
        format!("the kernel's neighbour tables are too small and could not be raised ({}): nodes past the limit will not reach the others", short.join("; "))
    })
}

/// Whether this kernel has `sch_netem` (delay and loss): tried on a throwaway veth pair.
pub fn has_netem() -> bool {
    let ok = run("ip", &["link", "add", "tnprobe0", "type", "veth", "peer", "name", "tnprobe1"]).is_ok()
        && run("tc", &["qdisc", "add", "dev", "tnprobe0", "root", "netem", "delay", "1ms"]).is_ok();
    let _ = run("ip", &["link", "del", "tnprobe0"]);
    ok
}

/// The `tc` argument lines that shape what leaves `dev`: a token bucket for the rate, under a
/// `netem` root for delay and loss.
pub fn shaping(dev: &str, rate_mbit: f64, latency_ms: f64, loss_pct: f64) -> Vec<String> {
    let mut lines = Vec::new();
    let netem = latency_ms > 0.0 || loss_pct > 0.0;
    if netem {
        lines.push(format!(
            "qdisc add dev {dev} root handle 1: netem delay {latency_ms}ms loss {loss_pct}% limit 10000"
        ));
    }
    if rate_mbit > 0.0 {
        let bytes_per_s = rate_mbit * 1e6 / 8.0;
        // A burst of 20 ms of traffic, at least a few full-sized (GSO) packets.
        let burst = ((bytes_per_s / 50.0) as u64).max(96 * 1024);
        let parent = if netem { "parent 1:1 handle 10:" } else { "root handle 1:" };
        lines.push(format!(
            "qdisc add dev {dev} {parent} tbf rate {}kbit burst {burst} latency 200ms",
            (rate_mbit * 1000.0) as u64
        ));
    }
    lines
}

/// Runs `tc` with each line's words.
fn tc_lines(lines: &[String]) -> anyhow::Result<()> {
    for line in lines {
        let args: Vec<&str> = line.split_whitespace().collect();
        run("tc", &args)?;
    }
    Ok(())
}

/// The node-side setup, run by `sh` inside the new namespace: say it is there, wait for the
/// harness to hand it `eth0`, bring up its address and upload shaping, then become the node.
/// The setup's own output goes to stderr, so a node driven over its stdout sees only the
/// program's.
const NODE_SCRIPT: &str = r#"set -e
exec 3>&1 1>&2
: > "$TN_READY"
n=0
while ! ip link show eth0 >/dev/null 2>&1; do
  n=$((n + 1)); [ "$n" -lt 1000 ] || { echo "eth0 never arrived" >&2; exit 97; }
  sleep 0.01
done
ip link set lo up
ip addr add "$TN_ADDR/16" dev eth0
ip link set eth0 up
printf '%s\n' "$TN_TC" | while read -r line; do
  [ -z "$line" ] || tc $line || exit 98
done
: > "$TN_READY.up"
exec "$@" 1>&3 3>&-
"#;

/// A process running in a network namespace of its own, on the bridge.
#[derive(Debug)]
pub struct NetNode {
    /// The node's index (its address is [`node_ip`]).
    pub index: usize,
    /// The process (after the `exec`s, the program itself).
    pub child: Child,
    /// The bridge-side end of its veth.
    pub host_if: String,
}

impl NetNode {
    /// Starts `program` as node `index` with the link `link`; its output goes to `log`, or, with
    /// `piped`, its stdin and stdout are pipes (in `child`) and only its stderr goes to `log`.
    pub fn spawn(
        index: usize,
        link: &Link,
        program: &[String],
        log: &Path,
        work: &Path,
        piped: bool,
    ) -> anyhow::Result<NetNode> {
        let ready: PathBuf = work.join(format!("ready-{index}"));
        let _ = std::fs::remove_file(&ready);
        let _ = std::fs::remove_file(ready.with_extension("up"));
        let tc = shaping("eth0", link.upload_mbit, link.latency_ms, link.loss_pct).join("\n");
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "unshare", "-n", "--", "sh", "-c", NODE_SCRIPT, "sh"])
            .args(program)
            .env("TN_READY", &ready)
            .env("TN_ADDR", node_ip(index).to_string())
            .env("TN_TC", tc)
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(if piped { Stdio::piped() } else { Stdio::from(log_file.try_clone()?) })
            .stderr(log_file)
            .spawn()
            .context("cannot start setpriv/unshare (util-linux)")?;
        let mut node = NetNode { index, child, host_if: format!("tn{index}") };
        node.wait_for(&ready, "enter its namespace", log)?;
        let pid = node.child.id().to_string();
        let host_if = node.host_if.clone();
        // A namespace is torn down after its last process exits, a moment later: a link of
        // the same name from an earlier run may still be there.
        let _ = run("ip", &["link", "del", &host_if]);
        run("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &pid])?;
        run("ip", &["link", "set", &host_if, "master", BRIDGE])?;
        run("ip", &["link", "set", &host_if, "up"])?;
        tc_lines(&shaping(&host_if, link.download_mbit, 0.0, 0.0))?;
        // The node's side is up (address, route, shaping) before anyone uses it.
        let up = ready.with_extension("up");
        node.wait_for(&up, "set up its link", log)?;
        Ok(node)
    }

    /// Waits up to 20 s for the node's script to create `mark`.
    fn wait_for(&mut self, mark: &Path, what: &str, log: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !mark.exists() {
            if let Some(status) = self.child.try_wait()? {
                bail!("node {} exited before it could {what} ({status}); see {}", self.index, log.display());
            }
            if Instant::now() > deadline {
                bail!("node {} did not {what} in 20 s", self.index);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The process ID (also names its namespace: `/proc/<pid>/ns/net`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Bytes the node sent and received on the wire, as the bridge side of its veth counts
    /// them (what it sent arrives there; what it received leaves from there).
    pub fn wire_bytes(&self) -> (u64, u64) {
        // `/proc/self/net/dev` belongs to the reader's namespace (`/sys/class/net` does not).
        let dev = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
        dev.lines()
            .find_map(|l| {
                let (name, rest) = l.split_once(':')?;
                (name.trim() == self.host_if).then(|| {
                    let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
                    (f.first().copied().unwrap_or(0), f.get(8).copied().unwrap_or(0))
                })
            })
            .unwrap_or((0, 0))
    }

    /// CPU seconds used so far and the peak resident memory in bytes, from `/proc`.
    pub fn usage(&self) -> (f64, u64) {
        let pid = self.pid();
        let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // Fields after the command name (which is in parentheses and may hold spaces).
                let rest = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
                Some(ticks as f64 / clock_ticks())
            })
            .unwrap_or(0.0);
        let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kib| kib * 1024);
        (cpu, hwm)
    }

    /// Kills the process at once (SIGKILL) and reaps it; its namespace and veth go with it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = run("ip", &["link", "del", &self.host_if]);
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` before killing it.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = run("ip", &["link", "del", &self.host_if]);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for NetNode {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Clock ticks per second for `/proc/<pid>/stat` (100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    100.0
}

/// Moves the calling thread into `pid`'s network namespace (for a reader that connects to
/// its node's loopback).
pub fn enter_netns_of(pid: u32) -> anyhow::Result<()> {
    let f = std::fs::File::open(format!("/proc/{pid}/ns/net")).with_context(|| format!("no namespace for {pid}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    Ok(())
}
