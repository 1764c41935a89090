//! Runs one test in a private network namespace that has nothing but loopback, so that
//! reference peers ([`crate::kubo_daemon`], [`crate::helia_peer`]) and the Cairn nodes the test runs in-process share one
//! `127.0.0.1` and can reach nothing else.
//!
//! The test re-executes its own binary, filtered to itself, under
//! `unshare -n sh -c 'ip link set lo up && exec "$0" "$@"'`, with `CAIRN_NETNS=1` set; the copy
//! inside sees the variable and runs the body:
//!
//! ```no_run
//! use cairn_testnet::netns;
//!
//! #[test]
//! fn kubo_connects_to_cairn() {
//!     // The name as `cargo test -- --list` prints it (module path without the crate).
//!     if let Some(status) = netns::in_private_netns("kubo_net::kubo_connects_to_cairn") {
//!         assert!(status.success(), "the test failed inside its namespace: {status}");
//!         return;
//!     }
//!     // Here: inside the namespace. Start Kubo peers and Cairn swarms.
//! }
//! ```
//!
//! [`enter_private_netns`] is the same with the assertion built in.
//!
//! `unshare -n` needs root (CAP_SYS_ADMIN). Without it we add `-r` (a user namespace in which
//! we are root), as [`crate::reference`] does for its Kubo runs; that works where the kernel lets
//! unprivileged users make user namespaces. The child's output goes straight to ours.

use std::ffi::OsString;
use std::process::{Command, ExitStatus};

use crate::reference::is_root;

/// Set (to `1`) in the re-executed test, which is inside the namespace.
pub const NETNS_ENV: &str = "CAIRN_NETNS";

/// A file the copy inside creates, so the outside can tell that the filter matched a test.
const MARK_ENV: &str = "CAIRN_NETNS_MARK";

/// Whether this process is the copy inside a namespace (`CAIRN_NETNS` is set).
pub fn is_inside() -> bool {
    std::env::var_os(NETNS_ENV).is_some_and(|v| !v.is_empty())
}

/// Outside (`CAIRN_NETNS` unset): re-runs the test `test_name` of the current test binary in a
/// new loopback-only network namespace as
/// `unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' <exe> <test_name> --exact
/// --nocapture --test-threads=1` with `CAIRN_NETNS=1`, waits for it and returns
/// `Some(its exit status)`: the caller asserts success and returns.
///
/// Inside (`CAIRN_NETNS` set): checks that the namespace really has only `lo` and returns
/// `None`: the caller runs the test body.
///
/// `test_name` is the test's path as `cargo test -- --list` prints it, e.g.
/// `kubo_net::connect_tcp` in the `it` binary.
///
/// # Panics
///
/// If `unshare` cannot be started, if `test_name` matched no test in the binary (the child ran
/// nothing), or if `CAIRN_NETNS` is set in a namespace that has interfaces besides loopback.
pub fn in_private_netns(test_name: &str) -> Option<ExitStatus> {
    if is_inside() {
        assert_only_loopback();
        if let Some(mark) = std::env::var_os(MARK_ENV) {
            // Best effort: only the outside's "did it run?" check depends on it.
            std::fs::write(mark, test_name).ok();
        }
        return None;
    }
    let exe = std::env::current_exe().expect("cannot find the current test binary");
    let mark_dir = tempfile::Builder::new()
        .prefix("cairn-netns-")
        .tempdir()
        .expect("cannot make a temporary directory for the namespace marker");
    let mark = mark_dir.path().join("entered");
    let mut cmd = unshare(&exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"]);
    cmd.env(MARK_ENV, OsString::from(mark.as_os_str()));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run `unshare -n` for {test_name} (is util-linux installed?): {e}"));
    assert!(
        !status.success() || mark.exists(),
        "re-running {} with filter {test_name:?} ran no test: pass the full name that \
         `cargo test -- --list` prints",
        exe.display()
    );
    Some(status)
}

/// For programs such as the benchmarks: outside, re-runs the current program with its own
/// arguments in a new loopback-only namespace, waits, and returns `Some(its exit status)`;
/// inside, checks that the namespace has only `lo` and returns `None` (run the body).
///
/// # Panics
///
/// If `unshare` cannot be started, or if `CAIRN_NETNS` is set in a namespace that has
/// interfaces besides loopback.
pub fn rerun_in_private_netns() -> Option<ExitStatus> {
    if is_inside() {
        assert_only_loopback();
        return None;
    }
    let exe = std::env::current_exe().expect("cannot find the current program");
    let status = unshare(&exe)
        .args(std::env::args_os().skip(1))
        .status()
        .unwrap_or_else(|e| panic!("cannot run `unshare -n` (is util-linux installed?): {e}"));
    Some(status)
}

/// `unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' <exe>` with `CAIRN_NETNS=1` (and
/// `-r` when not root); the caller adds the program's arguments.
fn unshare(exe: &std::path::Path) -> Command {
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("-r");
    }
    cmd.args(["-n", "sh", "-c", r#"ip link set lo up && exec "$0" "$@""#]);
    cmd.arg(exe).env(NETNS_ENV, "1");
    cmd
}

/// Panics unless this network namespace has loopback only.
fn assert_only_loopback() {
    let ifaces = interfaces();
    assert!(ifaces == ["lo"], "{NETNS_ENV} is set, but this network namespace has interfaces {ifaces:?}, not only lo");
}

/// [`in_private_netns`] with the check built in: returns `true` when the caller is inside the
/// namespace and should run the test body, `false` when the body already ran (and passed) in
/// the re-executed copy.
///
/// # Panics
///
/// When the copy in the namespace failed, and as [`in_private_netns`].
pub fn enter_private_netns(test_name: &str) -> bool {
    match in_private_netns(test_name) {
        None => true,
        Some(status) => {
            assert!(status.success(), "{test_name} failed in its network namespace ({status})");
            false
        }
    }
}

/// The interfaces of this process's network namespace (`/proc/self/net/dev` is per namespace;
/// `/sys/class/net` is not).
fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/self/net/dev")
        .map(|s| s.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_owned()).collect())
        .unwrap_or_default()
}
