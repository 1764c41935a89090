#!/usr/bin/env bash
# Keeps Cairn's cargo target directories from filling the disk.
#
# Cargo never deletes what it built. Every change to a test, a binary or a fuzz target leaves
# the old executable behind (each links all of RocksDB, so each is large), every clone of the
# repo (a CI checkout, a worktree) links its own, and incremental state only grows. Left alone
# the target directories outgrow the disk within a day of work, and a link that then runs out
# of space dies with a bus error. Run by scripts/test.sh and scripts/fuzz.sh before they build;
# safe at any time when no build is running in those directories.
#
# For each deps/ directory under the target directories (debug, release, and cargo-fuzz's
# <triple>/release):
#   - executables are kept newest first up to CAIRN_KEEP_EXECUTABLES_MIB (default 6144) MiB and
#     the older ones deleted, with the copies cargo hard-links beside deps/;
#   - of librocksdb-sys's archives (a copy of RocksDB each), only the newest is kept;
# and incremental state untouched for 2 days is deleted. Cargo rebuilds whatever it needs again
# that it no longer finds. Prints what it freed and the disk's free space; warns below
# CAIRN_MIN_FREE_GIB (default 15) GiB.
#
#   scripts/prune.sh [TARGET_DIR...]   (default: $CARGO_TARGET_DIR and the fuzz target dir)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/env.sh"

keep=$(( ${CAIRN_KEEP_EXECUTABLES_MIB:-6144} * 1024 * 1024 ))
min_free_gib=${CAIRN_MIN_FREE_GIB:-15}
if [ $# -gt 0 ]; then
    dirs=("$@")
else
    dirs=("$CARGO_TARGET_DIR" "${CAIRN_FUZZ_TARGET_DIR:-$HOME/.cache/cairn-fuzz-target}")
fi

freed=0
# Deletes a file and the hard links to it in the directory above (cargo's uplifted copies).
remove() {
    local f=$1 size
    size=$(stat -c %s "$f")
    find "$(dirname "$f")/.." -maxdepth 1 -samefile "$f" -delete 2>/dev/null || true
    rm -f "$f"
    freed=$((freed + size))
}

for target in "${dirs[@]}"; do
    [ -d "$target" ] || continue
    while IFS= read -r deps; do
        # Executables: no extension, the execute bit; newest first, keep up to the budget.
        total=0
        while read -r _ size f; do
            total=$((total + size))
            if [ $total -gt $keep ]; then
                remove "$f"
            fi
        done < <(find "$deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -printf '%T@ %s %p\n' | sort -rn)
        # librocksdb-sys's rlibs bundle the whole archive: the newest serves every build.
        while read -r _ f; do
            remove "$f"
        done < <(find "$deps" -maxdepth 1 -type f -name 'liblibrocksdb_sys-*.rlib' -printf '%T@ %p\n' | sort -rn | tail -n +2)
    done < <(find "$target" -maxdepth 3 -type d -name deps)
    while IFS= read -r inc; do
        find "$inc" -mindepth 1 -maxdepth 1 -type d -mtime +1 -exec rm -rf {} +
    done < <(find "$target" -maxdepth 3 -type d -name incremental)
done

avail_kib=$(df -Pk "${dirs[0]}" 2>/dev/null | awk 'NR == 2 {print $4}' || echo 0)
avail_gib=$((avail_kib / 1024 / 1024))
echo "prune.sh: freed $((freed / 1024 / 1024)) MiB (old executables and archives); ${avail_gib} GiB free on the build disk"
if [ "$avail_gib" -lt "$min_free_gib" ]; then
    echo "prune.sh: warning: under $min_free_gib GiB free; a build or link may fail for lack of space (lower CAIRN_KEEP_EXECUTABLES_MIB, or remove old target directories)" >&2
fi
