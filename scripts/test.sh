#!/usr/bin/env bash
# The whole gate, as CI runs it: install what is missing (scripts/setup.sh), then rustfmt,
# clippy with warnings as errors, and every test in the workspace, including CID parity with a
# real Kubo and the JavaScript UnixFS importer (testnet/tests/it/kubo.rs), then every fuzz
# target for a bounded time (scripts/fuzz.sh --ci).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p cairn-merkle`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
# RocksDB's C++, compiled once per machine (about 20 minutes the first time, then nothing).
bash scripts/rocksdb.sh >/dev/null

source scripts/env.sh
# Old executables and archives out of the target directories first: a full disk fails the link.
bash scripts/prune.sh
# A one-shot build (CI's clean clone) gains nothing from incremental state, and it is large.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi
# Where the parity tests find their references (testnet/src/reference.rs).
export CAIRN_KUBO_PY=${CAIRN_KUBO_PY:-$CAIRN_CACHE/venv/bin/python}
export CAIRN_JS_DIR=${CAIRN_JS_DIR:-$PWD/testnet/js}

if [ ! -d "$CARGO_TARGET_DIR/debug/deps" ]; then
    echo "test.sh: first build in $CARGO_TARGET_DIR: compiling every Rust dependency takes about 15 minutes on 2 cores; the tests then take about 10"
fi
echo "== cargo fmt --all --check"
cargo fmt --all --check
echo "== cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test --workspace --locked"
cargo test --workspace --locked "$@"
# Only the whole gate fuzzes; `scripts/test.sh -p cairn-merkle` and the like do not.
if [ $# -eq 0 ]; then
    echo "== scripts/fuzz.sh --ci (each fuzz target for 20 s over its committed corpus; fuzz/README.md)"
    bash scripts/fuzz.sh --ci
fi
