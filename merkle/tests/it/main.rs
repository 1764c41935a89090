//! The one integration-test binary of `cairn-merkle`; each module is one area.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod car;
mod chunker;
mod codec_fixtures;
mod export;
mod hamt;
mod import;

/// Test data from other projects, committed with its licences (`testnet/fixtures`).
pub fn fixtures() -> std::path::PathBuf {
    // From the environment at run time: the build cache is shared between clones, and a test
    // binary built in another clone must not look in that clone's directory.
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
    here.join("../testnet/fixtures")
}
