#!/usr/bin/env bash
# Cairn beside Kubo 0.43.1 in one run (testnet/scenarios/versus-kubo.toml): the 16 MiB flash
# crowd with N = 1, 10, 25, 50 readers, as Cairn with its HTTP origin, as Cairn with peers
# only, and with every node a Kubo peer; results.json and scaling.svg in OUT. Installs the
# Kubo reference first if it is missing (scripts/setup.sh). About 15 minutes on 2 cores.
#
#   bash testnet/bench/versus-kubo.sh [OUT]          (default: results/versus-kubo)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/setup.sh
source scripts/env.sh
out=${1:-results/versus-kubo}
cargo build --release --locked -p cairn-cli -p cairn-testnet --bins
"$CARGO_TARGET_DIR/release/cairn-testnet" run testnet/scenarios/versus-kubo.toml --out "$out"
