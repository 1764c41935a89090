//! What Cairn's fuzz targets share: a heap that counts (so a target can assert that decoding
//! hostile bytes stays within a memory budget), a reader that turns fuzz bytes into choices,
//! the DAG script that builds a map of hostile blocks for the DAG-level target, and the
//! seed writer that fills `fuzz/corpus/`.
//!
//! Nothing here depends on `cairn-node` or `cairn-gateway`, so the targets that need only
//! `cairn-merkle` do not link RocksDB.

pub mod dag;
pub mod heap;
pub mod input;
pub mod seeds;

pub use heap::{assert_heap_within, peak_heap_during};
pub use input::Input;
