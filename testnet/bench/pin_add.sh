#!/usr/bin/env bash
# `cairn pin add` of a file only a connected peer holds: two daemons on loopback, the file
# added on one, pinned through the other's daemon (which fetches the whole DAG over Bitswap).
#
#   testnet/bench/pin_add.sh [SIZE_MIB] [RUNS]
#
# Builds the release binary unless CAIRN names one. Everything listens on 127.0.0.1 only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SIZE_MIB=${1:-64}
RUNS=${2:-3}
source "$ROOT/scripts/env.sh"
if [ -z "${CAIRN:-}" ]; then
    cargo build --release --locked -q -p cairn-cli --manifest-path "$ROOT/Cargo.toml"
    CAIRN=$CARGO_TARGET_DIR/release/cairn
fi
ready() { grep -q "Daemon is ready" "$1" 2>/dev/null; }
for run in $(seq "$RUNS"); do
    T=$(mktemp -d)
    trap 'kill $PA $PB 2>/dev/null || true; rm -rf "$T"' EXIT
    "$CAIRN" --repo "$T/a" init --profile test >/dev/null
    "$CAIRN" --repo "$T/b" init --profile test >/dev/null
    head -c $((SIZE_MIB << 20)) /dev/urandom >"$T/f.bin"
    CID=$("$CAIRN" --repo "$T/a" add -Q "$T/f.bin")
    "$CAIRN" --repo "$T/a" daemon >"$T/a.out" 2>&1 &
    PA=$!
    "$CAIRN" --repo "$T/b" daemon >"$T/b.out" 2>&1 &
    PB=$!
    until ready "$T/a.out" && ready "$T/b.out"; do sleep 0.1; done
    ADDR=$(sed -n 's|^Swarm listening on \(/ip4/127.0.0.1/tcp/.*\)|\1|p' "$T/a.out" | head -1)
    "$CAIRN" --repo "$T/b" swarm connect "$ADDR" >/dev/null
    START=$(date +%s.%N)
    "$CAIRN" --repo "$T/b" pin add "$CID" >/dev/null
    END=$(date +%s.%N)
    echo "run $run: pin add of $SIZE_MIB MiB from a peer: $(echo "$END - $START" | bc) s"
    kill $PA $PB
    wait $PA $PB 2>/dev/null || true
    rm -rf "$T"
    trap - EXIT
done
