#!/usr/bin/env bash
# Builds the reference IPFS Cluster (ipfs-cluster-service and ipfs-cluster-ctl, v1.1.0) once
# per machine, from its module source on the Go module proxy, and prints the directory that
# holds both binaries:
#   $CAIRN_CACHE/go/cluster-v1.1.0/
# Quiet when they are there; when not, says what it does (about 5 minutes on 2 cores the first
# time, less once scripts/kubo.sh has filled the module cache: most modules are shared).
#
# `go install github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-service@v1.1.0` fails
# here: it reads the module's version list (for deprecation notices), which the proxy refuses
# (403). The version itself is served, so the two commands are built from a throwaway module
# that requires it. (v1.1.2 and v1.1.4 are refused by the proxy; v1.1.0 is the newest served.)
set -euo pipefail
CAIRN_CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
VERSION=v1.1.0
GO_DIR=$CAIRN_CACHE/go
dest=$GO_DIR/cluster-$VERSION

ready() {
    [ -x "$dest/ipfs-cluster-service" ] && [ -x "$dest/ipfs-cluster-ctl" ] &&
        "$dest/ipfs-cluster-service" --version 2>/dev/null | grep -q "${VERSION#v}"
}
if ready; then
    echo "$dest"
    exit 0
fi
command -v go >/dev/null 2>&1 || { echo "cluster.sh: error: Go is not installed" >&2; exit 1; }
mkdir -p "$GO_DIR"
exec 9>"$GO_DIR/.lock"
flock 9
if ready; then
    echo "$dest"
    exit 0
fi
echo "cluster.sh: building IPFS Cluster $VERSION into $dest: up to 5 minutes on 2 cores" >&2
export GOPATH=$GO_DIR/path GOFLAGS=-modcacherw
export GOCACHE=${GOCACHE:-$GO_DIR/build-cache}
log=$GO_DIR/cluster-build.log
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
    cd "$work"
    printf 'module cairn/clusterbuild\n\ngo 1.25\n\nrequire github.com/ipfs-cluster/ipfs-cluster %s\n' "$VERSION" >go.mod
    mkdir -p "$dest.new"
    go build -trimpath -mod=mod -o "$dest.new/" \
        github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-service \
        github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-ctl
    rm -rf "$dest"
    mv "$dest.new" "$dest"
} >"$log" 2>&1 || {
    tail -n 30 "$log" >&2
    echo "cluster.sh: error: building IPFS Cluster $VERSION failed; the whole log is $log" >&2
    exit 1
}
ready || { echo "cluster.sh: error: $dest does not hold IPFS Cluster $VERSION" >&2; exit 1; }
echo "cluster.sh: built $("$dest/ipfs-cluster-service" --version)" >&2
echo "$dest"
