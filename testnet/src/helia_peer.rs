//! A live Helia node for wire-interop tests: `testnet/js/helia/helia_peer.mjs` on Node.js 22,
//! driven over JSON lines ([`crate::line_peer`]).
//!
//! Helia 7 with js-libp2p 3: TCP, Noise and yamux (what Helia uses under Node.js), identify and
//! Bitswap, blocks in memory. It listens on `127.0.0.1` only, has no bootstrap peers, no peer
//! discovery, no delegated routing and no HTTP gateways, and dials only what it is told to.
//! [`HeliaPeer::start`] spawns it as a **plain child process**: the caller must already be in a
//! network namespace that has only loopback (see [`crate::netns`]).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::line_peer::{string, utf8_abs, LinePeer, Setup};
use crate::reference::{helia_dir, helia_missing, node22};

/// How long a call that touches the network may take by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Time beyond a call's own timeout (which the script enforces) for its answer to come back.
const GRACE: Duration = Duration::from_secs(10);

/// A running Helia node in a child process; dropping it kills the process.
#[derive(Debug)]
pub struct HeliaPeer {
    line: LinePeer,
}

impl HeliaPeer {
    /// Starts `helia_peer.mjs` and waits for it to listen.
    pub fn start() -> Result<HeliaPeer> {
        if let Some(why) = helia_missing() {
            bail!("the Helia peer cannot run here: {why}");
        }
        let script = helia_dir().join("helia_peer.mjs");
        let child = Command::new(node22())
            .arg(&script)
            .current_dir(helia_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} {}", node22().display(), script.display()))?;
        let setup = Setup {
            name: "helia_peer.mjs",
            who: "Helia",
            log: None,
            dir: None,
            start_timeout: Duration::from_secs(60),
        };
        Ok(HeliaPeer { line: LinePeer::owned(child, setup)? })
    }

    /// The peer ID (`12D3Koo…`).
    pub fn peer_id(&self) -> &str {
        self.line.id()
    }

    /// The listen addresses, each ending in `/p2p/<peer id>`.
    pub fn p2p_addrs(&self) -> &[String] {
        self.line.addrs()
    }

    /// Dials `addr` (ending in `/p2p/<peer id>`).
    pub fn dial(&mut self, addr: &str) -> Result<()> {
        let ms = CALL_TIMEOUT.as_millis() as u64;
        self.line.call(json!({"cmd": "dial", "addr": addr, "timeout_ms": ms}), CALL_TIMEOUT + GRACE)?;
        Ok(())
    }

    /// Imports a file or a directory tree with Helia's defaults (CIDv1, raw leaves, 1 MiB
    /// chunks); returns the root CID.
    pub fn add(&mut self, path: &Path) -> Result<String> {
        let path = utf8_abs(path)?;
        string(self.line.call(json!({"cmd": "add", "path": path}), CALL_TIMEOUT)?, "Helia add")
    }

    /// Fetches the file or tree at `cid` over Bitswap and writes it at `out` (which must not
    /// exist); returns the file bytes written.
    pub fn get(&mut self, cid: &str, out: &Path, timeout: Duration) -> Result<u64> {
        let out = utf8_abs(out)?;
        let ms = timeout.as_millis() as u64;
        let v = self.line.call(json!({"cmd": "get", "cid": cid, "out": out, "timeout_ms": ms}), timeout + GRACE)?;
        v.as_u64().with_context(|| format!("Helia get: not a byte count: {v}"))
    }

    /// Stops the node and waits for the process to exit.
    pub fn shutdown(mut self) -> Result<()> {
        self.line.call(json!({"cmd": "stop"}), CALL_TIMEOUT)?;
        self.line.wait_exit(Duration::from_secs(20))
    }
}
