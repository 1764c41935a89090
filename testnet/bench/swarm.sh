#!/usr/bin/env bash
# Every large testnet scenario, one after another, into one results directory (results.json
# with every run, scaling.svg, one completion plot per run), from a release build. About 25
# minutes on 2 cores, most of it the origin-only baseline.
#
#   bash testnet/bench/swarm.sh [OUT]          (default: results/testnet)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/env.sh
out=${1:-results/testnet}
cargo build --release --locked -p cairn-cli -p cairn-testnet --bins
all=$(mktemp --suffix=.toml)
trap 'rm -f "$all"' EXIT
for f in flash-crowd flash-crowd-8mbit origin-only streaming churn rare hostile; do
  cat "testnet/scenarios/$f.toml" >>"$all"
done
"$CARGO_TARGET_DIR/release/cairn-testnet" run "$all" --out "$out"
