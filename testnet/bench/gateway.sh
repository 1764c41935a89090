#!/usr/bin/env bash
# Gateway throughput: Cairn's gateway beside Kubo 0.43.1's (`ipfs daemon --offline`) and nginx
# serving the same bytes from disk, in the same run, on loopback, inside a network namespace
# of its own that holds only loopback. Prints Markdown rows for docs/benchmarks.md.
#
#   testnet/bench/gateway.sh [SIZE_MIB] [SECONDS]
#
# - large: one SIZE_MIB file (default 1024) fetched whole, over and over, on 1 connection
#   (wrk -t1 -c1) for SECONDS (default 15): MB/s from wrk's bytes read.
# - small: a 4 KiB file, 100 concurrent connections (wrk -t2 -c100): requests/s.
# - latency: 20 reads of the small file in a row, idle and while 1,000 requests for CIDs
#   nobody has wait (Cairn only).
# Installs wrk and nginx-light from Debian if missing, and builds Kubo with scripts/kubo.sh;
# then re-runs itself under `unshare -n` (root, or a user namespace) with loopback up, where
# everything listens on 127.0.0.1 only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SIZE_MIB=${1:-1024}
SECONDS_EACH=${2:-15}
source "$ROOT/scripts/env.sh"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# CAIRN_BIN: a cairn binary to measure instead of this checkout's (another commit's build).
if [ -n "${CAIRN_BIN:-}" ]; then
    CAIRN=$CAIRN_BIN
else
    cargo build --release --locked -q -p cairn-cli --manifest-path "$ROOT/Cargo.toml"
    CAIRN=$CARGO_TARGET_DIR/release/cairn
fi
KUBO=$(bash "$ROOT/scripts/kubo.sh")

# The rest runs in a network namespace holding only loopback.
if [ -z "${CAIRN_NETNS:-}" ]; then
    userns=(); [ "$(id -u)" = 0 ] || userns=(-r)
    exec unshare "${userns[@]}" -n env CAIRN_NETNS=1 CAIRN_BIN="$CAIRN" bash -c \
        'ip link set lo up && exec bash "$0" "$@"' "$0" "$SIZE_MIB" "$SECONDS_EACH"
fi

WORK=$(mktemp -d)
cleanup() {
    [ -n "${CAIRN_PID:-}" ] && kill "$CAIRN_PID" 2>/dev/null || true
    [ -n "${KUBO_PID:-}" ] && kill "$KUBO_PID" 2>/dev/null || true
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/www"
# nginx's workers drop root for an unprivileged user, who must be able to read the files.
chmod 755 "$WORK" "$WORK/www"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/www/big.bin"
head -c 4096 /dev/urandom >"$WORK/www/small.bin"

# Cairn: a repo, the two files, the daemon on a free port.
REPO=$WORK/repo
"$CAIRN" --repo "$REPO" init --profile test >/dev/null
BIG=$("$CAIRN" --repo "$REPO" add -Q "$WORK/www/big.bin")
SMALL=$("$CAIRN" --repo "$REPO" add -Q "$WORK/www/small.bin")
"$CAIRN" --repo "$REPO" daemon >"$WORK/daemon.log" 2>&1 &
CAIRN_PID=$!
for _ in $(seq 100); do [ -s "$REPO/gateway" ] && break; sleep 0.1; done
CAIRN_URL=$(cat "$REPO/gateway")

# Kubo 0.43.1: a repo (--profile test: loopback, no bootstrap), the same two files, offline.
export IPFS_PATH=$WORK/kubo
"$KUBO" init --profile=test >/dev/null
"$KUBO" config Addresses.Gateway /ip4/127.0.0.1/tcp/18090
K_BIGCID=$("$KUBO" add -Q "$WORK/www/big.bin")
K_SMALLCID=$("$KUBO" add -Q "$WORK/www/small.bin")
[ "$K_BIGCID" = "$BIG" ] && [ "$K_SMALLCID" = "$SMALL" ] || { echo "Kubo's CIDs differ from Cairn's" >&2; exit 1; }
"$KUBO" daemon --offline >"$WORK/kubo.log" 2>&1 &
KUBO_PID=$!
KUBO_URL=http://127.0.0.1:18090
for _ in $(seq 200); do curl -sf -o /dev/null "$KUBO_URL/ipfs/$SMALL" && break; sleep 0.1; done
curl -sf -o /dev/null "$KUBO_URL/ipfs/$SMALL" || { tail "$WORK/kubo.log" >&2; echo "Kubo's gateway does not answer" >&2; exit 1; }

# nginx: the same files from disk, sendfile on, logs off.
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $WORK/tmp;
    proxy_temp_path $WORK/tmp;
    fastcgi_temp_path $WORK/tmp;
    uwsgi_temp_path $WORK/tmp;
    scgi_temp_path $WORK/tmp;
    server {
        listen 127.0.0.1:18089;
        root $WORK/www;
    }
}
CONF
mkdir -p "$WORK/tmp"
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon on;' 2>/dev/null
NGINX_URL=http://127.0.0.1:18089
for _ in $(seq 50); do curl -sf -o /dev/null "$NGINX_URL/small.bin" && break; sleep 0.1; done
curl -sf -o /dev/null "$NGINX_URL/small.bin" || { cat "$WORK/nginx-error.log" >&2; echo "nginx does not answer" >&2; exit 1; }

# wrk's "Transfer/sec" in MB/s (10^6 bytes), and its "Requests/sec".
mbps() {
    wrk -t1 -c1 -d"${SECONDS_EACH}s" --timeout 60s "$1" | awk '
        /Transfer\/sec/ { x=$2; unit=x; gsub(/[0-9.]/, "", unit); v=x+0;
            m = (unit=="GB") ? 1073741824 : (unit=="MB") ? 1048576 : (unit=="KB") ? 1024 : 1;
            printf "%.0f\n", v*m/1e6 }'
}
rps() {
    wrk -t2 -c100 -d"${SECONDS_EACH}s" "$1" | awk '/Requests\/sec/ {printf "%.0f\n", $2}'
}

# Warm the page cache and RocksDB's before measuring.
curl -sf -o /dev/null "$CAIRN_URL/ipfs/$BIG"
curl -sf -o /dev/null "$NGINX_URL/big.bin"
curl -sf -o /dev/null "$KUBO_URL/ipfs/$BIG"

C_BIG=$(mbps "$CAIRN_URL/ipfs/$BIG")
K_BIG=$(mbps "$KUBO_URL/ipfs/$BIG")
N_BIG=$(mbps "$NGINX_URL/big.bin")
C_SMALL=$(rps "$CAIRN_URL/ipfs/$SMALL")
K_SMALL=$(rps "$KUBO_URL/ipfs/$SMALL")
N_SMALL=$(rps "$NGINX_URL/small.bin")

# A local 4 KiB read's latency, idle and while 1,000 requests for CIDs nobody has wait
# (each up to Gateway.RetrievalTimeout): those wait on the runtime, holding no thread.
ulimit -n 4096
read -r IDLE_MED IDLE_MAX WAIT_MED WAIT_MAX STILL < <(python3 - "$CAIRN_URL" "$SMALL" <<'PY'
import base64, hashlib, socket, statistics, sys, time
url, small = sys.argv[1], sys.argv[2]
host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
def cid(i):
    digest = hashlib.sha256(b"nobody has %d" % i).digest()
    return "b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + digest).decode().lower().rstrip("=")
def ask(path):
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return s
def local(n=20):
    took = []
    for _ in range(n):
        t = time.monotonic()
        s = ask(f"/ipfs/{small}")
        while s.recv(65536):
            pass
        s.close()
        took.append((time.monotonic() - t) * 1000)
    return statistics.median(took), max(took)
idle = local()
waiting = [ask(f"/ipfs/{cid(i)}") for i in range(1000)]
time.sleep(2)
busy = local()
def still_waiting(s):
    s.setblocking(False)
    try:
        return len(s.recv(1)) == 0 and False
    except BlockingIOError:
        return True
print(f"{idle[0]:.2f} {idle[1]:.2f} {busy[0]:.2f} {busy[1]:.2f} {sum(map(still_waiting, waiting))}")
PY
)

RSS=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$CAIRN_PID/status")
K_RSS=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$KUBO_PID/status")
echo "{\"large_mb_s\": {\"cairn\": $C_BIG, \"kubo\": $K_BIG, \"nginx\": $N_BIG}, \"small_req_s\": {\"cairn\": $C_SMALL, \"kubo\": $K_SMALL, \"nginx\": $N_SMALL}, \"local_read_ms\": {\"idle_median\": $IDLE_MED, \"waiting_median\": $WAIT_MED, \"waiting_max\": $WAIT_MAX}, \"peak_rss_mib\": {\"cairn\": $RSS, \"kubo\": $K_RSS}}"
echo
echo "| measurement | Cairn | Kubo 0.43.1 | nginx | Cairn / Kubo | Cairn / nginx |"
echo "|---|---:|---:|---:|---:|---:|"
awk -v c="$C_BIG" -v k="$K_BIG" -v n="$N_BIG" 'BEGIN { printf "| %d MiB file, 1 connection (MB/s) | %d | %d | %d | %.2f | %.2f |\n", '"$SIZE_MIB"', c, k, n, c/k, c/n }'
awk -v c="$C_SMALL" -v k="$K_SMALL" -v n="$N_SMALL" 'BEGIN { printf "| 4 KiB file, 100 connections (requests/s) | %d | %d | %d | %.2f | %.2f |\n", c, k, n, c/k, c/n }'
awk -v c="$RSS" -v k="$K_RSS" 'BEGIN { printf "| daemon peak RSS (MiB) | %d | %d | | %.2f | |\n", c, k, c/k }'
echo
echo "| local 4 KiB read, 20 in a row (ms) | median | max |"
echo "|---|---:|---:|"
echo "| idle | $IDLE_MED | $IDLE_MAX |"
echo "| while 1,000 requests for missing CIDs wait ($STILL still waiting after) | $WAIT_MED | $WAIT_MAX |"

