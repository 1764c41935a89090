#!/usr/bin/env python3
"""Where a traced run's publisher spent its uplink: first copies against repeats.

Reads the node logs of one scenario run made with tracing on and kept:

    CAIRN_LOG=cairn_trace=trace,warn cairn-testnet run FILE --only NAME --out DIR --keep-logs
    python3 testnet/bench/publisher-copies.py DIR/logs/NAME

and prints, for node 0 (the publisher):
  - how many copies of each block it sent;
  - per second of the run, first copies / repeat copies;
  - per block, when the first want-block for it reached the publisher and when its first copy
    left (a first copy that leaves late because nobody asked for it is demand-limited);
  - for every repeat copy, the asker's priority, how long its want-block waited, and whether
    the asker had heard HAVE from another peer before the copy left.
"""

import collections
import datetime
import glob
import os
import re
import sys

EVENT = re.compile(r"^(\S+) TRACE cairn_trace: (send|recv) peer=(\S+) msg=(.*)$")
IDENTITY = re.compile(r"^Peer identity: (\S+)")


def stamp(text):
    return datetime.datetime.fromisoformat(text.rstrip("Z")[:26]).timestamp()


def entries(msg):
    """(kind, item) for each entry of a message summary such as `want[hAbc:3,bDef:2] block[Ghi]`."""
    for kind, body in re.findall(r"(\w+)\[([^\]]*)\]", msg):
        for item in filter(None, body.split(",")):
            yield kind, item


def load(folder):
    """Per node: a list of (time, direction, peer, kind, item); the peer as a node index."""
    raw, ids = {}, {}
    for path in glob.glob(os.path.join(folder, "node*.log")):
        index = int(re.search(r"node(\d+)\.log$", path).group(1))
        with open(path, errors="replace") as f:
            raw[index] = f.read().splitlines()
        for line in raw[index][:5]:
            m = IDENTITY.match(line)
            if m:
                ids[m.group(1)] = index
    events, start = collections.defaultdict(list), None
    for index, lines in raw.items():
        for line in lines:
            m = EVENT.match(line)
            if not m:
                continue
            t = stamp(m.group(1))
            start = t if start is None else min(start, t)
            peer = ids.get(m.group(3), m.group(3))
            for kind, item in entries(m.group(4)):
                events[index].append((t, m.group(2), peer, kind, item))
    if start is None:
        sys.exit(f"{folder}: no trace lines (was the run made with CAIRN_LOG=cairn_trace=trace?)")
    return {i: [(t - start, *rest) for (t, *rest) in evs] for i, evs in events.items()}


def cid_of(item):
    """The CID suffix of a want entry (`hXYZ:3`, `bXYZ:2`) or of any other entry."""
    return item.split(":")[0][1:] if ":" in item else item


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    events = load(sys.argv[1])
    publisher = events.get(0, [])
    sends = [(t, peer, item) for (t, d, peer, kind, item) in publisher if d == "send" and kind == "block"]
    if not sends:
        sys.exit("the publisher sent no blocks")
    copies = collections.Counter(item for _, _, item in sends)
    root = max(copies, key=copies.get)  # the root: tiny, and every reader asks for it first
    print(f"blocks sent: {len(sends)} ({len(copies)} distinct); copies per block: "
          f"{dict(sorted(collections.Counter(copies.values()).items()))}")

    first, per_second, repeats = {}, collections.defaultdict(lambda: [0, 0]), []
    for t, peer, item in sends:
        if item == root:
            continue
        if item in first:
            per_second[int(t)][1] += 1
            repeats.append((t, peer, item))
        else:
            first[item] = t
            per_second[int(t)][0] += 1
    print("per second, first/repeat copies:", " ".join(f"{s}:{a}/{b}" for s, (a, b) in sorted(per_second.items())))

    asked = collections.defaultdict(list)
    for t, d, _, kind, item in publisher:
        if d == "recv" and kind == "want" and item.startswith("b"):
            asked[cid_of(item)].append(t)
    print("block   first want-block   first copy")
    for item, t in sorted(first.items(), key=lambda x: x[1]):
        w = min(asked[item]) if asked[item] else float("nan")
        print(f"{item}   {w:8.2f}        {t:8.2f}")

    waits, by_priority, heard = [], collections.Counter(), 0
    for t, peer, item in repeats:
        mine = events.get(peer, []) if isinstance(peer, int) else []
        wants = [(tw, it) for (tw, d, p, k, it) in mine
                 if d == "send" and p == 0 and k == "want" and it.startswith("b") and cid_of(it) == item and tw <= t]
        if wants:
            tw, it = wants[-1]
            waits.append(t - tw)
            by_priority[it.split(":")[1]] += 1
        if any(d == "recv" and k == "have" and it == item and p != 0 and tw <= t for (tw, d, p, k, it) in mine):
            heard += 1
    if repeats:
        waits.sort()
        mid = waits[len(waits) // 2] if waits else float("nan")
        tail = waits[int(len(waits) * 0.9)] if waits else float("nan")
        print(f"repeat copies: {len(repeats)}; by the asker's priority {dict(by_priority)}; "
              f"want-block waited p50 {mid:.2f} s, p90 {tail:.2f} s; "
              f"the asker had heard HAVE from another peer first: {heard}")


if __name__ == "__main__":
    main()
