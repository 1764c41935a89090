//! A reference peer in a child process, driven over JSON lines on its stdin and stdout: the
//! machinery under [`crate::helia_peer`] (`helia_peer.mjs`).
//!
//! The protocol: one ready line `{"ready": true, "id", "addrs"}` (or
//! `{"ready": false, "error"}`), then one `{"ok": ...}` or `{"error": ...}` line per
//! `{"cmd": ...}` line. Every wait is bounded. An answer that does not come in time, or an
//! `{"error": "timeout"}`, kills the process, since the call behind it may not be stoppable;
//! every later call on the peer then fails at once.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// How much of the child's stderr is kept for error messages.
const STDERR_TAIL: usize = 16 * 1024;

/// How much of the end of the peer's log file goes into error messages.
const LOG_TAIL: usize = 4 * 1024;

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

/// A child process that answers JSON lines. Dropping it kills the process (and then deletes
/// the directory it was given).
pub struct LinePeer {
    /// What the errors call it, such as `helia_peer.mjs`.
    name: &'static str,
    /// Who answers, in error messages, such as `Helia`.
    who: &'static str,
    /// The process, when this peer started it.
    child: Option<Child>,
    pid: u32,
    stdin: ChildStdin,
    /// Lines of the child's stdout, from a reader thread; disconnected at end of file.
    lines: Receiver<std::io::Result<String>>,
    /// The last bytes of the child's stderr.
    stderr: Arc<Mutex<VecDeque<u8>>>,
    /// The peer ID and listen addresses from the ready line.
    id: String,
    addrs: Vec<String>,
    /// Why the peer is unusable (a timeout killed it, or it exited), if it is.
    dead: Option<String>,
    /// A log file of the peer's own, whose end goes into error messages.
    log: Option<PathBuf>,
    /// The peer's working directory, deleted after the child is gone (fields drop after
    /// `Drop::drop`).
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for LinePeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinePeer")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("id", &self.id)
            .field("addrs", &self.addrs)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

/// How a [`LinePeer`] is named, where its log is, and what it owns.
#[derive(Debug)]
pub struct Setup {
    /// What the errors call the process, such as `helia_peer.mjs`.
    pub name: &'static str,
    /// Who answers, in error messages, such as `Helia`.
    pub who: &'static str,
    /// The peer's own log file, if it has one.
    pub log: Option<PathBuf>,
    /// A directory to delete once the process is gone.
    pub dir: Option<tempfile::TempDir>,
    /// How long to wait for the ready line.
    pub start_timeout: Duration,
}

impl LinePeer {
    /// Takes over `child` (its stdin and stdout must be pipes; its stderr is kept when it is
    /// one), which it kills and reaps when dropped, and waits for the ready line.
    pub fn owned(mut child: Child, setup: Setup) -> Result<LinePeer> {
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let pid = child.id();
        LinePeer::from_pipes(Some(child), pid, pipes, setup)
    }

    fn from_pipes(
        mut child: Option<Child>,
        pid: u32,
        pipes: (Option<ChildStdin>, Option<ChildStdout>, Option<ChildStderr>),
        setup: Setup,
    ) -> Result<LinePeer> {
        let (Some(stdin), Some(stdout), stderr) = pipes else {
            if let Some(c) = child.as_mut() {
                c.kill().ok();
                c.wait().ok();
            }
            bail!("{}: its stdin and stdout must be pipes", setup.name);
        };
        let lines = read_lines(stdout)?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = stderr {
            keep_stderr(stderr, &tail)?;
        }
        let mut peer = LinePeer {
            name: setup.name,
            who: setup.who,
            child,
            pid,
            stdin,
            lines,
            stderr: tail,
            id: String::new(),
            addrs: Vec::new(),
            dead: None,
            log: setup.log,
            _dir: setup.dir,
        };
        let line = peer.read_line(setup.start_timeout, "the ready line")?;
        let ready: Ready =
            serde_json::from_str(&line).with_context(|| format!("{}: bad ready line {line:?}", peer.name))?;
        if !ready.ready {
            let why = ready.error.unwrap_or_default();
            peer.kill(format!("did not start: {why}"));
            bail!("{} did not start: {why}{}", peer.name, peer.stderr_note());
        }
        peer.id = ready.id;
        peer.addrs = ready.addrs;
        Ok(peer)
    }

    /// The peer ID from the ready line.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The listen addresses from the ready line.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends one request and returns its `ok` value, waiting at most `wait` for it.
    pub fn call(&mut self, req: Value, wait: Duration) -> Result<Value> {
        if let Some(why) = &self.dead {
            bail!("the {} peer is gone ({why})", self.who);
        }
        let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("?").to_owned();
        let mut line = req.to_string();
        line.push('\n');
        if let Err(e) = self.stdin.write_all(line.as_bytes()).and_then(|()| self.stdin.flush()) {
            self.kill(format!("stdin closed: {e}"));
            bail!("{}: cannot send {cmd}: {e}{}", self.name, self.stderr_note());
        }
        let answer = self.read_line(wait, &cmd)?;
        let v: Value =
            serde_json::from_str(&answer).with_context(|| format!("{}: bad answer to {cmd}: {answer:?}", self.name))?;
        if let Some(ok) = v.get("ok") {
            return Ok(ok.clone());
        }
        match v.get("error").and_then(Value::as_str) {
            Some("timeout") => {
                self.kill(format!("{cmd} timed out"));
                bail!("{} {cmd} timed out (the process was killed)", self.who)
            }
            Some(e) => bail!("{} {cmd}: {e}", self.who),
            None => bail!("{}: answer to {cmd} has neither ok nor error: {answer}", self.name),
        }
    }

    /// Waits up to `wait` for the process this peer started to exit, after a command that
    /// ends it; fails if it does not, or exits with an error.
    pub fn wait_exit(&mut self, wait: Duration) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            // An attached process: its owner waits for it.
            self.dead = Some("shut down".into());
            return Ok(());
        };
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                self.dead = Some("shut down".into());
                if !status.success() {
                    bail!("{} exited with {status}{}", self.name, self.stderr_note());
                }
                return Ok(());
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill("did not exit".into());
        bail!("{} did not exit within {wait:?} (it is killed now)", self.name)
    }

    /// The next stdout line, waiting at most `wait`; on timeout or end of file the peer is dead.
    fn read_line(&mut self, wait: Duration, what: &str) -> Result<String> {
        match self.lines.recv_timeout(wait) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => {
                self.kill(format!("stdout error: {e}"));
                bail!("{}: cannot read {what}: {e}{}", self.name, self.stderr_note())
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill(format!("no answer to {what} within {wait:?}"));
                bail!("{}: no answer to {what} within {wait:?} (killed){}", self.name, self.stderr_note())
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
                bail!("{} exited ({status}) before answering {what}{}", self.name, self.stderr_note())
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

    /// The ends of the child's stderr and of its log, for error messages (empty if both are).
    pub fn stderr_note(&self) -> String {
        let mut note = String::new();
        let tail = self.stderr.lock().map(|t| t.iter().copied().collect::<Vec<u8>>()).unwrap_or_default();
        let tail = String::from_utf8_lossy(&tail);
        if !tail.trim().is_empty() {
            note.push_str(&format!("; its stderr ends with:\n{}", tail.trim_end()));
        }
        if let Some(Ok(log)) = self.log.as_ref().map(std::fs::read) {
            let log = String::from_utf8_lossy(&log[log.len().saturating_sub(LOG_TAIL)..]);
            if !log.trim().is_empty() {
                note.push_str(&format!("\nits log ends with:\n{}", log.trim_end()));
            }
        }
        note
    }
}

impl Drop for LinePeer {
    fn drop(&mut self) {
        // Kill (harmless if it already exited) and reap; the directory goes after this.
        if let Some(c) = self.child.as_mut() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// The lines of `stdout`, read by a thread of their own.
fn read_lines(stdout: ChildStdout) -> Result<Receiver<std::io::Result<String>>> {
    let (tx, lines) = mpsc::channel();
    thread::Builder::new()
        .name("line-peer-stdout".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let stop = line.is_err();
                if tx.send(line).is_err() || stop {
                    break;
                }
            }
        })
        .context("cannot start the stdout reader")?;
    Ok(lines)
}

/// Keeps the last [`STDERR_TAIL`] bytes of `stderr` in `tail`, from a thread of its own.
fn keep_stderr(mut stderr: ChildStderr, tail: &Arc<Mutex<VecDeque<u8>>>) -> Result<()> {
    let tail = Arc::clone(tail);
    thread::Builder::new()
        .name("line-peer-stderr".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let Ok(mut t) = tail.lock() else { return };
                        t.extend(&buf[..n]);
                        let excess = t.len().saturating_sub(STDERR_TAIL);
                        t.drain(..excess);
                    }
                }
            }
        })
        .context("cannot start the stderr reader")?;
    Ok(())
}

/// `v` as a string; `what` names the answer in the error.
pub fn string(v: Value, what: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        other => bail!("{what}: expected a string, got {other}"),
    }
}

/// `path` made absolute, as UTF-8 (the scripts take paths as JSON strings).
pub fn utf8_abs(path: &std::path::Path) -> Result<String> {
    let abs = std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))?;
    abs.into_os_string().into_string().map_err(|p| anyhow!("{} is not UTF-8", std::path::Path::new(&p).display()))
}
