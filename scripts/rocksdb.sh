#!/usr/bin/env bash
# Compiles RocksDB's C++ once per machine, for every shape of build to link.
#
# librocksdb-sys's build script compiles RocksDB (about 20 minutes on 2 cores) again for each
# build shape that differs in flags: test, release, clippy, the fuzz build. Instead this script
# builds librocksdb-sys alone, once, into its own target directory, and keeps the archive at
#   $CAIRN_CACHE/rocksdb/<librocksdb-sys version>-<features>-nodebug/librocksdb.a
# (without its debug info: see scripts/env.sh)
# scripts/env.sh then points every build at it (ROCKSDB_LIB_DIR, ROCKSDB_STATIC), so the
# build script links it instead of compiling. A new librocksdb-sys version or a change to the
# `rocksdb` line in Cargo.toml makes a new directory, built once again. Prints that directory.
# Quiet when the archive is there; when not, says what it does and shows progress.
# CAIRN_OWN_ROCKSDB=1 opts out: nothing is built here, and each build compiles its own.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/env.sh"

# CAIRN_OWN_ROCKSDB=1: every build compiles RocksDB itself, as librocksdb-sys does by default.
[ -z "${CAIRN_OWN_ROCKSDB:-}" ] || exit 0
dir=$CAIRN_ROCKSDB_DIR
# Copies an archive without its debug info (objcopy, from binutils beside the linker).
strip_into() {
    if command -v objcopy >/dev/null 2>&1; then
        objcopy --strip-debug "$1" "$2"
    else
        echo "rocksdb.sh: no objcopy; keeping RocksDB's debug info (every binary is about 1 GB larger)" >&2
        cp "$1" "$2"
    fi
}
if [ -f "$dir/librocksdb.a" ]; then
    echo "$dir"
    exit 0
fi
mkdir -p "$CAIRN_CACHE/rocksdb"
# One build at a time per machine: a second caller waits for the first and then finds it.
exec 9>"$CAIRN_CACHE/rocksdb/.lock"
flock 9
if [ -f "$dir/librocksdb.a" ]; then
    echo "$dir"
    exit 0
fi

# The same archive with its debug info, as scripts before this one kept it: strip a copy.
full=${dir%-nodebug}
if [ -f "$full/librocksdb.a" ]; then
    echo "rocksdb.sh: dropping the debug info of $full/librocksdb.a (seconds)" >&2
    mkdir -p "$dir.new"
    strip_into "$full/librocksdb.a" "$dir.new/librocksdb.a"
    rm -rf "$dir" "$full"
    mv "$dir.new" "$dir"
    echo "$dir"
    exit 0
fi

features=$(sed -n 's/^rocksdb = .*features = \[\(.*\)\].*/\1/p' "$ROOT/Cargo.toml" | tr -d '" ')
build_dir=$CAIRN_CACHE/rocksdb/build
log=$CAIRN_CACHE/rocksdb/build.log
echo "rocksdb.sh: compiling RocksDB's C++ (librocksdb-sys $CAIRN_ROCKSDB_VERSION, features: ${features:-none}) once for this machine; about 20 minutes on 2 cores, far less with a warm ccache. Every build shape links the result." >&2
start=$(date +%s)
(
    while sleep 120; do
        echo "rocksdb.sh: still compiling RocksDB, $(( ($(date +%s) - start) / 60 )) minutes so far (log: $log)" >&2
    done
) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
# The workspace's librocksdb-sys with its own features, in a target directory of its own; no
# prebuilt archive may be in play for this one build.
if ! env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_TARGET_DIR="$build_dir" \
    cargo build --release --locked -v --manifest-path "$ROOT/Cargo.toml" -p librocksdb-sys \
    >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "rocksdb.sh: error: compiling RocksDB failed; the whole log is $log" >&2
    exit 1
fi
built=$(ls -t "$build_dir"/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1)
[ -n "$built" ] || { echo "rocksdb.sh: error: the build made no librocksdb.a (log: $log)" >&2; exit 1; }
# `-p librocksdb-sys` builds it with the features the workspace gives it (cargo refuses
# --features for a package outside the workspace); check that the compressions reached it,
# by the library calls RocksDB makes only when built with them.
for f in ${features//,/ }; do
    case $f in
        lz4) sym=LZ4_compress_fast_continue ;;
        zstd) sym=ZSTD_compress ;;
        zlib) sym=deflateInit2_ ;;
        bzip2) sym=BZ2_bzCompress ;;
        snappy) sym=snappy ;;
        *) continue ;;
    esac
    grep -qa "$sym" "$built" ||
        { echo "rocksdb.sh: error: $built was built without $f (log: $log)" >&2; exit 1; }
done
mkdir -p "$dir.new"
strip_into "$built" "$dir.new/librocksdb.a"
rm -rf "$dir"
mv "$dir.new" "$dir"
# The objects (gigabytes) are not needed again: ccache holds them for a later version.
rm -rf "$build_dir"
echo "rocksdb.sh: RocksDB compiled in $(( ($(date +%s) - start) / 60 )) minutes: $dir" >&2
echo "$dir"
