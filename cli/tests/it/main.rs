//! The one integration-test binary of the `cairn` command: each test runs the binary.

mod add;
mod browser;
mod commands;
mod crash;
mod daemon;
mod disk_full;
mod follow;
pub mod integrity;
mod manifest;
mod online;
mod origin;
mod pinning;
pub mod scrub;

use assert_cmd::Command;

/// The `cairn` binary with a repo path that must never be touched by offline commands.
pub fn cairn() -> Command {
    let mut cmd = Command::cargo_bin("cairn").expect("cairn binary");
    cmd.env("CAIRN_PATH", "/nonexistent/cairn-test-repo");
    cmd
}
