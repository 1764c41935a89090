#!/usr/bin/env bash
# Fuzzes Cairn's decoders of untrusted bytes: builds the cargo-fuzz targets in fuzz/ (libFuzzer,
# on the stable toolchain: no sanitizer, `-s none`; the targets check memory themselves) and
# runs each over its committed corpus, fuzz/corpus/<target>/, plus fuzz/regressions/<target>/.
# What each target checks: fuzz/README.md.
#
#   scripts/fuzz.sh [--ci] [--merge] [--jobs N] [SECONDS_PER_TARGET] [TARGET...]
#   scripts/fuzz.sh --seed [TARGET...]
#
# - Default: every target for SECONDS_PER_TARGET (60), one after the other. Inputs that reach
#   new code are kept outside the clone, in $CAIRN_CACHE/fuzz-corpus/<target>/, so that runs
#   build on each other; --merge then adds to fuzz/corpus/<target>/ only those that add
#   coverage (commit them if the corpus stays small).
# - --ci: 20 seconds per target unless told otherwise, as many targets at once as there are
#   cores, new inputs thrown away, the same pass/fail: what CI runs (about 2.5 minutes on 2
#   cores, plus the build).
# - --jobs N: N targets at once (default 1, or the number of cores with --ci).
# - --seed: writes every target's seed inputs (valid and hostile examples the targets make
#   themselves) into fuzz/corpus/<target>/.
#
# A crash, a panic, a timeout (10 s for one input) or a memory limit fails the run; the input
# is left in fuzz/artifacts/<target>/ (ignored by git). Reproduce it with
#   $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/crash-...
# and keep it as a regression test in fuzz/regressions/<target>/ once fixed.
#
# Builds go to $CAIRN_FUZZ_TARGET_DIR (default ~/.cache/cairn-fuzz-target), outside the clone.
# The first build compiles every dependency with coverage instrumentation (about 10 minutes on
# 2 cores, RocksDB's C++ aside: see below); later ones
# only what changed. cargo-fuzz is installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# RocksDB's C++ is linked from the archive scripts/rocksdb.sh compiled once for this machine
# (env.sh points ROCKSDB_LIB_DIR at it), when fuzz/Cargo.lock names the same librocksdb-sys:
# cargo fuzz's flags (frame pointers, an explicit target) would otherwise have cc compile all
# of it again, about 25 minutes on 2 cores. RocksDB is not instrumented either way.
# CAIRN_OWN_ROCKSDB=1 compiles it for the fuzz build instead.
bash scripts/rocksdb.sh >/dev/null
source scripts/env.sh
export CARGO_TARGET_DIR=${CAIRN_FUZZ_TARGET_DIR:-$HOME/.cache/cairn-fuzz-target}
fuzz_rocksdb=$(grep -A1 '^name = "librocksdb-sys"$' fuzz/Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if [ "$fuzz_rocksdb" != "$CAIRN_ROCKSDB_VERSION" ]; then
    echo "fuzz.sh: fuzz/Cargo.lock has librocksdb-sys $fuzz_rocksdb, the workspace $CAIRN_ROCKSDB_VERSION: compiling RocksDB for the fuzz build (about 25 minutes on 2 cores)"
    unset ROCKSDB_LIB_DIR ROCKSDB_STATIC
fi
CARGO_FUZZ_VERSION=0.13.2
TRIPLE=x86_64-unknown-linux-gnu
BIN_DIR=$CARGO_TARGET_DIR/$TRIPLE/release

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

ci=0 seed=0 merge=0 seconds="" jobs="" targets=()
all=$(ls fuzz/fuzz_targets/ | sed -n 's/\.rs$//p' | sort)
while [ $# -gt 0 ]; do
    case $1 in
        --ci) ci=1 ;;
        --seed) seed=1 ;;
        --merge) merge=1 ;;
        --jobs) jobs=${2:?--jobs takes a number}; shift ;;
        -h | --help) usage ;;
        *[!0-9]*)
            if ! grep -qx -- "$1" <<<"$all"; then
                echo "fuzz.sh: no target $1 (targets: $(echo $all))" >&2
                exit 2
            fi
            targets+=("$1")
            ;;
        *) seconds=$1 ;;
    esac
    shift
done
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets <<<"$all"
fi
if [ -z "$seconds" ]; then
    seconds=$([ $ci = 1 ] && echo 20 || echo 60)
fi
if [ -z "$jobs" ]; then
    jobs=$([ $ci = 1 ] && nproc || echo 1)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io (about a minute)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

if [ ! -d "$BIN_DIR" ]; then
    echo "fuzz.sh: first fuzz build in $CARGO_TARGET_DIR: every dependency is compiled with coverage instrumentation, about $([ -n "${ROCKSDB_LIB_DIR:-}" ] && echo 10 || echo 35) minutes on 2 cores"
fi
bash scripts/prune.sh "$CARGO_TARGET_DIR"
echo "fuzz.sh: building ${#targets[@]} fuzz target(s) (cargo fuzz build -s none, release with debug assertions)"
start=$SECONDS
# All at once when all are asked for: one cargo invocation links them in parallel.
if [ ${#targets[@]} -eq "$(wc -l <<<"$all")" ]; then
    (cd fuzz && cargo fuzz build -s none)
else
    for t in "${targets[@]}"; do
        (cd fuzz && cargo fuzz build -s none "$t")
    done
fi
echo "fuzz.sh: built in $((SECONDS - start)) s"

if [ $seed = 1 ]; then
    for t in "${targets[@]}"; do
        mkdir -p "fuzz/corpus/$t"
        CAIRN_FUZZ_SEEDS="fuzz/corpus/$t" "$BIN_DIR/$t" >/dev/null 2>&1
        echo "fuzz.sh: $t: $(ls "fuzz/corpus/$t" | grep -c '^seed-') seeds in fuzz/corpus/$t"
    done
    exit 0
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Fuzzes one target; prints one line of results (and the end of the log on a failure), and
# leaves "ok" or "failed" in $logs/<target>.result.
fuzz_one() {
    local t=$1 found log rc new artifact n
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    if [ $ci = 1 ]; then
        found="$logs/$t.new"
    else
        found="$CAIRN_CACHE/fuzz-corpus/$t"
    fi
    mkdir -p "$found"
    local before dirs
    before=$(ls "$found" | wc -l)
    dirs=("$found" "fuzz/corpus/$t")
    if [ -d "fuzz/regressions/$t" ]; then
        dirs+=("fuzz/regressions/$t")
    fi
    log="$logs/$t.log"
    rc=0
    "$BIN_DIR/$t" "${dirs[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    new=$(($(ls "$found" | wc -l) - before))
    if [ $rc = 0 ]; then
        echo ok >"$logs/$t.result"
        printf 'fuzz.sh: %-17s ok: %s execs in %s s (%s/s), %s new inputs, %s MB peak RSS\n' \
            "$t" "$(stat number_of_executed_units)" "$seconds" "$(stat average_exec_per_sec)" "$new" "$(stat peak_rss_mb)"
    else
        echo failed >"$logs/$t.result"
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        {
            echo "fuzz.sh: $t FAILED (libFuzzer exit $rc); input: ${artifact:-none written}; the end of its log:"
            tail -n 40 "$log" | sed 's/^/    /'
        } >"$log.report"
        cat "$log.report"
    fi
    if [ $merge = 1 ] && [ $ci = 0 ] && [ "$(ls "$found" | wc -l)" -gt 0 ]; then
        n=$(ls "fuzz/corpus/$t" | wc -l)
        "$BIN_DIR/$t" -merge=1 "fuzz/corpus/$t" "$found" >"$log.merge" 2>&1 || true
        echo "fuzz.sh: $t: merged $(($(ls "fuzz/corpus/$t" | wc -l) - n)) inputs that add coverage into fuzz/corpus/$t"
    fi
}

rounds=$(((${#targets[@]} + jobs - 1) / jobs))
echo "fuzz.sh: fuzzing ${#targets[@]} target(s) for $seconds s each, $jobs at a time (about $(((rounds * (seconds + 2) + 59) / 60)) min)"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    fuzz_one "$t" &
done
wait
passed=0 failed=0 failures=()
for t in "${targets[@]}"; do
    if [ "$(cat "$logs/$t.result" 2>/dev/null)" = ok ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$t")
    fi
done
if [ $failed -gt 0 ]; then
    echo "fuzz.sh: failed: ${failures[*]} (inputs in fuzz/artifacts/)"
fi
echo "fuzz: $passed passed, $failed failed"
[ $failed = 0 ]
