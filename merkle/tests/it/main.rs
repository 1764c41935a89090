//! The one integration-test binary of `cairn-merkle`; each module is one area.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod car;
mod chunker;
mod codec_fixtures;
mod export;
mod hamt;
mod import;

/// The shared fixtures folder beside the project (`../shared/fixtures`).
pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}
