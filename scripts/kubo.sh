#!/usr/bin/env bash
# Builds the reference Kubo (the real `ipfs` binary, v0.43.1) once per machine, from its
# module source on the Go module proxy, and prints the binary's path:
#   $CAIRN_CACHE/go/kubo-v0.43.1/ipfs
# Quiet when it is there; when not, says what it does (about 5 minutes on 2 cores: downloads
# and compiles a few hundred Go modules into $CAIRN_CACHE/go, outside the clone).
#
# `go install github.com/ipfs/kubo/cmd/ipfs@v0.43.1` refuses this version: its go.mod replaces
# go-libp2p with a fork (github.com/lidel/go-libp2p) that lifts go-libp2p's pin of quic-go,
# and the module proxy does not serve that fork (403). So the source is downloaded as a module,
# the replace is dropped for the go-libp2p release that builds with that quic-go (v0.52.0),
# and the binary is built from the copy. Nothing else in Kubo changes; `ipfs version` says
# 0.43.1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN_CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
VERSION=v0.43.1
LIBP2P=v0.52.0
GO_DIR=$CAIRN_CACHE/go
dest=$GO_DIR/kubo-$VERSION/ipfs

if [ -x "$dest" ] && "$dest" version 2>/dev/null | grep -q "${VERSION#v}"; then
    echo "$dest"
    exit 0
fi
command -v go >/dev/null 2>&1 || { echo "kubo.sh: error: Go is not installed (Kubo $VERSION needs Go 1.25 or newer)" >&2; exit 1; }
mkdir -p "$GO_DIR"
exec 9>"$GO_DIR/.lock"
flock 9
if [ -x "$dest" ] && "$dest" version 2>/dev/null | grep -q "${VERSION#v}"; then
    echo "$dest"
    exit 0
fi
echo "kubo.sh: building Kubo $VERSION (the reference ipfs) into $GO_DIR: about 5 minutes on 2 cores" >&2
export GOPATH=$GO_DIR/path GOFLAGS=-modcacherw
export GOCACHE=${GOCACHE:-$GO_DIR/build-cache}
log=$GO_DIR/kubo-build.log
src=$GO_DIR/src-kubo-$VERSION
{
    dir=$(cd /tmp && go mod download -json "github.com/ipfs/kubo@$VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] && [ -d "$dir" ] || { echo "no module directory for kubo@$VERSION"; exit 1; }
    rm -rf "$src"
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
    cd "$src"
    go mod edit -dropreplace=github.com/libp2p/go-libp2p -require="github.com/libp2p/go-libp2p@$LIBP2P"
    mkdir -p "$(dirname "$dest")"
    go build -trimpath -mod=mod -o "$dest.new" ./cmd/ipfs
    mv "$dest.new" "$dest"
} >"$log" 2>&1 || {
    tail -n 30 "$log" >&2
    echo "kubo.sh: error: building Kubo $VERSION failed; the whole log is $log" >&2
    exit 1
}
rm -rf "$src"
"$dest" version | grep -q "${VERSION#v}" || { echo "kubo.sh: error: $dest is not Kubo $VERSION" >&2; exit 1; }
echo "kubo.sh: built $("$dest" version)" >&2
echo "$dest"
