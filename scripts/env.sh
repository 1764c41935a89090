# Sourced by the other scripts: where builds go and how C++ is compiled.
#
# RocksDB is compiled from C++ source by librocksdb-sys's build script, and cargo runs that
# script anew for each distinct shape of build (test vs. clippy vs. release), which on two cores
# costs about half an hour each. ccache (installed by setup.sh) makes every shape after the first
# a cache hit. The cache lives under ~/.cache, outside the clone, like the target directory.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}
export CAIRN_CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
if command -v ccache >/dev/null 2>&1 && [ -z "${CAIRN_NO_CCACHE:-}" ]; then
    export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
    export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
    # Same compile lines from different OUT_DIRs must hit: the sources live in cargo's registry.
    export CCACHE_NOHASHDIR=1
    export CC=${CC:-ccache cc} CXX=${CXX:-ccache c++}
fi
