//! Seed inputs: each target knows what its valid and nasty inputs look like, and writes them
//! when asked.
//!
//! A target calls [`write_if_asked`] from its `init` block. When the environment variable
//! `CAIRN_FUZZ_SEEDS` names a folder, the seeds are written there, one file each (named
//! `seed-<name>`), and the process exits before fuzzing starts; otherwise nothing happens.
//! `scripts/fuzz.sh --seed` runs every target this way into `fuzz/corpus/<target>/`. Seeds
//! are built by the same instrumented binary that fuzzes, so making them costs no extra build.

use std::path::Path;

/// The variable naming the folder to write seeds into.
pub const SEEDS_VAR: &str = "CAIRN_FUZZ_SEEDS";

/// Writes `make()`'s seeds into `$CAIRN_FUZZ_SEEDS` and exits, when it is set.
pub fn write_if_asked(make: impl FnOnce() -> Vec<(String, Vec<u8>)>) {
    let Some(dir) = std::env::var_os(SEEDS_VAR) else {
        return;
    };
    let dir = Path::new(&dir);
    if let Err(e) = write_all(dir, make()) {
        eprintln!("cannot write seeds to {}: {e}", dir.display());
        std::process::exit(1);
    }
    std::process::exit(0);
}

fn write_all(dir: &Path, seeds: Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in seeds {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        std::fs::write(dir.join(format!("seed-{safe}")), bytes)?;
    }
    Ok(())
}

/// A seed from a name and bytes.
pub fn seed(name: &str, bytes: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), bytes.into())
}
