#!/usr/bin/env bash
# Builds the `cairn` binary (release) and runs it with the given arguments.
# With none, it hashes Cairn's own data-model crate as `ipfs add -n -r` would, printing one
# `added <cid> <path>` line per file and directory, the same CIDs Kubo gives.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bash "$ROOT/scripts/setup.sh"
# RocksDB's C++, compiled once per machine (about 20 minutes the first time, then nothing).
bash "$ROOT/scripts/rocksdb.sh" >/dev/null

source "$ROOT/scripts/env.sh"
# Cargo's own lines go to stderr, so the command's output stays cairn's alone.
if [ ! -x "$CARGO_TARGET_DIR/release/cairn" ]; then
    echo "run.sh: building cairn (release) into $CARGO_TARGET_DIR; the first build compiles every Rust dependency and takes about 15 minutes on 2 cores, later ones seconds to minutes" >&2
fi
cargo build --release -p cairn-cli --locked --manifest-path "$ROOT/Cargo.toml"

if [ $# -eq 0 ]; then
    set -- add --only-hash -r "$ROOT/merkle"
fi
# The binary runs without its debug info (hundreds of MB, most of it RocksDB's C++): a copy
# stripped of it goes to $CAIRN_CACHE/bin/cairn, and the debug info to cairn.debug beside it,
# which gdb and perf find through the copy's debug link. Redone only when the build is newer.
built=$CARGO_TARGET_DIR/release/cairn
bin=$CAIRN_CACHE/bin
if [ ! -x "$bin/cairn" ] || [ "$built" -nt "$bin/cairn" ]; then
    mkdir -p "$bin"
    objcopy --only-keep-debug "$built" "$bin/cairn.debug"
    objcopy --strip-debug --add-gnu-debuglink="$bin/cairn.debug" "$built" "$bin/cairn.new"
    mv "$bin/cairn.new" "$bin/cairn"
fi
exec "$bin/cairn" "$@"
