# Sourced by the other scripts: where builds go and how C++ is compiled.
#
# RocksDB's C++ is compiled once per machine by scripts/rocksdb.sh, and every build shape (test,
# clippy, release, fuzz) links that archive: librocksdb-sys's build script would otherwise
# compile it anew for each, about 20 minutes on 2 cores apiece. ccache (installed by setup.sh)
# serves the rest of the C and C++ (lz4, a new RocksDB version's unchanged files). Caches live
# under ~/.cache, outside the clone, like the target directory.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}
export CAIRN_CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
if command -v ccache >/dev/null 2>&1 && [ -z "${CAIRN_NO_CCACHE:-}" ]; then
    export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
    export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
    # Same compile lines from different OUT_DIRs must hit: the sources live in cargo's registry.
    export CCACHE_NOHASHDIR=1
    export CC=${CC:-ccache cc} CXX=${CXX:-ccache c++}
fi

# The prebuilt RocksDB, keyed by librocksdb-sys's version in Cargo.lock and the `rocksdb` line
# of Cargo.toml (its features change the compile). Used only once scripts/rocksdb.sh made it.
_cairn_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN_ROCKSDB_VERSION=$(grep -A1 '^name = "librocksdb-sys"$' "$_cairn_root/Cargo.lock" | sed -n 's/^version = "\(.*\)"$/\1/p')
# The archive is kept without its debug info (1.2 GB of 1.24): every test, binary and fuzz target
# links it, and each would carry that gigabyte. RocksDB's symbols stay, enough for a profiler.
CAIRN_ROCKSDB_DIR=$CAIRN_CACHE/rocksdb/$CAIRN_ROCKSDB_VERSION-$(grep '^rocksdb = ' "$_cairn_root/Cargo.toml" | cksum | cut -d' ' -f1)-nodebug
export CAIRN_ROCKSDB_VERSION CAIRN_ROCKSDB_DIR
if [ -f "$CAIRN_ROCKSDB_DIR/librocksdb.a" ] && [ -z "${CAIRN_OWN_ROCKSDB:-}" ]; then
    export ROCKSDB_LIB_DIR=$CAIRN_ROCKSDB_DIR ROCKSDB_STATIC=1
fi
unset _cairn_root
