#!/usr/bin/env bash
# Builds the `cairn` binary (release) and runs it with the given arguments.
# With none, it hashes Cairn's own data-model crate as `ipfs add -n -r` would, printing one
# `added <cid> <path>` line per file and directory, the same CIDs Kubo gives.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bash "$ROOT/scripts/setup.sh"

source "$ROOT/scripts/env.sh"
cargo build --release -p cairn-cli --locked --quiet --manifest-path "$ROOT/Cargo.toml"

if [ $# -eq 0 ]; then
    set -- add --only-hash -r "$ROOT/merkle"
fi
exec "$CARGO_TARGET_DIR/release/cairn" "$@"
